//! Listeners on the real binary: on the same port in both address
//! families, `0.0.0.0:P` and `[::]:P` side by side both bind (`[::]` then
//! takes IPv6 only), and each serves its own family; a reload starts the
//! listeners it adds, serves a changed one anew on the same socket, stops
//! the ones it removes, and is refused whole when a port cannot be had.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir_e2e::{
    Conn, FakeUpstream, RELOAD_LIMIT, ReservedPort, Route, Weir, WeirConfig, get, raw_request,
    wait_until, within,
};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_and_an_ipv6_listener_share_a_port() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    weir.sigterm();
    let stopped = weir.wait_exit(Duration::from_secs(20)).await;
    assert!(stopped.success(), "a clean stop: {stopped}");

    // Held until weir listens there, so no other test is handed the port.
    let reserved = ReservedPort::bind();
    let port = reserved.addr.port();
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let both = format!(
        "listeners:\n  - {{ name: any-v4, address: '0.0.0.0:{port}' }}\n  \
         - {{ name: any-v6, address: '[::]:{port}' }}\n"
    );
    assert!(text.contains("listeners:\n"), "{text}");
    weir.write_text(&text.replacen("listeners:\n", &both, 1), false);
    weir.restart().await;
    drop(reserved);

    for address in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let r = raw_request(
            address.parse().expect("an address"),
            b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{address}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
        assert_eq!(r.header("x-upstream-name"), Some("stable"), "{address}");
    }
    let log = weir.log();
    assert!(
        log.contains("listener=any-v4") && log.contains("listener=any-v6"),
        "{log}"
    );

    // Without the IPv4 listener, `[::]` would have to take IPv4 as well: a
    // socket of its own, which a reload cannot bind while the old one
    // listens. Refused, saying what would do it; both families still served.
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let v4 = format!("  - {{ name: any-v4, address: '0.0.0.0:{port}' }}\n");
    assert!(text.contains(&v4), "{text}");
    weir.write_text(&text.replacen(&v4, "", 1), false);
    let answer = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("would have to take IPv4 connections as well"),
        "{}",
        answer.text()
    );
    served(format!("127.0.0.1:{port}").parse().unwrap()).await;
    served(format!("[::1]:{port}").parse().unwrap()).await;
}

/// A `GET /` through `address`: answered by the stable upstream.
async fn served(address: SocketAddr) {
    let answer = within(LIMIT, "GET /", get(address, "/")).await.unwrap();
    assert_eq!(answer.status, 200, "{address}: {}", answer.text());
    assert_eq!(answer.text(), "stable\n", "{address}");
}

