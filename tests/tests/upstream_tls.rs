//! TLS from weir to its upstreams, with certificates made here: HTTP/2 over
//! TLS (`protocol: h2`, ALPN `h2`) carrying gRPC, HTTPS/1.1 (`tls` alone),
//! a certificate from another CA refused with a 502, a reason in the log
//! and `weir_upstream_errors_total{kind="connect"}` (a connection not
//! established; SPEC's kinds have no `tls`), and a CA file that cannot be
//! read reported at its place in the config.

use std::path::Path;
use std::time::Duration;

use weir_e2e::grpc::{GrpcClient, GrpcUpstream, Pki, UNARY};
use weir_e2e::{Route, Weir, WeirConfig, wait_until, weir_command, within};

const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Writes the CA of `pki` into `dir`; returns its absolute path.
fn write_ca(dir: &Path, pki: &Pki) -> String {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).expect("writing ca.pem");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2_and_https_1_1_reach_upstreams_signed_by_the_ca_file() {
    let pki = Pki::new();
    let upstream = GrpcUpstream::tls("v1", None, pki.server_config()).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = write_ca(dir.path(), &pki);
    let weir = Weir::start(WeirConfig::new([
        Route::new("grpc", &[upstream.addr])
            .path_prefix("/weir.test.Echo")
            .stable_key("protocol: h2")
            .stable_key(&format!("tls: {{ caFile: {ca:?}, serverName: localhost }}")),
        // HTTPS/1.1, the certificate checked against the endpoint's IP.
        Route::new("web", &[upstream.addr]).stable_key(&format!("tls: {{ caFile: {ca:?} }}")),
    ]))
    .await;

    let client = GrpcClient::h2c(weir.addrs.http).await;
    for _ in 0..3 {
        let reply = within(
            CALL_LIMIT,
            "a call over h2",
            client.call(UNARY, b"tls", &[]),
        )
        .await;
        assert_eq!(reply.status(), Some(0), "{reply:?}\n{}", weir.log());
        assert_eq!(reply.messages, [&b"tls"[..]]);
        assert_eq!(reply.trailer("grpc-message"), Some("served by v1"));
    }

    let (body, code) = weir_e2e::curl(&[&weir.url("/")], "%{http_code}").await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("v1\n", "200"),
        "{}",
        weir.log()
    );
    // Three calls on one HTTP/2 connection, one HTTP/1.1 connection.
    assert_eq!(upstream.connections(), 2);
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_upstream_errors_total", &[("kind", "connect")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_with_502_and_kind_connect() {
    let upstream_pki = Pki::new();
    let other = Pki::new();
    let upstream = GrpcUpstream::tls("v1", None, upstream_pki.server_config()).await;
    // A server that chooses no protocol by ALPN (it would serve HTTP/2
    // read from the preface): `protocol: h2` is not spoken to it.
    let mut no_alpn = (*upstream_pki.server_config()).clone();
    no_alpn.alpn_protocols.clear();
    let no_alpn = GrpcUpstream::tls("v1", None, std::sync::Arc::new(no_alpn)).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let wrong_ca = write_ca(dir.path(), &other);
    let right_ca = dir.path().join("right-ca.pem");
    std::fs::write(&right_ca, &upstream_pki.ca_pem).expect("writing right-ca.pem");
    let right_ca = right_ca.display().to_string();
    let weir = Weir::start(WeirConfig::new([
        Route::new("web", &[upstream.addr]).stable_key(&format!("tls: {{ caFile: {wrong_ca:?} }}")),
        // The right CA, but a name the certificate does not cover.
        Route::new("named", &[upstream.addr])
            .path_prefix("/named")
            .stable_key(&format!(
                "tls: {{ caFile: {right_ca:?}, serverName: other.test }}"
            )),
        Route::new("unagreed", &[no_alpn.addr])
            .path_prefix("/unagreed")
            .stable_key("protocol: h2")
            .stable_key(&format!(
                "tls: {{ caFile: {right_ca:?}, serverName: localhost }}"
            )),
    ]))
    .await;

    let (body, code) = weir_e2e::curl(&[&weir.url("/")], "%{http_code}").await;
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("upstream TLS handshake failed"), "{body}");
    wait_until(Duration::from_secs(5), "the reason in the log", || async {
        let log = weir.log();
        (log.contains("TLS handshake with") && log.contains("UnknownIssuer")).then_some(())
    })
    .await;
    let (_, code) = weir_e2e::curl(&[&weir.url("/named")], "%{http_code}").await;
    assert_eq!(code, "502");
    wait_until(Duration::from_secs(5), "the name in the log", || async {
        let log = weir.log();
        (log.contains("server name other.test") && log.contains("certificate not valid for name"))
            .then_some(())
    })
    .await;

    let (body, code) = weir_e2e::curl(&[&weir.url("/unagreed")], "%{http_code}").await;
    assert_eq!(code, "502", "{body}");
    assert!(body.contains("upstream TLS handshake failed"), "{body}");
    wait_until(
        Duration::from_secs(5),
        "the ALPN reason in the log",
        || async {
            weir.log()
                .contains("the server did not choose h2 by ALPN")
                .then_some(())
        },
    )
    .await;

    let m = weir.metrics().await;
    // A failed handshake is a connection not established: kind `connect`.
    for route in ["named", "web", "unagreed"] {
        let labels = [("route", route), ("role", "stable"), ("kind", "connect")];
        assert_eq!(
            m.get("weir_upstream_errors_total", &labels),
            Some(1.0),
            "{route}: {}",
            m.text
        );
    }
    assert!(
        !m.text.contains("kind=\"tls\""),
        "a kind SPEC does not list:\n{}",
        m.text
    );
    assert_eq!(
        m.get(
            "weir_http_requests_total",
            &[("route", "web"), ("code", "502")]
        ),
        Some(1.0)
    );
}

