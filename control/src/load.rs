//! Loading a config file: read it, validate it, and make the checks that need
//! the outside world (TLS files, DNS), reporting every problem with its place.
//!
//! Files are read only when they are regular files of at most
//! [`MAX_FILE_BYTES`]: a FIFO or a device named by mistake is refused at once
//! rather than waited on, and a huge file before it is held in memory.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_config::{
    Config, Diagnostic, Diagnostics, Document, EndpointAddr, Location, MachineCheck, RouteOverride,
    Snapshot, UpstreamTls,
};
use weir_proxy::tls::CertificateValidity;

/// A config that passed every check, with what the checks produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated document.
    pub document: Document,
    /// Per listener, its TLS config (same order as `config.listeners`).
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Per listener, when the certificate it serves is valid (same order).
    pub certificates: Vec<Option<CertificateValidity>>,
    /// The file's bytes, to tell a real change from a touch.
    pub text: String,
}

/// Resolved addresses of every endpoint named by the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved(HashMap<EndpointAddr, Vec<SocketAddr>>);

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading it failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// It is a directory, FIFO, socket or device.
    #[error("{} is a {kind}, not a regular file; name a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// It holds more than [`MAX_FILE_BYTES`].
    #[error(
        "{} is larger than {} MiB, more than weir reads; a config file or certificate is far smaller",
        path.display(),
        MAX_FILE_BYTES >> 20
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// The largest file weir reads: the config file and the files it names
/// (certificates, keys, CA bundles). A weir.yaml of a thousand routes is
/// under 2 MiB and a bundle of every public CA under 1 MiB, so 16 MiB
/// refuses no real file; it bounds what a wrong path (a log, an image)
/// costs before validation can refuse it, as the whole file is held in
/// memory, and a reload runs inside a process that is serving.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads `path` whole, if it is a regular file (symbolic links followed) of
/// at most [`MAX_FILE_BYTES`]. It is opened without blocking, so a FIFO is
/// refused instead of waited on.
///
/// # Errors
/// When it cannot be opened or read, is not a regular file, or is too large.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_file_keeping(path).map(|(bytes, _, _)| bytes)
}

