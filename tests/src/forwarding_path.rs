//! The one place that picks which HTTP/1 forwarding path the framing tests
//! run against. Set `WEIR_FORWARDING_PATH` to choose: `hyper` (hyper's
//! server and client) or `own` (weir's own HTTP/1 path).

use crate::config::WeirConfig;
use crate::weir::Weir;

/// The HTTP/1 forwarding paths weir has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingPath {
    /// hyper's HTTP/1 server and client.
    Hyper,
    /// weir's own HTTP/1 path, which hands hyper what it does not do.
    Own,
}

impl ForwardingPath {
    /// The path named by `WEIR_FORWARDING_PATH` (default `own`, as in the binary).
    ///
    /// # Panics
    /// When the variable names no known path.
    pub fn under_test() -> Self {
        match std::env::var("WEIR_FORWARDING_PATH").as_deref() {
            Ok("hyper") => Self::Hyper,
            Err(_) | Ok("own") => Self::Own,
            Ok(other) => {
                panic!("WEIR_FORWARDING_PATH={other:?}: known paths are `hyper` and `own`")
            }
        }
    }

    /// The value of `WEIR_FORWARDING_PATH` that selects this path in the binary.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hyper => "hyper",
            Self::Own => "own",
        }
    }

    /// Starts weir with `config`, set up to forward HTTP/1 on this path.
    pub async fn start_weir(self, config: WeirConfig) -> Weir {
        Weir::start(config.env("WEIR_FORWARDING_PATH", self.name())).await
    }
}

/// Runs each async `fn(ForwardingPath)` named once on each forwarding path,
/// as the tests `NAME::own` and `NAME::hyper`: both paths must give the
/// same observable result.
#[macro_export]
macro_rules! on_both_paths {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn own() {
                super::$test($crate::ForwardingPath::Own).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hyper() {
                super::$test($crate::ForwardingPath::Hyper).await;
            }
        }
    )*};
}
