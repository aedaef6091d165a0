//! Per-route, per-role request counters and latency histograms, written by the
//! request path with atomic increments only, read by the rollout analysis,
//! and exported through the `prometheus` crate by [`ProxyCollector`] (see
//! [`exposition`] for why a collector rather than `prometheus` handles).
//!
//! Handles are resolved once per (route, role) when a snapshot is applied, so
//! a request never hashes a label or takes a lock.

pub mod exposition;

pub use exposition::{Family, ProxyCollector};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_config::grpc::GRPC_CODES;

use crate::Role;
use crate::fallback::FallbackCounters;

/// The bounds of one decade of [`LATENCY_BOUNDS_MICROS`], in hundredths of
/// the decade's start: no bound is more than 5 % above the one before it,
/// and the exported buckets' 2.5 and 5 are among them.
const DECADE_HUNDREDTHS: [u64; 66] = [
    100, 105, 110, 115, 120, 125, 130, 135, 140, 145, 150, 155, 160, 165, 170, 175, 180, 185, 190,
    195, //
    200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300, 310, 320, 330, 340, 350, 360, 370, 380,
    390, //
    400, 420, 440, 460, 480, 500, 520, 540, 560, 580, //
    600, 625, 650, 675, 700, 725, 750, 775, 800, 825, 850, 875, 900, 925, 950, 975,
];

/// The number of [`LATENCY_BOUNDS_MICROS`]: five whole decades from 100 µs
/// to 10 s, then 10 s to 60 s.
const LATENCY_BOUNDS: usize = 5 * DECADE_HUNDREDTHS.len() + 51;

/// Upper bounds, in microseconds, of the latency buckets kept per role:
/// from 100 µs to 60 s, each at most 5 % above the one before (1, 1.05,
/// 1.1, ... 1.95, 2, 2.1, ... 3.9, 4, 4.2, ... 5.8, 6, 6.25, ... 9.75 per
/// decade), so a quantile read from them is off by less than 5 % of its
/// value, and exact in comparisons with a bound. (Buckets a quarter to a
/// third wide read a canary answering in 105 to 112 ms as a p99 of
/// 125 ms.) The exported Prometheus histogram uses a subset
/// ([`EXPORTED_BUCKETS_MICROS`]), summed from these at render time.
pub const LATENCY_BOUNDS_MICROS: [u64; LATENCY_BOUNDS] = latency_bounds();

const fn latency_bounds() -> [u64; LATENCY_BOUNDS] {
    let mut bounds = [0; LATENCY_BOUNDS];
    let mut at = 0;
    // Hundredths of 100 µs are microseconds.
    let mut scale = 1;
    while at < LATENCY_BOUNDS {
        let mut i = 0;
        while i < DECADE_HUNDREDTHS.len() && at < LATENCY_BOUNDS {
            bounds[at] = DECADE_HUNDREDTHS[i] * scale;
            at += 1;
            i += 1;
        }
        scale *= 10;
    }
    bounds
}

/// Latency slots: one per bound plus one above the last.
pub const LATENCY_SLOTS: usize = LATENCY_BOUNDS_MICROS.len() + 1;

/// The `le` bounds of `weir_http_request_duration_seconds`, in microseconds;
/// each is one of [`LATENCY_BOUNDS_MICROS`].
pub const EXPORTED_BUCKETS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Lowest and highest status code with a counter of its own.
const MIN_CODE: u16 = 100;
const MAX_CODE: u16 = 999;
const CODE_SLOTS: usize = (MAX_CODE - MIN_CODE + 1) as usize;

/// Why an upstream exchange failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection to the endpoint was established: it could not be
    /// reached, or the TLS handshake with it failed (unknown CA, a name the
    /// certificate is not valid for, no TLS client for its settings).
    Connect,
    /// No response within the request timeout, or a body silent past the idle timeout.
    Timeout,
    /// The endpoint broke the HTTP exchange.
    Protocol,
}

/// A request failure the client caused, as a bounded metric label. These
/// are answered 4xx (or 499 when nobody is left to answer), counted in
/// `weir_http_requests_total` with the role the request was routed to, and
/// kept out of `weir_upstream_errors_total` and the rollout analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// The request body's framing was broken (bad chunk size, bare LF, data
    /// past the chunk size, an oversized chunk extension); answered 400.
    Framing,
    /// The request body ended before its declared length; answered 400.
    IncompleteBody,
    /// The client went away before the answer; recorded as 499.
    Abandoned,
    /// The client stalled inside its body: the request's deadline passed
    /// while weir waited for more of it, the upstream having taken all
    /// that came; answered 408.
    BodyTimeout,
}

/// A request head refused before routing, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// HTTP/1.1 request without `Host` (RFC 9112 section 3.2).
    MissingHost,
    /// More than one `Host` header (RFC 9112 section 3.2).
    DuplicateHost,
    /// Userinfo (`user@`) in the target's authority or in `Host`.
    HostUserinfo,
    /// A `Host` that is not `host [":" port]` (RFC 9110 section 7.2).
    InvalidHost,
    /// A request target of no form RFC 9112 section 3.2 allows for its
    /// method: `*` but for OPTIONS, `host:port` but for CONNECT.
    InvalidTarget,
    /// A `Transfer-Encoding` with a coding other than `chunked` (RFC 9112
    /// section 6.1: 501); forwarding it as plain chunked would hand the
    /// upstream coded bytes as if they were not.
    UnsupportedTransferCoding,
    /// A path with a `.` or `..` segment, plain or percent-encoded: routed
    /// as written, it would reach another path at an upstream that
    /// resolves it (RFC 3986 section 5.2.4).
    DotSegment,
    /// An HTTP/2 field value that starts or ends with a space or a tab,
    /// which makes the request malformed (RFC 9113 section 8.2.1).
    FieldValueWhitespace,
}

