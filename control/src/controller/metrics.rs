//! The rollout metric families: phase, step and aborts per route.

use super::ControlState;
use crate::rollout::{AbortReason, Phase};

// === impl ControlState ===

impl ControlState {
    /// The rollout metric families in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP weir_rollout_phase Rollout phase of each route: 1 for the current phase.\n",
        );
        out.push_str("# TYPE weir_rollout_phase gauge\n");
        for route in &self.config().routes {
            let phase = self
                .rollouts
                .get(&*route.name)
                .map_or(Phase::Healthy, |s| s.phase);
            for p in Phase::ALL {
                let _ = writeln!(
                    out,
                    "weir_rollout_phase{{route=\"{}\",phase=\"{}\"}} {}",
                    route.name,
                    p.as_str(),
                    u8::from(p == phase)
                );
            }
        }
        out.push_str("# HELP weir_rollout_step 0-based index of the current rollout step.\n");
        out.push_str("# TYPE weir_rollout_step gauge\n");
        for (name, state) in &self.rollouts {
            if let Some(step) = state.step_index {
                let _ = writeln!(out, "weir_rollout_step{{route=\"{name}\"}} {step}");
            }
        }
        out.push_str("# HELP weir_rollout_aborts_total Rollouts aborted, by route and reason.\n");
        out.push_str("# TYPE weir_rollout_aborts_total counter\n");
        for name in self.rollouts.keys() {
            for reason in AbortReason::ALL {
                let count = self
                    .aborts
                    .get(&(name.clone(), reason))
                    .copied()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "weir_rollout_aborts_total{{route=\"{name}\",reason=\"{}\"}} {count}",
                    reason.metric_label()
                );
            }
        }
    }
}
