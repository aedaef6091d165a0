//! `stableFallback`: a canary request that failed before any response byte
//! reached the client is sent once to stable, when that is safe and the
//! route's retry budget allows.
//!
//! - **Which requests.** Only canary requests of a route with
//!   `stableFallback`, whose method is listed, that ask for no protocol
//!   upgrade, and whose body was read whole within `maxBodyBytes` before the
//!   canary attempt (no body, a `Content-Length` within the limit, or a
//!   chunked body that ended within it). Nothing is kept in memory for any
//!   other request.
//! - **Which failures.** The canary attempt gave no response (connect error,
//!   reset, a broken exchange, timeout: weir's own 502, 503 and 504) or the
//!   canary answered 502, 503 or 504. Such an answer has not been sent
//!   downstream yet. A failure the client caused (a broken request body) is
//!   never retried.
//! - **How it counts.** A retried request is counted once in
//!   `weir_http_requests_total` and the duration histogram: as stable's
//!   answer, the one its client got. The failed canary attempt, never
//!   sent, still counts for the canary's analysis as a request and an
//!   error with its latency ([`crate::metrics::RoleMetrics::record_unsent`]),
//!   so a failing canary is aborted even when every failure is retried;
//!   stable's answer counts for stable's analysis too (it is one).
//! - **The budget.** Retries may not exceed `budget` times the route's
//!   requests (both roles) over the last 10 s, counted in ten one-second
//!   buckets of atomics ([`RetryWindow`]): a broken canary cannot add more
//!   than that share of load to stable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::{HeaderMap, Method, StatusCode, header};
use weir_config::StableFallback;

use crate::error::ProxyError;
use crate::upstream::clock_ms;

/// Seconds covered by the retry budget's window.
pub const WINDOW_SECONDS: u64 = 10;

/// A route's `stableFallback`, made ready to serve.
#[derive(Debug)]
pub struct FallbackPolicy {
    /// Methods that may be retried.
    pub methods: Box<[Method]>,
    /// Largest request body kept for a retry, in bytes.
    pub max_body_bytes: u64,
    /// Retries allowed per request of the route over the window.
    pub budget: f64,
    /// The route's window and counters (kept across snapshots).
    pub counters: Arc<FallbackCounters>,
}

/// A route's retry budget window and its counters, shared by every snapshot
/// that names the route.
#[derive(Debug, Default)]
pub struct FallbackCounters {
    /// Requests and retries over the last [`WINDOW_SECONDS`].
    pub window: RetryWindow,
    /// Failed canary requests sent to stable (`weir_stable_fallback_total`).
    pub retried: AtomicU64,
    /// Failed canary requests that could have been retried but the budget
    /// was spent (`weir_stable_fallback_denied_total`).
    pub denied: AtomicU64,
}

/// Requests and retries per second over the last [`WINDOW_SECONDS`]
/// seconds. Each slot is one atomic holding the second it counts (high 32
/// bits) and its count (low 32 bits), so moving a slot on to a new second
/// and counting in it is one compare-and-swap: no lock, no allocation.
#[derive(Debug, Default)]
pub struct RetryWindow {
    requests: [AtomicU64; WINDOW_SECONDS as usize],
    retries: [AtomicU64; WINDOW_SECONDS as usize],
}

/// Why a canary attempt's outcome may be retried on stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No response: weir answers 502, 503 or 504 itself.
    NoResponse,
    /// The canary answered 502, 503 or 504.
    Status(StatusCode),
}

// === impl FallbackPolicy ===

impl FallbackPolicy {
    /// The served form of `config`, counting in `counters`.
    pub fn new(config: &StableFallback, counters: Arc<FallbackCounters>) -> FallbackPolicy {
        FallbackPolicy {
            methods: config
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            max_body_bytes: config.max_body_bytes,
            budget: config.budget,
            counters,
        }
    }

