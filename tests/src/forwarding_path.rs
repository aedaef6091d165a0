//! The one place that picks which HTTP/1 forwarding path the framing tests
//! run against. Set `WEIR_FORWARDING_PATH` to choose; today weir has one
//! path (`hyper`), and a second one is added here with the config it needs.

use crate::config::WeirConfig;
use crate::weir::Weir;

/// The HTTP/1 forwarding paths weir has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingPath {
    /// hyper's HTTP/1 server and client.
    Hyper,
}

impl ForwardingPath {
    /// The path named by `WEIR_FORWARDING_PATH` (default `hyper`).
    ///
    /// # Panics
    /// When the variable names no known path.
    pub fn under_test() -> Self {
        match std::env::var("WEIR_FORWARDING_PATH").as_deref() {
            Err(_) | Ok("hyper") => Self::Hyper,
            Ok(other) => panic!("WEIR_FORWARDING_PATH={other:?}: known paths are `hyper`"),
        }
    }

    /// Starts weir with `config`, set up to forward HTTP/1 on this path.
    pub async fn start_weir(self, config: WeirConfig) -> Weir {
        match self {
            Self::Hyper => Weir::start(config).await,
        }
    }
}
