//! A small gRPC server and client for the end-to-end tests, written over
//! hyper's HTTP/2 with gRPC's own framing (a 1-byte compression flag, a
//! 4-byte big-endian length, the message), so no code generation is needed.
//! Messages are opaque bytes; the methods are:
//!
//! - `/weir.test.Echo/Unary`: answers the request's message, with the
//!   trailers `grpc-status: 0`, `grpc-message: served by NAME` and
//!   `x-upstream-name: NAME`; every Nth call may fail instead (see
//!   [`Failure`]).
//! - `/weir.test.Echo/Stream`: the request's message is a big-endian `u32`
//!   N; answers N messages, message i being `i` as a big-endian `u32`.
//! - `/weir.test.Echo/Hang`: never answers (for deadlines).
//! - `/weir.test.Echo/First`: answers the request's first message as soon
//!   as it has come, without waiting for the request stream's end (as a
//!   streaming call's server may).
//!
//! Any other path answers HTTP 200 with `NAME\n` (plain HTTP through the
//! same upstream, HTTP/1.1 or HTTP/2). [`Pki`] makes a CA and a server
//! certificate it signs, for TLS upstreams.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The body the test server answers with.
type ServerBody =
    StreamBody<std::pin::Pin<Box<dyn futures_util::Stream<Item = FrameResult> + Send>>>;
type FrameResult = Result<Frame<Bytes>, std::io::Error>;

/// The unary method.
pub const UNARY: &str = "/weir.test.Echo/Unary";
/// The server-streaming method.
pub const STREAM: &str = "/weir.test.Echo/Stream";
/// The method that never answers.
pub const HANG: &str = "/weir.test.Echo/Hang";
/// The method that answers the first message before the request ends.
pub const FIRST: &str = "/weir.test.Echo/First";
/// The method whose answer breaks after its head and one message (the
/// server resets the stream), as a crashing server's does.
pub const BREAK: &str = "/weir.test.Echo/Break";
/// The method that answers its head and one message, then nothing more.
pub const STALL: &str = "/weir.test.Echo/Stall";
/// The method whose answer head carries a 40,000-byte field `x-big`.
pub const BIG_HEAD: &str = "/weir.test.Echo/BigHead";

/// How a [`GrpcUpstream`] fails unary calls: every `every`th call (the
/// `every`th, the `2 × every`th, ...) ends with `status`, in a
/// trailers-only answer when `trailers_only`, else after an empty message
/// stream in the trailers.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// One call in this many fails.
    pub every: u64,
    /// The gRPC status it fails with.
    pub status: u8,
    /// The status is in the head (no body), as servers answer early errors.
    pub trailers_only: bool,
}

/// A CA and a certificate it signed for `localhost` and `127.0.0.1`, PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

/// An in-process gRPC upstream on `127.0.0.1:0` (h2c, or TLS offering h2
/// and http/1.1 by ALPN). Stops accepting when dropped.
#[derive(Debug)]
pub struct GrpcUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    calls: Arc<AtomicU64>,
    te_trailers: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// A gRPC client over one HTTP/2 connection (prior knowledge, cleartext).
#[derive(Debug, Clone)]
pub struct GrpcClient {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
}

/// What a call got back.
#[derive(Debug)]
pub struct GrpcReply {
    /// The HTTP status.
    pub http_status: u16,
    /// The response head.
    pub headers: HeaderMap,
    /// The messages, unframed.
    pub messages: Vec<Bytes>,
    /// The trailers, if a trailers frame came.
    pub trailers: Option<HeaderMap>,
}

// === impl Pki ===

