//! Samples of each route's cumulative counters, and the windows of counts
//! the judgement reads from them.

use std::collections::VecDeque;
use std::time::Duration;

use weir_proxy::metrics::{LATENCY_BOUNDS_MICROS, LATENCY_SLOTS, RoleCounts};

use crate::rollout::{LatencyHistogram, Observation, RoleTotals, RoleWindow};

/// Samples younger than this (before the latest) are all kept.
const RECENT_MS: u64 = 2_000;
/// Older samples are kept at most this far apart, or further by their age
/// (see [`AGE_FRACTION`]).
const COARSE_MS: u64 = 1_000;
/// A sample older than 32 s is kept at most this fraction of its age from
/// the next older one: a look back of any length (a day's window, the
/// guardrail's last 30 s, a rollout begun a minute ago) finds its start
/// within a 32nd of it, and a day's window holds about 390 samples, not
/// 86,400.
const AGE_FRACTION: u64 = 32;

/// Samples of one route's cumulative counters, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Kept>,
}

/// A [`Sample`] as kept: each role's latency slots from the first to the
/// last it has counted in (see [`KeptCounts`]).
#[derive(Debug)]
struct Kept {
    at_ms: u64,
    stable: KeptCounts,
    canary: KeptCounts,
}

/// One role's cumulative counts, compact: a route's requests fall in some
/// dozens of the 382 latency slots, so only the run from the first slot
/// ever counted in to the last is kept; the others are zero. A sample
/// takes about a kilobyte or less instead of 6 KiB.
#[derive(Debug)]
struct KeptCounts {
    requests: u64,
    errors: u64,
    /// The slot of `latency[0]`.
    first_slot: usize,
    latency: Box<[u64]>,
}

/// The counters of both roles at one time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at_ms: u64,
    pub(crate) stable: RoleCounts,
    pub(crate) canary: RoleCounts,
}

// === impl History ===

impl History {
    /// Adds `sample`, dropping those older than `keep_ms` before it, and
    /// thinning those older than [`RECENT_MS`] to one per [`COARSE_MS`], or
    /// per [`AGE_FRACTION`]th of their age when that is longer: a window's
    /// end is always the latest sample, its start is found within a second
    /// for the last 32 s and within a 32nd of the look back beyond, and a
    /// route holds about 50 samples instead of 320 for the default window
    /// (each a few hundred bytes, see [`KeptCounts`]), about 390 for a
    /// day's.
    pub(crate) fn push(&mut self, sample: Sample, keep_ms: u64) {
        self.samples.push_back(Kept {
            at_ms: sample.at_ms,
            stable: KeptCounts::of(&sample.stable),
            canary: KeptCounts::of(&sample.canary),
        });
        // Keep one sample older than the window, so a window always has a start.
        while self.samples.len() > 2 && self.samples[1].at_ms + keep_ms < sample.at_ms {
            self.samples.pop_front();
        }
        let mut old_end = self
            .samples
            .iter()
            .position(|s| s.at_ms + RECENT_MS > sample.at_ms)
            .unwrap_or(self.samples.len());
        // A sample goes when its neighbours are close enough without it
        // for the older one's age; the oldest (a window's start) stays.
        let mut at = 1;
        while at + 1 < old_end {
            let older = self.samples[at - 1].at_ms;
            let spacing = COARSE_MS.max(sample.at_ms.saturating_sub(older) / AGE_FRACTION);
            if self.samples[at + 1].at_ms - older <= spacing {
                self.samples.remove(at);
                old_end -= 1;
            } else {
                at += 1;
            }
        }
    }

    /// How many samples are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// The times of the first sample at or after `since_ms` and of the
    /// latest: the span [`Self::observation`] counts over.
    pub(crate) fn span_ms(&self, since_ms: u64) -> Option<(u64, u64)> {
        let first = self.samples.iter().find(|s| s.at_ms >= since_ms)?;
        Some((first.at_ms, self.samples.back()?.at_ms))
    }