#[test]
fn an_unreadable_ca_file_and_an_unknown_protocol_are_located_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("weir.yaml");
    let text = "listeners:
  - name: public
    address: 127.0.0.1:18080
routes:
  - name: web
    stable:
      revision: v1
      endpoints: [127.0.0.1:9001]
      tls: { caFile: missing-ca.pem }
    canary:
      revision: v2
      endpoints: [127.0.0.1:9101]
      protocol: http3
";
    std::fs::write(&file, text).expect("writing the config");
    let out = weir_command()
        .arg("validate")
        .arg(&file)
        .output()
        .expect("running weir validate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{stderr}");
    let shown = file.display().to_string();
    assert!(
        all.contains(&format!(
            "{shown}:13:7: routes[0].canary.protocol: `http3` is not an upstream protocol"
        )),
        "{all}"
    );
    // The structure is sound, so the file is read only once the rest is
    // valid: fix the protocol and the CA file is reported.
    std::fs::write(&file, text.replace("http3", "h2c")).expect("writing the config");
    let out = weir_command()
        .arg("validate")
        .arg(&file)
        .output()
        .expect("running weir validate");
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = dir.path().join("missing-ca.pem");
    assert!(
        all.contains(&format!(
            "{shown}:9:14: routes[0].stable.tls.caFile: cannot read {}",
            missing.display()
        )),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_an_unreadable_ca_file_is_refused_and_the_running_tls_keeps_serving() {
    let pki = Pki::new();
    let upstream = GrpcUpstream::tls("v1", None, pki.server_config()).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = write_ca(dir.path(), &pki);
    let config = WeirConfig::new([
        Route::new("web", &[upstream.addr]).stable_key(&format!("tls: {{ caFile: {ca:?} }}"))
    ]);
    let mut weir = Weir::start(config.clone()).await;
    let (body, code) = weir_e2e::curl(&[&weir.url("/")], "%{http_code}").await;
    assert_eq!((body.as_str(), code.as_str()), ("v1\n", "200"));

    let missing = dir.path().join("gone.pem").display().to_string();
    let broken =
        WeirConfig::new([Route::new("web", &[upstream.addr])
            .stable_key(&format!("tls: {{ caFile: {missing:?} }}"))]);
    let before = weir.reloads("failure").await;
    weir.write_config(&broken);
    weir.wait_for_reload("failure", before).await;
    assert!(
        weir.log().contains(&format!(
            "routes[0].stable.tls.caFile: cannot read {missing}"
        )),
        "{}",
        weir.log()
    );
    let (body, code) = weir_e2e::curl(&[&weir.url("/")], "%{http_code}").await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("v1\n", "200"),
        "the running config keeps serving"
    );
}
