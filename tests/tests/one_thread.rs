//! weir started on one CPU runs on one thread: it serves, reloads its
//! config and keeps its state with no other thread left between its
//! blocking calls (each gets a thread of its own, which ends with it).

use std::time::Duration;

use weir_e2e::{Conn, FakeUpstream, Route, Weir, WeirConfig, wait_until, within};

/// How many threads process `pid` has now.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// Waits until process `pid` has one thread.
async fn wait_for_one_thread(pid: u32, after: &str) {
    let what = format!("weir to run on one thread {after}");
    wait_until(Duration::from_secs(10), &what, || async {
        (threads_of(pid) == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_cpu_weir_serves_and_reloads_on_one_thread() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig {
        cpu: Some(0),
        ..WeirConfig::new([Route::new("web", &[stable.addr]).canary(&[canary.addr], 0.0)])
    };
    let mut weir = Weir::start(config.clone()).await;
    let pid = weir.pid();
    wait_for_one_thread(pid, "once ready").await;

    let answered_by = |weir: &Weir| {
        let http = weir.addrs.http;
        within(Duration::from_secs(10), "a request", async move {
            let mut conn = Conn::open(http).await.expect("connect");
            let answer = conn.get("/", &[]).await.expect("an answer");
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.upstream().to_owned()
        })
    };
    assert_eq!(answered_by(&weir).await, "stable");

    // The reload reads the file on a thread of its own, which then ends.
    weir.reload(&config.with_weight("web", 100.0)).await;
    assert_eq!(answered_by(&weir).await, "canary");
    wait_for_one_thread(pid, "after a reload").await;
    assert!(
        !weir.log().contains("panicked"),
        "weir panicked:\n{}",
        weir.log()
    );
}