/// Counters by (route, role label): `stable` and `canary`, or a Gateway
/// API backend's Service name.
type SeriesMap = BTreeMap<(Arc<str>, SeriesRole), Arc<RoleMetrics>>;

/// The role part of a series key: stable and canary first, in that order,
/// then Gateway API backends by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SeriesRole {
    Role(Role),
    Backend(Arc<str>),
}

/// Whether a status counts as an error of the role: any 5xx, weir's own
/// 502, 503 and 504 included. A 499 (the client left) is not: a client must
/// not be able to fail a canary by hanging up; a hanging canary still shows
/// through the latency of those requests and through 504s.
fn is_error_code(code: usize) -> bool {
    (500..=599).contains(&code)
}

/// Cumulative counts of one role since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleCounts {
    /// Requests answered, every status, less those whose failure the client
    /// caused (see [`ClientErrorKind`]), plus the attempts another role
    /// answered instead (a canary failure retried on stable by
    /// `stableFallback`: see [`RoleMetrics::record_unsent`]).
    pub requests: u64,
    /// Of those, answered 5xx (weir's own 502, 503 and 504 included), gRPC
    /// calls with an error status, and bodies that broke after a non-error
    /// head.
    pub errors: u64,
    /// Non-cumulative latency counts per [`LATENCY_BOUNDS_MICROS`] slot,
    /// unsent attempts included.
    pub latency: [u64; LATENCY_SLOTS],
}

// === impl RoleCounts ===

impl RoleCounts {
    /// No requests at all.
    pub fn zero() -> RoleCounts {
        RoleCounts {
            requests: 0,
            errors: 0,
            latency: [0; LATENCY_SLOTS],
        }
    }

    /// The latency slots from the first counted in to the last: the others
    /// are zero (an empty range at 0 when none is).
    pub fn counted_slots(&self) -> std::ops::Range<usize> {
        let first = self.latency.iter().position(|&n| n > 0).unwrap_or(0);
        let end = self
            .latency
            .iter()
            .rposition(|&n| n > 0)
            .map_or(first, |last| last + 1);
        first..end
    }
}

/// All proxy metrics: one [`RoleMetrics`] per (route, role) ever served,
/// one [`ListenerMetrics`] per listener and one [`EndpointMetrics`] per
/// upstream address.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<SeriesMap>,
    listeners: Mutex<BTreeMap<String, Arc<ListenerMetrics>>>,
    endpoints: Mutex<BTreeMap<SocketAddr, Arc<EndpointMetrics>>>,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    fallbacks: Mutex<BTreeMap<Arc<str>, Arc<FallbackCounters>>>,
}

/// The connection counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Client connections open now.
    pub open: AtomicUsize,
    /// Client connections closed at once because a connection limit was reached.
    pub refused: AtomicU64,
}

/// The passive health of one upstream address, shared by every route that names it.
#[derive(Debug, Default)]
pub struct EndpointMetrics {
    /// Times the endpoint was ejected after consecutive failures.
    pub ejections: AtomicU64,
    /// 1 while the endpoint is ejected, else 0.
    pub ejected: AtomicU64,
}

/// The counters of one role of one route.
#[derive(Debug)]
pub struct RoleMetrics {
    route: Arc<str>,
    /// The `role` label.
    role: Arc<str>,
    by_code: Box<[AtomicU64]>,
    /// Non-cumulative counts per [`LATENCY_BOUNDS_MICROS`] slot; the last is `+Inf`.
    latency: [AtomicU64; LATENCY_SLOTS],
    duration_sum_micros: AtomicU64,
    upstream_errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
    /// Responses sent with a non-error code whose body then broke or stalled.
    failed_bodies: AtomicU64,
    client_errors: [AtomicU64; ClientErrorKind::ALL.len()],
    /// gRPC calls answered with HTTP 200 and a `grpc-status`, by status
    /// (these are not in `by_code`).
    grpc_by_status: [AtomicU64; GRPC_CODES],
    /// Of those, the calls whose status the route counts as an error.
    grpc_errors: AtomicU64,
    /// gRPC calls answered with another HTTP code than 200, by code slot
    /// as `by_code` (and not in it); made at the first such answer.
    grpc_by_http: std::sync::OnceLock<Box<[AtomicU64]>>,
    /// Of those, the calls the route counts as errors.
    grpc_http_errors: AtomicU64,
    /// Attempts whose answer was never sent downstream (see
    /// [`RoleMetrics::record_unsent`]): in the analysis counts only.
    unsent: UnsentCounts,
    /// Requests weir failed itself (see [`RoleMetrics::record_weirs_own`]),
    /// counted in `by_code` or `grpc_by_status` as errors too.
    weirs_own: AtomicU64,
}

