//! A one-way signal from a listener to its connections (the drain begins,
//! the drain's deadline passed): raised once, read with one atomic load,
//! and waited for by a future that takes the waiters' lock on its first
//! poll only.
//!
//! A `watch` channel does the same job, but its wait takes that lock at
//! every poll, and a connection's task polls its drain and cut waits at
//! every wake-up, twice per keep-alive request: about 530 of some 13,700
//! user-space instructions per request on weir's own path (callgrind,
//! `wrk -t1 -c8`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio::sync::Notify;

/// A signal raised once, for many waiters.
#[derive(Debug, Default)]
pub struct Signal {
    raised: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Raises the signal and wakes every waiter; raising again does nothing more.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the signal has been raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Ends once the signal is raised.
    ///
    /// The waker of the future's first poll is the one woken: the future
    /// must be polled by one task only, as a connection's own wait is.
    /// Later polls read the flag and nothing else.
    pub async fn raised(&self) {
        // Made before the flag is first read, so that a raise between the
        // two is not missed (`Notified` counts `notify_waiters` calls from
        // its creation on).
        let mut notified = std::pin::pin!(self.notify.notified());
        let mut registered = false;
        std::future::poll_fn(|cx| {
            if self.is_raised() {
                return Poll::Ready(());
            }
            if !registered {
                registered = true;
                if notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_polled_before_the_raise_ends_after_it() {
        let signal = Arc::new(Signal::default());
        let waiting = {
            let signal = Arc::clone(&signal);
            tokio::spawn(async move { signal.raised().await })
        };
        // Polled at least once (and registered) before the raise.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(!signal.is_raised());
        signal.raise();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiter ends")
            .expect("the waiter's task");
        assert!(signal.is_raised());
    }

    #[tokio::test]
    async fn a_waiter_made_before_the_raise_and_polled_after_it_ends() {
        let signal = Signal::default();
        let wait = signal.raised();
        signal.raise();
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("ends at once");
        // And one made afterwards.
        tokio::time::timeout(Duration::from_secs(10), signal.raised())
            .await
            .expect("ends at once");
    }
}
