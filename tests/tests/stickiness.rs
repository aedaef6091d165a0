//! Cookie stickiness: each client keeps one role; the canary share of
//! clients matches the weight; raising the weight by editing the file (same
//! canary revision, so the same cohorts) moves no canary client back to
//! stable; weight 0 sends everyone to stable.

use std::collections::BTreeMap;
use std::time::Duration;

use weir_e2e::{
    Conn, CookieJar, Error, FakeUpstream, Route, Weir, WeirConfig, binomial_bounds, within,
};

const CLIENTS: usize = 400;
const WORKERS: usize = 8;
const COOKIE: &str = "weir-web";

/// Each client's role in one phase, or why it had none.
type Roles = Vec<Result<String, String>>;

/// Every client makes `requests` requests with its own jar (clients share
/// `WORKERS` keep-alive connections). A client's role is the upstream all
/// its responses came from; a client that saw two upstreams gets an `Err`.
async fn phase(weir: &Weir, jars: &mut [CookieJar], requests: usize) -> Roles {
    let addr = weir.addrs.http;
    let mut tasks = tokio::task::JoinSet::new();
    let taken: Vec<(usize, CookieJar)> = jars.iter().cloned().enumerate().collect();
    for w in 0..WORKERS {
        let mine: Vec<(usize, CookieJar)> = taken
            .iter()
            .filter(|(i, _)| i % WORKERS == w)
            .cloned()
            .collect();
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut out = Vec::new();
            for (i, mut jar) in mine {
                let mut seen: Vec<String> = Vec::new();
                for _ in 0..requests {
                    let r = conn.get_with_jar("/", &mut jar).await?;
                    if r.status != 200 {
                        return Err(format!("client {i}: status {}", r.status).into());
                    }
                    seen.push(r.upstream().to_owned());
                }
                seen.dedup();
                let role = if seen.len() == 1 {
                    Ok(seen.remove(0))
                } else {
                    Err(format!("client {i} moved between {seen:?}"))
                };
                out.push((i, jar, role));
            }
            Ok::<_, Error>(out)
        });
    }
    let mut roles: Roles = vec![Err("no answer".to_owned()); jars.len()];
    while let Some(joined) = tasks.join_next().await {
        for (i, jar, role) in joined.expect("worker task").expect("requests through weir") {
            jars[i] = jar;
            roles[i] = role;
        }
    }
    roles
}

fn canary_clients(roles: &Roles) -> Vec<usize> {
    roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_deref() == Ok("canary"))
        .map(|(i, _)| i)
        .collect()
}

fn assert_consistent(roles: &Roles, when: &str) {
    let moved: Vec<&String> = roles.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(moved.is_empty(), "{when}: clients changed role: {moved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_clients_keep_their_role_across_weight_changes() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 20.0)
        .sticky(COOKIE)]);
    let mut weir = Weir::start(config.clone()).await;
    let mut jars = vec![CookieJar::default(); CLIENTS];
    let limit = Duration::from_secs(60);

    // Phase 1, weight 20: every client sticks to one role.
    let first = within(limit, "phase 1", phase(&weir, &mut jars, 3)).await;
    assert_consistent(&first, "weight 20");
    let no_cookie = jars.iter().filter(|j| j.get(COOKIE).is_none()).count();
    assert_eq!(no_cookie, 0, "{no_cookie} clients got no {COOKIE} cookie");
    let canary_before = canary_clients(&first);
    let bounds = binomial_bounds(CLIENTS as u64, 0.20);
    assert!(
        bounds.contains(canary_before.len() as u64),
        "{} of {CLIENTS} clients on canary at weight 20; accepted {bounds}",
        canary_before.len()
    );

    // Phase 2, weight 50 by editing the file: same revision, same cohorts.
    within(
        limit,
        "reload to weight 50",
        weir.reload(&config.with_weight("web", 50.0)),
    )
    .await;
    let second = within(limit, "phase 2", phase(&weir, &mut jars, 2)).await;
    assert_consistent(&second, "weight 50");
    let moved_back: Vec<usize> = canary_before
        .iter()
        .copied()
        .filter(|&i| second[i].as_deref() != Ok("canary"))
        .collect();
    assert!(
        moved_back.is_empty(),
        "canary clients moved to stable when the weight rose: {moved_back:?}"
    );
    let canary_after = canary_clients(&second);
    let bounds = binomial_bounds(CLIENTS as u64, 0.50);
    assert!(
        canary_after.len() > canary_before.len() && bounds.contains(canary_after.len() as u64),
        "{} of {CLIENTS} clients on canary at weight 50 (was {}); accepted {bounds}",
        canary_after.len(),
        canary_before.len()
    );

    // Phase 3, weight 0: everyone on stable, cookie or not.
    within(
        limit,
        "reload to weight 0",
        weir.reload(&config.with_weight("web", 0.0)),
    )
    .await;
    let third = within(limit, "phase 3", phase(&weir, &mut jars, 2)).await;
    let by_role = third.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(format!("{r:?}")).or_insert(0) += 1;
        m
    });
    assert!(
        third.iter().all(|r| r.as_deref() == Ok("stable")),
        "at weight 0 not every client is on stable: {by_role:?}"
    );
}

/// Splits an issued `Set-Cookie` into the client key and what follows it.
fn issued_key<'a>(set_cookie: &'a str, name: &str) -> (&'a str, &'a str) {
    let rest = set_cookie
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .unwrap_or_else(|| panic!("Set-Cookie {set_cookie:?} does not start with {name}="));
    let end = rest.find(';').unwrap_or(rest.len());
    let (key, attributes) = rest.split_at(end);
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "key {key:?} is not 32 hex digits"
    );
    (key, attributes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sticky_cookie_is_issued_once_with_its_attributes() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 50.0)
        .sticky(COOKIE)])
    .with_tls();
    let weir = Weir::start(config).await;
    let set_cookie = "%header{set-cookie}";

    let (_, plain) = weir_e2e::curl(&[&weir.url("/")], set_cookie).await;
    let (key, attributes) = issued_key(&plain, COOKIE);
    assert_eq!(
        attributes,
        "; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400"
    );

    let (_, over_tls) = weir_e2e::curl(&["-k", &weir.https_url("/")], set_cookie).await;
    let (_, attributes) = issued_key(&over_tls, COOKIE);
    assert_eq!(
        attributes,
        "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=86400"
    );

    // A client that sends its key back, among other cookies, keeps it: no
    // new cookie, and the same upstream every time.
    let cookie = format!("Cookie: _ga=GA1.2.3; {COOKIE}={key}; theme=dark");
    let mut upstreams = BTreeMap::new();
    for _ in 0..10 {
        let (body, again) = weir_e2e::curl(&["-H", &cookie, &weir.url("/")], set_cookie).await;
        assert_eq!(again, "", "a client with a key gets no new one");
        *upstreams.entry(body).or_insert(0) += 1;
    }
    assert_eq!(
        upstreams.len(),
        1,
        "one upstream for one key: {upstreams:?}"
    );
}
