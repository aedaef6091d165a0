//! weir is transparent: the same requests sent straight to an upstream and
//! through weir get the same status, headers and body, and the upstream sees
//! the same request, apart from hop-by-hop headers (removed) and the
//! `X-Forwarded-*` headers weir adds. Several methods, bodies with
//! Content-Length and chunked, HEAD, 204, 304, multi-valued headers and
//! unusual but valid header names, all over one keep-alive connection per
//! side.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weir_e2e::{Body, Conn, Route, Weir, WeirConfig, within};

/// Names an exchange may differ in: per-connection framing and hop-by-hop
/// headers, and the date.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-hop",
];

/// The headers weir adds to every forwarded request (`x-request-id` when
/// the client sent none).
const FORWARDING: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];
const ODD_NAME: &str = "x-tchar!#$%&'*+-.^_`|~";

type OriginBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// The origin: `/echo` answers what it received as JSON; `/cl` and
/// `/chunked` answer a body with Content-Length or chunked and repeated
/// headers; `/status/N` answers N.
async fn origin(req: Request<Incoming>) -> Response<OriginBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let mut response = match path.as_str() {
        "/echo" => {
            let mut headers = BTreeMap::<String, Vec<String>>::new();
            for (name, value) in &parts.headers {
                headers
                    .entry(name.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            }
            let seen = serde_json::json!({
                "method": parts.method.as_str(),
                "target": parts.uri.to_string(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            let mut r = Response::new(full(seen.to_string()));
            if parts.method == Method::POST {
                *r.status_mut() = StatusCode::CREATED;
            }
            r
        }
        "/cl" => Response::new(full("hello, world\n")),
        "/big" => Response::new(full(vec![b'z'; 1 << 20])),
        "/chunked" => {
            let frames = ["one ", "two ", "three\n"]
                .map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from_static(s.as_bytes()))));
            Response::new(StreamBody::new(stream::iter(frames)).boxed_unsync())
        }
        "/status/204" => {
            let mut r = Response::new(Empty::new().boxed_unsync());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        "/status/304" => {
            let mut r = Response::new(Empty::new().boxed_unsync());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r
        }
        _ => {
            let mut r = Response::new(full("no such thing\n"));
            *r.status_mut() = StatusCode::IM_A_TEAPOT;
            r
        }
    };
    let headers = response.headers_mut();
    headers.append("set-cookie", "a=1; Path=/".parse().unwrap());
    headers.append("set-cookie", "b=2; Path=/; HttpOnly".parse().unwrap());
    headers.append("x-multi", "first".parse().unwrap());
    headers.append("x-multi", "second, with comma".parse().unwrap());
    headers.insert(ODD_NAME, "odd \"value\"; with=things".parse().unwrap());
    headers.insert("cache-control", "no-store".parse().unwrap());
    response
}

async fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(|req| async { Ok::<_, Infallible>(origin(req).await) }),
                    )
                    .await;
            });
        }
    });
    addr
}

/// One exchange: method, target, extra request headers, request body.
type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], Sent);

/// How a case's request body is framed.
#[derive(Debug, Clone, Copy)]
enum Sent {
    Nothing,
    Length(&'static str),
    Chunked(&'static [&'static str]),
}

fn request(method: &Method, target: &str, headers: &[(&str, &str)], sent: Sent) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "shop.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body: Body = match sent {
        Sent::Nothing => weir_e2e::empty(),
        Sent::Length(text) => Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
        Sent::Chunked(parts) => {
            StreamBody::new(stream::iter(parts.iter().map(|p| {
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(p.as_bytes())))
            })))
            .boxed_unsync()
        }
    };
    builder.body(body).unwrap()
}