/// [`read_file`], also giving the file, open, and how it looked when
/// opened, before it was read (so that a write during the read shows as a
/// change of the file against what was read).
///
/// # Errors
/// As [`read_file`].
pub fn read_file_keeping(
    path: &Path,
) -> Result<(Vec<u8>, std::fs::File, std::fs::Metadata), ReadError> {
    use rustix::fs::{Mode, OFlags};

    let io = |source: std::io::Error| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| io(e.into()))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_socket() {
            "socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "device"
        } else {
            "special file"
        };
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    let too_large = || ReadError::TooLarge {
        path: path.to_owned(),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow while it is read: read one byte past the cap to know.
    (&file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok((bytes, file, meta))
}

/// Why the config file at `path` was not read, as a diagnostic of the file.
pub fn unreadable_config(path: &Path, error: ReadError) -> Diagnostics {
    let message = match error {
        ReadError::Io { source, .. } => format!("cannot read the config file: {source}"),
        error => error.to_string(),
    };
    Diagnostics(vec![Diagnostic {
        file: path.display().to_string(),
        location: None,
        path: String::new(),
        message,
    }])
}

/// Logs each of [`Loaded::certificate_warnings`] now, as a warning.
pub fn log_certificate_warnings(loaded: &Loaded) {
    for warning in loaded.certificate_warnings(crate::process::now_ms()) {
        tracing::warn!("{warning}");
    }
}

// === impl Loaded ===

impl Loaded {
    /// The validated config.
    pub fn config(&self) -> &Config {
        &self.document.config
    }

    /// A sentence per listener whose certificate is not valid at `now_ms`
    /// (milliseconds since the UNIX epoch): expired, or not valid yet. Clients
    /// that check certificates refuse it; weir serves it all the same, as
    /// nginx and HAProxy do, and says so.
    pub fn certificate_warnings(&self, now_ms: u64) -> Vec<String> {
        let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let listeners = &self.config().listeners;
        listeners
            .iter()
            .zip(&self.certificates)
            .filter_map(|(listener, validity)| {
                let validity = validity.as_ref()?;
                let file = listener.tls.as_ref()?.cert_file.display();
                let when = |s: i64| {
                    k8s_openapi::jiff::Timestamp::from_second(s)
                        .map_or_else(|_| format!("{s} s after 1970"), |t| t.to_string())
                };
                if now_s > validity.not_after {
                    Some(format!(
                        "listener {}: the certificate in {file} expired at {}; clients that check certificates refuse it",
                        listener.name,
                        when(validity.not_after)
                    ))
                } else if now_s < validity.not_before {
                    Some(format!(
                        "listener {}: the certificate in {file} is not valid before {}; clients that check certificates refuse it until then",
                        listener.name,
                        when(validity.not_before)
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Reads and checks `path`, with `${VAR}` taken from the process environment.
///
/// # Errors
/// Every problem found, each with file, line, column and key path.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    load_with(path, false)
}

/// [`load`], with the `kubernetes` block assumed when `kubernetes`
/// (`weir run --kubernetes`): its defaults apply when the file has none.
///
/// # Errors
/// Every problem found, each with file, line, column and key path.
pub fn load_with(path: &Path, kubernetes: bool) -> Result<Loaded, Diagnostics> {
    let bytes = read_file(path).map_err(|error| unreadable_config(path, error))?;
    load_bytes(path, bytes, kubernetes)
}

/// [`load_with`], of `bytes` read from `path` by [`read_file`].
///
/// # Errors
/// Every problem found, each with file, line, column and key path; bytes
/// that are not UTF-8 with the place of the first that is not.
pub fn load_bytes(path: &Path, bytes: Vec<u8>, kubernetes: bool) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let error = error.utf8_error();
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            location: Some(utf8_error_location(bytes, error.valid_up_to())),
            path: String::new(),
            message: match error.error_len() {
                Some(_) => format!(
                    "the file is not UTF-8: byte 0x{:02X} here does not belong to a UTF-8 character; save the file as UTF-8",
                    bytes[error.valid_up_to()]
                ),
                None => "the file is not UTF-8: it ends inside a character; save the file as UTF-8".to_owned(),
            },
        }])
    })?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var(name).ok();
    let parsed = if kubernetes {
        weir_config::parse_with_kubernetes(&text, &file, base_dir, &env)
    } else {
        weir_config::parse(&text, &file, base_dir, &env)
    };
    let mut document = match parsed {
        Ok(document) => document,
        Err(Diagnostics(mut problems)) => {
            // The files it names are checked all the same: one run says
            // every error.
            let checks = weir_config::machine_checks(&text, base_dir);
            problems.extend(file_problems(&checks, &file, &problems));
            return Err(in_file_order(problems));
        }
    };

    let mut problems = Vec::new();
    let tls = document
        .config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| {
            let files = listener.tls.as_ref()?;
            let mut read = |field: &str, path: &Path| match read_file(path) {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    problems.push(
                        document
                            .diagnostic(&format!("listeners[{i}].tls.{field}"), error.to_string()),
                    );
                    None
                }
            };
            let cert = read("certFile", &files.cert_file);
            let key = read("keyFile", &files.key_file);
            let (cert, key) = (cert?, key?);
            match weir_proxy::tls::server_config(&cert, &key) {
                Ok(config) => Some((config, weir_proxy::tls::certificate_validity(&cert))),
                Err(error) => {
                    use weir_proxy::tls::TlsFile;
                    let (at, message) = match error.file() {
                        Some(TlsFile::Certificate) => (
                            "tls.certFile",
                            format!("{}: {error}", files.cert_file.display()),
                        ),
                        Some(TlsFile::Key) => (
                            "tls.keyFile",
                            format!("{}: {error}", files.key_file.display()),
                        ),
                        None => (
                            "tls",
                            format!(
                                "cannot use {} with {}: {error}",
                                files.cert_file.display(),
                                files.key_file.display()
                            ),
                        ),
                    };
                    problems.push(document.diagnostic(&format!("listeners[{i}].{at}"), message));
                    None
                }
            }
        })
        .collect::<Vec<_>>();
    let (tls, certificates) = tls
        .into_iter()
        .map(|served| match served {
            Some((config, validity)) => (Some(config), validity),
            None => (None, None),
        })
        .unzip();
    load_upstream_tls(&mut document, &mut problems);
    if let Some(problem) = state_dir_problem(&document.config.state_dir) {
        problems.push(document.diagnostic("stateDir", problem));
    }
    if problems.is_empty() {
        Ok(Loaded {
            document,
            tls,
            certificates,
            text,
        })
    } else {
        Err(Diagnostics(problems))
    }
}

