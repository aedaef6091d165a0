//! The once-a-second beat of an idle weir. Work due about once a second
//! with no deadline of its own (the settled control loop's sample, the
//! config file's glance) waits for the next whole second of one clock
//! shared by the process, so that it all wakes the process at once, once a
//! second, rather than each at its own moment: tokio's timer wheel also
//! wakes the process some 60 ms before each such deadline, to move it to
//! its final slot, and that wake-up is shared too.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The beat's period.
pub const BEAT: Duration = Duration::from_secs(1);

/// The clock's origin: the first time a beat was asked for.
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The first beat at or after `at`.
pub fn next_beat(at: Instant) -> Instant {
    let origin = *ORIGIN.get_or_init(Instant::now);
    let since = at.saturating_duration_since(origin);
    let beats = since.as_nanos().div_ceil(BEAT.as_nanos());
    origin + BEAT * u32::try_from(beats).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_whole_seconds_apart_and_never_before_the_time_asked() {
        let now = Instant::now();
        let first = next_beat(now);
        assert!(first >= now);
        for offset_ms in [0, 1, 999, 1000, 1001, 2500, 59_999] {
            let at = now + Duration::from_millis(offset_ms);
            let beat = next_beat(at);
            assert!(beat >= at, "{offset_ms} ms: a beat before the time asked");
            assert!(beat - at < BEAT, "{offset_ms} ms: a beat skipped");
            let apart = beat.saturating_duration_since(first);
            assert_eq!(apart.as_nanos() % BEAT.as_nanos(), 0, "{offset_ms} ms");
        }
        // Before the origin: the origin.
        assert!(next_beat(now - Duration::from_secs(5)) >= now - Duration::from_secs(5));
    }
}
