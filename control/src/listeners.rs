//! The data plane's listeners, as the config file names them.
//!
//! All are bound at start, before anything is served. At a reload, the
//! listeners the new file adds or changes are bound before the file is
//! adopted, so a port that cannot be had refuses the reload and nothing
//! changes; once the file is adopted they start serving, and the ones it
//! removes stop accepting (their port closes) and drain their connections
//! as at shutdown (in-flight requests run for up to the drain timeout).
//!
//! A listener whose address stays the same while its name, connection
//! limit or TLS changes is served anew from the same socket (a duplicate
//! of its descriptor, kept for this), so the port never closes: a client
//! connecting during the change reaches one of the two serve loops. The
//! old loop's connections, idle keep-alive ones included, go on under the
//! old settings until they close: none is closed under a request.
//!
//! The admin API moves the same way when `admin.address` changes: bound
//! before the file is adopted, then served, the old socket closed (its
//! open connections finish).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use weir_config::{Config, Diagnostic, Document};
use weir_proxy::http1::ForwardingPath;
use weir_proxy::{Listener, Proxy, ServeOptions};

/// The TLS config of one HTTPS listener, read by each new connection; a
/// reload stores the certificate it read.
type TlsCell = Arc<ArcSwap<rustls::ServerConfig>>;

/// Serves the admin API on a socket until its stop signal turns true.
pub type AdminStarter = Box<dyn Fn(TcpListener, watch::Receiver<bool>) + Send + Sync>;

/// The listeners a process serves, and the serve loops still draining.
#[derive(Debug, Default)]
pub struct Listeners {
    inner: Mutex<Inner>,
}

/// What serving needs besides a socket: the same for every listener.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The data plane.
    pub proxy: Proxy,
    /// Which code forwards HTTP/1.1 on cleartext listeners.
    pub forwarding: ForwardingPath,
    /// The descriptor budget shared by every listener, when one is needed
    /// (decided at start from the listeners then).
    pub shared_limit: Option<Arc<Semaphore>>,
    /// How long in-flight requests may run once a listener stops.
    pub drain_timeout: Duration,
}

/// Sockets bound for a config, ready to be served by [`Listeners::commit`]
/// or closed by being dropped.
#[derive(Debug, Default)]
pub struct Bound {
    /// Per listener of the config, in its order.
    listeners: Vec<BoundListener>,
    /// The admin API's new socket, when its address changed.
    admin: Option<(SocketAddr, TcpListener)>,
}

#[derive(Debug)]
struct BoundListener {
    shape: Shape,
    /// The certificate read for this config, when HTTPS.
    tls: Option<Arc<rustls::ServerConfig>>,
    socket: Socket,
}

/// Where a listener of the new config is served from.
#[derive(Debug)]
enum Socket {
    /// The running listener with the same shape goes on as it is.
    Kept,
    /// A new serve loop: the socket it accepts on and a duplicate of it,
    /// kept for the next change of this address.
    New {
        serving: Listener,
        spare: std::net::TcpListener,
    },
}

#[derive(Default)]
struct Inner {
    running: Vec<Running>,
    /// The admin API's address as configured, and its stop signal.
    admin: Option<(SocketAddr, watch::Sender<bool>)>,
    /// Starts the admin API on a new socket; set by [`Listeners::serve_admin`].
    admin_starter: Option<AdminStarter>,
    /// Every serve loop, running or draining; each ends with the number of
    /// connections cut at its drain deadline.
    tasks: JoinSet<usize>,
    /// The serve loops that handed their socket over and still have open
    /// connections, to be drained at shutdown.
    handed_over: Vec<watch::Sender<Stop>>,
    /// Set once [`Listeners::start`] ran; a process built in memory (tests)
    /// has none, and its reloads leave listeners alone.
    settings: Option<ServeSettings>,
    /// Shutdown began: nothing new is served.
    stopping: bool,
}

