//! The dashboard in a real browser (headless Chromium over WebDriver),
//! against a running weir with a rollout under load: the page asks for a
//! token and says so when one is wrong; the reader token shows the list and
//! the route page with live charts but disables the buttons, saying why;
//! the writer token promotes (with a confirmation) and the new step shows
//! without a reload; an abort caused by a failing canary shows by itself.
//! Without tokens in the config, the page asks for none and acts. What no
//! event carries (a gate's last answer, a background run's measurements)
//! follows the API on the route page without a reload. A CanaryRoute
//! deleted while its page is shown (no event says so) shows as unknown.
//! Screenshots go to `target/dashboard-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{
    Answer, Browser, CANARY_ROUTES, Cluster, FakeUpstream, HookReceiver, Load, LoadtestUpstream,
    Route, Step, Strategy, Weir, WeirConfig, phase, step_index, wait_until, workspace_root,
};

const READER: &str = "dashboard-reader-token";
const WRITER: &str = "dashboard-writer-token";
/// Deadlines for what the page shows; the time it took is measured by the
/// page itself and printed.
const SHOWN: Duration = Duration::from_secs(15);

/// One browser at a time: two on 2 cores would starve weir.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `script` in the page; `null` when it throws or the page is between
/// two documents.
async fn read(browser: &Browser, script: &str) -> Value {
    browser
        .script(script, json!([]))
        .await
        .unwrap_or(Value::Null)
}

/// Waits until `script` returns something other than `null`, `false`, `""`
/// or `0`, and returns it.
async fn shown(browser: &Browser, what: &str, script: &str) -> Value {
    wait_until(SHOWN, what, || async {
        let value = read(browser, script).await;
        let empty = matches!(&value, Value::Null | Value::Bool(false))
            || value.as_str() == Some("")
            || value.as_f64() == Some(0.0);
        (!empty).then_some(value)
    })
    .await
}

/// Clicks `selector`, again if the page re-rendered it meanwhile.
async fn click(browser: &Browser, selector: &str) {
    wait_until(SHOWN, &format!("a click on {selector}"), || async {
        browser.click(selector).await.ok()
    })
    .await;
}

/// Types `token` into the token form and submits it.
async fn enter_token(browser: &Browser, token: &str) {
    shown(
        browser,
        "the token form",
        "return !document.getElementById('token-form').hidden;",
    )
    .await;
    browser
        .type_into("#token-input", token)
        .await
        .expect("typing the token");
    click(browser, "#token-form button[type=submit]").await;
}