/// The config file with `listeners` in place of its listener block.
fn with_listeners(text: &str, listeners: &str) -> String {
    let admin = text.find("admin:").expect("an admin block");
    assert!(text.starts_with("listeners:\n"), "{text}");
    format!("listeners:\n{listeners}{}", &text[admin..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_starts_added_listeners_changes_and_stops_others() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let first = weir.addrs.http;
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let plain = &text["listeners:\n".len()..text.find("admin:").unwrap()];

    // Added: served once the reload is counted, nothing left for a restart.
    let reserved = ReservedPort::bind();
    let second = reserved.addr;
    let before = weir.reloads("success").await;
    weir.write_text(
        &with_listeners(
            &text,
            &format!("{plain}  - {{ name: second, address: '{second}' }}\n"),
        ),
        false,
    );
    weir.wait_for_reload("success", before).await;
    drop(reserved);
    served(first).await;
    served(second).await;
    let answer = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.json().get("restartNeeded").is_none(),
        "{}",
        answer.text()
    );

    // Changed in place (a limit of one): the same port, served by the new
    // loop, which holds a second client off while one is open; a client of
    // the old loop keeps its keep-alive connection and is answered on it.
    let mut kept = Conn::open(second).await.unwrap();
    let before = within(LIMIT, "a first request", kept.get("/", &[]))
        .await
        .unwrap();
    assert_eq!(before.status, 200);
    weir.reload_text(&with_listeners(
        &text,
        &format!("{plain}  - {{ name: second, address: '{second}', maxConnections: 1 }}\n"),
    ))
    .await;
    let mut held = TcpStream::connect(second).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: held.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    within(
        LIMIT,
        "the held client's answer",
        held.read_exact(&mut head),
    )
    .await
    .unwrap();
    assert_eq!(
        &head,
        b"HTTP/1.1 200",
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    let mut over = TcpStream::connect(second).await.unwrap();
    let _ = over
        .write_all(b"GET / HTTP/1.1\r\nHost: over.test\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = within(
        LIMIT,
        "the client over the limit closed",
        over.read(&mut buf),
    )
    .await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(held);
    let after = within(
        LIMIT,
        "a request on the kept connection",
        kept.get("/", &[]),
    )
    .await
    .unwrap();
    assert_eq!(after.status, 200, "{}", after.text());
    drop(kept);

    // Removed: its port stops accepting, the other serves on.
    weir.reload_text(&with_listeners(
        &text,
        &format!("  - {{ name: second, address: '{second}' }}\n"),
    ))
    .await;
    wait_until(
        RELOAD_LIMIT,
        "the removed listener's port closed",
        || async { TcpStream::connect(first).await.is_err().then_some(()) },
    )
    .await;
    served(second).await;
    let log = weir.log();
    assert!(
        log.contains("listener=plain") && log.contains("draining"),
        "{log}"
    );
    // Its series leave the exposition once it has drained.
    wait_until(
        RELOAD_LIMIT,
        "the removed listener's series gone",
        || async {
            let metrics = weir.metrics().await;
            metrics
                .get("weir_connections_open", &[("listener", "plain")])
                .is_none()
                .then_some(())
        },
    )
    .await;
    let metrics = weir.metrics().await;
    assert!(
        metrics
            .get("weir_connections_open", &[("listener", "second")])
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_port_is_taken_refuses_the_reload() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let plain = &text["listeners:\n".len()..text.find("admin:").unwrap()];
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();

    weir.write_text(
        &with_listeners(
            &text,
            &format!("{plain}  - {{ name: second, address: '{address}' }}\n"),
        ),
        false,
    );
    let answer = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let expected = format!("listeners[1].address: listener `second` cannot listen on {address}");
    assert!(answer.text().contains(&expected), "{}", answer.text());
    served(weir.addrs.http).await;
    let status = weir.status("web").await;
    assert_eq!(status["phase"], "Healthy", "{status}");
    drop(taken);

    // Moved to an overlapping address (the wildcard of its own port) in
    // one reload: weir's own socket holds the port, and the refusal says so.
    let first = weir.addrs.http;
    let moved = text.replace(&first.to_string(), &format!("0.0.0.0:{}", first.port()));
    assert_ne!(moved, text);
    weir.write_text(&moved, false);
    let answer = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    let expected = format!(
        "weir's listener `plain` on {first} holds port {}",
        first.port()
    );
    assert!(answer.text().contains(&expected), "{}", answer.text());
    served(first).await;

    // The listener and the admin API swap ports in one reload: each port
    // is held by the other until the reload is adopted, and both
    // refusals say so.
    let admin = weir.addrs.admin;
    let swapped = text
        .replace(&first.to_string(), "FIRST")
        .replace(&admin.to_string(), &first.to_string())
        .replace("FIRST", &admin.to_string());
    weir.write_text(&swapped, false);
    let answer = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    for expected in [
        format!("weir's admin API on {admin} holds port {}", admin.port()),
        format!(
            "weir's listener `plain` on {first} holds port {}",
            first.port()
        ),
    ] {
        assert!(answer.text().contains(&expected), "{}", answer.text());
    }
    served(first).await;
}

/// The admin API moves at a reload (here the file watcher's): the new
/// address answers, with nothing left for a restart, and the old one
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_admin_api() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let old = weir.addrs.admin;
    let reserved = ReservedPort::bind();
    let new = reserved.addr;
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let moved = text.replace(&old.to_string(), &new.to_string());
    assert_ne!(moved, text);
    weir.write_text(&moved, false);
    wait_until(RELOAD_LIMIT, "the admin API at its new address", || async {
        get(new, "/healthz")
            .await
            .ok()
            .filter(|answer| answer.status == 200)
    })
    .await;
    drop(reserved);
    wait_until(RELOAD_LIMIT, "the old admin address closed", || async {
        TcpStream::connect(old).await.is_err().then_some(())
    })
    .await;
    let answer = within(
        LIMIT,
        "POST /api/v1/reload",
        weir_e2e::Admin::new(new, None).post("/api/v1/reload", None),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.json().get("restartNeeded").is_none(),
        "{}",
        answer.text()
    );
    served(weir.addrs.http).await;
}

/// A start whose admin port is taken is refused naming the file, the line
/// and `admin.address`, as a reload names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_admin_port_is_taken_names_admin_address() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    weir.sigterm();
    let stopped = weir.wait_exit(LIMIT).await;
    assert!(stopped.success(), "a clean stop: {stopped}");
    let _taken = std::net::TcpListener::bind(weir.addrs.admin).unwrap();
    let config_path = weir.config_path();
    let args = ["run", "--config", config_path.to_str().expect("UTF-8")];
    let refused = weir_e2e::run_within(&weir_e2e::binary("weir"), &args, LIMIT).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("weir.yaml:")
            && stderr.contains(": admin.address: the admin API cannot listen on"),
        "{stderr}"
    );
}