/// The analysis-only counts of a role's attempts that another role answered
/// instead: a failed canary attempt that `stableFallback` retried on stable.
/// They are not in `weir_http_requests_total` nor the duration histogram,
/// which count answers sent downstream, but the rollout analysis judges
/// them as the role's requests and errors, with their latency.
#[derive(Debug)]
struct UnsentCounts {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Non-cumulative counts per [`LATENCY_BOUNDS_MICROS`] slot.
    latency: [AtomicU64; LATENCY_SLOTS],
}

// === impl UpstreamErrorKind ===

impl UpstreamErrorKind {
    /// Every kind, in label order.
    pub const ALL: [UpstreamErrorKind; 3] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
    ];

    /// The `kind` label value.
    pub const fn metric_label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }

    const fn slot(self) -> usize {
        self as usize
    }
}

// === impl ClientErrorKind ===

impl ClientErrorKind {
    /// Every kind, in label order.
    pub const ALL: [ClientErrorKind; 4] = [
        ClientErrorKind::Framing,
        ClientErrorKind::IncompleteBody,
        ClientErrorKind::Abandoned,
        ClientErrorKind::BodyTimeout,
    ];

    /// The `kind` label value.
    pub const fn metric_label(self) -> &'static str {
        match self {
            ClientErrorKind::Framing => "framing",
            ClientErrorKind::IncompleteBody => "incomplete_body",
            ClientErrorKind::Abandoned => "abandoned",
            ClientErrorKind::BodyTimeout => "body_timeout",
        }
    }

    const fn slot(self) -> usize {
        self as usize
    }
}

// === impl RejectReason ===

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::MissingHost,
        RejectReason::DuplicateHost,
        RejectReason::HostUserinfo,
        RejectReason::InvalidHost,
        RejectReason::InvalidTarget,
        RejectReason::UnsupportedTransferCoding,
        RejectReason::DotSegment,
        RejectReason::FieldValueWhitespace,
    ];

    /// The `reason` label value.
    pub const fn metric_label(self) -> &'static str {
        match self {
            RejectReason::MissingHost => "missing_host",
            RejectReason::DuplicateHost => "duplicate_host",
            RejectReason::HostUserinfo => "host_userinfo",
            RejectReason::InvalidHost => "invalid_host",
            RejectReason::InvalidTarget => "invalid_target",
            RejectReason::UnsupportedTransferCoding => "unsupported_transfer_coding",
            RejectReason::DotSegment => "dot_segment",
            RejectReason::FieldValueWhitespace => "field_value_whitespace",
        }
    }

    const fn slot(self) -> usize {
        self as usize
    }
}

// === impl Metrics ===

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The counters of `role` on `route`, created on first use. Called when a
    /// snapshot is applied, never per request.
    pub fn role(&self, route: &Arc<str>, role: Role) -> Arc<RoleMetrics> {
        self.series(route, SeriesRole::Role(role))
    }

    /// The counters of the backend whose `role` label is `label` (a Gateway
    /// API backend's Service name) on `route`, created on first use. Called
    /// when a snapshot is applied, never per request.
    pub fn labelled(&self, route: &Arc<str>, label: &Arc<str>) -> Arc<RoleMetrics> {
        self.series(route, SeriesRole::Backend(Arc::clone(label)))
    }

    fn series(&self, route: &Arc<str>, role: SeriesRole) -> Arc<RoleMetrics> {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            series
                .entry((Arc::clone(route), role.clone()))
                .or_insert_with(|| Arc::new(RoleMetrics::new(Arc::clone(route), role.label()))),
        )
    }

    /// Counters that are never exported: for a backend no request can reach.
    pub fn unexported(route: &Arc<str>, role: Role) -> Arc<RoleMetrics> {
        Arc::new(RoleMetrics::new(
            Arc::clone(route),
            Arc::from(role.metric_label()),
        ))
    }

    /// The counters of `role` on `route`, if any request was ever counted
    /// for them or a snapshot named them; never creates a series.
    pub fn get(&self, route: &str, role: Role) -> Option<Arc<RoleMetrics>> {
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series
            .get(&(Arc::from(route), SeriesRole::Role(role)))
            .cloned()
    }

    /// The connection counters of the listener `name`, created on first use.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(listeners.entry(name.to_owned()).or_default())
    }

    /// The health counters of the upstream `addr`, created on first use.
    /// Called when an endpoint is first named, never per request.
    pub fn endpoint(&self, addr: SocketAddr) -> Arc<EndpointMetrics> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(endpoints.entry(addr).or_default())
    }

    /// The `stableFallback` budget window and counters of `route`, created
    /// on first use. Called when a snapshot is applied, never per request.
    pub fn fallback(&self, route: &Arc<str>) -> Arc<FallbackCounters> {
        let mut fallbacks = self
            .fallbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(fallbacks.entry(Arc::clone(route)).or_default())
    }

    /// Every route's `stableFallback` counters, by route name.
    fn fallbacks_by_route(&self) -> Vec<(Arc<str>, Arc<FallbackCounters>)> {
        let map = self
            .fallbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .map(|(route, c)| (Arc::clone(route), Arc::clone(c)))
            .collect()
    }

    /// Every series, in (route, role) order.
    pub fn all(&self) -> Vec<Arc<RoleMetrics>> {
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series.values().cloned().collect()
    }

    /// Counts one request head refused before routing.
    pub fn record_rejected(&self, reason: RejectReason) {
        self.rejected[reason.slot()].fetch_add(1, Relaxed);
    }

    /// Request heads refused with `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.slot()].load(Relaxed)
    }

    /// The counters of every listener a serve loop or a connection still
    /// uses, by name. A listener a reload removed leaves the exposition
    /// once its last connection has closed; its counters are kept, for
    /// the name's return.
    fn listeners_by_name(&self) -> Vec<(String, Arc<ListenerMetrics>)> {
        let map = self
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .filter(|(_, m)| Arc::strong_count(m) > 1)
            .map(|(name, m)| (name.clone(), Arc::clone(m)))
            .collect()
    }

    /// Every upstream address's health counters, by address.
    fn endpoints_by_address(&self) -> Vec<(SocketAddr, Arc<EndpointMetrics>)> {
        let map = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(addr, m)| (*addr, Arc::clone(m))).collect()
    }
}