/// The headers less per-connection ones, as sorted (name, values) pairs.
fn comparable(headers: &HeaderMap, drop: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        let name = name.as_str();
        if HOP_BY_HOP.contains(&name) || drop.contains(&name) || name == "date" {
            continue;
        }
        out.entry(name.to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// What the origin's `/echo` saw, less hop-by-hop and forwarding headers.
fn seen_by_origin(body: &Bytes) -> serde_json::Value {
    let mut seen: serde_json::Value = serde_json::from_slice(body).unwrap();
    let headers = seen["headers"].as_object_mut().unwrap();
    for name in HOP_BY_HOP.iter().chain(&FORWARDING) {
        headers.remove(*name);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_and_forwarded_requests_match_a_direct_exchange() {
    let origin = start_origin().await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[origin])])).await;

    let odd_request_headers: &[(&str, &str)] = &[
        ("x-multi", "a"),
        ("x-multi", "b, c"),
        ("x-weird_name.v1", "1"),
        (ODD_NAME, "ok"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("accept", "*/*"),
        ("connection", "x-hop"),
        ("x-hop", "hop-by-hop, named in Connection"),
    ];
    let cases: Vec<Case<'_>> = vec![
        (
            Method::GET,
            "/echo?q=1&r=%20x",
            odd_request_headers,
            Sent::Nothing,
        ),
        (
            Method::POST,
            "/echo",
            &[("content-type", "text/plain")],
            Sent::Length("hello"),
        ),
        (
            Method::PUT,
            "/echo",
            &[],
            Sent::Chunked(&["chunk one, ", "chunk two, ", "three"]),
        ),
        (Method::PATCH, "/echo", &[], Sent::Length("")),
        (Method::DELETE, "/echo", &[], Sent::Nothing),
        (Method::OPTIONS, "/echo", &[], Sent::Nothing),
        (Method::GET, "/cl", &[], Sent::Nothing),
        (Method::HEAD, "/cl", &[], Sent::Nothing),
        (Method::GET, "/chunked", &[], Sent::Nothing),
        (Method::HEAD, "/chunked", &[], Sent::Nothing),
        (Method::GET, "/big", &[], Sent::Nothing),
        (Method::GET, "/status/204", &[], Sent::Nothing),
        (
            Method::GET,
            "/status/304",
            &[("if-none-match", "\"v1\"")],
            Sent::Nothing,
        ),
        (
            Method::POST,
            "/status/418",
            &[],
            Sent::Chunked(&["ignored"]),
        ),
        (Method::GET, "/echo", &[], Sent::Nothing),
    ];

    within(Duration::from_secs(60), "every case both ways", async {
        let mut direct = Conn::open(origin).await.unwrap();
        let mut proxied = Conn::open(weir.addrs.http).await.unwrap();
        for (method, target, headers, sent) in &cases {
            let what = format!("{method} {target} ({sent:?})");
            let a = direct
                .send(request(method, target, headers, *sent))
                .await
                .unwrap_or_else(|e| panic!("{what} direct: {e}"));
            let b = proxied
                .send(request(method, target, headers, *sent))
                .await
                .unwrap_or_else(|e| panic!("{what} through weir: {e}"));
            assert_eq!(a.status, b.status, "{what}: status");
            let echo = target.starts_with("/echo");
            // An echo's length differs by the forwarding headers it lists.
            let differs: &[&str] = if echo { &["content-length"] } else { &[] };
            assert_eq!(
                comparable(&a.headers, differs),
                comparable(&b.headers, differs),
                "{what}: response headers"
            );
            assert_eq!(
                a.headers.contains_key("content-length"),
                b.headers.contains_key("content-length"),
                "{what}: framing {:?} vs {:?}",
                a.headers,
                b.headers
            );
            if echo {
                let (seen_direct, seen_proxied) =
                    (seen_by_origin(&a.body), seen_by_origin(&b.body));
                assert_eq!(seen_direct, seen_proxied, "{what}: what the origin saw");
                let raw: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
                for name in FORWARDING {
                    assert!(
                        raw["headers"].get(name).is_some(),
                        "{what}: {name} missing: {raw:#}"
                    );
                }
                assert!(raw["headers"].get("x-hop").is_none(), "{what}: {raw:#}");
            } else {
                assert_eq!(a.body, b.body, "{what}: body");
            }
        }
    })
    .await;
}
