//! Downstream listeners: accept, optional TLS handshake, HTTP/1.1 or HTTP/2
//! (detected from the connection preface or ALPN), and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Proxy;
use crate::forward::{self, Downstream};

/// Largest request head accepted; a larger one is answered 431.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How a listener serves connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Name of the listener, for logs.
    pub name: String,
    /// TLS, when the listener is HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client that has not sent its request head within this is dropped.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub drain_timeout: Duration,
    /// Most simultaneous client connections (`listeners[].maxConnections`).
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            name: "default".to_owned(),
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            max_connections: weir_config::model::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

// === impl Proxy ===

impl Proxy {
    /// Serves connections accepted on `listener` until `shutdown` completes,
    /// then stops accepting and lets in-flight requests finish for up to the
    /// drain timeout. Returns the number of connections cut at the deadline.
    pub async fn serve(
        &self,
        listener: TcpListener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) -> usize {
        let builder = Arc::new(http_builder(&options));
        let acceptor = options.tls.clone().map(TlsAcceptor::from);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!(listener = %options.name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self.shared);
            let builder = Arc::clone(&builder);
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = options.header_read_timeout;
            tokio::spawn(async move {
                // hyper's header timer starts with the first byte; a client
                // that connects and says nothing is dropped here.
                let mut first = [0u8; 1];
                if !matches!(
                    tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await,
                    Ok(Ok(1))
                ) {
                    tracing::debug!(%remote, "no request within the header timeout");
                    return;
                }
                let downstream = Downstream::new(remote, acceptor.is_some());
                let service = service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    let downstream = downstream.clone();
                    async move { Ok::<_, Infallible>(forward::serve(shared, downstream, req).await) }
                });
                let result = match acceptor {
                    None => {
                        watcher
                            .watch(
                                builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service),
                            )
                            .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => {
                                watcher
                                    .watch(
                                        builder.serve_connection_with_upgrades(
                                            TokioIo::new(tls),
                                            service,
                                        ),
                                    )
                                    .await
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%remote, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "downstream connection ended with an error");
                }
            });
        }
        drop(listener);
        let open = graceful.count();
        tracing::info!(listener = %options.name, connections = open, "draining");
        tokio::select! {
            () = graceful.shutdown() => 0,
            () = tokio::time::sleep(options.drain_timeout) => {
                tracing::warn!(listener = %options.name, "drain timeout reached; closing remaining connections");
                open
            }
        }
    }
}

fn http_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_REQUEST_HEAD as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
