//! Rollouts: the per-route state machine that moves the canary weight
//! through a strategy's steps ([`machine`]), the judgement of the canary from
//! live counts ([`analysis`], [`stats`]), and a traffic simulation that
//! measures the judgement's false-abort rate and detection time
//! ([`simulate`]).
//!
//! Everything here is pure: time is an argument (wall-clock milliseconds
//! since the UNIX epoch), counts come from the caller, and nothing reads
//! clocks, files or sockets or needs tokio. The control loop owns the I/O:
//!
//! - **Load.** For each route with a strategy: the persisted
//!   [`RolloutState`] (serde JSON) if any, else [`RolloutState::start`]; if
//!   the file cannot be read, or holds a number out of range
//!   ([`RolloutState::check_range`]), [`RolloutState::unreadable`]. Then
//!   [`RolloutState::reconcile`] with the route's config (also on every
//!   reload; a [`ConfigRefused`] refuses the whole config).
//! - **Every `analysis.interval`.** [`RolloutState::tick`] with an
//!   [`Observation`]: both roles' counts over the window
//!   `[max(now − window, rollout_started_ms), now]` and their monotonic
//!   totals.
//! - **Commands.** [`RolloutState::command`]; a [`CommandRefused`] is a 409.
//! - **Webhook answers.** [`RolloutState::on_gate_result`] with the answer
//!   of the hooks of one type; [`RolloutState::waiting_gate`] says which
//!   gate's hooks to call.
//! - **After each call.** Keep the returned state. When the [`Outcome`] has a
//!   transition, persist the state first, then publish a snapshot with
//!   [`RolloutState::route_override`], log the transition, and count
//!   [`Transition::abort_reason`] in `weir_rollout_aborts_total`.

pub mod analysis;
pub mod machine;
pub mod simulate;
pub mod stats;

pub use analysis::{Evidence, FailKind, Judgement, Observation, RoleSummary, Verdict, judge};
pub use machine::{
    AbortReason, BlueGreenStage, Command, CommandRefused, ConfigRefused, Gate, GateWait, Outcome,
    Phase, RolloutState, StateOutOfRange, Transition, TransitionKind, WebhookProgress,
};
pub use stats::{LatencyHistogram, Quantile, RoleTotals, RoleWindow};
