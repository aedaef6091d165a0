//! The weir process: the command line, loading and reloading the config,
//! publishing routing snapshots to the proxy, and the admin API.
//!
//! Control changes the proxy only by publishing a new validated snapshot, and
//! learns about traffic only from the proxy's counters.

pub mod admin;
pub mod analysis_templates;
pub mod beat;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod controller;
pub mod demo;
pub mod exposition;
#[cfg(test)]
mod fixtures;
pub mod listeners;
pub mod load;
pub mod messages;
pub mod notifications;
pub mod off_runtime;
pub mod output;
pub mod persist;
pub mod process;
pub mod reload;
pub mod rollout;
pub mod run;
pub mod telemetry;
#[cfg(test)]
mod test_log;
pub mod validate;
pub mod webhooks;
