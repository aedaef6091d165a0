//! The rollout metric families: phase, step and aborts per route, built from
//! the control state when `/metrics` is scraped (see
//! [`crate::exposition`]).

use prometheus::proto::{MetricFamily, MetricType};
use weir_proxy::metrics::Family;

use super::ControlState;
use crate::rollout::{AbortReason, BlueGreenStage, Phase};

/// `weir_rollout_phase{route, phase}`: 1 for the current phase, 0 for the others.
pub const ROLLOUT_PHASE: Family = Family {
    name: "weir_rollout_phase",
    help: "Rollout phase of each route: 1 for the current phase.",
    kind: MetricType::GAUGE,
    labels: &["route", "phase"],
};

/// `weir_rollout_step{route}`: 0-based index of the current step.
pub const ROLLOUT_STEP: Family = Family {
    name: "weir_rollout_step",
    help: "0-based index of the current rollout step.",
    kind: MetricType::GAUGE,
    labels: &["route"],
};

/// `weir_rollout_aborts_total{route, reason}`.
pub const ROLLOUT_ABORTS: Family = Family {
    name: "weir_rollout_aborts_total",
    help: "Rollouts aborted, by route and reason.",
    kind: MetricType::COUNTER,
    labels: &["route", "reason"],
};

/// `weir_blue_green_stage{route, stage}`: for each blue-green route, 1 for
/// its current stage, 0 for the others.
pub const BLUE_GREEN_STAGE: Family = Family {
    name: "weir_blue_green_stage",
    help: "Blue-green stage of each blue-green route: 1 for the current stage.",
    kind: MetricType::GAUGE,
    labels: &["route", "stage"],
};

/// Every rollout family of every config (the page lists families in name
/// order); [`BLUE_GREEN_STAGE`] has series only with a blue-green route.
pub const ROLLOUT_FAMILIES: [Family; 3] = [ROLLOUT_PHASE, ROLLOUT_STEP, ROLLOUT_ABORTS];

// === impl ControlState ===

impl ControlState {
    /// The rollout metric families with their current values; a family
    /// without samples (no route has a rollout step) is left out.
    pub fn metric_families(&self) -> Vec<MetricFamily> {
        let mut phases = Vec::new();
        for route in &self.config().routes {
            let current = self
                .rollouts
                .get(&*route.name)
                .map_or(Phase::Healthy, |s| s.phase);
            for phase in Phase::ALL {
                phases.push(ROLLOUT_PHASE.gauge(
                    &[&route.name, phase.as_str()],
                    f64::from(u8::from(phase == current)),
                ));
            }
        }
        let mut stages = Vec::new();
        for route in &self.config().routes {
            let Some(strategy) = route.strategy.as_ref().filter(|s| s.blue_green.is_some()) else {
                continue;
            };
            let current = self
                .rollouts
                .get(&*route.name)
                .and_then(|s| s.blue_green_stage(strategy))
                .unwrap_or(BlueGreenStage::Done);
            for stage in BlueGreenStage::ALL {
                stages.push(BLUE_GREEN_STAGE.gauge(
                    &[&route.name, stage.as_str()],
                    f64::from(u8::from(stage == current)),
                ));
            }
        }
        let steps = self
            .rollouts
            .iter()
            .filter_map(|(name, state)| {
                let step = state.shown_step_index()?;
                Some(ROLLOUT_STEP.gauge(&[name], step as f64))
            })
            .collect();
        let mut aborts = Vec::new();
        for name in self.rollouts.keys() {
            for reason in AbortReason::ALL {
                let count = self
                    .aborts
                    .get(&(name.clone(), reason))
                    .copied()
                    .unwrap_or(0);
                aborts.push(ROLLOUT_ABORTS.counter(&[name, reason.metric_label()], count));
            }
        }
        [
            (BLUE_GREEN_STAGE, stages),
            (ROLLOUT_PHASE, phases),
            (ROLLOUT_STEP, steps),
            (ROLLOUT_ABORTS, aborts),
        ]
        .into_iter()
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(family, samples)| family.with(samples))
        .collect()
    }
}