/// The page's own measure of the last `event` it showed: ms from the
/// event's stamp in weir to the animation frame after it was drawn.
async fn shown_after(browser: &Browser, event: &str, kind: &str) -> Value {
    let script = format!(
        "const all = window.weirShown.filter((s) => s.event === '{event}' && s.kind === '{kind}');
         return all.length ? all[all.length - 1].ms : null;"
    );
    shown(
        browser,
        &format!("the page's measure of {event} {kind}"),
        &script,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_rollout_and_acts_with_the_writer_token() {
    let _one = ONE_BROWSER.lock().await;
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let strategy = Strategy::judged([
        Step::SetWeight(20.0),
        Step::Pause(None),
        Step::SetWeight(50.0),
        Step::Pause(None),
    ]);
    let config = WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )])
    .tokens(Some(READER), Some(WRITER));
    let weir = Weir::start(config).await;
    let load = Load::start(weir.addrs.http, "/", 100, 4);
    let reader = weir.admin_with(READER);
    let status = || async {
        let answer = reader.get("/api/v1/routes/web").await.ok()?;
        (answer.status == 200).then(|| answer.json())
    };
    let s = wait_until(SHOWN, "Paused at step 2 of 4", || async {
        status().await.filter(|s| step_index(s) == Some(1))
    })
    .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");

    let shots = workspace_root().join("target/dashboard-screenshots");
    let browser = Browser::start(1280, 1000).await;
    let ui = format!("http://{}/ui/", weir.addrs.admin);
    browser.goto(&ui).await;

    // No token yet: the page asks for one.
    let asked = shown(
        &browser,
        "the page asking for a token",
        "return !document.getElementById('token-form').hidden
            && document.getElementById('token-message').textContent;",
    )
    .await;
    assert!(
        asked
            .as_str()
            .is_some_and(|m| m.contains("asks for a token")),
        "{asked}"
    );

    // A wrong token: a clear message, and the form again.
    enter_token(&browser, "not-a-token").await;
    let refused = shown(
        &browser,
        "a wrong token refused",
        "const m = document.getElementById('token-message');
         return !document.getElementById('token-form').hidden
            && m.className === 'error' && m.textContent;",
    )
    .await;
    assert!(
        refused
            .as_str()
            .is_some_and(|m| m.contains("token was refused") && m.contains("wrong")),
        "{refused}"
    );

    // The reader token: the list shows the route and its phase.
    enter_token(&browser, READER).await;
    let listed = shown(
        &browser,
        "the route in the list",
        "const p = document.querySelector('tr[data-route=\"web\"] .phase');
         return p && p.textContent;",
    )
    .await;
    assert_eq!(listed, "Paused");
    browser.screenshot(&shots.join("list.png")).await;

    // The route page: live charts, and the buttons disabled with a reason.
    click(&browser, "tr[data-route=\"web\"] a").await;
    let points = shown(
        &browser,
        "points on the request-rate chart",
        "const c = document.querySelector('canvas[data-field=\"rps\"]');
         return c && Number(c.dataset.points || 0);",
    )
    .await;
    assert!(points.as_f64().is_some_and(|n| n > 0.0), "{points}");
    let buttons = read(
        &browser,
        "return [...document.querySelectorAll('#actions button')]
            .map((b) => [b.textContent, b.disabled]);",
    )
    .await;
    assert_eq!(
        buttons,
        json!([
            ["Promote", true],
            ["Promote full", true],
            ["Abort", true],
            ["Retry", true],
            ["Pause", true],
            ["Resume", true]
        ])
    );
    let why = read(
        &browser,
        "return document.getElementById('actions-why').textContent;",
    )
    .await;
    assert!(
        why.as_str().is_some_and(|w| w.contains("writer token")),
        "{why}"
    );

    // The writer token: Promote, confirmed, moves the rollout on, and the
    // page shows the new step without a reload.
    click(&browser, "#token-button").await;
    enter_token(&browser, WRITER).await;
    shown(
        &browser,
        "the buttons enabled",
        "const b = document.querySelector('#actions button[data-command=\"promote\"]');
         return b && !b.disabled;",
    )
    .await;
    read(&browser, "window.weirNotReloaded = true; return null;").await;
    click(&browser, "#actions button[data-command=\"promote\"]").await;
    let question = shown(
        &browser,
        "the confirmation",
        "return !document.getElementById('confirm').hidden
            && document.getElementById('confirm-text').textContent;",
    )
    .await;
    assert!(
        question.as_str().is_some_and(|q| q.contains("Promote web")),
        "{question}"
    );
    // Escape cancels, as in any dialog; asked again, Confirm goes on.
    browser
        .type_into("#confirm-yes", "\u{E00C}")
        .await
        .expect("Escape typed");
    shown(
        &browser,
        "the confirmation closed by Escape",
        "return document.getElementById('confirm').hidden;",
    )
    .await;
    let focused = read(
        &browser,
        "return document.activeElement && document.activeElement.dataset.command || null;",
    )
    .await;
    assert_eq!(focused, json!("promote"), "the focus is back on Promote");
    click(&browser, "#actions button[data-command=\"promote\"]").await;
    shown(
        &browser,
        "the confirmation asked again",
        "return !document.getElementById('confirm').hidden;",
    )
    .await;
    click(&browser, "#confirm-yes").await;
    let step = shown(
        &browser,
        "step 3 or later marked current",
        "const steps = [...document.querySelectorAll('#steps li')];
         const at = steps.findIndex((li) => li.classList.contains('current'));
         return at >= 2 && at + 1;",
    )
    .await;
    assert!(step.as_f64().is_some_and(|s| s >= 3.0), "{step}");
    let s = status().await.expect("the status");
    assert!(
        step_index(&s).is_some_and(|i| i >= 2),
        "the rollout moved on: {s:#}"
    );
    // Answered, the confirmation is disarmed: a second click sends nothing.
    assert_eq!(
        read(
            &browser,
            "return document.getElementById('confirm-yes').onclick === null;"
        )
        .await,
        true,
        "Confirm still armed after its command"
    );
    let promoted_ms = shown_after(&browser, "transition", "promoted").await;
    eprintln!("promote: weir's transition to the page's next frame: {promoted_ms} ms");
    assert_eq!(
        read(&browser, "return window.weirNotReloaded === true;").await,
        true,
        "the page was not reloaded"
    );
    // Wait for the charts to have both roles, for the screenshot.
    shown(
        &browser,
        "canary traffic on the chart",
        "const c = document.querySelector('canvas[data-field=\"rps\"]');
         return c && Number(c.dataset.points || 0) > 10;",
    )
    .await;
    browser.screenshot(&shots.join("route.png")).await;

    // A failing canary is aborted by analysis; the page shows it by itself.
    canary.control(json!({"errorRate": 1.0})).await;
    let aborted = shown(
        &browser,
        "the abort on the page",
        "const p = document.getElementById('phase');
         return p && p.textContent === 'Aborted'
            && document.querySelector('#events li[data-event=\"transition\"]').textContent;",
    )
    .await;
    assert!(
        aborted.as_str().is_some_and(|e| e.contains("aborted")),
        "{aborted}"
    );
    let aborted_ms = shown_after(&browser, "transition", "aborted").await;
    eprintln!("abort: weir's transition to the page's next frame: {aborted_ms} ms");
    browser.screenshot(&shots.join("route-aborted.png")).await;

    // The token stays out of the URL; nothing is fetched from elsewhere.
    let leaks = read(
        &browser,
        &format!(
            "const origin = location.origin;
             return [location.href.includes('{WRITER}'),
                     performance.getEntriesByType('resource')
                        .map((e) => e.name).filter((n) => !n.startsWith(origin))];"
        ),
    )
    .await;
    assert_eq!(leaks, json!([false, []]));
    assert!(
        !weir.log().contains(WRITER) && !weir.log().contains(READER),
        "no token in weir's log"
    );

    // A narrow screen: one column.
    browser
        .set_window_size(420, 900)
        .await
        .expect("a narrow window");
    shown(
        &browser,
        "one column on a narrow screen",
        "const g = document.querySelector('.grid');
         return g && getComputedStyle(g).gridTemplateColumns.split(' ').length === 1;",
    )
    .await;

    browser.quit().await;
    load.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_page_asks_for_none_and_acts() {
    let _one = ONE_BROWSER.lock().await;
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let strategy = Strategy::unjudged([Step::SetWeight(20.0), Step::Pause(None)]);
    let config = WeirConfig::new([
        Route::rollout("web", &[stable.addr], &[canary.addr], strategy),
        Route::new("api", &[stable.addr]).path_prefix("/api"),
        Route::new("tiny", &[stable.addr])
            .path_prefix("/tiny")
            .canary(&[canary.addr], 0.0005),
    ]);
    let mut weir = Weir::start(config.clone()).await;
    let browser = Browser::start(1024, 800).await;
    browser
        .goto(&format!("http://{}/ui/#/", weir.addrs.admin))
        .await;
    // Weights have four decimals, and are shown with all of them.
    shown(
        &browser,
        "a weight of one request in 200,000 shown as written",
        "const cells = document.querySelectorAll('tr[data-route=\"tiny\"] td');
         return [...cells].some((c) => c.textContent.startsWith('0.0005 % '));",
    )
    .await;
    // A route with no canary is not called a split, as `weir status` says.
    shown(
        &browser,
        "the route without a canary listed as such",
        "const cells = document.querySelectorAll('tr[data-route=\"api\"] td');
         return cells.length > 3 && cells[3].textContent === 'no canary';",
    )
    .await;
    browser
        .goto(&format!("http://{}/ui/#/routes/web", weir.addrs.admin))
        .await;
    let promote = shown(
        &browser,
        "Promote enabled without a token",
        "const b = document.querySelector('#actions button[data-command=\"promote\"]');
         return b && !b.disabled;",
    )
    .await;
    assert_eq!(promote, true);
    // The page is drawn again at every event; a button that did not change
    // stays the same element, so a click under way is not lost.
    read(
        &browser,
        "window.keptPromote = document.querySelector('#actions button[data-command=\"promote\"]');
         window.drawnBefore = window.weirShown.length;
         return true;",
    )
    .await;
    shown(
        &browser,
        "three events drawn since",
        "return window.weirShown.length >= window.drawnBefore + 3;",
    )
    .await;
    let kept = read(
        &browser,
        "return window.keptPromote.isConnected
            && window.keptPromote === document.querySelector('#actions button[data-command=\"promote\"]');",
    )
    .await;
    assert_eq!(kept, true, "the Promote button was drawn anew");
    let asked = read(
        &browser,
        "return [document.getElementById('token-form').hidden,
                 document.getElementById('token-button').hidden];",
    )
    .await;
    assert_eq!(asked, json!([true, true]), "no token asked for");
    click(&browser, "#actions button[data-command=\"promote\"]").await;
    click(&browser, "#confirm-yes").await;
    shown(
        &browser,
        "Paused at step 2 of 2",
        "const p = document.getElementById('phase');
         return p && p.textContent === 'Paused'
            && document.getElementById('step').textContent === '2 / 2';",
    )
    .await;
    let s = weir.status("web").await;
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");

    // Tokens added by a reload while the page is open: it asks for one, and
    // its buttons are disabled, saying why, until one is given.
    weir.write_config(
        &config
            .clone()
            .tokens(Some("reader-token"), Some("writer-token")),
    );
    shown(
        &browser,
        "the buttons disabled for want of a token",
        "const b = document.querySelector('#actions button[data-command=\"abort\"]');
         return b && b.disabled && (b.title || '').includes('asks for a token')
            && !document.getElementById('token-form').hidden;",
    )
    .await;
    // Removed again: the page, which asks weir again now and then, no
    // longer asks, and acts.
    weir.write_config(&config);
    shown(
        &browser,
        "the buttons enabled once no token is asked for",
        "const b = document.querySelector('#actions button[data-command=\"abort\"]');
         return b && !b.disabled && document.getElementById('token-form').hidden;",
    )
    .await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_page_follows_a_gates_answers_and_a_runs_measurements() {
    let _one = ONE_BROWSER.lock().await;
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("gate", Answer::Status(403));
    // A background run measuring every 300 ms; with no condition, each
    // answer of the receiver is a success.
    let templates = format!(
        "analysisTemplates:
  - name: probe
    metrics:
      - name: probe
        interval: 300ms
        provider:
          web: {{url: \"{}\"}}
",
        receiver.url("probe")
    );
    let strategy = Strategy::new([Step::SetWeight(50.0), Step::Pause(None)])
        .background("templates: [{templateName: probe}]")
        .webhook("gate", "confirm-rollout", &receiver.url("gate"), "");
    let weir = Weir::start(
        WeirConfig::new([Route::rollout(
            "web",
            &[stable.addr],
            &[canary.addr],
            strategy,
        )])
        .extra(&templates),
    )
    .await;
    weir.wait_status("web", SHOWN, "the gate's 403 in the status", |s| {
        s["webhooks"][0]["statusCode"] == 403
    })
    .await;

    let browser = Browser::start(1024, 800).await;
    browser
        .goto(&format!("http://{}/ui/#/routes/web", weir.addrs.admin))
        .await;
    // The gate's line on the page, once it says `answer`.
    let gate = |answer: &str| {
        format!(
            "const w = [...document.querySelectorAll('#webhooks li')]
                .find((li) => li.textContent.startsWith('gate '));
             return w && w.textContent.includes('{answer}') && w.textContent;"
        )
    };
    shown(&browser, "the gate's 403 on the page", &gate("HTTP 403")).await;

    // The gate answers otherwise: no event says so, the page does.
    receiver.answer("gate", Answer::Status(500));
    weir.wait_status("web", SHOWN, "the gate's 500 in the status", |s| {
        s["webhooks"][0]["statusCode"] == 500
    })
    .await;
    let answered = shown(
        &browser,
        "the gate's new answer on the page",
        &gate("HTTP 500"),
    )
    .await;
    assert!(
        answered.as_str().is_some_and(|t| t.contains("waited on")),
        "{answered}"
    );

    // The run keeps measuring: the page shows as many successes as the API
    // counted, and the latest measurements.
    let runs = weir
        .admin()
        .get("/api/v1/routes/web/analysisruns")
        .await
        .expect("the analysis runs")
        .json();
    let counted = runs[0]["metrics"][0]["successful"].as_u64().unwrap_or(0);
    assert!(counted > 0, "{runs:#}");
    let successes = shown(
        &browser,
        &format!("at least {counted} successful measurements on the page"),
        &format!(
            "const m = document.querySelector('#runs li[data-metric=\"probe\"]');
             const n = m && m.textContent.match(/(\\d+) successful/);
             return n && Number(n[1]) >= {counted}
                && m.querySelectorAll('.measurements li[data-phase=\"Successful\"]').length;"
        ),
    )
    .await;
    assert!(successes.as_u64().is_some_and(|n| n >= 2), "{successes}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_route_deleted_while_shown_shows_as_unknown() {
    let _one = ONE_BROWSER.lock().await;
    let cluster = Cluster::start(1, "").await;
    cluster.add_service("shop", "v1", 80);
    cluster.add_service("shop", "v2", 80);
    for (name, prefix) in [("a", "/a"), ("b", "/b")] {
        let spec = json!({
            "pathPrefix": prefix,
            "stable": {"revision": "v1", "service": {"name": "v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}]},
        });
        cluster.apply_canary_route("shop", name, spec);
    }
    let browser = Browser::start(1024, 800).await;
    let admin = cluster.replica(0).addrs.admin;
    browser
        .goto(&format!("http://{admin}/ui/#/routes/shop%2Fb"))
        .await;
    shown(
        &browser,
        "the route page of shop/b with its buttons",
        "return document.getElementById('phase')
            && document.querySelectorAll('#actions button').length;",
    )
    .await;

    assert!(cluster.api.delete(CANARY_ROUTES, "shop", "b"));
    let page = shown(
        &browser,
        "shop/b shown as unknown, without buttons",
        "const v = document.getElementById('view').textContent;
         return v.includes('No route named shop/b')
            && !document.querySelector('#actions button')
            && document.querySelector('#view a[href=\"#/\"]') && v;",
    )
    .await;
    assert!(!page.as_str().unwrap_or("").contains("Paused"), "{page}");
    browser.quit().await;
}
