//! Adaptive busy-polling before an event loop sleeps, so that a client answering at once finds
//! the loop awake.
//!
//! On this kind of machine (a KVM guest) a vCPU with nothing to run halts, and waking it costs
//! tens of microseconds: measured with one connection and no pipelining, fsync never, each
//! round trip took ~78 us with both authd and loadgen sleeping in `epoll_wait`, ~34 us with
//! either one busy-polling, ~12 us with both. So before sleeping the loop polls without
//! blocking (yielding the core to any other runnable thread between polls) for a window that
//! adapts like the kernel's haltpoll governor: a wait longer than the window but within
//! [`Spin::max`] doubles it (from [`GROW_START`]), as spinning longer would have caught it; a
//! wait longer than the max halves it. A loop that waits long (for the disk, or for sparse
//! clients) soon stops spinning, so the cost is bounded by the max per wait and vanishes under
//! idle or disk-bound load.

use std::time::Duration;

/// The window a first short wait opens.
pub const GROW_START: Duration = Duration::from_micros(25);
/// Below this, a halved window closes.
const WINDOW_MIN: Duration = Duration::from_micros(5);

/// The spin window of one loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spin {
    window: Duration,
    max: Duration,
}

impl Spin {
    /// A closed window that may grow up to `max` (zero: never spin).
    pub fn new(max: Duration) -> Spin {
        Spin {
            window: Duration::ZERO,
            max,
        }
    }

    /// How long to busy-poll before the next sleep.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The largest window.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Learns from a wait that lasted `waited` (spinning included) until something happened.
    pub fn learn(&mut self, waited: Duration) {
        if waited > self.window && waited <= self.max {
            self.window = (self.window * 2).max(GROW_START).min(self.max);
        } else if waited > self.max {
            self.window /= 2;
            if self.window < WINDOW_MIN {
                self.window = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(100);

    #[test]
    fn short_waits_open_the_window_up_to_the_max() {
        let mut spin = Spin::new(MAX);
        assert_eq!(spin.window(), Duration::ZERO);
        spin.learn(Duration::from_micros(40));
        assert_eq!(spin.window(), GROW_START);
        spin.learn(Duration::from_micros(40));
        assert_eq!(spin.window(), GROW_START * 2);
        spin.learn(Duration::from_micros(90));
        assert_eq!(spin.window(), MAX);
        spin.learn(Duration::from_micros(90));
        assert_eq!(spin.window(), MAX, "a wait caught by the window changes nothing");
    }

    #[test]
    fn long_waits_close_it() {
        let mut spin = Spin::new(MAX);
        spin.learn(Duration::from_micros(90));
        spin.learn(Duration::from_micros(90));
        assert_eq!(spin.window(), GROW_START * 2);
        for _ in 0..4 {
            spin.learn(Duration::from_millis(1));
        }
        assert_eq!(spin.window(), Duration::ZERO);
    }

    #[test]
    fn a_zero_max_never_spins() {
        let mut spin = Spin::new(Duration::ZERO);
        spin.learn(Duration::from_micros(1));
        spin.learn(Duration::ZERO);
        assert_eq!(spin.window(), Duration::ZERO);
    }
}
