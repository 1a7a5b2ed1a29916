//! What authd's own counters (STATS) say about its log: how many records and fdatasyncs the
//! measured phase wrote (readings at its start and end), and fdatasync's latency, which authd
//! keeps in one histogram since it started (with `--spawn`: this run, provisioning and warm-up
//! included).
//!
//! On a shared virtual disk the fdatasync latency moves from run to run, and with `--fsync
//! always` every reply waits for one: the same offer command measured a p99 of 3.0 ms while
//! authd's fdatasync p99 was 0.35 ms, and 27 ms while it was 2.4 ms. Printed beside the
//! latencies, it tells whether a tail came from the disk or from authd.
//!
//! For an open-loop run it also gives the disk floor ([`AuthdLog::disk_floor`]): a request
//! that arrives during an fdatasync waits at least for the rest of it and the whole next one,
//! and authd counts the time in which that wait exceeds each threshold (PROTOCOL.md, STATS,
//! counters 14 to 18, says what a sync's time includes). Over the phase, it is the least share
//! of evenly arriving requests that waited longer than the threshold for fdatasyncs alone.
//! When that share is over 1%, no p99 at or below the threshold was possible in that run
//! without faster syncs. It holds for requests sent when due that write a record (purchases
//! and offers; a capture is sent at a reply, an echo writes nothing).

use serde_json::{json, Value};
use wire::counter;
use wire::messages::operator::Stats;
use wire::{Reply, Request};

use wire::client::Client;

/// authd's log counters: as one STATS reply gives them (everything since authd started), or
/// for a phase once [`AuthdLog::since`] took off an earlier reading (the counts become the
/// phase's; the latencies stay authd's since it started: it keeps one histogram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthdLog {
    /// Records written.
    pub records: u64,
    /// fdatasyncs.
    pub syncs: u64,
    /// fdatasync latency since authd started, microseconds.
    pub sync_p50_us: u64,
    pub sync_p99_us: u64,
    pub sync_max_us: u64,
    /// Microseconds inside fdatasync.
    pub sync_us: u64,
    /// Microseconds in which fdatasyncs alone would have held an arriving request past each
    /// threshold of [`counter::LOG_HELD_PAST`].
    pub held_us_past: [u64; counter::LOG_HELD_PAST.len()],
    /// Whether every reply waits for its fdatasync; `None` from an authd that does not say
    /// (one older than the held-time counters).
    pub fsync_always: Option<bool>,
    /// Log segments started, and of those reused rather than zero-filled (each of the rest
    /// wrote a segment of zeroes, which the log's fdatasyncs wait behind on a disk with a
    /// write-back cache).
    pub segments_started: u64,
    pub segments_reused: u64,
    /// When it was read (loadgen's monotonic clock), nanoseconds; for a phase, its length.
    pub read_at_ns: u64,
}

/// The least share of requests that the disk alone kept waiting past each threshold, beside
/// the share loadgen measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskFloor {
    /// For each threshold of [`counter::LOG_HELD_PAST`] (shortest first), a share from 0 to 1.
    pub share_past: [f64; counter::LOG_HELD_PAST.len()],
    /// The share of the measured requests past each threshold, when known.
    pub measured_past: Option<[f64; counter::LOG_HELD_PAST.len()]>,
}

/// Percentiles the floor is stated for, as (name, share of requests above it).
pub const FLOOR_PERCENTILES: [(&str, f64); 3] = [("p99", 0.01), ("p99.9", 0.001), ("p99.99", 0.0001)];

impl DiskFloor {
    /// The longest threshold that the percentile with `tail` of the requests above it cannot
    /// be below (more than `tail` were held past it), in microseconds.
    pub fn percentile_at_least_us(&self, tail: f64) -> Option<u64> {
        thresholds_us()
            .zip(self.share_past)
            .rev()
            .find(|(_, share)| *share > tail)
            .map(|(threshold_us, _)| threshold_us)
    }

    /// The two summary lines.
    pub fn summary(&self) -> String {
        let bounds: Vec<String> = FLOOR_PERCENTILES
            .iter()
            .filter_map(|(name, tail)| {
                self.percentile_at_least_us(*tail)
                    .map(|threshold_us| format!("{name} >= {} ms", threshold_us / 1_000))
            })
            .collect();
        let bounds = if bounds.is_empty() {
            "no bound on p99.99 or below".to_string()
        } else {
            bounds.join(", ")
        };
        let thresholds: Vec<String> = thresholds_us()
            .map(|threshold_us| (threshold_us / 1_000).to_string())
            .collect();
        let mut text = format!(
            "disk floor (what authd's fdatasyncs alone forced): {bounds}\n  \
             requests past {} ms: at least {} held by fdatasyncs",
            thresholds.join(", "),
            percents(self.share_past.iter().copied())
        );
        if let Some(measured) = &self.measured_past {
            text.push_str(&format!("; measured {}", percents(measured.iter().copied())));
        }
        text
    }

