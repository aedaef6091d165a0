//! Control of the rollouts: the state of every route and the config it
//! follows ([`state`]), the counter samples judged over windows
//! ([`history`]), the status the admin API answers ([`status`]), the
//! rollout metrics ([`metrics`]), and the loop that samples, judges and
//! publishes every 100 ms ([`control_loop`]), and changes made through the
//! process handle without holding the control lock across a write
//! ([`transitions`]). Every transition is persisted
//! through a [`StateStore`](crate::persist::StateStore) before it is acted
//! on, off the runtime (see [`crate::off_runtime`]: the fsyncs never stall
//! the runtime threads that serve traffic).

pub mod cluster_routes;
pub mod control_loop;
pub mod events;
pub mod history;
pub mod metrics;
pub mod state;
pub mod status;
pub mod transitions;

pub use control_loop::{SAMPLE_INTERVAL, run};
pub use history::History;
pub use state::ControlState;

pub use crate::messages::CommandError;
pub use status::format_duration;

pub use crate::process::now_ms;

/// The span of everything control does for one route (judgement,
/// transitions, reload decisions), so each log line names its route.
pub fn route_span(route: &str) -> tracing::Span {
    tracing::info_span!("route", route = %route)
}

#[cfg(test)]
mod tests;