    /// Counts from the first sample at or after `since_ms` to the latest.
    pub(crate) fn observation(&self, since_ms: u64) -> Observation {
        let (Some(first), Some(last)) = (
            self.samples.iter().find(|s| s.at_ms >= since_ms),
            self.samples.back(),
        ) else {
            return empty_observation();
        };
        Observation {
            stable: window(&first.stable, &last.stable),
            canary: window(&first.canary, &last.canary),
            stable_total: totals(&last.stable),
            canary_total: totals(&last.canary),
            unjudgeable: None,
        }
    }
}

// === impl KeptCounts ===

impl KeptCounts {
    fn of(counts: &RoleCounts) -> KeptCounts {
        let slots = counts.counted_slots();
        KeptCounts {
            requests: counts.requests,
            errors: counts.errors,
            first_slot: slots.start,
            latency: counts.latency[slots].into(),
        }
    }

    /// The count of `slot`.
    fn latency(&self, slot: usize) -> u64 {
        slot.checked_sub(self.first_slot)
            .and_then(|i| self.latency.get(i))
            .copied()
            .unwrap_or(0)
    }
}

fn window(from: &KeptCounts, to: &KeptCounts) -> RoleWindow {
    let counts = (0..LATENCY_SLOTS)
        .map(|slot| to.latency(slot).saturating_sub(from.latency(slot)))
        .collect();
    RoleWindow {
        requests: to.requests.saturating_sub(from.requests),
        errors: to.errors.saturating_sub(from.errors),
        latency: LatencyHistogram::from_counts(LATENCY_BOUNDS_MICROS.to_vec(), counts)
            .unwrap_or_else(|_| LatencyHistogram::with_default_bounds()),
    }
}

fn totals(counts: &KeptCounts) -> RoleTotals {
    RoleTotals {
        requests: counts.requests,
        errors: counts.errors,
    }
}

/// No requests, no totals.
pub(crate) fn empty_observation() -> Observation {
    Observation {
        stable: RoleWindow::empty(),
        canary: RoleWindow::empty(),
        stable_total: RoleTotals::default(),
        canary_total: RoleTotals::default(),
        unjudgeable: None,
    }
}

