//! A head that passes over HTTP/1.1 passes over HTTP/2 as well, both ways:
//! HTTP/2 counts 32 bytes more for every field than the field's own bytes,
//! so a head of many fields near the 64 KiB limit would otherwise pass from
//! an HTTP/1 peer and be refused from an HTTP/2 one.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;

mod support;

/// As many fields as an HTTP/1 head may have (100), less those the
/// client or the upstream add (`host`; `content-length`, `date`).
const FIELDS: usize = 97;
/// Each field's value: 97 such fields are under 64 KiB as HTTP/1 bytes
/// (64,408), and over it as HTTP/2 counts them (67,124).
const VALUE_LEN: usize = 655;
/// How long each exchange may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// The big fields, `x-f00` to `x-f96`.
fn big_fields() -> impl Iterator<Item = (String, String)> {
    (0..FIELDS).map(|n| (format!("x-f{n:02}"), "v".repeat(VALUE_LEN)))
}

/// How many of the big fields `headers` holds whole.
fn big_fields_in(headers: &http::HeaderMap) -> usize {
    big_fields()
        .filter(|(name, value)| {
            headers
                .get(name)
                .is_some_and(|v| v.as_bytes() == value.as_bytes())
        })
        .count()
}

/// A hyper server, over HTTP/2 (prior knowledge) when `h2`, answering
/// every request `200` with, as its body, how many of the big fields the
/// request had; with the big fields in the answer's head on `/big`.
async fn upstream(h2: bool) -> SocketAddr {
    support::hyper_upstream(h2, |request: Request<hyper::body::Incoming>| async move {
        let seen = big_fields_in(request.headers());
        let mut response = Response::builder();
        if request.uri().path() == "/big" {
            for (name, value) in big_fields() {
                response = response.header(name, value);
            }
        }
        response
            .body(Full::new(Bytes::from(seen.to_string())))
            .unwrap()
    })
    .await
}

/// A request for `path` through weir at `proxy`, over HTTP/2 (prior
/// knowledge) when `h2`, carrying the big fields when `big`: the status,
/// how many big fields the answer had, and the answer's body.
async fn exchange(proxy: SocketAddr, path: &str, h2: bool, big: bool) -> (u16, usize, String) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut request = Request::get(path).header("host", "test");
    if big {
        for (name, value) in big_fields() {
            request = request.header(name, value);
        }
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let send = async {
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };
        let status = response.status().as_u16();
        let fields = big_fields_in(response.headers());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, fields, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(DEADLINE, send)
        .await
        .expect("an answer in time")
}

/// The answer head of 97 big fields passes from an HTTP/1 upstream, and as
/// well from an HTTP/2 one.
#[tokio::test]
async fn a_big_answer_head_passes_from_http2_as_from_http1() {
    for h2 in [false, true] {
        let upstream = upstream(h2).await;
        let mut snapshot = support::one_route(&[upstream], vec![], Timeouts::default());
        if h2 {
            snapshot = support::one_h2c_route(upstream, Timeouts::default());
        }
        let weir = support::start(snapshot, ServeOptions::default()).await;
        let (status, fields, _) = exchange(weir.addr, "/big", false, false).await;
        assert_eq!(
            (status, fields),
            (200, FIELDS),
            "the answer head from an {} upstream",
            if h2 { "HTTP/2" } else { "HTTP/1" }
        );
    }
}

/// The request head of 97 big fields passes from an HTTP/1 client, and as
/// well from an HTTP/2 one.
#[tokio::test]
async fn a_big_request_head_passes_from_http2_as_from_http1() {
    let upstream = upstream(false).await;
    let snapshot = support::one_route(&[upstream], vec![], Timeouts::default());
    let weir = support::start(snapshot, ServeOptions::default()).await;
    for h2 in [false, true] {
        let (status, _, seen) = exchange(weir.addr, "/", h2, true).await;
        assert_eq!(
            (status, seen.as_str()),
            (200, FIELDS.to_string().as_str()),
            "the request head from an {} client",
            if h2 { "HTTP/2" } else { "HTTP/1" }
        );
    }
}
