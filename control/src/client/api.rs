//! The JSON shapes of weir's admin API (SPEC.md section 6), as the CLI reads
//! them: the server's own types from [`weir_config::status`], which read
//! tolerantly (unknown fields ignored, unknown phases as
//! [`Phase::Unknown`], missing or `null` fields as defaults). `weir status
//! --json` prints the server's own bytes instead of re-encoding them.

use serde::Deserialize;

pub use weir_config::status::{Analysis, Phase, PromoteAll, RoleStats, RouteStatus, Step};

/// The JSON body of an error answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    /// What is wrong.
    pub(crate) error: String,
}