impl Pki {
    /// A fresh CA and a server certificate for `localhost` and `127.0.0.1`.
    ///
    /// # Panics
    /// When rcgen fails.
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Each CA its own name: a certificate from another CA is then an
        // unknown issuer, as with a real mistake.
        static CAS: AtomicU64 = AtomicU64::new(0);
        let serial = CAS.fetch_add(1, Ordering::Relaxed);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("weir test CA {} {serial}", std::process::id()),
        );
        let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("a server key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("the server certificate");
        Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls server config for the certificate, offering `h2` and
    /// `http/1.1`.
    ///
    /// # Panics
    /// When the PEM does not parse.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject as _;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

// === impl GrpcUpstream ===

impl GrpcUpstream {
    /// Starts serving in cleartext (h2c with prior knowledge, or HTTP/1.1).
    ///
    /// # Panics
    /// When binding fails.
    pub async fn h2c(name: &str, failure: Option<Failure>) -> Self {
        Self::start(name, failure, None, None).await
    }

    /// Starts serving in cleartext, closing each connection gracefully (an
    /// HTTP/2 GOAWAY) once it has carried `calls` unary calls.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn h2c_with_goaway(name: &str, calls: u64) -> Self {
        Self::start(name, None, None, Some(calls)).await
    }

    /// Starts serving over TLS with `tls`.
    ///
    /// # Panics
    /// When binding fails.
    pub async fn tls(name: &str, failure: Option<Failure>, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start(name, failure, Some(tls), None).await
    }

    async fn start(
        name: &str,
        failure: Option<Failure>,
        tls: Option<Arc<rustls::ServerConfig>>,
        goaway_after: Option<u64>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a gRPC upstream");
        let addr = listener.local_addr().expect("bound address");
        let calls = Arc::new(AtomicU64::new(0));
        let te_trailers = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let server = Arc::new(Server {
            name: name.to_owned(),
            failure,
            calls: Arc::clone(&calls),
            te_trailers: Arc::clone(&te_trailers),
            goaway_after,
        });
        let task = tokio::spawn({
            let connections = Arc::clone(&connections);
            let closed = Arc::clone(&closed);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (server, tls) = (Arc::clone(&server), tls.clone());
                    let closed = Arc::clone(&closed);
                    tokio::spawn(async move {
                        let _closed = CountOnDrop(closed);
                        let served = Arc::new(AtomicU64::new(0));
                        let enough = Arc::new(tokio::sync::Notify::new());
                        let goaway_after = server.goaway_after;
                        let service = {
                            let (served, enough) = (Arc::clone(&served), Arc::clone(&enough));
                            service_fn(move |req| {
                                let (server, served, enough) = (
                                    Arc::clone(&server),
                                    Arc::clone(&served),
                                    Arc::clone(&enough),
                                );
                                async move {
                                    let answer = server.answer(req).await;
                                    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                                    if goaway_after.is_some_and(|limit| n >= limit) {
                                        enough.notify_one();
                                    }
                                    Ok::<_, Infallible>(answer)
                                }
                            })
                        };
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match tls {
                            None => {
                                let connection =
                                    builder.serve_connection(TokioIo::new(stream), service);
                                tokio::pin!(connection);
                                tokio::select! {
                                    _ = connection.as_mut() => return,
                                    () = enough.notified() => connection.as_mut().graceful_shutdown(),
                                }
                                let _ = connection.await;
                            }
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                let Ok(stream) = acceptor.accept(stream).await else {
                                    return;
                                };
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            calls,
            te_trailers,
            connections,
            closed,
            task,
        }
    }

    /// Unary calls that arrived so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// gRPC requests that arrived with `te: trailers`.
    pub fn te_trailers(&self) -> u64 {
        self.te_trailers.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections that have ended so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Adds one to its counter when dropped.
struct CountOnDrop(Arc<AtomicU64>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Server {
    name: String,
    failure: Option<Failure>,
    calls: Arc<AtomicU64>,
    te_trailers: Arc<AtomicU64>,
    /// Close each connection gracefully (GOAWAY) after this many calls.
    goaway_after: Option<u64>,
}

impl Server {
    async fn answer(&self, req: Request<Incoming>) -> Response<ServerBody> {
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return plain(&self.name);
        }
        if req
            .headers()
            .get(http::header::TE)
            .is_some_and(|v| v == "trailers")
        {
            self.te_trailers.fetch_add(1, Ordering::SeqCst);
        }
        let path = req.uri().path().to_owned();
        if path == FIRST {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut body = req.into_body();
            let mut data = BytesMut::new();
            let first = loop {
                if let Some(message) = unframe(data.clone().freeze()).into_iter().next() {
                    break message;
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(chunk) = frame.into_data() {
                            data.extend_from_slice(&chunk);
                        }
                    }
                    _ => return grpc_head(3, "no whole message", true, Vec::new()),
                }
            };
            let frames = vec![
                Ok(Frame::data(frame(&first))),
                Ok(Frame::trailers(self.trailers(0))),
            ];
            return grpc_response(frames);
        }
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return grpc_head(13, "request body broken", true, Vec::new()),
        };
        let request = unframe(body).into_iter().next().unwrap_or_default();
        match path.as_str() {
            UNARY => {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(f) = self.failure.filter(|f| n % f.every == 0) {
                    return grpc_head(f.status, "injected failure", f.trailers_only, Vec::new());
                }
                let mut frames = vec![Ok(Frame::data(frame(&request)))];
                frames.push(Ok(Frame::trailers(self.trailers(0))));
                grpc_response(frames)
            }
            STREAM => {
                let count = if request.len() == 4 {
                    u32::from_be_bytes([request[0], request[1], request[2], request[3]])
                } else {
                    0
                };
                let mut frames: Vec<FrameResult> = (0..count)
                    .map(|i| Ok(Frame::data(frame(&i.to_be_bytes()))))
                    .collect();
                frames.push(Ok(Frame::trailers(self.trailers(0))));
                grpc_response(frames)
            }
            HANG => std::future::pending().await,
            BIG_HEAD => {
                let mut response = grpc_response(vec![
                    Ok(Frame::data(frame(&request))),
                    Ok(Frame::trailers(self.trailers(0))),
                ]);
                response.headers_mut().insert(
                    "x-big",
                    HeaderValue::from_str(&"b".repeat(40_000)).expect("a header value"),
                );
                response
            }
            STALL => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let first = futures_util::stream::iter([Ok(Frame::data(frame(&request)))]);
                grpc_streamed(futures_util::StreamExt::chain(
                    first,
                    futures_util::stream::pending(),
                ))
            }
            BREAK => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                // The head and the message go out first; the break comes
                // once they are on their way.
                let first = futures_util::stream::iter([Ok(Frame::data(frame(&request)))]);
                let broken = futures_util::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Err(std::io::Error::other("the server broke"))
                });
                grpc_streamed(futures_util::StreamExt::chain(first, broken))
            }
            _ => grpc_head(12, "unknown method", true, Vec::new()),
        }
    }

    fn trailers(&self, status: u8) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(u16::from(status)));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_str(&format!("served by {}", self.name)).expect("a header value"),
        );
        trailers.insert(
            "x-upstream-name",
            HeaderValue::from_str(&self.name).expect("a header value"),
        );
        trailers
    }
}