impl Inner {
    /// Serves the admin API on `socket`, bound for `address`; the one it
    /// served before stops accepting.
    fn start_admin(&mut self, address: SocketAddr, socket: TcpListener) {
        let Some(starter) = &self.admin_starter else {
            return;
        };
        let (stop, stopped) = watch::channel(false);
        match socket.local_addr() {
            Ok(local) => tracing::info!(address = %local, "admin API listening"),
            Err(error) => tracing::info!(%error, "admin API listening; its address is unknown"),
        }
        starter(socket, stopped);
        if let Some((before, stop)) = self.admin.replace((address, stop)) {
            tracing::info!(address = %before, "admin API moved by the config: no new connections on its old address");
            let _ = stop.send(true);
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("running", &self.running)
            .field("admin", &self.admin.as_ref().map(|(address, _)| address))
            .field("tasks", &self.tasks.len())
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Running {
    shape: Shape,
    /// A duplicate of the serving socket's descriptor.
    spare: std::net::TcpListener,
    tls: Option<TlsCell>,
    stop: watch::Sender<Stop>,
}

/// What a serve loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Accept and serve.
    Serving,
    /// Another serve loop took the socket over: stop accepting, and leave
    /// the open connections be until they close (or the process drains).
    HandedOver,
    /// Stop accepting and drain the open connections.
    Draining,
}

/// What makes a listener: a change of any of it is a new serve loop. New
/// certificate and key paths are not: a reload reads them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    name: String,
    address: SocketAddr,
    max_connections: usize,
    tls: bool,
}

impl Shape {
    fn of(listener: &weir_config::Listener) -> Shape {
        Shape {
            name: listener.name.clone(),
            address: listener.address,
            max_connections: listener.max_connections,
            tls: listener.tls.is_some(),
        }
    }
}

/// Whether `new` serves other listeners than `old`: one whose [`Shape`]
/// differs, whatever the order.
pub fn listeners_differ(old: &[weir_config::Listener], new: &[weir_config::Listener]) -> bool {
    let shapes = |listeners: &[weir_config::Listener]| {
        let mut shapes: Vec<Shape> = listeners.iter().map(Shape::of).collect();
        shapes.sort();
        shapes
    };
    shapes(old) != shapes(new)
}

// === impl Listeners ===

impl Listeners {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while held leaves nothing half-done worth refusing.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts serving what `bound` holds (the listeners of the config the
    /// process starts with), with `settings` for these and later ones.
    pub fn start(&self, settings: ServeSettings, bound: Bound) {
        self.lock().settings = Some(settings);
        self.commit(bound);
    }

    /// Serves the admin API on `socket`, bound for the configured
    /// `address`, with `starter`, which a reload that moves the API uses
    /// again.
    pub fn serve_admin(&self, address: SocketAddr, socket: TcpListener, starter: AdminStarter) {
        let mut inner = self.lock();
        inner.admin_starter = Some(starter);
        inner.start_admin(address, socket);
    }

    /// Stops the admin API from accepting (its open connections finish):
    /// the last step of a shutdown.
    pub fn stop_admin(&self) {
        if let Some((_, stop)) = self.lock().admin.take() {
            let _ = stop.send(true);
        }
    }

    /// Binds what `document`'s listeners and admin API need beyond those
    /// running: a new address is bound, a changed listener on the same
    /// address gets a duplicate of its socket, an unchanged one is kept.
    /// `tls` holds each listener's certificate, in the config's order. A
    /// process whose listeners were never started (one built in memory)
    /// binds nothing; the first listeners are bound by [`Bound::all`].
    ///
    /// # Errors
    /// One diagnostic per listener that cannot be bound, at its address,
    /// and one at `admin.address` when the admin API's new address cannot.
    pub fn bind(
        &self,
        document: &Document,
        tls: &[Option<Arc<rustls::ServerConfig>>],
    ) -> Result<Bound, Vec<Diagnostic>> {
        let inner = self.lock();
        // Built in memory, or stopping: the listeners stay as they are.
        if inner.settings.is_none() || inner.stopping {
            return Ok(Bound::default());
        }
        let running_admin = inner.admin.as_ref().map(|(address, _)| *address);
        let listeners = bind_config(document, tls, &inner.running, running_admin);
        let address = document.config.admin.address;
        let admin = match running_admin {
            Some(running) if running != address => {
                match bind(address, &addresses(&document.config)) {
                    Ok(socket) => Ok(Some((address, socket))),
                    Err(error) => {
                        let mut message =
                            format!("the admin API cannot listen on {address}: {error}");
                        if let Some(holder) =
                            held_by(&error, address, &inner.running, Some(running))
                        {
                            message.push_str(&holder);
                        }
                        Err(document.diagnostic("admin.address", message))
                    }
                }
            }
            _ => Ok(None),
        };
        match (listeners, admin) {
            (Ok(mut bound), Ok(admin)) => {
                bound.admin = admin;
                Ok(bound)
            }
            (Ok(_), Err(admin)) => Err(vec![admin]),
            (Err(mut errors), admin) => {
                errors.extend(admin.err());
                Err(errors)
            }
        }
    }

    /// Serves `bound`: new serve loops start; then the listeners it
    /// removes stop accepting and drain, and those it changes hand their
    /// socket over, their open connections going on; kept HTTPS listeners
    /// take the certificate it read.
    pub fn commit(&self, bound: Bound) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(settings) = inner.settings.clone() else {
            return;
        };
        if inner.stopping {
            return;
        }
        while inner.tasks.try_join_next().is_some() {}
        // A loop whose last connection closed has ended.
        inner.handed_over.retain(|stop| !stop.is_closed());
        let mut before = std::mem::take(&mut inner.running);
        let mut running = Vec::with_capacity(bound.listeners.len());
        let mut started = Vec::new();
        for listener in bound.listeners {
            match listener.socket {
                Socket::Kept => {
                    let Some(at) = before.iter().position(|r| r.shape == listener.shape) else {
                        // Bound against another set of running listeners: not
                        // served, rather than served twice.
                        tracing::warn!(listener = %listener.shape.name, "listener not found to keep; bind it again with a reload");
                        continue;
                    };
                    let kept = before.swap_remove(at);
                    if let (Some(cell), Some(config)) = (&kept.tls, listener.tls) {
                        cell.store(config);
                    }
                    running.push(kept);
                }
                Socket::New { serving, spare } => {
                    let tls = listener.tls.map(|config| Arc::new(ArcSwap::new(config)));
                    let (stop, stopped) = watch::channel(Stop::Serving);
                    started.push((listener.shape.clone(), serving, tls.clone(), stopped));
                    running.push(Running {
                        shape: listener.shape,
                        spare,
                        tls,
                        stop,
                    });
                }
            }
        }
        for (shape, serving, tls, stopped) in started {
            match serving.local_addr() {
                Ok(local) => {
                    tracing::info!(listener = %shape.name, address = %local, tls = tls.is_some(), "listening");
                }
                Err(error) => {
                    tracing::info!(listener = %shape.name, %error, tls = tls.is_some(), "listening; its address is unknown");
                }
            }
            let options = ServeOptions {
                name: shape.name,
                tls,
                drain_timeout: settings.drain_timeout,
                max_connections: shape.max_connections,
                shared_limit: settings.shared_limit.clone(),
                forwarding: settings.forwarding,
                ..ServeOptions::default()
            };
            let proxy = settings.proxy.clone();
            let mut draining = stopped.clone();
            let mut handed_over = stopped;
            inner.tasks.spawn(async move {
                proxy
                    .serve_handing_over(
                        serving,
                        options,
                        // Told, or no one is left to tell it: drain.
                        async move {
                            let _ = draining.wait_for(|stop| *stop == Stop::Draining).await;
                        },
                        async move {
                            if handed_over
                                .wait_for(|stop| *stop == Stop::HandedOver)
                                .await
                                .is_err()
                            {
                                std::future::pending::<()>().await;
                            }
                        },
                    )
                    .await
            });
        }
        for gone in before {
            // The same socket goes on in a new serve loop (port 0 never
            // shares one): the old loop's clients keep their connections.
            let same_socket = gone.shape.address.port() != 0
                && running
                    .iter()
                    .any(|r| r.shape.address == gone.shape.address);
            if same_socket {
                tracing::info!(listener = %gone.shape.name, address = %gone.shape.address, "listener changed by the config: new connections get the new settings, open ones keep theirs");
                let _ = gone.stop.send(Stop::HandedOver);
                inner.handed_over.push(gone.stop);
            } else {
                tracing::info!(listener = %gone.shape.name, address = %gone.shape.address, "listener removed by the config: no new connections; draining");
                let _ = gone.stop.send(Stop::Draining);
            }
        }
        inner.running = running;
        if let Some((address, socket)) = bound.admin {
            inner.start_admin(address, socket);
        }
    }

