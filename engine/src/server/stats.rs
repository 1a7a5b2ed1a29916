//! Server counters: requests by reason, connections, the log's work, and a requests-per-second
//! figure refreshed by the server's ticker. Relaxed atomics: they are statistics, read while
//! they move.

use std::sync::atomic::{AtomicU64, Ordering};

use wire::counter;
use wire::messages::reply::{Counter, StatsReply};
use wire::types::List;

use crate::reason::Reason;
use crate::store::Store;
use crate::wal::FsyncMode;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Stats {
    replies: AtomicU64,
    replies_per_s: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections refused at the limit.
    pub connections_refused: AtomicU64,
    /// Log-ons refused.
    pub logons_failed: AtomicU64,
    /// Malformed frames.
    pub frames_malformed: AtomicU64,
    by_reason: [AtomicU64; Reason::ALL.len()],
    last_replies: AtomicU64,
}

impl Stats {
    /// Count a reply with this reason byte.
    pub fn count_reply(&self, reason: u8) {
        self.replies.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = self.by_reason.get(usize::from(reason)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Called once a second by the ticker: refresh the per-second figure.
    pub fn tick_second(&self) {
        let replies = self.replies.load(Ordering::Relaxed);
        let before = self.last_replies.swap(replies, Ordering::Relaxed);
        self.replies_per_s
            .store(replies.saturating_sub(before), Ordering::Relaxed);
    }

    /// Replies sent so far.
    pub fn replies(&self) -> u64 {
        self.replies.load(Ordering::Relaxed)
    }

    /// The STATS reply.
    pub fn reply(&self, store: &Store) -> StatsReply {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let wal = store.wal().stats();
        let mut counters = vec![
            (counter::REPLIES, load(&self.replies)),
            (counter::REPLIES_PER_S, load(&self.replies_per_s)),
            (counter::CONNECTIONS_OPEN, load(&self.connections_open)),
            (counter::CONNECTIONS_ACCEPTED, load(&self.connections_accepted)),
            (counter::CONNECTIONS_REFUSED, load(&self.connections_refused)),
            (counter::LOGONS_FAILED, load(&self.logons_failed)),
            (counter::LOG_RECORDS, wal.records_written),
            (counter::LOG_SYNCS, wal.syncs),
            (counter::LOG_SYNC_P50_US, wal.sync_us_p50),
            (counter::LOG_SYNC_P99_US, wal.sync_us_p99),
            (counter::LOG_SYNC_MAX_US, wal.sync_us_max),
            (counter::FRAMES_MALFORMED, load(&self.frames_malformed)),
            (counter::LOG_SYNC_US, wal.sync_us),
            (
                counter::LOG_FSYNC_ALWAYS,
                u64::from(wal.fsync_mode == FsyncMode::Always),
            ),
            (counter::LOG_SEGMENTS_STARTED, wal.segments_created),
            (counter::LOG_SEGMENTS_REUSED, wal.segments_reused),
        ];
        counters.extend(
            counter::LOG_HELD_PAST
                .iter()
                .zip(wal.held_us_past)
                .map(|((id, _threshold_us), value)| (*id, value)),
        );
        for (reason, counter) in self.by_reason.iter().enumerate() {
            let value = load(counter);
            if value > 0 {
                counters.push((counter::REASON_BASE + reason as u16, value));
            }
        }
        counters.truncate(wire::messages::reply::COUNTERS_PER_REPLY_MAX);
        let counters = counters
            .into_iter()
            .map(|(counter, value)| Counter { counter, value })
            .collect();
        StatsReply {
            code: 0,
            reason: 0,
            counters: List::new(counters).unwrap_or_else(|| unreachable!("truncated to the maximum")),
        }
    }
}

#[cfg(test)]
mod tests {
    use wire::counter;

    use super::Stats;
    use crate::reason::Reason;
    use crate::wal::HELD_PAST_US;

    #[test]
    fn a_stats_reply_carries_every_reason_and_says_replies_wait_for_fdatasync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::open_for_tests(dir.path());
        let stats = Stats::default();
        for reason in Reason::ALL {
            stats.count_reply(reason as u8);
        }
        let reply = stats.reply(&store);
        let value = |id: u16| {
            reply
                .counters
                .as_slice()
                .iter()
                .find(|entry| entry.counter == id)
                .map(|entry| entry.value)
        };
        for reason in Reason::ALL {
            assert_eq!(value(counter::REASON_BASE + reason as u16), Some(1), "{reason:?}");
        }
        assert_eq!(value(counter::LOG_FSYNC_ALWAYS), Some(1));
        // The store opened with its first segment, a zero-filled one (nothing to reuse).
        assert_eq!(value(counter::LOG_SEGMENTS_STARTED), Some(1));
        assert_eq!(value(counter::LOG_SEGMENTS_REUSED), Some(0));
        for (id, _) in counter::LOG_HELD_PAST {
            assert!(value(id).is_some(), "held-time counter {id}");
        }
    }

    #[test]
    fn the_held_time_counters_name_the_logs_thresholds() {
        let thresholds = counter::LOG_HELD_PAST.map(|(_id, threshold_us)| threshold_us);
        assert_eq!(thresholds, HELD_PAST_US);
    }
}
