//! What the load generator saw, request by request: the [`Observations`]
//! that the generator calls for every outcome, keeping a compact log (16
//! bytes a response) from which the report's per-second series and abort
//! timings are computed afterwards, and live per-second counts for the
//! timeline printed while the run goes on.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use crate::run::{ErrorKind, Observer, Outcome};

/// Everything the generator reported, in the order it happened.
#[derive(Debug)]
pub(crate) struct Observations {
    start: Instant,
    inner: Mutex<Inner>,
}

/// The log once the run is over.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    /// Upstream names; [`Response::upstream`] indexes this. The scenario's
    /// upstreams come first, in order; then any other `x-upstream-name`
    /// seen, and `-` for responses without one (made by weir itself).
    pub(crate) names: Vec<String>,
    /// Every response.
    pub(crate) responses: Vec<Response>,
    /// Every request that got no response, by scheduled time in µs.
    pub(crate) failures: Vec<u32>,
}

/// One response; times in µs since the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// Index into [`Recorded::names`].
    pub(crate) upstream: u16,
    /// The status code.
    pub(crate) status: u16,
    /// When it was due to be sent.
    pub(crate) scheduled_us: u32,
    /// When it was sent.
    pub(crate) sent_us: u32,
    /// When its body had arrived.
    pub(crate) done_us: u32,
}

/// Live counts of one second (by scheduled time): per upstream index,
/// (responses, 5xx); plus requests without a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LiveSecond {
    pub(crate) by_upstream: Vec<(u64, u64)>,
    pub(crate) failures: u64,
}

#[derive(Debug, Default)]
struct Inner {
    recorded: Recorded,
    index: HashMap<String, u16>,
    live: Vec<LiveSecond>,
}

// === impl Observations ===

impl Observations {
    /// An empty log whose times count from `start`, with `names` first.
    pub(crate) fn new(start: Instant, names: &[String]) -> Self {
        let mut inner = Inner::default();
        for name in names {
            inner.upstream(name);
        }
        Self {
            start,
            inner: Mutex::new(inner),
        }
    }

    /// The upstream names known so far.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().recorded.names.clone()
    }

    /// The live counts of `second`.
    pub(crate) fn live(&self, second: u64) -> LiveSecond {
        let inner = self.lock();
        usize::try_from(second)
            .ok()
            .and_then(|s| inner.live.get(s))
            .cloned()
            .unwrap_or_default()
    }

    /// The whole log.
    pub(crate) fn finish(&self) -> Recorded {
        std::mem::take(&mut self.lock().recorded)
    }

    fn us(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Observer for Observations {
    fn response(&self, outcome: &Outcome<'_>) {
        let response = Response {
            upstream: 0,
            status: outcome.status,
            scheduled_us: self.us(outcome.scheduled),
            sent_us: self.us(outcome.sent),
            done_us: self.us(outcome.done),
        };
        let mut inner = self.lock();
        let upstream = inner.upstream(outcome.upstream);
        inner.recorded.responses.push(Response {
            upstream,
            ..response
        });
        let second = inner.second(response.scheduled_us);
        let slot = usize::from(upstream);
        if second.by_upstream.len() <= slot {
            second.by_upstream.resize(slot + 1, (0, 0));
        }
        second.by_upstream[slot].0 += 1;
        if outcome.status >= 500 {
            second.by_upstream[slot].1 += 1;
        }
    }

    fn error(&self, scheduled: Instant, _kind: ErrorKind) {
        let us = self.us(scheduled);
        let mut inner = self.lock();
        inner.recorded.failures.push(us);
        inner.second(us).failures += 1;
    }
}

// === impl Inner ===

impl Inner {
    /// The index of `name`, added if new (at most `u16::MAX` names; any
    /// more share the last index).
    fn upstream(&mut self, name: &str) -> u16 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u16::try_from(self.recorded.names.len()).unwrap_or(u16::MAX);
        if i < u16::MAX {
            self.recorded.names.push(name.to_owned());
            self.index.insert(name.to_owned(), i);
        }
        i
    }

    fn second(&mut self, us: u32) -> &mut LiveSecond {
        let s = (us / 1_000_000) as usize;
        if self.live.len() <= s {
            self.live.resize(s + 1, LiveSecond::default());
        }
        &mut self.live[s]
    }
}

// === impl Response ===

impl Response {
    /// A 5xx: an error of the upstream, or of weir on its behalf.
    pub(crate) fn is_error(&self) -> bool {
        self.status >= 500
    }

    /// Latency from the scheduled send time, in µs.
    pub(crate) fn latency_us(&self) -> u32 {
        self.done_us.saturating_sub(self.scheduled_us)
    }
}

// === impl Recorded ===

impl Recorded {
    /// The index of upstream `name`, if it was seen or named.
    pub(crate) fn index(&self, name: &str) -> Option<u16> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u16::try_from(i).ok())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn responses_are_logged_and_counted_live() {
        let start = Instant::now();
        let names = vec!["v1".to_owned(), "v2".to_owned()];
        let o = Observations::new(start, &names);
        let at = |ms| start + Duration::from_millis(ms);
        o.response(&Outcome {
            scheduled: at(100),
            sent: at(101),
            done: at(120),
            upstream: "v2",
            status: 500,
        });
        o.response(&Outcome {
            scheduled: at(1100),
            sent: at(1100),
            done: at(1102),
            upstream: "-",
            status: 502,
        });
        o.error(at(1500), ErrorKind::Connect);
        assert_eq!(o.live(0).by_upstream, vec![(0, 0), (1, 1)]);
        assert_eq!(o.live(1).failures, 1);
        assert_eq!(o.live(7), LiveSecond::default());
        let r = o.finish();
        assert_eq!(r.names, vec!["v1", "v2", "-"]);
        assert_eq!(r.responses[0].upstream, 1);
        assert_eq!(r.responses[0].latency_us(), 20_000);
        assert_eq!(r.responses[1].upstream, 2);
        assert_eq!(r.failures, vec![1_500_000]);
        assert_eq!(r.index("-"), Some(2));
    }
}
