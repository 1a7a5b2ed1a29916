//! The time the server stamps commands with: the wall clock, followed forward only and only
//! by bounded steps.
//!
//! The books never read a clock; every command carries the server's timestamp, and hold and
//! offer expiry, daily limits and refund retention all follow it (and replay reuses it from
//! the log). A wall clock that steps (an NTP correction, a VM moved to another host, an
//! operator's typo) would carry them along: a step to the year 2100 would expire every hold and
//! prune every refundable one, for good, since the sweep is logged. So the server keeps its own
//! estimate, the wall clock's value at the last reading it followed plus the boot clock's time
//! since (`CLOCK_BOOTTIME`, which counts a suspended VM's time), and follows the wall clock only
//! while the two stay within `step_max`:
//!
//! - drift and small corrections (within `step_max`) are followed, forward at once, backward
//!   by standing still until the wall clock catches up (the stamp never goes back);
//! - a larger step either way is ignored, the estimate is used, and [`Clock::ignored_us`] says
//!   by how much: the ticker logs it (`clock_step_ignored`) at once, then once a minute while
//!   it lasts. A wall clock that was wrong and is now right is adopted at the next start.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

/// Largest wall-clock step followed, by default: one minute.
pub const CLOCK_STEP_MAX_US_DEFAULT: u64 = 60_000_000;

/// Moves of the offset smaller than this are not stored: the two clocks are read a few
/// nanoseconds apart, so their difference jitters by a microsecond, and a store per batch would
/// bounce the line between the event loops for nothing.
const OFFSET_SLACK_US: u64 = 1_000;

/// The server's clock; see the module doc.
#[derive(Debug)]
pub struct Clock {
    /// Wall-clock microseconds minus boot-clock microseconds, as of the last reading followed.
    offset_us: CachePadded<AtomicI64>,
    /// The last stamp handed out: none goes below it.
    last_us: CachePadded<AtomicU64>,
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

/// Follow `wall_us` if it is within `step_max_us` of the estimate (`boot_us` + `offset_us`),
/// else keep the estimate.
fn read(wall_us: u64, boot_us: u64, offset_us: i64, step_max_us: u64) -> Reading {
    let estimate_us = boot_us.saturating_add_signed(offset_us);
    let distance = i64::try_from(i128::from(wall_us) - i128::from(estimate_us)).unwrap_or(i64::MAX);
    if distance.unsigned_abs() <= step_max_us {
        let offset = i64::try_from(i128::from(wall_us) - i128::from(boot_us)).unwrap_or(offset_us);
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
        Clock::starting_at(wall_us(), boot_us(), step_max_us)
    }

    fn starting_at(wall_us: u64, boot_us: u64, step_max_us: u64) -> Clock {
        let offset = i64::try_from(i128::from(wall_us) - i128::from(boot_us)).unwrap_or(0);
        Clock {
            offset_us: CachePadded::new(AtomicI64::new(offset)),
            last_us: CachePadded::new(AtomicU64::new(0)),
            ignored_us: AtomicI64::new(0),
            step_max_us,
        }
    }

    /// Microseconds since the Unix epoch, never less than a stamp handed out before.
    pub fn now_us(&self) -> u64 {
        self.stamp(wall_us(), boot_us())
    }

    /// [`Clock::now_us`] for given readings of the two clocks.
    fn stamp(&self, wall_us: u64, boot_us: u64) -> u64 {
        let offset_us = self.offset_us.load(Ordering::Relaxed);
        let reading = read(wall_us, boot_us, offset_us, self.step_max_us);
        if let Some(offset) = reading
            .offset_us
            .filter(|offset| offset.abs_diff(offset_us) > OFFSET_SLACK_US)
        {
            self.offset_us.store(offset, Ordering::Relaxed);
        }
        if reading.ignored_us != self.ignored_us.load(Ordering::Relaxed) {
            self.ignored_us.store(reading.ignored_us, Ordering::Relaxed);
        }
        let last = self.last_us.load(Ordering::Acquire);
        if reading.stamp_us <= last {
            return last;
        }
        self.last_us
            .fetch_max(reading.stamp_us, Ordering::AcqRel)
            .max(reading.stamp_us)
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

/// Microseconds since boot, suspended time included (`CLOCK_BOOTTIME`): the estimate keeps
/// pace with the wall clock across a suspended VM, which `CLOCK_MONOTONIC` would not.
fn boot_us() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(time.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(time.tv_nsec).unwrap_or(0) / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MAX: u64 = 60_000_000;
    /// 2026-11-30 12:00 UTC, and the boot clock then.
    const NOON: u64 = 1_796_040_000_000_000;
    const BOOTED: u64 = 5_000_000;
    const OFFSET: i64 = (NOON - BOOTED) as i64;

    #[test]
    fn steps_up_to_the_maximum_are_followed_either_way() {
        for wall in [NOON, NOON + 1, NOON + STEP_MAX, NOON - STEP_MAX] {
            let reading = read(wall, BOOTED, OFFSET, STEP_MAX);
            assert_eq!(reading.stamp_us, wall);
            assert_eq!(reading.ignored_us, 0);
            assert_eq!(reading.offset_us, Some((wall - BOOTED) as i64));
        }
    }

    #[test]
    fn a_step_past_the_maximum_is_ignored_either_way() {
        for (wall, distance) in [
            (NOON + STEP_MAX + 1, STEP_MAX as i64 + 1),
            (NOON - STEP_MAX - 1, -(STEP_MAX as i64) - 1),
            (4_102_444_800_000_000, 4_102_444_800_000_000 - NOON as i64), // 2100
            (0, -(NOON as i64)),
        ] {
            let reading = read(wall, BOOTED, OFFSET, STEP_MAX);
            assert_eq!(reading.stamp_us, NOON, "the estimate");
            assert_eq!(reading.offset_us, None);
            assert_eq!(reading.ignored_us, distance);
        }
    }

    #[test]
    fn the_estimate_goes_on_with_the_boot_clock() {
        let later = read(
            NOON + 3_600_000_000 * 24 * 365,
            BOOTED + 1_000_000,
            OFFSET,
            STEP_MAX,
        );
        assert_eq!(later.stamp_us, NOON + 1_000_000);
    }

    #[test]
    fn stamps_follow_the_wall_clock_never_back_and_not_far() {
        let clock = Clock::starting_at(NOON, BOOTED, STEP_MAX);
        let second = 1_000_000;
        assert_eq!(clock.stamp(NOON, BOOTED), NOON);
        // An NTP correction back by ten seconds: the stamps stand still until the wall clock
        // catches up, then follow it.
        assert_eq!(clock.stamp(NOON + second - 10 * second, BOOTED + second), NOON);
        assert_eq!(
            clock.stamp(NOON + 11 * second - 10 * second, BOOTED + 11 * second),
            NOON + second
        );
        // A step to 2100: ignored, and said; the stamps go on with the boot clock.
        let far = 4_102_444_800_000_000;
        assert_eq!(clock.stamp(far, BOOTED + 12 * second), NOON + 2 * second);
        assert!(clock.ignored_us().is_some_and(|ignored| ignored > 0));
        // The wall clock is set right again: followed, and nothing is said any more.
        assert_eq!(
            clock.stamp(NOON + 13 * second, BOOTED + 23 * second),
            NOON + 13 * second
        );
        assert_eq!(clock.ignored_us(), None);
    }
}
