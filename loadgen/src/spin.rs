//! Adaptive busy-polling while a closed loop waits for replies.
//!
//! On a VM a thread sleeping in `epoll_wait` lets its vCPU halt, and the reply then pays a
//! wake-up of tens of microseconds (measured here: one connection, no pipelining, fsync never:
//! ~78 us per round trip with both loadgen and authd sleeping, ~12 us with both polling). That
//! wake-up is the load generator's, not the server's, so in a closed loop loadgen polls
//! without blocking, yielding the core between polls, for a window that adapts as the kernel's
//! haltpoll governor does (authd's event loops do the same, `engine/src/server/spin.rs`): a
//! wait longer than the window but within the max doubles it, a longer one halves it. Under
//! load loadgen never waits, so the window costs nothing there; `--spin-us 0` turns it off,
//! `--spin` polls always.

/// The window a first short wait opens, nanoseconds.
const GROW_START_NS: u64 = 25_000;
/// Below this, a halved window closes.
const WINDOW_MIN_NS: u64 = 5_000;

/// The spin window of one load thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spin {
    window_ns: u64,
    max_ns: u64,
}

impl Spin {
    /// A closed window that may grow to `max_ns` (zero: never spin).
    pub fn new(max_ns: u64) -> Spin {
        Spin { window_ns: 0, max_ns }
    }

    /// How long to busy-poll before the next sleep, nanoseconds.
    pub fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// Learns from a wait of `waited_ns` (spinning included) until something happened.
    pub fn learn(&mut self, waited_ns: u64) {
        if waited_ns > self.window_ns && waited_ns <= self.max_ns {
            self.window_ns = (self.window_ns * 2).max(GROW_START_NS).min(self.max_ns);
        } else if waited_ns > self.max_ns {
            self.window_ns /= 2;
            if self.window_ns < WINDOW_MIN_NS {
                self.window_ns = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_waits_open_the_window_and_long_ones_close_it() {
        let mut spin = Spin::new(100_000);
        spin.learn(40_000);
        assert_eq!(spin.window_ns(), GROW_START_NS);
        spin.learn(90_000);
        spin.learn(90_000);
        assert_eq!(spin.window_ns(), 100_000);
        spin.learn(50_000);
        assert_eq!(
            spin.window_ns(),
            100_000,
            "a wait caught by the window changes nothing"
        );
        for _ in 0..5 {
            spin.learn(1_000_000);
        }
        assert_eq!(spin.window_ns(), 0);
        let mut off = Spin::new(0);
        off.learn(1);
        assert_eq!(off.window_ns(), 0);
    }
}
