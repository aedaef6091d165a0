//! weir's shared vocabulary: the `weir.yaml` schema, its validation with
//! precise locations, and the immutable routing [`Snapshot`] the proxy serves.
//!
//! This crate does no I/O: it parses from `&str`, takes the environment and
//! name resolution as arguments, and never reads clocks or files. Checks that
//! need the outside world (TLS files, DNS) are made by the caller and reported
//! through the same [`Diagnostics`].

pub mod condition;
pub mod duration;
pub mod grpc;
pub mod handoff;
pub mod hooks;
pub mod location;
pub mod model;
pub mod path;
pub mod schema;
pub mod snapshot;
pub mod status;
pub mod validate;
pub mod weight;

pub use grpc::{GRPC_CODE_NAMES, GRPC_CODES, GrpcCodeSet};
pub use handoff::{Publisher, Reader, channel};
pub use hooks::{Notification, Trigger, Webhook, WebhookKind, Webhooks};
pub use location::{Location, LocationIndex};
pub use model::{
    Admin, Analysis, AnalysisRef, BlueGreen, Config, EndpointAddr, HeaderOverride, JsonPath,
    Kubernetes, KubernetesRole, Listener, Metric, PortRef, Preview, PrometheusQuery, Provider,
    Route, ServiceRef, StableFallback, Step, Stickiness, Strategy, Timeouts, TlsFiles, Upstream,
    UpstreamProtocol, UpstreamTls, WebRequest,
};
pub use snapshot::{
    Backend, GatewayRule, HeaderEdits, HostMatch, PreviewSnapshot, RouteOverride, RouteSnapshot,
    Snapshot, Split, WeightedBackend, cohort_seed,
};
pub use validate::{
    ClusterRouteSpec, Diagnostic, Diagnostics, Document, MachineCheck, NamespaceTemplates,
    SpecProblem, is_token_byte, machine_checks, parse, parse_with_kubernetes,
    validate_analysis_template, validate_canary_route, validate_canary_route_in,
};
pub use weight::Weight;