    /// Stops every listener and waits for their drains; returns the number
    /// of connections cut at the drain deadline.
    pub async fn shut_down(&self) -> usize {
        let mut tasks = {
            let mut inner = self.lock();
            inner.stopping = true;
            // Each spare descriptor is closed with its listener's: the port
            // closes as the drain begins.
            for running in inner.running.drain(..) {
                let _ = running.stop.send(Stop::Draining);
            }
            for stop in inner.handed_over.drain(..) {
                let _ = stop.send(Stop::Draining);
            }
            std::mem::take(&mut inner.tasks)
        };
        let mut cut = 0;
        while let Some(result) = tasks.join_next().await {
            cut += result.unwrap_or(0);
        }
        cut
    }
}

// === impl Bound ===

impl Bound {
    /// Binds every listener of `document` (the process's first config).
    ///
    /// # Errors
    /// One diagnostic per listener that cannot be bound, at its address.
    pub fn all(
        document: &Document,
        tls: &[Option<Arc<rustls::ServerConfig>>],
    ) -> Result<Bound, Vec<Diagnostic>> {
        bind_config(document, tls, &[], None)
    }
}

/// Binds the listeners of `document` that `running` cannot serve as they are.
fn bind_config(
    document: &Document,
    tls: &[Option<Arc<rustls::ServerConfig>>],
    running: &[Running],
    admin: Option<SocketAddr>,
) -> Result<Bound, Vec<Diagnostic>> {
    let config: &Config = &document.config;
    let addresses = addresses(config);
    let mut listeners = Vec::with_capacity(config.listeners.len());
    let mut errors = Vec::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let shape = Shape::of(listener);
        // The listener as it runs, else one on the same address; port 0
        // asks for a new port each time, so a changed one gets a new socket.
        let same_address = running.iter().find(|r| r.shape == shape).or_else(|| {
            running
                .iter()
                .find(|r| shape.address.port() != 0 && r.shape.address == shape.address)
        });
        let v6_only = needs_v6_only(shape.address, &addresses);
        let socket = match same_address {
            // An IPv6 wildcard that must start or stop taking IPv4 (an IPv4
            // listener on its port came or went) needs a socket of its own,
            // which cannot be bound while this one listens.
            Some(r) if is_v6_wildcard(shape.address) && v6_only_of(&r.spare) != Some(v6_only) => {
                Err(format!(
                    "listener `{}` on {} would have to {} IPv4 connections as well, as an IPv4 \
                     listener on port {} came or went: that takes a restart, or two reloads \
                     (remove the listener, then add it back)",
                    listener.name,
                    listener.address,
                    if v6_only { "stop taking" } else { "take" },
                    shape.address.port()
                ))
            }
            Some(r) if r.shape == shape => Ok(Socket::Kept),
            Some(r) => r.spare.try_clone().and_then(serve_from).map_err(|error| {
                format!(
                    "listener `{}` cannot listen on {}: {error}",
                    listener.name, listener.address
                )
            }),
            None => bind(shape.address, &addresses)
                .and_then(TcpListener::into_std)
                .and_then(serve_from)
                .map_err(|error| {
                    let mut message = format!(
                        "listener `{}` cannot listen on {}: {error}",
                        listener.name, listener.address
                    );
                    if let Some(holder) = held_by(&error, shape.address, running, admin) {
                        message.push_str(&holder);
                    }
                    message
                }),
        };
        match socket {
            Ok(socket) => listeners.push(BoundListener {
                shape,
                tls: tls.get(i).cloned().flatten(),
                socket,
            }),
            Err(message) => {
                errors.push(document.diagnostic(&format!("listeners[{i}].address"), message));
            }
        }
    }
    if errors.is_empty() {
        Ok(Bound {
            listeners,
            admin: None,
        })
    } else {
        Err(errors)
    }
}

