//! Support code for weir's end-to-end tests. The tests start the real `weir`
//! and `weir-loadtest` binaries from the cargo target directory on
//! 127.0.0.1 ports, talk to them over real sockets and read `/metrics`.
//!
//! Everything here is bounded in time: waiting is deadline-bounded polling
//! ([`wait_until`]) or an awaited event under [`within`], never a bare sleep
//! used as synchronisation. Processes are killed when their handle drops, and
//! a failing test prints weir's log.
//!
//! `cargo test` does not build other packages' binaries; [`binary`] runs
//! `cargo build -p weir-control -p weir-loadtest` once per test process
//! before handing out a path (skip with `WEIR_E2E_SKIP_BUILD=1`).

mod admin;
mod binaries;
mod browser;
mod client;
mod cluster;
mod config;
mod curl;
mod forwarding_path;
pub mod grpc;
mod held_port;
mod hook_receiver;
mod kube_api;
mod load;
mod metrics;
mod process;
mod prometheus;
mod raw;
mod recording_upstream;
mod stats;
mod upstream;
mod wait;
mod weir;

pub use admin::{Admin, PHASES, canary_weight, phase, rollout_gauges, step_index, unix_ms};
pub use binaries::{binary, target_debug_dir, workspace_root};
pub use browser::{Browser, CHROMEDRIVER, CHROMIUM, WebDriverError};
pub use client::{
    ANSWER_LIMIT, Body, Conn, CookieJar, Counts, Error, Response, count, empty, get, get_json,
    raw_exchange, send_many,
};
pub use cluster::{
    ANALYSIS_TEMPLATES, CANARY_ROUTES, Cluster, ENDPOINT_SLICES, EVENTS, EndpointState,
    GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, LEASE, LEASES, PEERS, SERVICE_NAME_LABEL,
    SERVICE_PORT_NAME, SERVICES, WEIR_NAMESPACE, replica_name,
};
pub use config::{Route, Step, Strategy, WeirConfig};
pub use curl::curl;
pub use forwarding_path::ForwardingPath;
pub use held_port::{ClosedPort, ReservedPort};
pub use hook_receiver::{Answer, HookReceiver, Received as HookRequest};
pub use kube_api::{KubeApi, Recorded};
pub use load::{FAILED, Load};
pub use metrics::{Metrics, Sample, promtool_check};
pub use process::{Stopped, run_within, send_then_reset_while_stopped, shown};
pub use prometheus::{PROMETHEUS_BINARY, Prometheus};
pub use raw::{RawResponse, RawUpstream, Received, raw_request, read_through_head};
pub use recording_upstream::{
    ConnectionRecord, Framing, RecordingUpstream, Reply, UpstreamRequest,
};
pub use stats::{BinomialBounds, TAIL, binomial_bounds};
pub use upstream::{FakeUpstream, LARGE_BODY, LargeBodyUpstream, LoadtestUpstream};
pub use wait::{wait_until, within};
pub use weir::{Addrs, RELOAD_LIMIT, Weir, weir_command};

/// The response header fake upstreams name themselves in.
pub const UPSTREAM_HEADER: &str = "x-upstream-name";
