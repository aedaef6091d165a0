//! A blue-green route in the real binary, end to end in one pass: the
//! preview reaches the new revision by host and by header while active
//! traffic stays on the old one, `promote` swaps, and the stage shows in
//! the status, `weir status` and the metrics, and the switch-back window
//! ends. (The full behaviour under
//! load is in `blue_green.rs`.)

use std::time::Duration;

use weir_e2e::{FakeUpstream, Route, Weir, WeirConfig, curl, promtool_check};

const LIMIT: Duration = Duration::from_secs(20);

/// The body of `GET /` through weir with `Host: host` and more headers.
async fn upstream_of(weir: &Weir, host: &str, headers: &[&str]) -> String {
    let host_header = format!("Host: {host}");
    let mut args = vec!["-H", host_header.as_str()];
    for header in headers {
        args.extend(["-H", header]);
    }
    let url = weir.url("/");
    args.push(&url);
    let (body, code) = curl(&args, "%{http_code}").await;
    assert_eq!(code, "200", "{host} {headers:?}: {body}");
    body.trim().to_owned()
}

fn stage(status: &serde_json::Value) -> &str {
    status["blueGreen"]["stage"].as_str().unwrap_or("")
}

/// weir with route `shop` (hosts `shop.test`) turned blue-green with a new
/// revision, without auto-promotion, waiting in `AwaitingPromotion`.
async fn awaiting_promotion(blue: &FakeUpstream, green: &FakeUpstream) -> Weir {
    let route = Route::new("shop", &[blue.addr])
        .hosts(&["shop.test"])
        .canary(&[green.addr], 0.0);
    let mut weir = Weir::start(WeirConfig::new([route])).await;
    // The same route, now blue-green with a new revision v2.
    let fixed = weir.config.render(&weir.addrs);
    assert!(fixed.contains("      weight: 0\n"), "{fixed}");
    let blue_green = fixed.replacen("      weight: 0\n", "", 1)
        + "    strategy:\n      blueGreen:\n        preview:\n          hosts: [preview.shop.test]\n          \
           header: {name: x-weir-preview, value: \"1\"}\n        autoPromotionEnabled: false\n        \
           scaleDownDelaySeconds: 1\n";
    weir.write_text(&blue_green, false);
    weir.wait_status("shop", LIMIT, "stage AwaitingPromotion", |s| {
        stage(s) == "AwaitingPromotion"
    })
    .await;
    weir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_reaches_the_new_revision_until_promote_swaps() {
    let blue = FakeUpstream::start("blue").await;
    let green = FakeUpstream::start("green").await;
    let weir = awaiting_promotion(&blue, &green).await;
    let s = weir
        .wait_status("shop", LIMIT, "stage AwaitingPromotion", |s| {
            stage(s) == "AwaitingPromotion"
        })
        .await;
    assert_eq!(s["phase"], "Paused", "{s:#}");
    assert_eq!(s["canaryWeight"], 0.0, "{s:#}");
    assert_eq!(s["blueGreen"]["previewLive"], true, "{s:#}");
    assert_eq!(
        s["blueGreen"]["previewHosts"][0], "preview.shop.test",
        "{s:#}"
    );
    for _ in 0..5 {
        assert_eq!(upstream_of(&weir, "preview.shop.test", &[]).await, "green");
        assert_eq!(
            upstream_of(&weir, "shop.test", &["x-weir-preview: 1"]).await,
            "green"
        );
        assert_eq!(upstream_of(&weir, "shop.test", &[]).await, "blue");
    }
    let cli = tokio::process::Command::new(weir_e2e::binary("weir"))
        .args([
            "status",
            "shop",
            "--admin",
            &format!("http://{}", weir.addrs.admin),
        ])
        .kill_on_drop(true)
        .output();
    let out = weir_e2e::within(LIMIT, "weir status shop", cli)
        .await
        .expect("weir status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("shop  Paused  blue-green AwaitingPromotion  canary 0%"),
        "{text}"
    );
    let metrics = weir.metrics().await;
    let stage_metric = |stage| {
        metrics.get(
            "weir_blue_green_stage",
            &[("route", "shop"), ("stage", stage)],
        )
    };
    assert_eq!(
        stage_metric("AwaitingPromotion"),
        Some(1.0),
        "{}",
        metrics.text
    );
    assert_eq!(stage_metric("Preview"), Some(0.0), "{}", metrics.text);
    promtool_check(&metrics.text);

    // Promote: the swap, then Done (no post-promotion analysis).
    let epoch_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    let promoted_after = epoch_ms();
    let answer = weir.command("shop", "promote", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let s = weir
        .wait_status("shop", LIMIT, "stage Done", |s| stage(s) == "Done")
        .await;
    assert_eq!(s["phase"], "Promoted", "{s:#}");
    assert_eq!(s["canaryWeight"], 100.0, "{s:#}");
    // Until when abort swaps back (for the dashboard's Abort button): the
    // swap's time plus scaleDownDelaySeconds (1 s).
    let until = s["blueGreen"]["switchBackUntilMs"]
        .as_u64()
        .map(u128::from)
        .unwrap_or_else(|| panic!("switchBackUntilMs while promoted: {s:#}"));
    assert!(
        (promoted_after..=epoch_ms() + 1000).contains(&until),
        "{until} is the swap's time plus 1 s: {s:#}"
    );
    for _ in 0..5 {
        assert_eq!(upstream_of(&weir, "shop.test", &[]).await, "green");
    }
    // Once `scaleDownDelaySeconds` is over, the message stops offering the
    // switch-back, as abort no longer does it.
    let s = weir
        .wait_status("shop", LIMIT, "the switch-back window over", |s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("scaleDownDelaySeconds is over"))
        })
        .await;
    assert!(
        !s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("swaps back"),
        "{s:#}"
    );
    let answer = weir.command("shop", "abort", None).await;
    assert_eq!(answer.status, 409, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_resumes_in_the_same_stage_and_abort_takes_the_preview_away() {
    let blue = FakeUpstream::start("blue").await;
    let green = FakeUpstream::start("green").await;
    let mut weir = awaiting_promotion(&blue, &green).await;

    weir.kill9();
    weir.restart().await;
    let s = weir.status("shop").await;
    assert_eq!(stage(&s), "AwaitingPromotion", "{s:#}");
    assert_eq!(s["phase"], "Paused", "{s:#}");
    assert_eq!(s["canaryWeight"], 0.0, "{s:#}");
    assert_eq!(upstream_of(&weir, "preview.shop.test", &[]).await, "green");
    assert_eq!(upstream_of(&weir, "shop.test", &[]).await, "blue");

    let answer = weir.command("shop", "abort", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let s = weir.status("shop").await;
    assert_eq!(s["phase"], "Aborted", "{s:#}");
    assert_eq!(
        stage(&s),
        "AwaitingPromotion",
        "the stage it was aborted in: {s:#}"
    );
    assert_eq!(s["blueGreen"]["previewLive"], false, "{s:#}");
    // The command's answer comes after the snapshot is published.
    for _ in 0..5 {
        assert_eq!(upstream_of(&weir, "preview.shop.test", &[]).await, "blue");
        assert_eq!(
            upstream_of(&weir, "shop.test", &["x-weir-preview: 1"]).await,
            "blue"
        );
    }
}