// === impl SeriesRole ===

impl SeriesRole {
    /// The `role` label.
    fn label(&self) -> Arc<str> {
        match self {
            SeriesRole::Role(role) => Arc::from(role.metric_label()),
            SeriesRole::Backend(name) => Arc::clone(name),
        }
    }
}

// === impl RoleMetrics ===

impl RoleMetrics {
    fn new(route: Arc<str>, role: Arc<str>) -> RoleMetrics {
        RoleMetrics {
            route,
            role,
            by_code: (0..CODE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            duration_sum_micros: AtomicU64::new(0),
            upstream_errors: Default::default(),
            failed_bodies: AtomicU64::new(0),
            client_errors: Default::default(),
            weirs_own: AtomicU64::new(0),
            grpc_by_status: Default::default(),
            grpc_errors: AtomicU64::new(0),
            grpc_by_http: std::sync::OnceLock::new(),
            grpc_http_errors: AtomicU64::new(0),
            unsent: UnsentCounts {
                requests: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                latency: std::array::from_fn(|_| AtomicU64::new(0)),
            },
        }
    }

    /// Counts one answered request with its status code and latency.
    pub fn record(&self, code: u16, elapsed: Duration) {
        self.count_code(code);
        self.record_latency(elapsed);
    }

    /// Counts one gRPC call answered with HTTP 200 and the gRPC `status`
    /// (0 to 16; anything else counts as UNKNOWN), an error of the role when
    /// `is_error`.
    pub fn record_grpc(&self, status: u8, is_error: bool, elapsed: Duration) {
        // The call first, so a sample never sees more errors than calls.
        self.grpc_by_status[grpc_slot(status)].fetch_add(1, Relaxed);
        if is_error {
            self.grpc_errors.fetch_add(1, Relaxed);
        }
        self.record_latency(elapsed);
    }

    /// Counts one gRPC call answered with HTTP `code`, not 200 (exported
    /// with `code` and the status a gRPC client reads from it). It is an
    /// error of the role as an HTTP request with that code is (a 5xx), or
    /// when its body `broke`: the status read from the code names it, but
    /// a 4xx stays the client's.
    pub fn record_grpc_http(&self, code: u16, broke: bool, elapsed: Duration) {
        // The call first, so a sample never sees more errors than calls.
        self.grpc_http_calls_of(code).fetch_add(1, Relaxed);
        if broke || is_error_code(usize::from(code.clamp(MIN_CODE, MAX_CODE))) {
            self.grpc_http_errors.fetch_add(1, Relaxed);
        }
        self.record_latency(elapsed);
    }

    /// Counts one request weir failed itself, out of sockets of its own,
    /// answered with HTTP `code` (or, for a gRPC call, HTTP 200 with
    /// `grpc_status`): in `weir_http_requests_total` as sent, but neither
    /// a request nor an error for the role's analysis, whose endpoints
    /// were never tried.
    pub fn record_weirs_own(&self, code: u16, grpc_status: Option<u8>) {
        // This count first, the answer (an error) after: `counts` reads
        // them the other way round, so it may miss one such error for a
        // moment but never counts it against the role.
        self.weirs_own.fetch_add(1, Relaxed);
        match grpc_status {
            Some(status) => {
                self.grpc_by_status[grpc_slot(status)].fetch_add(1, Relaxed);
                self.grpc_errors.fetch_add(1, Relaxed);
            }
            None => self.count_code(code),
        }
    }

    /// Counts one gRPC call its client left before any answer: `code="499"`
    /// with `grpc_code="CANCELLED"` (see [`crate::grpc::status_of_http`]),
    /// the client's doing as [`RoleMetrics::record_client_error`] counts
    /// it, the time it waited kept in the latency.
    pub fn record_grpc_abandoned(&self, elapsed: Duration) {
        // The call first: `counts` never sees more client errors than calls.
        self.grpc_http_calls_of(499).fetch_add(1, Relaxed);
        self.client_errors[ClientErrorKind::Abandoned.slot()].fetch_add(1, Relaxed);
        self.record_latency(elapsed);
    }

    /// The count of gRPC calls answered with HTTP `code`.
    fn grpc_http_calls_of(&self, code: u16) -> &AtomicU64 {
        let by_code = self
            .grpc_by_http
            .get_or_init(|| (0..CODE_SLOTS).map(|_| AtomicU64::new(0)).collect());
        &by_code[usize::from(code.clamp(MIN_CODE, MAX_CODE) - MIN_CODE)]
    }

    /// Every HTTP code other than 200 that answered gRPC calls, with its
    /// count, in code order.
    pub fn grpc_http_codes_counted(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (MIN_CODE..=MAX_CODE)
            .zip(self.grpc_by_http.get().into_iter().flat_map(|c| c.iter()))
            .map(|(code, count)| (code, count.load(Relaxed)))
            .filter(|&(_, count)| count > 0)
    }

    /// Counts one attempt of this role whose answer, `code`, was never sent
    /// downstream because another role answered the request instead (a
    /// failed canary attempt that `stableFallback` retried on stable): a
    /// request of the role for the analysis, an error when `code` is one,
    /// with its latency. It is not in `weir_http_requests_total` nor the
    /// duration histogram: those count what the client got, and the
    /// request is counted there once, by the role that answered it.
    pub fn record_unsent(&self, code: u16, elapsed: Duration) {
        self.count_unsent(is_error_code(usize::from(code)), elapsed);
    }

    /// [`RoleMetrics::record_unsent`] for a gRPC call whose unsent answer
    /// carried a status the route counts as an error when `is_error`.
    pub fn record_grpc_unsent(&self, is_error: bool, elapsed: Duration) {
        self.count_unsent(is_error, elapsed);
    }

    fn count_unsent(&self, is_error: bool, elapsed: Duration) {
        // The request first, so a sample never sees more errors than requests.
        self.unsent.requests.fetch_add(1, Relaxed);
        if is_error {
            self.unsent.errors.fetch_add(1, Relaxed);
        }
        let (slot, _) = latency_slot(elapsed);
        self.unsent.latency[slot].fetch_add(1, Relaxed);
    }

    /// Attempts counted with [`RoleMetrics::record_unsent`] so far.
    pub fn unsent(&self) -> u64 {
        self.unsent.requests.load(Relaxed)
    }

    /// gRPC calls answered with HTTP 200 and `status` so far.
    pub fn grpc_calls_with_status(&self, status: u8) -> u64 {
        self.grpc_by_status
            .get(usize::from(status))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Every gRPC status answered at least once, with its count, in code order.
    pub fn grpc_statuses_counted(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        (0u8..)
            .zip(self.grpc_by_status.iter())
            .map(|(status, count)| (status, count.load(Relaxed)))
            .filter(|&(_, count)| count > 0)
    }

    /// Counts one request that failed through the client's fault, answered
    /// (or recorded) with `code`. Only an abandoned request keeps its
    /// latency: the time a client waited for a hanging upstream is the
    /// upstream's, while a broken body says nothing about the upstream.
    pub fn record_client_error(&self, kind: ClientErrorKind, code: u16, elapsed: Duration) {
        // The code first: `counts` reads the client errors first, so it
        // never sees more of them than of codes.
        self.count_code(code);
        self.client_errors[kind.slot()].fetch_add(1, Relaxed);
        if kind == ClientErrorKind::Abandoned {
            self.record_latency(elapsed);
        }
    }

    /// Counts one gRPC call that failed through the client's fault, answered
    /// HTTP 200 with `status`: counted with that status, never as an error
    /// of the role (nor as a request in the analysis).
    pub fn record_grpc_client_error(&self, kind: ClientErrorKind, status: u8) {
        // The call first: `counts` never sees more client errors than calls.
        self.grpc_by_status[grpc_slot(status)].fetch_add(1, Relaxed);
        self.client_errors[kind.slot()].fetch_add(1, Relaxed);
    }

    /// Requests that failed with `kind` through the client's fault so far.
    pub fn client_errors(&self, kind: ClientErrorKind) -> u64 {
        self.client_errors[kind.slot()].load(Relaxed)
    }

    fn count_code(&self, code: u16) {
        // hyper sends only 100..=999; clamp defensively.
        let slot = usize::from(code.clamp(MIN_CODE, MAX_CODE) - MIN_CODE);
        self.by_code[slot].fetch_add(1, Relaxed);
    }

    fn record_latency(&self, elapsed: Duration) {
        let (slot, micros) = latency_slot(elapsed);
        self.latency[slot].fetch_add(1, Relaxed);
        self.duration_sum_micros.fetch_add(micros, Relaxed);
    }

    /// Counts a response body that broke or stalled after its head was sent
    /// with `code`: an error of the role for the analysis, unless the code
    /// already counts as one.
    pub fn record_failed_body(&self, code: u16) {
        if !is_error_code(usize::from(code)) {
            self.failed_bodies.fetch_add(1, Relaxed);
        }
    }

    /// Counts one failed upstream exchange.
    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind.slot()].fetch_add(1, Relaxed);
    }