/// When binding `address` failed with `error` because one of weir's own
/// sockets holds its port (a listener of `running`, or the admin API on
/// `admin`), until the reload is adopted: what to add to the message.
fn held_by(
    error: &std::io::Error,
    address: SocketAddr,
    running: &[Running],
    admin: Option<SocketAddr>,
) -> Option<String> {
    if error.kind() != std::io::ErrorKind::AddrInUse || address.port() == 0 {
        return None;
    }
    let holder = running
        .iter()
        .find(|r| r.shape.address.port() == address.port())
        .map(|r| format!("weir's listener `{}` on {}", r.shape.name, r.shape.address))
        .or_else(|| {
            admin
                .filter(|a| a.port() == address.port())
                .map(|a| format!("weir's admin API on {a}"))
        })?;
    Some(format!(
        "; {holder} holds port {} until this reload is adopted: moving a port between \
         listeners and the admin API, or to an overlapping address, takes a restart or two \
         reloads (first free the port, then take it)",
        address.port()
    ))
}

/// A serve loop's socket from `socket`, with a duplicate kept aside.
fn serve_from(socket: std::net::TcpListener) -> std::io::Result<Socket> {
    let spare = socket.try_clone()?;
    let serving = Listener::new(TcpListener::from_std(socket)?)?;
    Ok(Socket::New { serving, spare })
}

