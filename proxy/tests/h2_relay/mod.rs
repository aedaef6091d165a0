//! An `h2c` upstream that can go silent, for the HTTP/2 liveness tests: a
//! real hyper HTTP/2 server behind a relay on loopback. Each connection the
//! relay accepts is relayed to a connection of its own to the server until
//! the test freezes it: from then on nothing more goes either way (what
//! comes from weir is read and thrown away, so that weir closing the
//! connection is seen), yet the socket stays open, as with a peer gone
//! without a FIN or RST. Connections accepted later relay normally.
//!
//! The server answers `200 ok` at once, but only after [`SLOW`] on `/slow`
//! and only once the whole request body came on `/upload`: a live upstream
//! that is slow, or that waits for its client's body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;

use crate::support::Running;

/// Generous bound for anything that should happen promptly.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// How long the server takes to answer `/slow`.
pub(crate) const SLOW: Duration = Duration::from_secs(3);

/// One relayed connection.
pub(crate) struct Relayed {
    frozen: watch::Sender<bool>,
    /// Set once weir closed its end (seen even while frozen).
    closed: watch::Sender<bool>,
}

/// The relay in front of the HTTP/2 server.
pub(crate) struct Relay {
    /// Where weir connects.
    pub(crate) addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Relayed>>>>,
    accepted: watch::Sender<usize>,
}

impl Relay {
    /// Starts the HTTP/2 server and the relay in front of it.
    pub(crate) async fn start() -> Relay {
        let server = h2_server().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let connections: Arc<Mutex<Vec<Arc<Relayed>>>> = Arc::default();
        let (accepted, _) = watch::channel(0);
        let (list, count) = (Arc::clone(&connections), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((from_weir, _)) = listener.accept().await else {
                    return;
                };
                let to_server = TcpStream::connect(server).await.expect("connect server");
                let relayed = Arc::new(Relayed {
                    frozen: watch::channel(false).0,
                    closed: watch::channel(false).0,
                });
                list.lock().expect("relay list").push(Arc::clone(&relayed));
                count.send_modify(|n| *n += 1);
                tokio::spawn(relay(from_weir, to_server, relayed));
            }
        });
        Relay {
            addr,
            connections,
            accepted,
        }
    }

    /// The connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Freezes every connection accepted so far.
    pub(crate) fn freeze_all(&self) -> Vec<Arc<Relayed>> {
        let connections = self.connections.lock().expect("relay list").clone();
        for connection in &connections {
            connection.frozen.send_replace(true);
        }
        connections
    }
}

impl Relayed {
    /// Waits until weir closes its end of the connection, or `limit` passes.
    pub(crate) async fn wait_closed(&self, limit: Duration) -> bool {
        let mut closed = self.closed.subscribe();
        tokio::time::timeout(limit, closed.wait_for(|c| *c))
            .await
            .is_ok()
    }
}

/// Copies both ways until the connection is frozen; after that throws away
/// what weir sends and sends nothing, holding both sockets open.
async fn relay(from_weir: TcpStream, to_server: TcpStream, relayed: Arc<Relayed>) {
    let (mut weir_read, mut weir_write) = from_weir.into_split();
    let (mut server_read, mut server_write) = to_server.into_split();
    let upstream = {
        let relayed = Arc::clone(&relayed);
        async move {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                let n = match weir_read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        relayed.closed.send_replace(true);
                        return;
                    }
                    Ok(n) => n,
                };
                if !*relayed.frozen.borrow() && server_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            // Held open (a dropped write half would send a FIN) while weir's
            // end is watched.
            let _held = server_write;
            loop {
                match weir_read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        relayed.closed.send_replace(true);
                        return;
                    }
                    Ok(_) => {}
                }
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16 << 10];
        let mut frozen = relayed.frozen.subscribe();
        loop {
            tokio::select! {
                read = server_read.read(&mut buf) => match read {
                    Ok(n) if n > 0 && !*relayed.frozen.borrow() => {
                        if weir_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    Ok(n) if n > 0 => break,
                    _ => break,
                },
                _ = async { frozen.wait_for(|f| *f).await.map(|_| ()) } => break,
            }
        }
        // Frozen (or the server went away): nothing more reaches weir, and
        // its socket stays open.
        let _held = (server_read, weir_write);
        std::future::pending::<()>().await;
    };
    tokio::join!(upstream, downstream);
}

/// A hyper HTTP/2 server (prior knowledge) answering `200 ok` to anything:
/// after [`SLOW`] on `/slow`, once the whole body came on `/upload`.
async fn h2_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind server");
    let addr = listener.local_addr().expect("server address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        match req.uri().path() {
                            "/slow" => tokio::time::sleep(SLOW).await,
                            "/upload" => {
                                let _ = req.into_body().collect().await;
                            }
                            _ => {}
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Starts weir with one route to `upstream`, spoken to over `h2c`, whose
/// requests time out after `request_timeout`.
pub(crate) async fn start_weir(upstream: SocketAddr, request_timeout: Duration) -> Running {
    let timeouts = Timeouts {
        request: request_timeout,
        ..Timeouts::default()
    };
    let snapshot = crate::support::one_h2c_route(upstream, timeouts);
    crate::support::start(snapshot, ServeOptions::default()).await
}

/// `GET /` through weir on a new client connection: the status, once the
/// whole answer came.
pub(crate) async fn get(proxy: SocketAddr) -> u16 {
    get_path(proxy, "/").await
}

/// `GET path` through weir on a new client connection: the status, once
/// the whole answer came.
pub(crate) async fn get_path(proxy: SocketAddr, path: &str) -> u16 {
    let stream = TcpStream::connect(proxy).await.expect("connect proxy");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("client handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = response.status().as_u16();
    tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the body in time")
        .expect("the whole body");
    status
}

/// `POST /upload` through weir on a new client connection, announcing a
/// 10-byte body of which only 4 bytes are sent, the rest never: the status
/// weir answers with.
#[allow(dead_code, reason = "not every test binary stalls an upload")]
pub(crate) async fn stalled_upload(proxy: SocketAddr) -> u16 {
    let mut stream = TcpStream::connect(proxy).await.expect("connect proxy");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nabcd")
        .await
        .expect("send the head and part of the body");
    crate::support::read_answer_head(&mut stream, DEADLINE)
        .await
        .1
}