    /// Whether a request with this head may be kept for a retry: its method
    /// is listed, it asks for no upgrade, and its declared length (if any)
    /// is within the limit. Its body must still end within the limit.
    pub fn may_keep(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.methods.contains(method)
            && !headers.contains_key(header::UPGRADE)
            && declared_length(headers).is_none_or(|n| n <= self.max_body_bytes)
    }

    /// Counts one request of the route in the budget's window.
    pub fn record_request(&self) {
        self.counters.window.record_request(now_seconds());
    }

    /// Takes one retry from the budget if it allows one, counting it in
    /// `weir_stable_fallback_total`; otherwise counts a denial.
    pub fn try_retry(&self) -> bool {
        let allowed = self.counters.window.try_retry(now_seconds(), self.budget);
        let counter = if allowed {
            &self.counters.retried
        } else {
            &self.counters.denied
        };
        counter.fetch_add(1, Relaxed);
        allowed
    }
}

// === impl RetryWindow ===

impl RetryWindow {
    /// Counts one request in second `now`.
    pub fn record_request(&self, now: u64) {
        bump(&self.requests, now);
    }

    /// Requests and retries counted over the window ending at second `now`.
    pub fn totals(&self, now: u64) -> (u64, u64) {
        (sum(&self.requests, now), sum(&self.retries, now))
    }

    /// Counts one retry in second `now` when the retries of the window, this
    /// one included, stay within `budget` times its requests; returns
    /// whether it did. Concurrent callers may overshoot by the number of
    /// retries decided at the same instant (check and count are two steps).
    pub fn try_retry(&self, now: u64, budget: f64) -> bool {
        let (requests, retries) = self.totals(now);
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let allowed = (retries + 1) as f64 <= budget * requests as f64;
        if allowed {
            bump(&self.retries, now);
        }
        allowed
    }
}

/// Adds one to the slot of second `now`, starting it afresh if it still
/// counts an older second.
fn bump(slots: &[AtomicU64; WINDOW_SECONDS as usize], now: u64) {
    let slot = &slots[(now % WINDOW_SECONDS) as usize];
    let stamp = now & u64::from(u32::MAX);
    let mut current = slot.load(Relaxed);
    loop {
        let next = if current >> 32 == stamp {
            // The count saturates rather than carrying into the stamp.
            current + u64::from(current & u64::from(u32::MAX) < u64::from(u32::MAX))
        } else {
            (stamp << 32) | 1
        };
        match slot.compare_exchange_weak(current, next, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// The counts of the slots whose second is within the window ending at `now`.
fn sum(slots: &[AtomicU64; WINDOW_SECONDS as usize], now: u64) -> u64 {
    let oldest = now.saturating_sub(WINDOW_SECONDS - 1) & u64::from(u32::MAX);
    let newest = now & u64::from(u32::MAX);
    slots
        .iter()
        .map(|slot| slot.load(Relaxed))
        .filter(|v| (oldest..=newest).contains(&(v >> 32)))
        .map(|v| v & u64::from(u32::MAX))
        .sum()
}

/// The budget's clock: whole seconds since the process's first request.
fn now_seconds() -> u64 {
    clock_ms() / 1000
}

/// The `Content-Length` of a request head; `None` without one (or with one
/// that does not parse, which hyper has refused before this point).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

// === the decision ===

/// Whether the outcome of a canary attempt is a failure stable may answer
/// instead: no response at all (but not a failure the client caused), or
/// a 502, 503 or 504 from the canary, not yet sent downstream.
pub fn retryable_failure<T>(outcome: &Result<http::Response<T>, ProxyError>) -> Option<Failure> {
    match outcome {
        Ok(response) => {
            is_gateway_failure(response.status()).then(|| Failure::Status(response.status()))
        }
        // Nor weir's own shortage of sockets, which stable would meet too.
        Err(error) if error.client_error_kind().is_none() && !error.is_weirs_own() => {
            Some(Failure::NoResponse)
        }
        Err(_) => None,
    }
}

/// 502, 503 and 504: the answers of a gateway whose upstream failed.
pub fn is_gateway_failure(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests;
