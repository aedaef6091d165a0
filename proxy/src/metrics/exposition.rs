//! The Prometheus exposition of weir's counters through the `prometheus`
//! crate: a [`Family`] names one metric family (name, help, type, label
//! names) once, gives the [`Desc`] a registry checks at registration and
//! builds the family's samples at scrape time; [`ProxyCollector`] is the
//! `prometheus::core::Collector` of the proxy's own counters.
//!
//! Why a collector over weir's atomics rather than `IntCounterVec` and
//! `HistogramVec` handles: the request path already does exactly one atomic
//! add per counter on handles bound once per (route, role) when a snapshot is
//! applied, and the same atomics feed the rollout analysis (382 latency slots,
//! where the exported histogram has 14 buckets). Bound `prometheus` handles
//! would either add a second set of atomic adds per request, or need one
//! `IntCounter` per status code bound in advance (900 per role) to keep the
//! code label off the request path. Reading the atomics at scrape time keeps
//! the request path as it is and moves all label work to the scrape.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::{
    ClientErrorKind, EXPORTED_BUCKETS_MICROS, LATENCY_BOUNDS_MICROS, Metrics, RejectReason,
    UpstreamErrorKind,
};

/// One metric family: what a registry checks and a scrape writes.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// Label names, in the order samples give their values.
    pub labels: &'static [&'static str],
}

/// `weir_http_requests_total{route, role, code}`.
pub const HTTP_REQUESTS: Family = Family {
    name: "weir_http_requests_total",
    help: "Requests answered downstream, by route, role and status code.",
    kind: MetricType::COUNTER,
    labels: &["route", "role", "code"],
};

/// The samples of `weir_http_requests_total` for gRPC calls, which also
/// carry `grpc_code`: the same family, not registered on its own.
const HTTP_REQUESTS_GRPC: Family = Family {
    labels: &["route", "role", "code", "grpc_code"],
    ..HTTP_REQUESTS
};

/// `weir_http_request_duration_seconds{route, role}`.
pub const HTTP_REQUEST_DURATION: Family = Family {
    name: "weir_http_request_duration_seconds",
    help: "Time from request head to the end of the response body, by route and role.",
    kind: MetricType::HISTOGRAM,
    labels: &["route", "role"],
};

/// `weir_upstream_errors_total{route, role, kind}`.
pub const UPSTREAM_ERRORS: Family = Family {
    name: "weir_upstream_errors_total",
    help: "Failed upstream exchanges, by route, role and kind.",
    kind: MetricType::COUNTER,
    labels: &["route", "role", "kind"],
};

/// `weir_client_errors_total{route, role, kind}`.
pub const CLIENT_ERRORS: Family = Family {
    name: "weir_client_errors_total",
    help: "Requests that failed through the client's fault (also in weir_http_requests_total, never in the analysis), by route, role and kind.",
    kind: MetricType::COUNTER,
    labels: &["route", "role", "kind"],
};

/// `weir_rejected_requests_total{reason}`.
pub const REJECTED_REQUESTS: Family = Family {
    name: "weir_rejected_requests_total",
    help: "Request heads refused before routing (400, or 501 for a transfer coding weir does not forward), by reason; heads too large (431) and unparsable ones are not counted here.",
    kind: MetricType::COUNTER,
    labels: &["reason"],
};

/// `weir_connections_open{listener}`.
pub const CONNECTIONS_OPEN: Family = Family {
    name: "weir_connections_open",
    help: "Client connections open, by listener.",
    kind: MetricType::GAUGE,
    labels: &["listener"],
};

/// `weir_connections_refused_total{listener}`.
pub const CONNECTIONS_REFUSED: Family = Family {
    name: "weir_connections_refused_total",
    help: "Client connections closed at once because a connection limit was reached, by listener.",
    kind: MetricType::COUNTER,
    labels: &["listener"],
};

/// `weir_upstream_ejections_total{endpoint}`.
pub const UPSTREAM_EJECTIONS: Family = Family {
    name: "weir_upstream_ejections_total",
    help: "Times an upstream endpoint was ejected after consecutive failures, by endpoint address.",
    kind: MetricType::COUNTER,
    labels: &["endpoint"],
};

/// `weir_upstream_ejected{endpoint}`.
pub const UPSTREAM_EJECTED: Family = Family {
    name: "weir_upstream_ejected",
    help: "Whether an upstream endpoint is ejected now (1) or not (0), by endpoint address.",
    kind: MetricType::GAUGE,
    labels: &["endpoint"],
};

/// `weir_stable_fallback_total{route}`.
pub const STABLE_FALLBACK: Family = Family {
    name: "weir_stable_fallback_total",
    help: "Failed canary requests sent once to stable (stableFallback), by route.",
    kind: MetricType::COUNTER,
    labels: &["route"],
};

