//! When the snapshot thread writes a snapshot: `--snapshot-interval-s` after the previous
//! attempt (the server counts from its end), if the log moved since the last snapshot
//! written. A snapshot that failed (a full disk, say) is tried again at the next
//! interval even if nothing moved since: the books it would have saved are still not saved.

use std::time::{Duration, Instant};

/// The snapshot thread's timing.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotSchedule {
    interval: Duration,
    /// The last attempt, written or not.
    last_attempt: Instant,
    /// The log's last lsn when the last snapshot was written (or the thread started).
    records_saved: u64,
}

impl SnapshotSchedule {
    /// A schedule starting at `now`, with the log at lsn `records`; a zero
    /// interval never snapshots.
    pub fn new(interval: Duration, now: Instant, records: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            interval,
            last_attempt: now,
            records_saved: records,
        }
    }

    /// Whether to snapshot at `now`, with the log at lsn `records`.
    pub fn due(&self, now: Instant, records: u64) -> bool {
        !self.interval.is_zero()
            && now.duration_since(self.last_attempt) >= self.interval
            && records > self.records_saved
    }

    /// A snapshot was attempted at `now` with the log at lsn `records`; `written` says whether it
    /// reached the disk.
    pub fn attempted(&mut self, now: Instant, records: u64, written: bool) {
        self.last_attempt = now;
        if written {
            self.records_saved = records;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_snapshot_is_due_each_interval_once_the_log_moved() {
        let start = Instant::now();
        let mut schedule = SnapshotSchedule::new(SECOND, start, 10);
        assert!(!schedule.due(start + SECOND / 2, 11), "not before the interval");
        assert!(!schedule.due(start + SECOND, 10), "nothing new to save");
        assert!(schedule.due(start + SECOND, 11));
        schedule.attempted(start + SECOND, 11, true);
        assert!(
            !schedule.due(start + 3 * SECOND, 11),
            "saved, and nothing moved since"
        );
        assert!(
            !schedule.due(start + SECOND + SECOND / 2, 12),
            "the interval runs from the attempt"
        );
        assert!(schedule.due(start + 2 * SECOND, 12));
    }

    #[test]
    fn a_failed_snapshot_is_tried_again_next_interval_without_new_records() {
        let start = Instant::now();
        let mut schedule = SnapshotSchedule::new(SECOND, start, 0);
        schedule.attempted(start + SECOND, 5, false);
        assert!(!schedule.due(start + SECOND + SECOND / 2, 5), "not every tick");
        assert!(
            schedule.due(start + 2 * SECOND, 5),
            "retried though no record came since"
        );
    }

    #[test]
    fn a_zero_interval_never_snapshots() {
        let start = Instant::now();
        let schedule = SnapshotSchedule::new(Duration::ZERO, start, 0);
        assert!(!schedule.due(start + 1000 * SECOND, 1_000_000));
    }
}