/// Why `dir` could never be the state directory: something other than a
/// directory is there, or on its way. A directory that does not exist yet
/// is made when a state is first written.
fn state_dir_problem(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Some(format!(
            "{} exists and is not a directory; name a directory (made if missing)",
            dir.display()
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => Some(format!(
            "{}: a part of the path is not a directory",
            dir.display()
        )),
        _ => None,
    }
}

/// Why this process could not write rollout states in `dir`, if it could
/// not: `access(2)` on the directory, or, when it is to be made, on the
/// nearest directory above it that exists (write and search permission; a
/// read-only filesystem says so too). Blocking.
pub fn state_dir_unwritable(dir: &Path) -> Option<String> {
    use rustix::fs::{Access, access};
    let mut at = dir;
    let existing = loop {
        match std::fs::metadata(at) {
            Ok(meta) if meta.is_dir() => break at,
            Ok(_) => return None,
            Err(_) => at = at.parent().filter(|p| !p.as_os_str().is_empty())?,
        }
    };
    let error = access(existing, Access::WRITE_OK | Access::EXEC_OK).err()?;
    let error = std::io::Error::from(error);
    Some(if existing == dir {
        format!("cannot write in {}: {error}", dir.display())
    } else {
        format!(
            "cannot make {}: cannot write in {}: {error}",
            dir.display(),
            existing.display()
        )
    })
}

/// The files among `checks` that cannot be read, and a `stateDir` that
/// something stands in the way of, as problems of `file`, but for the keys
/// `known` already has a problem at.
fn file_problems(checks: &[MachineCheck], file: &str, known: &[Diagnostic]) -> Vec<Diagnostic> {
    checks
        .iter()
        .filter_map(|check| match check {
            MachineCheck::File {
                path,
                at,
                file: name,
            } => {
                let error = read_file(name).err()?;
                Some(machine_problem(file, path, *at, error.to_string()))
            }
            MachineCheck::StateDir { at, dir } => {
                let problem = state_dir_problem(dir)?;
                Some(machine_problem(file, "stateDir", *at, problem))
            }
            MachineCheck::Endpoint { .. } => None,
        })
        .filter(|problem| known.iter().all(|k| k.path != problem.path))
        .collect()
}

/// The endpoints among `checks` whose host does not resolve, as problems
/// of `file`, but for the keys `known` already has a problem at: for a
/// file that does not load, so that `weir validate` says every error.
pub async fn unresolved_endpoints(
    checks: &[MachineCheck],
    file: &str,
    known: &[Diagnostic],
) -> Vec<Diagnostic> {
    let endpoints: Vec<(&String, &Location, &EndpointAddr)> = checks
        .iter()
        .filter_map(|check| match check {
            MachineCheck::Endpoint { path, at, endpoint }
                if known.iter().all(|k| k.path != *path) =>
            {
                Some((path, at, endpoint))
            }
            _ => None,
        })
        .collect();
    let hosts: Vec<&str> = endpoints.iter().map(|(_, _, e)| e.host.as_str()).collect();
    let lookups = look_up(&hosts).await;
    let mut problems = Vec::new();
    // Each endpoint once: one listed again (or repeated by aliases) is
    // reported at its first place.
    let mut asked = std::collections::HashSet::new();
    for (path, at, endpoint) in endpoints {
        if asked.insert(endpoint)
            && let Err(message) = addresses(endpoint, &lookups)
        {
            problems.push(machine_problem(file, path, *at, message));
        }
    }
    problems
}

fn machine_problem(file: &str, path: &str, at: Location, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        location: Some(at),
        path: path.to_owned(),
        message,
    }
}