/// `weir_stable_fallback_denied_total{route}`.
pub const STABLE_FALLBACK_DENIED: Family = Family {
    name: "weir_stable_fallback_denied_total",
    help: "Failed canary requests that stableFallback would have retried but its budget was spent, by route.",
    kind: MetricType::COUNTER,
    labels: &["route"],
};

/// Every family the proxy exports (a registry writes them in name order).
pub const PROXY_FAMILIES: [Family; 11] = [
    CONNECTIONS_OPEN,
    CONNECTIONS_REFUSED,
    UPSTREAM_EJECTIONS,
    UPSTREAM_EJECTED,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    UPSTREAM_ERRORS,
    CLIENT_ERRORS,
    REJECTED_REQUESTS,
    STABLE_FALLBACK,
    STABLE_FALLBACK_DENIED,
];

/// The `prometheus` collector of the proxy's counters: reads the atomics of
/// [`Metrics`] when a registry gathers, never on the request path.
#[derive(Debug)]
pub struct ProxyCollector {
    metrics: Arc<Metrics>,
    descs: Vec<Desc>,
}

// === impl Family ===

impl Family {
    /// The descriptor a registry checks for name clashes at registration.
    ///
    /// # Errors
    /// When the name or a label name is not a valid Prometheus name.
    pub fn desc(&self) -> prometheus::Result<Desc> {
        Desc::new(
            self.name.to_owned(),
            self.help.to_owned(),
            self.labels.iter().map(|&l| l.to_owned()).collect(),
            Default::default(),
        )
    }

    /// The family with `samples`, in label-value order.
    pub fn with(&self, mut samples: Vec<proto::Metric>) -> MetricFamily {
        samples.sort_by(|a, b| {
            a.get_label()
                .iter()
                .map(proto::LabelPair::value)
                .cmp(b.get_label().iter().map(proto::LabelPair::value))
        });
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_owned());
        family.set_help(self.help.to_owned());
        family.set_field_type(self.kind);
        family.set_metric(samples);
        family
    }

    /// A counter sample with the label `values` (in [`Family::labels`] order).
    pub fn counter(&self, values: &[&str], value: u64) -> proto::Metric {
        let mut counter = proto::Counter::default();
        counter.set_value(value as f64);
        let mut sample = proto::Metric::from_label(self.label_pairs(values));
        sample.set_counter(counter);
        sample
    }

    /// A gauge sample with the label `values` (in [`Family::labels`] order).
    pub fn gauge(&self, values: &[&str], value: f64) -> proto::Metric {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        let mut sample = proto::Metric::from_label(self.label_pairs(values));
        sample.set_gauge(gauge);
        sample
    }

    /// A histogram sample with the label `values`: `buckets` are (upper
    /// bound, cumulative count) below `+Inf`, which the encoder adds with
    /// `count`.
    pub fn histogram(
        &self,
        values: &[&str],
        buckets: impl IntoIterator<Item = (f64, u64)>,
        count: u64,
        sum: f64,
    ) -> proto::Metric {
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(
            buckets
                .into_iter()
                .map(|(upper_bound, cumulative)| {
                    let mut bucket = proto::Bucket::default();
                    bucket.set_upper_bound(upper_bound);
                    bucket.set_cumulative_count(cumulative);
                    bucket
                })
                .collect(),
        );
        histogram.set_sample_count(count);
        histogram.set_sample_sum(sum);
        let mut sample = proto::Metric::from_label(self.label_pairs(values));
        sample.set_histogram(histogram);
        sample
    }

    fn label_pairs(&self, values: &[&str]) -> Vec<proto::LabelPair> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        self.labels
            .iter()
            .zip(values)
            .map(|(&name, &value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name.to_owned());
                pair.set_value(value.to_owned());
                pair
            })
            .collect()
    }
}

// === impl ProxyCollector ===

impl ProxyCollector {
    /// The collector of `metrics`, to register in a `prometheus::Registry`.
    ///
    /// # Errors
    /// When a family's descriptor is invalid.
    pub fn new(metrics: Arc<Metrics>) -> prometheus::Result<ProxyCollector> {
        let descs = PROXY_FAMILIES
            .iter()
            .map(Family::desc)
            .collect::<prometheus::Result<_>>()?;
        Ok(ProxyCollector { metrics, descs })
    }
}

impl Collector for ProxyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.metrics.families()
    }
}

// === impl Metrics ===

impl Metrics {
    /// Every proxy metric family with its current values; a family without
    /// samples is left out (the text format has nothing to say for it).
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut families = Vec::with_capacity(PROXY_FAMILIES.len());
        let mut push = |family: &Family, samples: Vec<proto::Metric>| {
            if !samples.is_empty() {
                families.push(family.with(samples));
            }
        };

