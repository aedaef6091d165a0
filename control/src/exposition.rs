//! `/metrics`: the process's `prometheus::Registry` and the text exposition.
//!
//! The registry holds the proxy's collector (its per-route, per-role
//! atomics, read at scrape time), the canary weights of the snapshot in
//! force, and the reload counters. The rollout families come from the
//! control state, which sits behind an async lock a collector cannot wait
//! for: they are built under that lock when `/metrics` is scraped and merged
//! with what the registry gathers before `prometheus::TextEncoder` writes the
//! page.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use weir_config::Reader;
use weir_proxy::Proxy;
use weir_proxy::metrics::exposition::PROXY_FAMILIES;
use weir_proxy::metrics::{Family, ProxyCollector};

use crate::analysis_templates::engine::ANALYSIS_MEASUREMENTS;
use crate::controller::metrics::{BLUE_GREEN_STAGE, ROLLOUT_FAMILIES};
use crate::notifications::{
    NOTIFICATIONS_DROPPED, NOTIFICATIONS_FAILED, NOTIFICATIONS_QUEUED, NOTIFICATIONS_SENT,
};
use crate::webhooks::WEBHOOK_CALLS;

use crate::process::Process;

/// `weir_canary_weight{route}`, in percent.
pub const CANARY_WEIGHT: Family = Family {
    name: "weir_canary_weight",
    help: "Share of requests sent to the canary, in percent.",
    kind: MetricType::GAUGE,
    labels: &["route"],
};

/// `weir_config_reloads_total{result}`.
pub const CONFIG_RELOADS: Family = Family {
    name: "weir_config_reloads_total",
    help: "Config reloads after the initial load, by result.",
    kind: MetricType::COUNTER,
    labels: &["result"],
};

/// `weir_tls_certificate_expiry_timestamp_seconds{listener}`: when the
/// certificate a TLS listener serves expires, to alert on before it does.
pub const CERTIFICATE_EXPIRY: Family = Family {
    name: "weir_tls_certificate_expiry_timestamp_seconds",
    help: "When the certificate a TLS listener serves expires (its notAfter), in seconds since the UNIX epoch.",
    kind: MetricType::GAUGE,
    labels: &["listener"],
};

/// Counts of reload outcomes (the initial load is not counted): the two
/// series of `weir_config_reloads_total`, bound once.
#[derive(Debug, Clone)]
pub struct ReloadCounters {
    /// Reloads applied.
    pub success: IntCounter,
    /// Reloads refused.
    pub failure: IntCounter,
}

/// The canary weight of every route in the snapshot in force, read from the
/// hand-off cell at scrape time.
#[derive(Debug)]
pub struct CanaryWeights {
    reader: Reader,
    desc: Desc,
}

/// The process's registry with every collector registered, and the reload
/// counters registered in it.
///
/// # Errors
/// When a metric family is invalid or registered twice.
pub fn registry(proxy: &Proxy, reader: Reader) -> prometheus::Result<(Registry, ReloadCounters)> {
    let registry = Registry::new();
    registry.register(Box::new(ProxyCollector::new(Arc::clone(proxy.metrics()))?))?;
    registry.register(Box::new(CanaryWeights::new(reader)?))?;
    let reloads = ReloadCounters::register(&registry)?;
    Ok((registry, reloads))
}

// === impl ReloadCounters ===

impl ReloadCounters {
    /// Registers `weir_config_reloads_total` in `registry`, both results at 0.
    ///
    /// # Errors
    /// When the family is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<ReloadCounters> {
        let reloads = IntCounterVec::new(
            Opts::new(CONFIG_RELOADS.name, CONFIG_RELOADS.help),
            CONFIG_RELOADS.labels,
        )?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(ReloadCounters {
            success: reloads.with_label_values(&["success"]),
            failure: reloads.with_label_values(&["failure"]),
        })
    }
}

// === impl CanaryWeights ===

impl CanaryWeights {
    /// The collector of the weights `reader` sees.
    ///
    /// # Errors
    /// When the family's descriptor is invalid.
    pub fn new(reader: Reader) -> prometheus::Result<CanaryWeights> {
        Ok(CanaryWeights {
            reader,
            desc: CANARY_WEIGHT.desc()?,
        })
    }
}

