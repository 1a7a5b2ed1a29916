//! The time the server stamps commands with: the wall clock, followed forward only and only
//! by bounded steps.
//!
//! The books never read a clock; every command carries the server's timestamp, and hold and
//! offer expiry, daily limits and refund retention all follow it (and replay reuses it from
//! the log). A wall clock that steps (an NTP correction, a VM moved to another host, an
//! operator's typo) would carry them along: a step to the year 2100 would expire every hold and
//! prune every refundable one, for good, since the sweep is logged. So the server keeps its own
//! estimate, the wall clock's value at the last reading it followed plus the monotonic time
//! since, and follows the wall clock only while the two stay within `step_max`:
//!
//! - drift and small corrections (within `step_max`) are followed, forward at once, backward
//!   by standing still until the wall clock catches up (the stamp never goes back);
//! - a larger step either way is ignored, the estimate is used, and [`Clock::ignored_us`] says
//!   by how much: the ticker logs it (`clock_step_ignored`) once a second while it lasts. A
//!   wall clock that was wrong and is now right is adopted at the next start.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Largest wall-clock step followed, by default: one minute.
pub const CLOCK_STEP_MAX_US_DEFAULT: u64 = 60_000_000;

/// The server's clock; see the module doc.
#[derive(Debug)]
pub struct Clock {
    /// The monotonic origin of the estimate.
    origin: Instant,
    /// Wall-clock microseconds minus monotonic microseconds since `origin`, as of the last
    /// reading followed.
    offset_us: AtomicI64,
    /// The last stamp handed out: none goes below it.
    last_us: AtomicU64,
    /// How far the wall clock was from the estimate at the last reading, when that was
    /// beyond `step_max_us` (0 while followed).
    ignored_us: AtomicI64,
    step_max_us: u64,
}

/// What one reading decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    /// The stamp, before the never-backwards clamp.
    stamp_us: u64,
    /// The new offset, if the wall clock was followed.
    offset_us: Option<i64>,
    /// The wall clock's distance from the estimate, when ignored.
    ignored_us: i64,
}

/// Follow `wall_us` if it is within `step_max_us` of the estimate (`monotonic_us` +
/// `offset_us`), else keep the estimate.
fn read(wall_us: u64, monotonic_us: u64, offset_us: i64, step_max_us: u64) -> Reading {
    let estimate_us = monotonic_us.saturating_add_signed(offset_us);
    let distance = i64::try_from(i128::from(wall_us) - i128::from(estimate_us)).unwrap_or(i64::MAX);
    if distance.unsigned_abs() <= step_max_us {
        let offset = i64::try_from(i128::from(wall_us) - i128::from(monotonic_us)).unwrap_or(offset_us);
        Reading {
            stamp_us: wall_us,
            offset_us: Some(offset),
            ignored_us: 0,
        }
    } else {
        Reading {
            stamp_us: estimate_us,
            offset_us: None,
            ignored_us: distance,
        }
    }
}

impl Clock {
    /// A clock starting from the wall clock now, following steps up to `step_max_us`.
    pub fn new(step_max_us: u64) -> Clock {
        let origin = Instant::now();
        Clock {
            origin,
            offset_us: AtomicI64::new(i64::try_from(wall_us()).unwrap_or(i64::MAX)),
            last_us: AtomicU64::new(0),
            ignored_us: AtomicI64::new(0),
            step_max_us,
        }
    }

    /// Microseconds since the Unix epoch, never less than a stamp handed out before.
    pub fn now_us(&self) -> u64 {
        let monotonic_us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        let reading = read(
            wall_us(),
            monotonic_us,
            self.offset_us.load(Ordering::Relaxed),
            self.step_max_us,
        );
        // Stores only on change: both event loops read these on every batch.
        if let Some(offset) = reading
            .offset_us
            .filter(|&offset| offset != self.offset_us.load(Ordering::Relaxed))
        {
            self.offset_us.store(offset, Ordering::Relaxed);
        }
        if reading.ignored_us != self.ignored_us.load(Ordering::Relaxed) {
            self.ignored_us.store(reading.ignored_us, Ordering::Relaxed);
        }
        let before = self.last_us.fetch_max(reading.stamp_us, Ordering::AcqRel);
        before.max(reading.stamp_us)
    }

    /// How far the wall clock stood from the clock's estimate at the last reading, if that was
    /// a step beyond the largest followed (positive: the wall clock is ahead).
    pub fn ignored_us(&self) -> Option<i64> {
        let ignored = self.ignored_us.load(Ordering::Relaxed);
        (ignored != 0).then_some(ignored)
    }
}

/// The wall clock in microseconds since the Unix epoch (0 before it).
pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MAX: u64 = 60_000_000;
    /// 2026-11-30 12:00 UTC, and the monotonic time since the clock started.
    const NOON: u64 = 1_796_040_000_000_000;
    const STARTED: u64 = 5_000_000;

    #[test]
    fn steps_up_to_the_maximum_are_followed_either_way() {
        let offset = (NOON - STARTED) as i64;
        for wall in [NOON, NOON + 1, NOON + STEP_MAX, NOON - STEP_MAX] {
            let reading = read(wall, STARTED, offset, STEP_MAX);
            assert_eq!(reading.stamp_us, wall);
            assert_eq!(reading.ignored_us, 0);
            assert_eq!(reading.offset_us, Some((wall - STARTED) as i64));
        }
    }

    #[test]
    fn a_step_past_the_maximum_is_ignored_either_way() {
        let offset = (NOON - STARTED) as i64;
        for (wall, distance) in [
            (NOON + STEP_MAX + 1, STEP_MAX as i64 + 1),
            (NOON - STEP_MAX - 1, -(STEP_MAX as i64) - 1),
            (4_102_444_800_000_000, 4_102_444_800_000_000 - NOON as i64), // 2100
            (0, -(NOON as i64)),
        ] {
            let reading = read(wall, STARTED, offset, STEP_MAX);
            assert_eq!(reading.stamp_us, NOON, "the estimate");
            assert_eq!(reading.offset_us, None);
            assert_eq!(reading.ignored_us, distance);
        }
    }

    #[test]
    fn the_estimate_goes_on_with_the_monotonic_time() {
        let offset = (NOON - STARTED) as i64;
        let later = read(
            NOON + 3_600_000_000 * 24 * 365,
            STARTED + 1_000_000,
            offset,
            STEP_MAX,
        );
        assert_eq!(later.stamp_us, NOON + 1_000_000);
    }

    #[test]
    fn stamps_never_go_back() {
        let clock = Clock::new(STEP_MAX);
        let first = clock.now_us();
        // As if the wall clock had stepped back within the maximum: the last stamp holds.
        clock.offset_us.fetch_sub(30_000_000, Ordering::Relaxed);
        clock.last_us.fetch_add(20_000_000, Ordering::Relaxed);
        let second = clock.now_us();
        assert!(second >= first + 20_000_000, "{first} then {second}");
        assert_eq!(clock.ignored_us(), None);
    }
}