fn plain(name: &str) -> Response<ServerBody> {
    let body = vec![Ok(Frame::data(Bytes::from(format!("{name}\n"))))];
    let frames: std::pin::Pin<Box<dyn futures_util::Stream<Item = FrameResult> + Send>> =
        Box::pin(futures_util::stream::iter(body));
    Response::new(StreamBody::new(frames))
}

fn grpc_response(frames: Vec<FrameResult>) -> Response<ServerBody> {
    grpc_streamed(futures_util::stream::iter(frames))
}

/// A gRPC answer whose body frames come from `frames`.
fn grpc_streamed(
    frames: impl futures_util::Stream<Item = FrameResult> + Send + 'static,
) -> Response<ServerBody> {
    let frames: std::pin::Pin<Box<dyn futures_util::Stream<Item = FrameResult> + Send>> =
        Box::pin(frames);
    let mut response = Response::new(StreamBody::new(frames));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// An error answer: trailers-only (status in the head), or an empty
/// message stream and the status in the trailers.
fn grpc_head(
    status: u8,
    message: &'static str,
    trailers_only: bool,
    mut frames: Vec<FrameResult>,
) -> Response<ServerBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(status)));
    trailers.insert("grpc-message", HeaderValue::from_static(message));
    if trailers_only {
        let mut response = grpc_response(Vec::new());
        response.headers_mut().extend(trailers);
        return response;
    }
    frames.push(Ok(Frame::trailers(trailers)));
    grpc_response(frames)
}

/// One gRPC length-prefixed message.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).expect("a message under 4 GiB"));
    out.put_slice(message);
    out.freeze()
}

/// The messages of a gRPC body (a truncated tail is dropped).
pub fn unframe(mut body: Bytes) -> Vec<Bytes> {
    let mut messages = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() < 5 + len {
            break;
        }
        body.advance(5);
        messages.push(body.split_to(len));
    }
    messages
}

// === impl GrpcClient ===

impl GrpcClient {
    /// Connects to `addr` with HTTP/2 prior knowledge.
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn h2c(addr: SocketAddr) -> GrpcClient {
        Self::h2c_with_authority(addr, &addr.to_string()).await
    }

    /// Connects to `addr` with HTTP/2 prior knowledge; calls name
    /// `authority` as their `:authority` (the host weir routes by).
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn h2c_with_authority(addr: SocketAddr, authority: &str) -> GrpcClient {
        let stream = TcpStream::connect(addr).await.expect("connecting");
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(64 * 1024)
            .handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        GrpcClient {
            sender,
            authority: authority.to_owned(),
        }
    }

    /// Calls `method` with `message` and extra request headers `metadata`.
    ///
    /// # Panics
    /// When the exchange fails at the HTTP/2 level.
    pub async fn call(&self, method: &str, message: &[u8], metadata: &[(&str, &str)]) -> GrpcReply {
        self.try_call(method, message, metadata)
            .await
            .unwrap_or_else(|error| panic!("the call of {method} failed: {error}"))
    }

    /// As [`GrpcClient::call`]; `Err` with what broke when the answer or
    /// its body fails at the HTTP/2 level (a reset stream).
    pub async fn try_call(
        &self,
        method: &str,
        message: &[u8],
        metadata: &[(&str, &str)],
    ) -> Result<GrpcReply, String> {
        let mut builder = Request::post(format!("http://{}{method}", self.authority))
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (name, value) in metadata {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(frame(message))).expect("a request");
        let mut sender = self.sender.clone();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, mut body) = response.into_parts();
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            match frame.map_err(|e| e.to_string())?.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        Ok(GrpcReply {
            http_status: parts.status.as_u16(),
            headers: parts.headers,
            messages: unframe(data.freeze()),
            trailers,
        })
    }
}

// === impl GrpcReply ===

impl GrpcReply {
    /// `grpc-status`, from the trailers or a trailers-only head.
    pub fn status(&self) -> Option<u8> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// A trailer's value (or, for a trailers-only answer, the head's).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
            .and_then(|v| v.to_str().ok())
    }
}
