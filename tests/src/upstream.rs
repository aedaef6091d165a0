//! Upstreams for weir to forward to: [`FakeUpstream`], a small in-process
//! hyper server, and [`LoadtestUpstream`], the `weir-loadtest upstream`
//! binary (for WebSocket echo, body counting and fault injection).

use std::convert::Infallible;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::client::{Conn, Response as ClientResponse};
use crate::{UPSTREAM_HEADER, binary};

/// An in-process upstream on `127.0.0.1:0` that answers every request with
/// 200, body `NAME\n` and `x-upstream-name: NAME` after an adjustable delay;
/// `/__upstream/headers` answers the request headers as JSON. Counts the
/// requests that arrive, and can fail deterministically: with
/// [`FakeUpstream::fail_every`] `n`, the `n`th, `2n`th, ... request answers
/// 500 (or the status of [`FakeUpstream::fail_with`]). Stops accepting when
/// dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name it answers with.
    pub name: String,
    hits: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    fail_every: Arc<AtomicU64>,
    fail_status: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// A `weir-loadtest upstream` process on `127.0.0.1:0`; killed on drop.
#[derive(Debug)]
pub struct LoadtestUpstream {
    /// Where it listens (read from its `listening on ADDR` line).
    pub addr: SocketAddr,
    /// The name it answers with.
    pub name: String,
    child: Child,
}

// === impl FakeUpstream ===