    /// Requests answered with `code` so far.
    pub fn requests_with_code(&self, code: u16) -> u64 {
        if !(MIN_CODE..=MAX_CODE).contains(&code) {
            return 0;
        }
        self.by_code[usize::from(code - MIN_CODE)].load(Relaxed)
    }

    /// Every status code answered at least once, with its count, in code order.
    pub fn codes_counted(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (MIN_CODE..=MAX_CODE)
            .zip(self.by_code.iter())
            .map(|(code, count)| (code, count.load(Relaxed)))
            .filter(|&(_, count)| count > 0)
    }

    /// Requests answered so far, every code, gRPC calls included.
    pub fn requests(&self) -> u64 {
        self.by_code.iter().map(|c| c.load(Relaxed)).sum::<u64>()
            + self
                .grpc_by_status
                .iter()
                .map(|c| c.load(Relaxed))
                .sum::<u64>()
            + self.grpc_http_calls()
    }

    /// gRPC calls answered with another HTTP code than 200 so far.
    fn grpc_http_calls(&self) -> u64 {
        self.grpc_http_codes_counted().map(|(_, count)| count).sum()
    }

    /// Upstream failures of `kind` so far.
    pub fn upstream_errors(&self, kind: UpstreamErrorKind) -> u64 {
        self.upstream_errors[kind.slot()].load(Relaxed)
    }