/// Whether `address` is the IPv6 wildcard (`[::]:P`).
fn is_v6_wildcard(address: SocketAddr) -> bool {
    address.is_ipv6() && address.ip().is_unspecified()
}

/// Whether `address` must be bound IPv6-only: an IPv6 wildcard sharing its
/// port with an IPv4 address of `all`, which takes IPv4 then.
fn needs_v6_only(address: SocketAddr, all: &[SocketAddr]) -> bool {
    is_v6_wildcard(address)
        && address.port() != 0
        && all
            .iter()
            .any(|other| other.is_ipv4() && other.port() == address.port())
}

/// Whether `socket` (an IPv6 one) takes IPv6 only; `None` when it cannot
/// be told.
fn v6_only_of(socket: &std::net::TcpListener) -> Option<bool> {
    rustix::net::sockopt::ipv6_v6only(socket).ok()
}

/// Every address `config` binds: its listeners' and the admin API's.
pub fn addresses(config: &Config) -> Vec<SocketAddr> {
    config
        .listeners
        .iter()
        .map(|l| l.address)
        .chain([config.admin.address])
        .collect()
}

/// Binds and listens on `address`. An IPv6 wildcard that shares its port
/// with an IPv4 address of `all` is made IPv6-only, so both can be bound.
///
/// # Errors
/// The system's, when the socket cannot be made, bound or listened on.
pub fn bind(address: SocketAddr, all: &[SocketAddr]) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if needs_v6_only(address, all) {
        rustix::net::sockopt::set_ipv6_v6only(&socket, true)?;
    }
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}
