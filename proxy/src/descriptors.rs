//! The open files weir keeps for its own work. The proxy's connections,
//! to clients and to upstreams, may use all but the last few descriptors
//! the process may open; those stay for the admin API, the state and
//! config files and the control plane's own connections, so that a flood
//! of clients or of HTTP/2 streams cannot keep weir from being observed,
//! reloaded or from writing an abort.
//!
//! The check costs nothing per connection: Linux gives a new socket the
//! lowest free descriptor number, so a socket numbered N or more means at
//! least N descriptors are open. It is made on the number the socket got,
//! before it is used.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// The lowest descriptor number kept; `u64::MAX` (none kept) until
/// [`keep_from`] is called.
static FIRST_KEPT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Keeps descriptors numbered `first` and up for weir's own work: a client
/// connection accepted on one is closed at once, and an upstream socket
/// made on one is closed and the request answered as weir's own failure.
pub fn keep_from(first: u64) {
    FIRST_KEPT.store(first, Ordering::Relaxed);
}

/// Whether `fd` is one of the descriptors kept for weir's own work.
pub fn is_kept(fd: RawFd) -> bool {
    kept_by(fd, FIRST_KEPT.load(Ordering::Relaxed))
}

/// Whether `fd` is kept when `first` and up are.
fn kept_by(fd: RawFd, first: u64) -> bool {
    u64::try_from(fd).is_ok_and(|fd| fd >= first)
}

/// The error of an upstream socket refused because it got a kept
/// descriptor.
pub fn kept_error() -> std::io::Error {
    std::io::Error::other("the open files left are kept for the admin API, state and config files")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_from_the_first_kept_one_up_are_kept() {
        assert!(!is_kept(1_000_000), "nothing kept before keep_from");
        assert!(!kept_by(0, 100));
        assert!(!kept_by(99, 100));
        assert!(kept_by(100, 100));
        assert!(kept_by(RawFd::MAX, 100));
        assert!(!kept_by(RawFd::MAX, u64::MAX));
    }
}
