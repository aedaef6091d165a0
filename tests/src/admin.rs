//! A client for weir's admin API (`/api/v1/...`), with or without a bearer
//! token.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};

use crate::client::{Conn, Error, Response, empty};

/// The admin API at one address, sending one token (or none).
#[derive(Debug, Clone)]
pub struct Admin {
    /// Where the admin API listens.
    pub addr: SocketAddr,
    token: Option<String>,
}

// === impl Admin ===

impl Admin {
    /// A client for `addr`; `token` goes in `Authorization: Bearer`.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self {
            addr,
            token: token.map(str::to_owned),
        }
    }

    /// `GET path` on a fresh connection.
    ///
    /// # Errors
    /// When the exchange fails.
    pub async fn get(&self, path: &str) -> Result<Response, Error> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON (no body when `None`).
    ///
    /// # Errors
    /// When the exchange fails.
    pub async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, Error> {
        self.request(Method::POST, path, body).await
    }

    /// Any request on a fresh connection.
    ///
    /// # Errors
    /// When the exchange fails.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, Error> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(json) => builder.header(CONTENT_TYPE, "application/json").body(
                Full::new(Bytes::from(json.to_string()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )?,
            None => builder.body(empty())?,
        };
        Conn::open(self.addr).await?.send(request).await
    }
}

/// Milliseconds since the UNIX epoch now (the clock weir's deadlines use).
pub fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}

/// `status.phase`, or `""` when absent.
pub fn phase(status: &serde_json::Value) -> &str {
    status["phase"].as_str().unwrap_or_default()
}

/// `status.stepIndex`; `None` when null or absent.
pub fn step_index(status: &serde_json::Value) -> Option<u64> {
    status["stepIndex"].as_u64()
}

/// `status.canaryWeight` as a number.
///
/// # Panics
/// When it is not a number.
pub fn canary_weight(status: &serde_json::Value) -> f64 {
    status["canaryWeight"]
        .as_f64()
        .unwrap_or_else(|| panic!("canaryWeight is not a number in {status:#}"))
}

/// The rollout gauges of `route` in `metrics`: (the phase whose
/// `weir_rollout_phase` is 1, `weir_rollout_step`, `weir_canary_weight`).
/// Checks that all five phases are exported and exactly one is 1.
///
/// # Panics
/// When a phase is missing or not exactly one is 1.
pub fn rollout_gauges(metrics: &crate::Metrics, route: &str) -> (String, Option<f64>, Option<f64>) {
    let mut current = Vec::new();
    for p in PHASES {
        let v = metrics
            .get("weir_rollout_phase", &[("route", route), ("phase", p)])
            .unwrap_or_else(|| {
                panic!("weir_rollout_phase{{route=\"{route}\",phase=\"{p}\"}} is missing")
            });
        assert!(
            v == 0.0 || v == 1.0,
            "weir_rollout_phase{{route=\"{route}\",phase=\"{p}\"}} = {v}"
        );
        if v == 1.0 {
            current.push(p);
        }
    }
    assert_eq!(
        current.len(),
        1,
        "weir_rollout_phase{{route=\"{route}\"}} is 1 for {current:?}"
    );
    (
        current[0].to_owned(),
        metrics.get("weir_rollout_step", &[("route", route)]),
        metrics.get("weir_canary_weight", &[("route", route)]),
    )
}

/// The five rollout phases.
pub const PHASES: [&str; 5] = ["Healthy", "Progressing", "Paused", "Aborted", "Promoted"];
