//! Open-loop pacing with coordinated omission corrected.
//!
//! At `--rate R` the k-th flow of a thread is *due* at `start + k / R`, whether or not the
//! server has answered the previous ones. Its latency counts from that due time, not from the
//! moment loadgen managed to send it: if the server stalls for 100 ms, the requests that should
//! have gone out during the stall are charged the time they waited, as a real population of
//! terminals would see it (Gil Tene's "coordinated omission"; wrk2 measures the same way).
//! A closed-loop generator that only sends after a reply would record one slow request and
//! then fast ones, hiding the stall.
//!
//! The schedule holds no queue: how many flows are due is arithmetic on the clock, so a long
//! stall costs no memory, only a backlog count.

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;

/// The due times of one thread's flows.
#[derive(Clone, Debug)]
pub struct Schedule {
    start_ns: u64,
    /// Flows per second, times 1000 (milli-flows), so fractional rates stay exact enough.
    rate_milli: u64,
    issued: u64,
}

impl Schedule {
    /// Flows due at `rate_per_s` from `start_ns` on.
    pub fn new(start_ns: u64, rate_per_s: f64) -> Schedule {
        assert!(rate_per_s > 0.0, "a schedule needs a positive rate");
        Schedule {
            start_ns,
            rate_milli: ((rate_per_s * 1000.0).round() as u64).max(1),
            issued: 0,
        }
    }

    /// When flow number `index` is due.
    #[inline]
    pub fn due_ns(&self, index: u64) -> u64 {
        let offset = u128::from(index) * u128::from(NS_PER_S) * 1000 / u128::from(self.rate_milli);
        self.start_ns + offset as u64
    }

    /// When the next flow to issue is due.
    #[inline]
    pub fn next_due_ns(&self) -> u64 {
        self.due_ns(self.issued)
    }

    /// If the next flow is due by `now_ns`, takes it and returns its due time: the time its
    /// latency counts from.
    #[inline]
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns();
        if due <= now_ns {
            self.issued += 1;
            Some(due)
        } else {
            None
        }
    }

    /// Flows due by `now_ns` and not yet taken: how far behind the generator is.
    pub fn backlog(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed = u128::from(now_ns - self.start_ns);
        let due_count = (elapsed * u128::from(self.rate_milli) / (u128::from(NS_PER_S) * 1000)) as u64 + 1;
        due_count.saturating_sub(self.issued)
    }

    /// How many flows (taken or not) are due strictly before `at_ns`.
    pub fn count_due_before(&self, at_ns: u64) -> u64 {
        if at_ns <= self.start_ns {
            return 0;
        }
        // Flow k is due before `at_ns` when k * 10^12 / rate_milli < elapsed.
        let scaled = u128::from(at_ns - self.start_ns) * u128::from(self.rate_milli);
        let unit = u128::from(NS_PER_S) * 1000;
        scaled.div_ceil(unit) as u64
    }

    /// Flows taken so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

/// Latency of a reply at `reply_ns` to a request counted from `intended_ns` (its due time in
/// the open loop, its send time in the closed loop). Clocks are monotonic, but a reply stamped
/// before its due time (clock read once per batch) counts as zero rather than wrapping.
#[inline]
pub fn latency_ns(intended_ns: u64, reply_ns: u64) -> u64 {
    reply_ns.saturating_sub(intended_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced_from_the_start() {
        let schedule = Schedule::new(5_000, 1_000.0);
        assert_eq!(schedule.due_ns(0), 5_000);
        assert_eq!(schedule.due_ns(1), 5_000 + 1_000_000);
        assert_eq!(schedule.due_ns(1000), 5_000 + NS_PER_S);
        let fractional = Schedule::new(0, 3.0);
        assert_eq!(fractional.due_ns(3), NS_PER_S);
        assert_eq!(fractional.due_ns(1), 333_333_333);
    }

    #[test]
    fn a_stall_charges_every_request_that_was_due_during_it() {
        // 1000 flows/s; the generator (or the server) stalls for 100 ms, then catches up.
        let mut schedule = Schedule::new(0, 1_000.0);
        let stall_end_ns = 100_000_000;
        let mut latencies = Vec::new();
        while let Some(due) = schedule.take_due(stall_end_ns) {
            // Each is answered 10 us after the stall ends.
            latencies.push(latency_ns(due, stall_end_ns + 10_000));
        }
        assert_eq!(latencies.len(), 101, "flows 0..=100 were due by 100 ms");
        assert_eq!(latencies[0], 100_010_000, "the first waited the whole stall");
        assert_eq!(latencies[50], 50_010_000);
        assert_eq!(latencies[100], 10_000, "the last was due just as the stall ended");
        // A closed loop would have recorded one slow request; the corrected median is ~50 ms.
        latencies.sort_unstable();
        assert_eq!(latencies[latencies.len() / 2], 50_010_000);
    }

    #[test]
    fn nothing_is_taken_before_it_is_due_and_backlog_counts_what_is_late() {
        let mut schedule = Schedule::new(1_000, 10.0);
        assert_eq!(schedule.take_due(999), None);
        assert_eq!(schedule.backlog(999), 0);
        assert_eq!(schedule.take_due(1_000), Some(1_000));
        assert_eq!(schedule.take_due(1_001), None);
        assert_eq!(schedule.backlog(1_000 + NS_PER_S), 10);
        assert_eq!(schedule.issued(), 1);
        assert_eq!(schedule.next_due_ns(), 1_000 + NS_PER_S / 10);
    }

    #[test]
    fn flows_due_before_a_time_are_counted_exactly() {
        let schedule = Schedule::new(1_000, 10.0);
        assert_eq!(schedule.count_due_before(1_000), 0);
        assert_eq!(schedule.count_due_before(1_001), 1);
        // Flow 10 is due at exactly 1 s: not before it.
        assert_eq!(schedule.count_due_before(1_000 + NS_PER_S), 10);
        assert_eq!(schedule.count_due_before(1_001 + NS_PER_S), 11);
        let fractional = Schedule::new(0, 3.0);
        for at_ns in [
            1,
            333_333_333,
            333_333_334,
            666_666_666,
            666_666_667,
            NS_PER_S,
            NS_PER_S + 1,
        ] {
            let by_hand = (0..10).filter(|k| fractional.due_ns(*k) < at_ns).count() as u64;
            assert_eq!(fractional.count_due_before(at_ns), by_hand, "at {at_ns}");
        }
    }

    #[test]
    fn latency_never_wraps() {
        assert_eq!(latency_ns(10, 5), 0);
        assert_eq!(latency_ns(5, 10), 5);
    }
}