    /// The `disk_floor` object of the JSON report.
    pub fn to_json(&self) -> Value {
        let shares = by_threshold(self.share_past.iter().map(|share| json!(share)));
        let bounds: serde_json::Map<String, Value> = FLOOR_PERCENTILES
            .iter()
            .map(|(name, tail)| (name.replace('.', ""), json!(self.percentile_at_least_us(*tail))))
            .collect();
        let measured = self
            .measured_past
            .map(|measured| by_threshold(measured.iter().map(|share| json!(share))));
        json!({"share_past_us": shares, "measured_share_past_us": measured, "at_least_us": bounds})
    }
}

/// Shares as percentages, comma-separated.
fn percents(shares: impl Iterator<Item = f64>) -> String {
    shares
        .map(|share| format!("{:.3}%", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The held-time thresholds, microseconds, shortest first.
fn thresholds_us() -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator {
    counter::LOG_HELD_PAST
        .into_iter()
        .map(|(_, threshold_us)| threshold_us)
}

/// A JSON object of one value per held-time threshold, keyed by the threshold in
/// microseconds ("1000", "2000", ...), shortest first.
fn by_threshold(values: impl Iterator<Item = Value>) -> serde_json::Map<String, Value> {
    thresholds_us()
        .map(|threshold_us| threshold_us.to_string())
        .zip(values)
        .collect()
}

impl AuthdLog {
    /// Picks the log counters out of a STATS reply's (id, value) pairs; absent ones are 0.
    pub fn from_counters(counters: impl IntoIterator<Item = (u16, u64)>) -> AuthdLog {
        let mut log = AuthdLog::default();
        for (id, value) in counters {
            match id {
                counter::LOG_RECORDS => log.records = value,
                counter::LOG_SYNCS => log.syncs = value,
                counter::LOG_SYNC_P50_US => log.sync_p50_us = value,
                counter::LOG_SYNC_P99_US => log.sync_p99_us = value,
                counter::LOG_SYNC_MAX_US => log.sync_max_us = value,
                counter::LOG_SYNC_US => log.sync_us = value,
                counter::LOG_FSYNC_ALWAYS => log.fsync_always = Some(value == 1),
                counter::LOG_SEGMENTS_STARTED => log.segments_started = value,
                counter::LOG_SEGMENTS_REUSED => log.segments_reused = value,
                _ => {
                    if let Some(index) = counter::LOG_HELD_PAST.iter().position(|(past, _)| *past == id) {
                        log.held_us_past[index] = value;
                    }
                }
            }
        }
        log
    }

    /// Asks authd (over an operator connection).
    pub fn read(client: &mut Client) -> anyhow::Result<AuthdLog> {
        match client.call(&Request::Stats(Stats {}))? {
            Reply::Stats(reply) if reply.code == 0 => Ok(AuthdLog {
                read_at_ns: crate::clock::now_ns(),
                ..AuthdLog::from_counters(
                    reply
                        .counters
                        .as_slice()
                        .iter()
                        .map(|entry| (entry.counter, entry.value)),
                )
            }),
            other => anyhow::bail!("STATS: unexpected reply {other:?}"),
        }
    }

    /// The phase from the earlier reading `before` to this one.
    pub fn since(&self, before: &AuthdLog) -> AuthdLog {
        AuthdLog {
            records: self.records.saturating_sub(before.records),
            syncs: self.syncs.saturating_sub(before.syncs),
            sync_us: self.sync_us.saturating_sub(before.sync_us),
            segments_started: self.segments_started.saturating_sub(before.segments_started),
            segments_reused: self.segments_reused.saturating_sub(before.segments_reused),
            held_us_past: std::array::from_fn(|index| {
                self.held_us_past[index].saturating_sub(before.held_us_past[index])
            }),
            read_at_ns: self.read_at_ns.saturating_sub(before.read_at_ns),
            ..*self
        }
    }

    /// The disk floor of a phase (this is [`AuthdLog::since`] its start, and `read_at_ns` its
    /// length), for requests arriving evenly over it (an open loop) whose replies waited for
    /// their records; `None` unless authd said every reply waits for its fdatasync, or
    /// without fdatasyncs or a span.
    pub fn disk_floor(&self) -> Option<DiskFloor> {
        if self.fsync_always != Some(true) || self.syncs == 0 || self.read_at_ns == 0 {
            return None;
        }
        let span_us = self.read_at_ns as f64 / 1_000.0;
        Some(DiskFloor {
            share_past: self
                .held_us_past
                .map(|held_us| (held_us as f64 / span_us).min(1.0)),
            measured_past: None,
        })
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        if self.syncs == 0 {
            return format!(
                "authd log: {} records, no fdatasync while measuring",
                self.records
            );
        }
        let zero_filled = self.segments_started.saturating_sub(self.segments_reused);
        let mut line = format!(
            "authd log: {} records in {} fdatasyncs while measuring ({:.1} each), {} segments \
             started ({zero_filled} zero-filled); fdatasync p50 {} us, p99 {} us, max {} us since authd started",
            self.records,
            self.syncs,
            self.records as f64 / self.syncs as f64,
            self.segments_started,
            self.sync_p50_us,
            self.sync_p99_us,
            self.sync_max_us
        );
        if zero_filled > 0 {
            line.push_str(
                "\n  each zero-fill wrote a segment of zeroes beside the log, as a fresh data dir \
                 does; a node in service writes over old segments (authd --wal-preallocate-mb)",
            );
        }
        line
    }

    /// The `authd_log` object of the JSON report.
    pub fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "syncs": self.syncs,
            "sync_us": {
                "p50": self.sync_p50_us,
                "p99": self.sync_p99_us,
                "max": self.sync_max_us,
            },
            "sync_time_us": self.sync_us,
            "segments": {"started": self.segments_started, "reused": self.segments_reused},
            "held_time_past_us": by_threshold(self.held_us_past.iter().map(|value| json!(value))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_counters_are_picked_by_id_and_the_run_is_the_difference() {
        let before = AuthdLog::from_counters([
            (counter::LOG_RECORDS, 100),
            (counter::LOG_SYNCS, 10),
            (counter::LOG_SEGMENTS_STARTED, 1),
        ]);
        let after = AuthdLog::from_counters([
            (counter::REPLIES, 999),
            (counter::LOG_RECORDS, 1_100),
            (counter::LOG_SYNCS, 60),
            (counter::LOG_SEGMENTS_STARTED, 4),
            (counter::LOG_SEGMENTS_REUSED, 2),
            (counter::LOG_SYNC_P50_US, 120),
            (counter::LOG_SYNC_P99_US, 350),
            (counter::LOG_SYNC_MAX_US, 4_000),
            (counter::REASON_BASE + 51, 7),
        ]);
        let run = after.since(&before);
        assert_eq!(
            run,
            AuthdLog {
                records: 1_000,
                syncs: 50,
                sync_p50_us: 120,
                sync_p99_us: 350,
                sync_max_us: 4_000,
                segments_started: 3,
                segments_reused: 2,
                ..AuthdLog::default()
            }
        );
        assert_eq!(
            run.summary(),
            "authd log: 1000 records in 50 fdatasyncs while measuring (20.0 each), 3 segments started \
             (1 zero-filled); fdatasync p50 120 us, p99 350 us, max 4000 us since authd started\n  \
             each zero-fill wrote a segment of zeroes beside the log, as a fresh data dir does; a node \
             in service writes over old segments (authd --wal-preallocate-mb)"
        );
        let all_reused = AuthdLog {
            segments_reused: 3,
            ..run
        };
        assert!(all_reused
            .summary()
            .ends_with("(0 zero-filled); fdatasync p50 120 us, p99 350 us, max 4000 us since authd started"));
        assert_eq!(run.to_json()["sync_us"]["p99"], 350);
        assert_eq!(run.to_json()["segments"]["reused"], 2);
    }

    #[test]
    fn a_run_without_fdatasync_says_so() {
        let after = AuthdLog::from_counters([(counter::LOG_RECORDS, 5)]);
        let run = after.since(&AuthdLog::default());
        assert!(run.summary().contains("no fdatasync"), "{}", run.summary());
    }

    /// A reading of an authd with fsync always, taken `at_s` seconds into loadgen's clock.
    fn reading(at_s: u64, counters: &[(u16, u64)]) -> AuthdLog {
        AuthdLog {
            read_at_ns: at_s * 1_000_000_000,
            ..AuthdLog::from_counters(counters.iter().copied().chain([(counter::LOG_FSYNC_ALWAYS, 1)]))
        }
    }

    #[test]
    fn the_disk_floor_is_the_time_past_each_threshold_over_the_phase() {
        let before = reading(
            5,
            &[
                (counter::LOG_SYNCS, 10),
                (counter::LOG_SYNC_US, 1_000),
                (counter::LOG_HELD_PAST_1MS_US, 500),
                (counter::LOG_HELD_PAST_20MS_US, 100),
            ],
        );
        let after = reading(
            15,
            &[
                (counter::LOG_SYNCS, 1_010),
                (counter::LOG_SYNC_US, 2_001_000),
                (counter::LOG_HELD_PAST_1MS_US, 200_500),
                (counter::LOG_HELD_PAST_2MS_US, 150_000),
                (counter::LOG_HELD_PAST_5MS_US, 9_000),
                (counter::LOG_HELD_PAST_10MS_US, 2_000),
                (counter::LOG_HELD_PAST_20MS_US, 100),
            ],
        );
        let run = after.since(&before);
        assert_eq!(run.sync_us, 2_000_000);
        assert_eq!(run.held_us_past, [200_000, 150_000, 9_000, 2_000, 0]);
        // Over the 10 s between the readings: 2% past 1 ms, 1.5% past 2 ms, 0.09% past 5 ms,
        // 0.02% past 10 ms.
        let floor = run.disk_floor().expect("syncs in the phase");
        let shares = floor.share_past;
        assert_eq!(shares, [0.02, 0.015, 0.0009, 0.0002, 0.0]);
        assert_eq!(floor.percentile_at_least_us(0.01), Some(2_000));
        assert_eq!(floor.percentile_at_least_us(0.001), Some(2_000));
        assert_eq!(floor.percentile_at_least_us(0.0001), Some(10_000));
        assert_eq!(floor.percentile_at_least_us(0.5), None);
        let text = floor.summary();
        assert!(
            text.contains("p99 >= 2 ms, p99.9 >= 2 ms, p99.99 >= 10 ms"),
            "{text}"
        );
        assert!(
            text.contains(
                "requests past 1, 2, 5, 10, 20 ms: at least 2.000%, 1.500%, 0.090%, 0.020%, 0.000% held by fdatasyncs"
            ),
            "{text}"
        );
        assert!(!text.contains("measured"), "{text}");
        let json = floor.to_json();
        assert_eq!(json["share_past_us"]["2000"], 0.015);
        assert_eq!(json["at_least_us"]["p9999"], 10_000);
        assert_eq!(run.to_json()["held_time_past_us"]["5000"], 9_000);
    }

    #[test]
    fn exactly_the_tail_share_held_is_no_bound() {
        // Exactly 1% held past 5 ms, and exactly 0.01% past 20 ms: neither forces its
        // percentile past the threshold (more than the tail must be held).
        let floor = DiskFloor {
            // Past 1, 2, 5, 10 and 20 ms.
            share_past: [0.02, 0.01, 0.01, 0.0001, 0.0001],
            measured_past: None,
        };
        assert_eq!(floor.percentile_at_least_us(0.01), Some(1_000));
        assert_eq!(floor.percentile_at_least_us(0.0001), Some(5_000));
    }

    #[test]
    fn no_floor_without_fsync_always_without_syncs_or_from_an_older_authd() {
        let fast =
            reading(1, &[(counter::LOG_SYNCS, 100), (counter::LOG_SYNC_US, 20_000)]).since(&reading(0, &[]));
        let floor = fast.disk_floor().expect("syncs");
        assert_eq!(floor.percentile_at_least_us(0.0001), None);
        assert!(
            floor.summary().contains("no bound on p99.99 or below"),
            "{}",
            floor.summary()
        );
        let never = AuthdLog {
            fsync_always: Some(false),
            ..fast
        };
        assert_eq!(never.disk_floor(), None, "fsync never: replies wait for no sync");
        let older = AuthdLog {
            fsync_always: None,
            ..fast
        };
        assert_eq!(
            older.disk_floor(),
            None,
            "an authd without the held-time counters"
        );
        let no_syncs = AuthdLog { syncs: 0, ..fast };
        assert_eq!(no_syncs.disk_floor(), None);
    }
}