/// `d` in whole milliseconds.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts of `requests` without errors or latencies.
    fn counts(requests: u64) -> RoleCounts {
        RoleCounts {
            requests,
            errors: 0,
            latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
        }
    }

    #[test]
    fn a_window_starts_at_the_first_sample_after_its_start() {
        let counts = |requests, errors| RoleCounts {
            requests,
            errors,
            latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
        };
        let mut history = History::default();
        for (at, requests, errors) in [
            (1_000, 10, 0),
            (1_100, 20, 1),
            (1_200, 35, 3),
            (1_300, 50, 4),
        ] {
            history.push(
                Sample {
                    at_ms: at,
                    stable: counts(requests * 9, 0),
                    canary: counts(requests, errors),
                },
                60_000,
            );
        }
        let obs = history.observation(1_150);
        assert_eq!((obs.canary.requests, obs.canary.errors), (15, 1));
        assert_eq!((obs.stable.requests, obs.canary_total.requests), (135, 50));
        let all = history.observation(0);
        assert_eq!(all.canary.requests, 40);
    }

    #[test]
    fn a_window_counts_latency_slots_kept_from_either_sample() {
        let with = |slots: &[(usize, u64)]| {
            let mut latency = [0; weir_proxy::metrics::LATENCY_SLOTS];
            for &(slot, n) in slots {
                latency[slot] = n;
            }
            RoleCounts {
                requests: latency.iter().sum(),
                errors: 0,
                latency,
            }
        };
        let mut history = History::default();
        // The first sample counted in slots 100 and 120 only; the second
        // also in 90 and 381 (above the last bound), outside that run.
        for (at, slots) in [
            (1_000, vec![(100, 5), (120, 2)]),
            (1_100, vec![(90, 1), (100, 7), (120, 2), (381, 4)]),
        ] {
            history.push(
                Sample {
                    at_ms: at,
                    stable: with(&[]),
                    canary: with(&slots),
                },
                60_000,
            );
        }
        let kept = &history.samples[0].canary;
        assert_eq!((kept.first_slot, kept.latency.len()), (100, 21));
        let obs = history.observation(1_000);
        assert_eq!(obs.canary.requests, 7);
        let window = with(&[(90, 1), (100, 2), (381, 4)]);
        let want =
            LatencyHistogram::from_counts(LATENCY_BOUNDS_MICROS.to_vec(), window.latency.to_vec())
                .expect("valid");
        assert_eq!(obs.canary.latency, want);
        assert_eq!(obs.stable.latency.total(), 0);
    }

    #[test]
    fn history_keeps_one_sample_older_than_the_window() {
        let zero = RoleCounts {
            requests: 0,
            errors: 0,
            latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
        };
        let mut history = History::default();
        for at in (0..100).map(|i| i * 100) {
            history.push(
                Sample {
                    at_ms: at,
                    stable: zero,
                    canary: zero,
                },
                1_000,
            );
        }
        assert!(
            history.samples.len() <= 13,
            "{} samples kept",
            history.samples.len()
        );
        assert!(
            history
                .samples
                .front()
                .is_some_and(|s| s.at_ms <= 9_900 - 1_000)
        );
    }

    #[test]
    fn old_samples_are_thinned_to_one_a_second_and_recent_ones_kept() {
        let mut history = History::default();
        // 32 s of samples every 100 ms, one request each.
        for i in 0..=320u64 {
            history.push(
                Sample {
                    at_ms: i * 100,
                    stable: counts(0),
                    canary: counts(i),
                },
                32_000,
            );
        }
        // 20 recent samples, then about one a second over 30 s.
        assert!(history.len() <= 55, "{} samples kept", history.len());
        assert!(history.len() >= 45, "{} samples kept", history.len());
        let gaps: Vec<u64> = history
            .samples
            .iter()
            .zip(history.samples.iter().skip(1))
            .map(|(a, b)| b.at_ms - a.at_ms)
            .collect();
        assert!(gaps.iter().all(|g| *g <= COARSE_MS), "{gaps:?}");
        // The last 2 s are all there: a window ending now is exact.
        let recent = history.observation(32_000 - 1_500);
        assert_eq!(recent.canary.requests, 15);
        // An older start is found within a second.
        let window = history.observation(32_000 - 10_000);
        assert!(
            (90..=100).contains(&window.canary.requests),
            "{}",
            window.canary.requests
        );
    }

    #[test]
    fn a_long_window_holds_a_bounded_number_of_samples_and_every_look_back_stays_close() {
        let mut history = History::default();
        let day_ms = 86_400_000;
        // 26 hours of samples every second, one request a millisecond,
        // with a day's window: without thinning by age, 86,400 samples.
        let end = 26 * 3_600_000u64;
        for at in (0..=end).step_by(1_000) {
            history.push(
                Sample {
                    at_ms: at,
                    stable: counts(0),
                    canary: counts(at),
                },
                day_ms,
            );
        }
        assert!(history.len() <= 400, "{} samples kept", history.len());
        // Each look back (the guardrail's 30 s, a rollout a minute old, an
        // hour, the whole day) counts what came since, less at most a 32nd
        // of it (and never more).
        for back in [30_000, 60_000, 3_600_000, day_ms] {
            let counted = history.observation(end - back).canary.requests;
            assert!(
                counted <= back && counted >= back - back / AGE_FRACTION - COARSE_MS,
                "{back} ms back: {counted} counted"
            );
        }
        assert_eq!(history.observation(end - 30_000).canary.requests, 30_000);
    }
}