impl FakeUpstream {
    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a fake upstream");
        let addr = listener.local_addr().expect("bound address");
        let hits = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let fail_every = Arc::new(AtomicU64::new(0));
        let fail_status = Arc::new(AtomicU64::new(500));
        let tag = HeaderValue::from_str(name).expect("upstream name is a header value");
        let task = tokio::spawn({
            let name = name.to_owned();
            let hits = Arc::clone(&hits);
            let delay_ms = Arc::clone(&delay_ms);
            let fail_every = Arc::clone(&fail_every);
            let fail_status = Arc::clone(&fail_status);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let (name, tag, hits, delay_ms, fail_every, fail_status) = (
                        name.clone(),
                        tag.clone(),
                        Arc::clone(&hits),
                        Arc::clone(&delay_ms),
                        Arc::clone(&fail_every),
                        Arc::clone(&fail_status),
                    );
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let (name, tag, hits, delay_ms, fail_every, fail_status) = (
                                name.clone(),
                                tag.clone(),
                                Arc::clone(&hits),
                                Arc::clone(&delay_ms),
                                Arc::clone(&fail_every),
                                Arc::clone(&fail_status),
                            );
                            async move {
                                let faults = Faults {
                                    hits: &hits,
                                    delay_ms: &delay_ms,
                                    fail_every: &fail_every,
                                    fail_status: &fail_status,
                                };
                                Ok::<_, Infallible>(answer(req, &name, tag, faults).await)
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            hits,
            delay_ms,
            fail_every,
            fail_status,
            task,
        }
    }

    /// Binds and starts serving, answering 500 to every `n`th request
    /// (see [`FakeUpstream::fail_every`]).
    ///
    /// # Panics
    /// When binding fails.
    pub async fn failing_every(name: &str, n: u64) -> Self {
        let upstream = Self::start(name).await;
        upstream.fail_every(n);
        upstream
    }

    /// From now on, the request whose arrival number (counted from the
    /// first, as [`FakeUpstream::hits`]) is a multiple of `n` answers 500;
    /// 0 turns this off.
    pub fn fail_every(&self, n: u64) {
        self.fail_every.store(n, Ordering::SeqCst);
    }

    /// The status a failing request answers from now on (default 500).
    pub fn fail_with(&self, status: u16) {
        self.fail_status.store(u64::from(status), Ordering::SeqCst);
    }

    /// Requests that have arrived so far (counted before the delay).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Sets the delay before each answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A [`FakeUpstream`]'s counter and fault settings, for one answer.
struct Faults<'a> {
    hits: &'a AtomicU64,
    delay_ms: &'a AtomicU64,
    fail_every: &'a AtomicU64,
    fail_status: &'a AtomicU64,
}

async fn answer(
    req: Request<Incoming>,
    name: &str,
    tag: HeaderValue,
    faults: Faults<'_>,
) -> Response<Full<Bytes>> {
    let Faults {
        hits,
        delay_ms,
        fail_every,
        fail_status,
    } = faults;
    let number = hits.fetch_add(1, Ordering::SeqCst) + 1;
    let every = fail_every.load(Ordering::SeqCst);
    let fails = every > 0 && number % every == 0;
    let (parts, body) = req.into_parts();
    // Read the body to the end so the connection stays reusable.
    let _ = body.collect().await;
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = if parts.uri.path() == "/__upstream/headers" {
        let mut map = serde_json::Map::new();
        for key in parts.headers.keys() {
            let joined: Vec<String> = parts
                .headers
                .get_all(key)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            map.insert(key.as_str().to_owned(), joined.join(", ").into());
        }
        serde_json::Value::Object(map).to_string()
    } else {
        format!("{name}\n")
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if fails {
        let status = u16::try_from(fail_status.load(Ordering::SeqCst)).unwrap_or(500);
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    response.headers_mut().insert(UPSTREAM_HEADER, tag);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

// === impl LoadtestUpstream ===

impl LoadtestUpstream {
    /// Starts `weir-loadtest upstream --listen 127.0.0.1:0 --name NAME
    /// EXTRA...` and waits (at most 10 s) for its `listening on` line.
    ///
    /// # Panics
    /// When the binary is missing, fails to start, or does not report an
    /// address in time.
    pub fn start(name: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(binary("weir-loadtest"))
            .args(["upstream", "--listen", "127.0.0.1:0", "--name", name])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting weir-loadtest upstream");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("weir-loadtest upstream {name} did not print its address: {other:?}");
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("unexpected first line from weir-loadtest upstream: {line:?}")
            });
        Self {
            addr,
            name: name.to_owned(),
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /__upstream/stats`, parsed.
    ///
    /// # Panics
    /// When the request fails.
    pub async fn stats(&self) -> serde_json::Value {
        let response = crate::client::get(self.addr, "/__upstream/stats")
            .await
            .expect("GET /__upstream/stats");
        response.json()
    }

    /// `POST /__upstream/control` with `faults` (e.g.
    /// `{"errorRate": 1.0}`); returns the faults now in force.
    ///
    /// # Panics
    /// When the request fails or is refused.
    pub async fn control(&self, faults: serde_json::Value) -> serde_json::Value {
        let mut conn = Conn::open(self.addr).await.expect("connecting to upstream");
        let request = Request::post("/__upstream/control")
            .body(
                Full::new(Bytes::from(faults.to_string()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("valid request");
        let response: ClientResponse = conn.send(request).await.expect("POST /__upstream/control");
        assert_eq!(response.status, 200, "control refused: {}", response.text());
        response.json()
    }
}

impl Drop for LoadtestUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a [`LargeBodyUpstream`]: more than every socket buffer on
/// the way can hold.
pub const LARGE_BODY: usize = 64 << 20;

/// A one-connection upstream that answers its first request with a body of
/// [`LARGE_BODY`] bytes of `x`, written until the body ends or the
/// connection fails: for tests of a client that stops reading, which must
/// not hold the upstream connection.
#[derive(Debug)]
pub struct LargeBodyUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many body bytes it wrote, once it stopped.
    stopped: tokio::sync::oneshot::Receiver<usize>,
}

impl LargeBodyUpstream {
    /// Starts it on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start() -> LargeBodyUpstream {
        use tokio::io::AsyncWriteExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local address");
        let (stopped, stopped_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepting");
            crate::read_through_head(&mut stream).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE_BODY}\r\n\r\n");
            stream
                .write_all(head.as_bytes())
                .await
                .expect("writing the head");
            let piece = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < LARGE_BODY && stream.write_all(&piece).await.is_ok() {
                sent += piece.len();
            }
            let _ = stopped.send(sent);
        });
        LargeBodyUpstream {
            addr,
            stopped: stopped_rx,
        }
    }

    /// Waits up to `limit` for its connection to be closed, and checks that
    /// it was closed before the whole body went out; the body bytes sent.
    ///
    /// # Panics
    /// When the connection is not closed in time, or the body went out whole.
    pub async fn stopped_short(self, limit: Duration) -> usize {
        let sent = crate::within(limit, "the upstream connection closed", self.stopped)
            .await
            .expect("the upstream task ended");
        assert!(sent < LARGE_BODY, "the upstream sent its whole body");
        sent
    }
}