impl Collector for CanaryWeights {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.reader.load();
        let weights: Vec<_> = snapshot
            .routes
            .iter()
            .map(|route| CANARY_WEIGHT.gauge(&[&route.name], route.split.canary_weight.percent()))
            .collect();
        if weights.is_empty() {
            return Vec::new();
        }
        vec![CANARY_WEIGHT.with(weights)]
    }
}

// === impl Process ===

impl Process {
    /// The Prometheus text exposition of every weir metric.
    pub async fn render_metrics(&self) -> String {
        let (rollout, runs, expiries) = {
            let control = self.control.lock().await;
            (
                control.metric_families(),
                control.analysis_runs.clone(),
                certificate_expiries(&control.loaded),
            )
        };
        let mut rollout = rollout;
        rollout.extend(runs.metric_families());
        rollout.extend(expiries);
        let mut families = self.registry.gather();
        families.extend(rollout);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        // A family without series yet is listed by its `# HELP` and
        // `# TYPE` lines alone, in its place, so that every family is on
        // the page from the first scrape (the encoder refuses an empty one).
        let mut bare: Vec<&Family> = every_family()
            .filter(|f| !families.iter().any(|m| m.name() == f.name))
            .collect();
        bare.sort_by_key(|f| f.name);
        let mut bare = bare.into_iter().peekable();
        let mut out = String::with_capacity(8 * 1024);
        let encoder = prometheus::TextEncoder::new();
        for family in &families {
            while let Some(listed) = bare.next_if(|b| b.name < family.name()) {
                write_bare(&mut out, listed);
            }
            if let Err(error) = encoder.encode_utf8(std::slice::from_ref(family), &mut out) {
                // Only an empty family or name fails, and neither is built.
                tracing::error!(%error, "metrics could not be encoded");
            }
        }
        for listed in bare {
            write_bare(&mut out, listed);
        }
        out
    }
}

/// The expiry of each TLS listener's certificate in `loaded` (the config in
/// force), if any listener has TLS.
fn certificate_expiries(loaded: &crate::load::Loaded) -> Option<MetricFamily> {
    let samples: Vec<_> = loaded
        .config()
        .listeners
        .iter()
        .zip(&loaded.certificates)
        .filter_map(|(listener, validity)| {
            let validity = validity.as_ref()?;
            #[allow(clippy::cast_precision_loss)] // exact below 2^53 s
            Some(CERTIFICATE_EXPIRY.gauge(&[&listener.name], validity.not_after as f64))
        })
        .collect();
    (!samples.is_empty()).then(|| CERTIFICATE_EXPIRY.with(samples))
}

/// Every family weir writes.
fn every_family() -> impl Iterator<Item = &'static Family> {
    static OTHERS: [&Family; 10] = [
        &BLUE_GREEN_STAGE,
        &CERTIFICATE_EXPIRY,
        &ANALYSIS_MEASUREMENTS,
        &CANARY_WEIGHT,
        &CONFIG_RELOADS,
        &WEBHOOK_CALLS,
        &NOTIFICATIONS_SENT,
        &NOTIFICATIONS_FAILED,
        &NOTIFICATIONS_DROPPED,
        &NOTIFICATIONS_QUEUED,
    ];
    static PROXY: [Family; PROXY_FAMILIES.len()] = PROXY_FAMILIES;
    static ROLLOUT: [Family; ROLLOUT_FAMILIES.len()] = ROLLOUT_FAMILIES;
    PROXY.iter().chain(&ROLLOUT).chain(OTHERS.iter().copied())
}

/// The `# HELP` and `# TYPE` lines of `family`, as the encoder writes them.
fn write_bare(out: &mut String, family: &Family) {
    let kind = match family.kind {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    };
    out.push_str(&format!(
        "# HELP {} {}\n# TYPE {} {kind}\n",
        family.name, family.help, family.name
    ));
}

#[cfg(test)]
mod tests;