    /// Non-cumulative latency counts per [`LATENCY_BOUNDS_MICROS`] slot.
    pub fn latency_counts(&self) -> [u64; LATENCY_SLOTS] {
        std::array::from_fn(|slot| self.latency[slot].load(Relaxed))
    }

    /// The cumulative counts of this role, read without locks: the control
    /// loop samples these and subtracts two samples to get a window. They
    /// include the attempts whose answer was not sent (see
    /// [`RoleMetrics::record_unsent`]).
    pub fn counts(&self) -> RoleCounts {
        let client_caused: u64 = self.client_errors.iter().map(|c| c.load(Relaxed)).sum();
        // Errors before calls: each call is counted before its error.
        let mut errors = self.grpc_errors.load(Relaxed)
            + self.grpc_http_errors.load(Relaxed)
            + self.unsent.errors.load(Relaxed);
        let mut requests: u64 = self
            .grpc_by_status
            .iter()
            .map(|c| c.load(Relaxed))
            .sum::<u64>()
            + self.grpc_http_calls()
            + self.unsent.requests.load(Relaxed);
        for (slot, count) in self.by_code.iter().enumerate() {
            let count = count.load(Relaxed);
            requests += count;
            if is_error_code(usize::from(MIN_CODE) + slot) {
                errors += count;
            }
        }
        let mut latency = self.latency_counts();
        for (count, unsent) in latency.iter_mut().zip(&self.unsent.latency) {
            *count += unsent.load(Relaxed);
        }
        // Read after the answers it takes away (see `record_weirs_own`).
        let weirs_own = self.weirs_own.load(Relaxed);
        RoleCounts {
            requests: requests.saturating_sub(client_caused + weirs_own),
            errors: (errors + self.failed_bodies.load(Relaxed)).saturating_sub(weirs_own),
            latency,
        }
    }
}

/// The [`LATENCY_BOUNDS_MICROS`] slot of `elapsed`, and `elapsed` in
/// microseconds.
fn latency_slot(elapsed: Duration) -> (usize, u64) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    // Binary search over 381 bounds: nine comparisons.
    let slot = LATENCY_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
    (slot, micros)
}