        let listeners = self.listeners_by_name();
        push(
            &CONNECTIONS_OPEN,
            listeners
                .iter()
                .map(|(name, m)| CONNECTIONS_OPEN.gauge(&[name], m.open.load(Relaxed) as f64))
                .collect(),
        );
        push(
            &CONNECTIONS_REFUSED,
            listeners
                .iter()
                .map(|(name, m)| CONNECTIONS_REFUSED.counter(&[name], m.refused.load(Relaxed)))
                .collect(),
        );

        let endpoints: Vec<(String, _)> = self
            .endpoints_by_address()
            .into_iter()
            .map(|(addr, m)| (addr.to_string(), m))
            .collect();
        push(
            &UPSTREAM_EJECTIONS,
            endpoints
                .iter()
                .map(|(addr, m)| UPSTREAM_EJECTIONS.counter(&[addr], m.ejections.load(Relaxed)))
                .collect(),
        );
        push(
            &UPSTREAM_EJECTED,
            endpoints
                .iter()
                .map(|(addr, m)| UPSTREAM_EJECTED.gauge(&[addr], m.ejected.load(Relaxed) as f64))
                .collect(),
        );

        let all = self.all();
        let mut requests = Vec::new();
        let mut durations = Vec::with_capacity(all.len());
        let mut upstream_errors = Vec::with_capacity(all.len() * UpstreamErrorKind::ALL.len());
        let mut client_errors = Vec::with_capacity(all.len() * ClientErrorKind::ALL.len());
        for m in &all {
            let (route, role) = (&*m.route, &*m.role);
            for (code, count) in m.codes_counted() {
                requests.push(HTTP_REQUESTS.counter(&[route, role, &code.to_string()], count));
            }
            for (status, count) in m.grpc_statuses_counted() {
                let name = weir_config::grpc::grpc_code_name(status).unwrap_or("UNKNOWN");
                requests.push(HTTP_REQUESTS_GRPC.counter(&[route, role, "200", name], count));
            }
            for (code, count) in m.grpc_http_codes_counted() {
                let status = crate::grpc::status_of_http(code);
                let name = weir_config::grpc::grpc_code_name(status).unwrap_or("UNKNOWN");
                requests.push(
                    HTTP_REQUESTS_GRPC.counter(&[route, role, &code.to_string(), name], count),
                );
            }
            durations.push(m.duration_sample(route, role));
            for kind in UpstreamErrorKind::ALL {
                let count = m.upstream_errors[kind.slot()].load(Relaxed);
                upstream_errors
                    .push(UPSTREAM_ERRORS.counter(&[route, role, kind.metric_label()], count));
            }
            for kind in ClientErrorKind::ALL {
                client_errors.push(
                    CLIENT_ERRORS
                        .counter(&[route, role, kind.metric_label()], m.client_errors(kind)),
                );
            }
        }
        push(&HTTP_REQUESTS, requests);
        push(&HTTP_REQUEST_DURATION, durations);
        push(&UPSTREAM_ERRORS, upstream_errors);
        push(&CLIENT_ERRORS, client_errors);
        push(
            &REJECTED_REQUESTS,
            RejectReason::ALL
                .iter()
                .map(|&reason| {
                    REJECTED_REQUESTS.counter(&[reason.metric_label()], self.rejected(reason))
                })
                .collect(),
        );
        let fallbacks = self.fallbacks_by_route();
        push(
            &STABLE_FALLBACK,
            fallbacks
                .iter()
                .map(|(route, c)| STABLE_FALLBACK.counter(&[route], c.retried.load(Relaxed)))
                .collect(),
        );
        push(
            &STABLE_FALLBACK_DENIED,
            fallbacks
                .iter()
                .map(|(route, c)| STABLE_FALLBACK_DENIED.counter(&[route], c.denied.load(Relaxed)))
                .collect(),
        );
        families
    }

    /// Appends every proxy metric family in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&self.families(), out) {
            tracing::error!(%error, "proxy metrics could not be encoded");
        }
    }
}

// === impl RoleMetrics ===

impl super::RoleMetrics {
    /// The `weir_http_request_duration_seconds` sample of this role: the
    /// fine latency slots summed into the exported buckets.
    fn duration_sample(&self, route: &str, role: &str) -> proto::Metric {
        let counts = self.latency_counts();
        let mut cumulative = 0;
        let mut slot = 0;
        let buckets: Vec<(f64, u64)> = EXPORTED_BUCKETS_MICROS
            .iter()
            .map(|&bound| {
                while slot < LATENCY_BOUNDS_MICROS.len() && LATENCY_BOUNDS_MICROS[slot] <= bound {
                    cumulative += counts[slot];
                    slot += 1;
                }
                (bound as f64 / 1e6, cumulative)
            })
            .collect();
        let count = cumulative + counts[slot..].iter().sum::<u64>();
        let sum = self.duration_sum_micros.load(Relaxed) as f64 / 1e6;
        HTTP_REQUEST_DURATION.histogram(&[route, role], buckets, count, sum)
    }
}
