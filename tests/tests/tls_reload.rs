//! Certificate rotation without a restart: after the certificate files are
//! replaced and the config reloaded, new TLS connections get the new
//! certificate, connections made before keep working, and a certificate
//! that does not load is refused while the one in force stays.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weir_e2e::{
    FakeUpstream, LARGE_BODY, LargeBodyUpstream, Route, Weir, WeirConfig, read_through_head, within,
};

const LIMIT: Duration = Duration::from_secs(10);

/// Accepts any server certificate: the test only reads which one it got.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection (HTTP/1.1 by ALPN) and the certificate the server showed.
async fn connect(addr: SocketAddr) -> (TlsStream<TcpStream>, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within(
        LIMIT,
        "TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap();
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap();
    (tls, certificate)
}

/// One keep-alive `GET /` on `tls`; returns the response head and body text.
async fn get(tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The fake upstream answers "stable\n" with a length: read until it is in.
    while !String::from_utf8_lossy(&seen).ends_with("stable\n") {
        let n = within(LIMIT, "response", tls.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_to_new_connections() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).with_tls()).await;
    let https = weir.addrs.https.unwrap();

    let (mut old, first) = connect(https).await;
    assert!(get(&mut old).await.starts_with("HTTP/1.1 200"));

    let next = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(weir.dir().join("tls.crt"), next.cert.pem()).unwrap();
    std::fs::write(weir.dir().join("tls.key"), next.signing_key.serialize_pem()).unwrap();
    let reload = within(LIMIT, "reload", weir.admin().post("/api/v1/reload", None))
        .await
        .unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());

    let (mut fresh, second) = connect(https).await;
    assert_ne!(
        second, first,
        "a new connection still got the old certificate"
    );
    assert_eq!(second, next.cert.der().as_ref());
    assert!(get(&mut fresh).await.starts_with("HTTP/1.1 200"));
    assert!(
        get(&mut old).await.starts_with("HTTP/1.1 200"),
        "the connection made before the reload keeps working"
    );

    // A certificate that does not load is refused; the one in force stays.
    std::fs::write(weir.dir().join("tls.crt"), "not a certificate\n").unwrap();
    let refused = within(LIMIT, "reload", weir.admin().post("/api/v1/reload", None))
        .await
        .unwrap();
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("tls"), "{}", refused.text());
    let (mut after, third) = connect(https).await;
    assert_eq!(third, second);
    assert!(get(&mut after).await.starts_with("HTTP/1.1 200"));
}

/// A certificate and key replaced on disk (as a Secret volume or
/// cert-manager does), with the config file unchanged, are served to new
/// connections without a reload asked for; written one after the other,
/// they are applied once, together, with no failed reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_files_are_served_without_a_reload_asked_for() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).with_tls()).await;
    let https = weir.addrs.https.unwrap();
    let (_, first) = connect(https).await;
    let failures = weir.reloads("failure").await;
    let successes = weir.reloads("success").await;

    let next = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(weir.dir().join("tls.crt"), next.cert.pem()).unwrap();
    std::fs::write(weir.dir().join("tls.key"), next.signing_key.serialize_pem()).unwrap();
    let served = weir_e2e::wait_until(Duration::from_secs(10), "the new certificate", || async {
        let (_, now) = connect(https).await;
        (now != first).then_some(now)
    })
    .await;
    assert_eq!(served, next.cert.der().as_ref());
    assert_eq!(weir.reloads("failure").await, failures);
    assert_eq!(weir.reloads("success").await, successes + 1.0);
}

/// A TLS client that stops reading a large answer is cut after the route's
/// idle timeout, as a cleartext one is (`own_path.rs`): the write limit sits
/// under rustls, and the upstream connection is closed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stops_reading_is_cut_after_the_idle_timeout() {
    let upstream = LargeBodyUpstream::start().await;
    let weir = Weir::start(
        WeirConfig::new([Route::new("web", &[upstream.addr]).idle_timeout("1s")]).with_tls(),
    )
    .await;
    let (mut tls, _) = connect(weir.addrs.https.unwrap()).await;
    let mut received = within(LIMIT, "the answer's head", async {
        tls.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let raw = read_through_head(&mut tls).await;
        assert!(raw.starts_with(b"HTTP/1.1 200"), "{raw:?}");
        raw.len()
    })
    .await;
    // The client reads nothing more until the upstream connection is gone.
    upstream.stopped_short(Duration::from_secs(30)).await;
    received += within(LIMIT, "the client connection closed", async {
        let mut total = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        // A reset, or a TLS stream cut without close_notify, ends it too.
        while let Ok(n) = tls.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    })
    .await;
    assert!(
        received < LARGE_BODY,
        "{received} bytes reached the client after it stopped reading"
    );
}

/// A certificate that has expired is served all the same (as nginx and
/// HAProxy serve it) and said: by `weir validate`, in the log of the reload
/// that applies it, and in the gauge of each listener's `notAfter`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_served_said_and_its_expiry_is_a_metric() {
    const EXPIRY: &str = "weir_tls_certificate_expiry_timestamp_seconds";
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).with_tls()).await;
    let https = weir.addrs.https.unwrap();
    let valid_until = weir.metrics().await.get(EXPIRY, &[("listener", "secure")]);
    assert!(
        valid_until.is_some_and(|t| t > 1.9e9),
        "the served certificate's notAfter: {valid_until:?}"
    );
    assert_eq!(
        weir.metrics().await.get(EXPIRY, &[("listener", "plain")]),
        None,
        "no series for a listener without TLS"
    );

    // Valid from 2020-01-01 to 2021-01-01 (1609459200).
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = params.self_signed(&key).unwrap();
    std::fs::write(weir.dir().join("tls.crt"), expired.pem()).unwrap();
    std::fs::write(weir.dir().join("tls.key"), key.serialize_pem()).unwrap();

    let validated = std::process::Command::new(weir_e2e::binary("weir"))
        .arg("validate")
        .arg(weir.config_path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&validated.stderr);
    assert!(validated.status.success(), "{said}");
    let file = weir.dir().join("tls.crt");
    let warning = format!(
        "listener secure: the certificate in {} expired at 2021-01-01T00:00:00Z; clients that \
         check certificates refuse it",
        file.display()
    );
    assert!(said.contains(&format!("warning: {warning}")), "{said}");

    let reload = within(LIMIT, "reload", weir.admin().post("/api/v1/reload", None))
        .await
        .unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let (mut fresh, served) = connect(https).await;
    assert_eq!(served, expired.der().as_ref(), "the expired one is served");
    assert!(get(&mut fresh).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        weir.metrics().await.get(EXPIRY, &[("listener", "secure")]),
        Some(1_609_459_200.0)
    );
    let log = weir.log();
    assert!(log.contains(&warning), "{log}");
}
