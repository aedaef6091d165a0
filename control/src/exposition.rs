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
use weir_proxy::metrics::{Family, ProxyCollector};

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
        let (rollout, runs) = {
            let control = self.control.lock().await;
            (control.metric_families(), control.analysis_runs.clone())
        };
        let mut rollout = rollout;
        rollout.extend(runs.metric_families());
        let mut families = self.registry.gather();
        families.extend(rollout);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = String::with_capacity(8 * 1024);
        if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            // Only an empty family or name fails, and neither is built.
            tracing::error!(%error, "metrics could not be encoded");
        }
        out
    }
}

#[cfg(test)]
mod tests;