/// `problems` sorted by place (those without a place last), each place's
/// in the order found.
pub fn in_file_order(mut problems: Vec<Diagnostic>) -> Diagnostics {
    problems.sort_by_key(|p| {
        p.location
            .map_or((usize::MAX, usize::MAX), |l| (l.line, l.column))
    });
    Diagnostics(problems)
}

/// Reads the `caFile` of every role that has one into the config (the
/// snapshot carries the certificates to the proxy) and checks that each
/// role's TLS settings make a client: PEM certificates in the file, system
/// roots when there is no file, a usable server name.
fn load_upstream_tls(document: &mut Document, problems: &mut Vec<Diagnostic>) {
    let mut found = Vec::new();
    for (r, route) in document.config.routes.iter().enumerate() {
        let roles = std::iter::once(("stable", &route.stable))
            .chain(route.canary.iter().map(|c| ("canary", c)));
        for (role, upstream) in roles {
            let Some(tls) = &upstream.tls else { continue };
            let at = format!("routes[{r}].{role}");
            let mut tls = UpstreamTls::clone(tls);
            if let Some(file) = &tls.ca_file {
                match read_file(file) {
                    Ok(pem) => tls.ca_pem = Some(Arc::from(pem)),
                    Err(error) => {
                        problems.push(
                            document.diagnostic(&format!("{at}.tls.caFile"), error.to_string()),
                        );
                        continue;
                    }
                }
            }
            if let Err(error) = weir_proxy::upstream::tls::check(&tls) {
                // Say it where the setting is written: the CA file, the
                // `tls` block, or `protocol: h2` alone.
                let path = if tls.ca_file.is_some() {
                    format!("{at}.tls.caFile")
                } else if document.index.find(&format!("{at}.tls")).is_some() {
                    format!("{at}.tls")
                } else {
                    format!("{at}.protocol")
                };
                let message = match &tls.ca_file {
                    Some(file) => format!("{}: {error}", file.display()),
                    None => error.to_string(),
                };
                problems.push(document.diagnostic(&path, message));
                continue;
            }
            found.push((r, role, Arc::new(tls)));
        }
    }
    for (r, role, tls) in found {
        let route = &mut document.config.routes[r];
        let upstream = match role {
            "stable" => Some(&mut route.stable),
            _ => route.canary.as_mut(),
        };
        if let Some(upstream) = upstream {
            upstream.tls = Some(tls);
        }
    }
}

/// The line and column of byte `offset` of `bytes`, all of whose bytes
/// before it are UTF-8: columns count characters, as the YAML parser's do.
fn utf8_error_location(bytes: &[u8], offset: usize) -> Location {
    let before = String::from_utf8_lossy(&bytes[..offset]);
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    Location {
        line: 1 + before.matches('\n').count(),
        column: 1 + before[line_start..].chars().count(),
    }
}

// === impl Resolved ===

