//! Analysis templates (SPEC 13): runs of Argo-style templates whose metrics
//! are measured by Prometheus or web providers, beside the built-in judge
//! of [`crate::rollout::analysis`].
//!
//! - [`run`]: the pure measurement / metric / run state machine.
//! - [`providers`]: the Prometheus and web providers.
//! - [`engine`]: the runs of every route, each measured by its own task.
//!
//! # Starting a run and waiting on it
//!
//! A caller names the run with a [`RunKey`] (rollout sequence, start time
//! of the rollout or retry, and what the run is for), and every control
//! tick calls [`AnalysisRuns::ensure`] with the run's [`AnalysisRef`]: the
//! first call starts it, each call returns its [`RunPhase`] without
//! waiting. The phase goes to the rollout state machine as an input
//! (`RolloutState::on_analysis_result`), which ignores a key that is not
//! the current one. [`AnalysisRuns::keep_only`] terminates the runs the
//! rollout no longer wants (promotion, abort, the step left). Blue-green's
//! pre- and post-promotion analysis use the same calls with their own
//! [`RunKind`]s.
//!
//! [`AnalysisRef`]: weir_config::AnalysisRef

pub mod engine;
pub mod providers;
pub mod run;

pub use engine::{AnalysisRuns, RunView};
pub use run::{RunKey, RunKind, RunPhase};