/// The slot of gRPC status `status` in a role's counts; an unknown
/// status counts as `UNKNOWN`.
fn grpc_slot(status: u8) -> usize {
    if usize::from(status) < GRPC_CODES {
        usize::from(status)
    } else {
        usize::from(weir_config::grpc::GRPC_UNKNOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_bounds_rise_by_at_most_5_percent_and_hold_the_exported_ones() {
        assert_eq!(LATENCY_BOUNDS_MICROS.first(), Some(&100));
        assert_eq!(LATENCY_BOUNDS_MICROS.last(), Some(&60_000_000));
        for pair in LATENCY_BOUNDS_MICROS.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
            assert!(pair[1] * 100 <= pair[0] * 105, "{pair:?}");
        }
        for exported in EXPORTED_BUCKETS_MICROS {
            assert!(
                LATENCY_BOUNDS_MICROS.contains(&exported),
                "{exported} µs is exported"
            );
        }
        for (micros, slot_bound) in [(105_000, 105_000), (105_001, 110_000), (112_400, 115_000)] {
            let (slot, _) = latency_slot(Duration::from_micros(micros));
            assert_eq!(LATENCY_BOUNDS_MICROS[slot], slot_bound, "{micros} µs");
        }
    }

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("checkout");
        let canary = metrics.role(&route, Role::Canary);
        canary.record(200, Duration::from_micros(400));
        canary.record(200, Duration::from_millis(3));
        canary.record(502, Duration::from_secs(20));
        canary.record_upstream_error(UpstreamErrorKind::Connect);
        assert!(Arc::ptr_eq(&canary, &metrics.role(&route, Role::Canary)));

        let mut out = String::new();
        metrics.render(&mut out);
        for want in [
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"200\"} 2",
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"502\"} 1",
            "weir_http_request_duration_seconds_bucket{route=\"checkout\",role=\"canary\",le=\"0.0005\"} 1",
            "weir_http_request_duration_seconds_bucket{route=\"checkout\",role=\"canary\",le=\"0.005\"} 2",
            "weir_http_request_duration_seconds_bucket{route=\"checkout\",role=\"canary\",le=\"10\"} 2",
            "weir_http_request_duration_seconds_bucket{route=\"checkout\",role=\"canary\",le=\"+Inf\"} 3",
            "weir_http_request_duration_seconds_count{route=\"checkout\",role=\"canary\"} 3",
            "weir_upstream_errors_total{route=\"checkout\",role=\"canary\",kind=\"connect\"} 1",
            "weir_upstream_errors_total{route=\"checkout\",role=\"canary\",kind=\"timeout\"} 0",
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
        assert_eq!(canary.requests(), 3);
        assert_eq!(canary.requests_with_code(502), 1);
    }

    #[test]
    fn grpc_calls_are_counted_by_status_and_their_errors_reach_the_analysis() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("grpc");
        let canary = metrics.role(&route, Role::Canary);
        canary.record(200, Duration::from_millis(1));
        canary.record_grpc(0, false, Duration::from_millis(1));
        canary.record_grpc(14, true, Duration::from_millis(1));
        canary.record_grpc(14, true, Duration::from_millis(1));
        canary.record_grpc(5, false, Duration::from_millis(1));
        // A status past 16 is UNKNOWN.
        canary.record_grpc(99, true, Duration::from_millis(1));

        let counts = canary.counts();
        assert_eq!((counts.requests, counts.errors), (6, 3));
        assert_eq!(canary.requests(), 6);
        assert_eq!(canary.grpc_calls_with_status(2), 1);

        let mut out = String::new();
        metrics.render(&mut out);
        for want in [
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"200\"} 1",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"200\",grpc_code=\"OK\"} 1",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"200\",grpc_code=\"UNAVAILABLE\"} 2",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"200\",grpc_code=\"NOT_FOUND\"} 1",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"200\",grpc_code=\"UNKNOWN\"} 1",
            "weir_upstream_errors_total{route=\"grpc\",role=\"canary\",kind=\"protocol\"} 0",
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
    }

    /// SPEC 16: every gRPC call carries `grpc_code`, also one answered with
    /// another HTTP code than 200: the status a gRPC client reads from it.
    #[test]
    fn grpc_calls_answered_with_another_code_carry_the_status_read_from_it() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("grpc");
        let canary = metrics.role(&route, Role::Canary);
        canary.record_grpc_http(503, true, Duration::from_millis(1));
        canary.record_grpc_http(404, false, Duration::from_millis(1));
        canary.record_grpc_http(404, false, Duration::from_millis(1));
        canary.record(503, Duration::from_millis(1));

        let counts = canary.counts();
        assert_eq!((counts.requests, counts.errors), (4, 2));
        assert_eq!(canary.requests(), 4);
        assert_eq!(
            canary.requests_with_code(503),
            1,
            "the call is not an HTTP request"
        );

        let mut out = String::new();
        metrics.render(&mut out);
        for want in [
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"503\"} 1",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"503\",grpc_code=\"UNAVAILABLE\"} 1",
            "weir_http_requests_total{route=\"grpc\",role=\"canary\",code=\"404\",grpc_code=\"UNIMPLEMENTED\"} 2",
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
    }

    #[test]
    fn upstream_errors_are_pre_initialised_with_exactly_the_three_kinds() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("checkout");
        metrics.role(&route, Role::Stable);
        metrics.role(&route, Role::Canary);
        let mut out = String::new();
        metrics.render(&mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("weir_upstream_errors_total{"))
            .collect();
        // In label-value order.
        let mut want = Vec::new();
        for role in ["canary", "stable"] {
            for kind in ["connect", "protocol", "timeout"] {
                want.push(format!(
                    "weir_upstream_errors_total{{route=\"checkout\",role=\"{role}\",kind=\"{kind}\"}} 0"
                ));
            }
        }
        assert_eq!(series, want, "{out}");
    }

    #[test]
    fn listener_names_are_escaped_in_labels() {
        let metrics = Metrics::new();
        let listener = metrics.listener("a \"quoted\" \\ name");
        listener.refused.fetch_add(2, Relaxed);
        let mut out = String::new();
        metrics.render(&mut out);
        let want = "weir_connections_refused_total{listener=\"a \\\"quoted\\\" \\\\ name\"} 2";
        assert!(out.contains(want), "missing {want} in\n{out}");
        // Once no serve loop nor connection holds it, it is not shown.
        drop(listener);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(!out.contains("quoted"), "{out}");
    }

    #[test]
    fn weirs_own_failures_are_sent_but_stay_out_of_the_analysis_counts() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("checkout");
        let canary = metrics.role(&route, Role::Canary);
        canary.record(200, Duration::from_millis(1));
        canary.record(502, Duration::from_millis(1));
        canary.record_weirs_own(503, None);
        canary.record_weirs_own(503, Some(crate::grpc::UNAVAILABLE));
        canary.record_grpc_abandoned(Duration::from_millis(1));

        let counts = canary.counts();
        assert_eq!((counts.requests, counts.errors), (2, 1));
        let mut out = String::new();
        metrics.render(&mut out);
        for want in [
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"503\"} 1",
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"200\",grpc_code=\"UNAVAILABLE\"} 1",
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"499\",grpc_code=\"CANCELLED\"} 1",
            "weir_client_errors_total{route=\"checkout\",role=\"canary\",kind=\"abandoned\"} 1",
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
    }

    #[test]
    fn client_errors_stay_out_of_the_analysis_counts() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("checkout");
        let canary = metrics.role(&route, Role::Canary);
        canary.record(200, Duration::from_millis(1));
        canary.record(503, Duration::from_millis(1));
        canary.record_client_error(ClientErrorKind::Framing, 400, Duration::from_millis(1));
        canary.record_client_error(ClientErrorKind::Abandoned, 499, Duration::from_secs(20));

        let counts = canary.counts();
        assert_eq!((counts.requests, counts.errors), (2, 1));
        // The abandoned request's wait stays in the latency; the broken body does not.
        assert_eq!(counts.latency.iter().sum::<u64>(), 3);
        assert_eq!(canary.requests(), 4);

        metrics.record_rejected(RejectReason::DuplicateHost);
        let mut out = String::new();
        metrics.render(&mut out);
        for want in [
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"400\"} 1",
            "weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"499\"} 1",
            "weir_client_errors_total{route=\"checkout\",role=\"canary\",kind=\"framing\"} 1",
            "weir_client_errors_total{route=\"checkout\",role=\"canary\",kind=\"abandoned\"} 1",
            "weir_rejected_requests_total{reason=\"duplicate_host\"} 1",
            "weir_rejected_requests_total{reason=\"missing_host\"} 0",
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
    }

    #[test]
    fn unsent_attempts_count_for_the_analysis_only() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("checkout");
        let canary = metrics.role(&route, Role::Canary);
        canary.record(200, Duration::from_millis(1));
        canary.record_unsent(502, Duration::from_millis(2));
        canary.record_unsent(503, Duration::from_secs(20));
        canary.record_grpc_unsent(true, Duration::from_millis(1));
        canary.record_grpc_unsent(false, Duration::from_millis(1));

        let counts = canary.counts();
        assert_eq!((counts.requests, counts.errors), (5, 3));
        assert_eq!(counts.latency.iter().sum::<u64>(), 5);
        assert_eq!(counts.latency[LATENCY_SLOTS - 1], 0);
        assert_eq!(
            counts.latency[LATENCY_BOUNDS_MICROS.partition_point(|&b| b < 20_000_000)],
            1
        );
        assert_eq!(canary.unsent(), 4);
        // Exported: the one answer sent, and nothing else.
        assert_eq!(canary.requests(), 1);
        assert_eq!(canary.latency_counts().iter().sum::<u64>(), 1);
        let mut out = String::new();
        metrics.render(&mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("weir_http_requests_total{"))
            .collect();
        assert_eq!(
            series,
            ["weir_http_requests_total{route=\"checkout\",role=\"canary\",code=\"200\"} 1"],
            "{out}"
        );
        assert!(
            out.contains(
                "weir_http_request_duration_seconds_count{route=\"checkout\",role=\"canary\"} 1"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_registry_gathers_every_proxy_family_with_its_type() {
        let metrics = Arc::new(Metrics::new());
        let route: Arc<str> = Arc::from("web");
        metrics
            .role(&route, Role::Stable)
            .record(200, Duration::from_millis(2));
        // Held as a serve loop holds it: a listener no one uses is not shown.
        let _listener = metrics.listener("public");
        metrics.endpoint(SocketAddr::from(([127, 0, 0, 1], 9001)));
        metrics.fallback(&route);
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(ProxyCollector::new(Arc::clone(&metrics)).unwrap()))
            .unwrap();

        let families = registry.gather();
        let mut got: Vec<(String, prometheus::proto::MetricType)> = families
            .iter()
            .map(|f| (f.name().to_owned(), f.get_field_type()))
            .collect();
        let mut want: Vec<(String, prometheus::proto::MetricType)> = exposition::PROXY_FAMILIES
            .iter()
            .map(|f| (f.name.to_owned(), f.kind))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);

        // A second collector of the same families is refused by name.
        assert!(
            registry
                .register(Box::new(ProxyCollector::new(metrics).unwrap()))
                .is_err()
        );
    }

    #[test]
    fn the_duration_histogram_keeps_its_exported_buckets_byte_for_byte() {
        let metrics = Metrics::new();
        let route: Arc<str> = Arc::from("web");
        let stable = metrics.role(&route, Role::Stable);
        stable.record(200, Duration::from_micros(400));
        stable.record(200, Duration::from_micros(2_400));
        stable.record(200, Duration::from_secs(11));
        let mut out = String::new();
        metrics.render(&mut out);
        let start = out
            .find("# HELP weir_http_request_duration_seconds ")
            .unwrap();
        let end = out[start..]
            .find("# HELP weir_upstream_errors_total")
            .unwrap()
            + start;
        let labels = "route=\"web\",role=\"stable\"";
        let mut want = String::from(
            "# HELP weir_http_request_duration_seconds Time from request head to the end of the response body, by route and role.\n\
             # TYPE weir_http_request_duration_seconds histogram\n",
        );
        for (le, count) in [
            ("0.0005", 1),
            ("0.001", 1),
            ("0.0025", 2),
            ("0.005", 2),
            ("0.01", 2),
            ("0.025", 2),
            ("0.05", 2),
            ("0.1", 2),
            ("0.25", 2),
            ("0.5", 2),
            ("1", 2),
            ("2.5", 2),
            ("5", 2),
            ("10", 2),
            ("+Inf", 3),
        ] {
            want.push_str(&format!(
                "weir_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n"
            ));
        }
        want.push_str(&format!(
            "weir_http_request_duration_seconds_sum{{{labels}}} 11.0028\n\
             weir_http_request_duration_seconds_count{{{labels}}} 3\n"
        ));
        assert_eq!(&out[start..end], want);
    }
}