impl Resolved {
    /// Resolves every endpoint of `document`. A name that does not resolve is
    /// an error at its place in the file.
    ///
    /// # Errors
    /// One diagnostic per endpoint that did not resolve.
    pub async fn resolve(document: &Document) -> Result<Resolved, Diagnostics> {
        let routes = &document.config.routes;
        let hosts: Vec<&str> = routes
            .iter()
            .flat_map(|route| std::iter::once(&route.stable).chain(&route.canary))
            .flat_map(|upstream| &upstream.endpoints)
            .map(|endpoint| endpoint.host.as_str())
            .collect();
        let lookups = look_up(&hosts).await;
        let mut resolved = HashMap::new();
        let mut problems = Vec::new();
        for (r, route) in routes.iter().enumerate() {
            let upstreams = std::iter::once(("stable", &route.stable))
                .chain(route.canary.iter().map(|c| ("canary", c)));
            for (role, upstream) in upstreams {
                for (e, endpoint) in upstream.endpoints.iter().enumerate() {
                    if resolved.contains_key(endpoint) {
                        continue;
                    }
                    match addresses(endpoint, &lookups) {
                        Ok(addrs) => {
                            resolved.insert(endpoint.clone(), addrs);
                        }
                        Err(message) => problems.push(
                            document
                                .diagnostic(&format!("routes[{r}].{role}.endpoints[{e}]"), message),
                        ),
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Resolved(resolved))
        } else {
            Err(Diagnostics(problems))
        }
    }

    /// Resolves the names again, keeping the previous addresses of a name
    /// that fails this time.
    pub async fn refresh(&self) -> Resolved {
        let hosts: Vec<&str> = self.0.keys().map(|e| e.host.as_str()).collect();
        let lookups = look_up(&hosts).await;
        let mut next = self.0.clone();
        for (endpoint, addrs) in &mut next {
            match addresses(endpoint, &lookups) {
                Ok(fresh) => *addrs = fresh,
                Err(message) => {
                    tracing::warn!(%endpoint, %message, "keeping the previous addresses")
                }
            }
        }
        Resolved(next)
    }

    /// Whether any endpoint is a name (and so worth resolving again).
    pub fn has_names(&self) -> bool {
        self.0.keys().any(|e| e.host.parse::<IpAddr>().is_err())
    }

    /// The snapshot for `config` with these addresses.
    pub fn compile(
        &self,
        config: &Config,
        overrides: &dyn Fn(&str) -> Option<RouteOverride>,
    ) -> Snapshot {
        // CanaryRoutes' endpoints are addresses from EndpointSlices, never
        // names: they need no lookup.
        Snapshot::compile(config, overrides, &|endpoint| match self.0.get(endpoint) {
            Some(addrs) => addrs.clone(),
            None => endpoint
                .host
                .parse::<IpAddr>()
                .map(|ip| vec![SocketAddr::new(ip, endpoint.port)])
                .unwrap_or_default(),
        })
    }
}

/// How long one name may take to resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Names looked up at the same time: a config of many names that do not
/// resolve (or a resolver that does not answer) costs a few lookup
/// timeouts in all, not one per name.
const LOOKUPS_AT_ONCE: usize = 64;

/// What looking a host name up gave.
#[derive(Debug, Clone)]
enum Lookup {
    /// Its addresses, sorted, without duplicates.
    Found(Vec<IpAddr>),
    /// The resolver's error.
    Failed(String),
    /// No answer within [`LOOKUP_TIMEOUT`].
    TimedOut,
}

/// Looks up each distinct name among `hosts` once (IP addresses need no
/// lookup), [`LOOKUPS_AT_ONCE`] at a time.
async fn look_up(hosts: &[&str]) -> HashMap<String, Lookup> {
    use futures_util::StreamExt as _;
    let mut names: Vec<String> = hosts
        .iter()
        .filter(|h| h.parse::<IpAddr>().is_err())
        .map(|h| (*h).to_owned())
        .collect();
    names.sort_unstable();
    names.dedup();
    futures_util::stream::iter(names)
        .map(look_up_one)
        .buffer_unordered(LOOKUPS_AT_ONCE)
        .collect()
        .await
}

/// Looks `name` up, within [`LOOKUP_TIMEOUT`].
async fn look_up_one(name: String) -> (String, Lookup) {
    // The port is needed by the call only; the answer's addresses are the
    // same for every port.
    let lookup = crate::off_runtime::look_up(name.clone(), 0);
    let found = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => {
            let mut ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            ips.sort_unstable();
            ips.dedup();
            Lookup::Found(ips)
        }
        Ok(Err(error)) => Lookup::Failed(error.to_string()),
        Err(_) => Lookup::TimedOut,
    };
    (name, found)
}

/// The addresses of `endpoint`, from its IP address or its name's lookup.
fn addresses(
    endpoint: &EndpointAddr,
    lookups: &HashMap<String, Lookup>,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, endpoint.port)]);
    }
    match lookups.get(endpoint.host.as_str()) {
        Some(Lookup::Found(ips)) if !ips.is_empty() => Ok(ips
            .iter()
            .map(|&ip| SocketAddr::new(ip, endpoint.port))
            .collect()),
        Some(Lookup::Found(_)) => Err(format!("{endpoint} resolves to no address")),
        Some(Lookup::Failed(error)) => Err(format!("cannot resolve {endpoint}: {error}")),
        Some(Lookup::TimedOut) => Err(format!(
            "resolving {endpoint} timed out after {}s",
            LOOKUP_TIMEOUT.as_secs()
        )),
        None => Err(format!("{endpoint} was not looked up")),
    }
}

#[cfg(test)]
mod tests;
