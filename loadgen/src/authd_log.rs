//! What authd's own counters (STATS) say about its log: how many records and fdatasyncs the
//! measured phase wrote (readings at its start and end), and fdatasync's latency, which authd
//! keeps in one histogram since it started (with `--spawn`: this run, provisioning and warm-up
//! included).
//!
//! On a shared virtual disk the fdatasync latency moves from run to run, and with `--fsync
//! always` every reply waits for one: the same offer command measured a p99 of 3.0 ms while
//! authd's fdatasync p99 was 0.35 ms, and 27 ms while it was 2.4 ms. Printed beside the
//! latencies, it tells whether a tail came from the disk or from authd.

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
                _ => {}
            }
        }
        log
    }

    /// Asks authd (over an operator connection).
    pub fn read(client: &mut Client) -> anyhow::Result<AuthdLog> {
        match client.call(&Request::Stats(Stats {}))? {
            Reply::Stats(reply) if reply.code == 0 => Ok(AuthdLog::from_counters(
                reply
                    .counters
                    .as_slice()
                    .iter()
                    .map(|entry| (entry.counter, entry.value)),
            )),
            other => anyhow::bail!("STATS: unexpected reply {other:?}"),
        }
    }

    /// The phase from the earlier reading `before` to this one.
    pub fn since(&self, before: &AuthdLog) -> AuthdLog {
        AuthdLog {
            records: self.records.saturating_sub(before.records),
            syncs: self.syncs.saturating_sub(before.syncs),
            ..*self
        }
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        if self.syncs == 0 {
            return format!(
                "authd log: {} records, no fdatasync while measuring",
                self.records
            );
        }
        format!(
            "authd log: {} records in {} fdatasyncs while measuring ({:.1} each); fdatasync p50 {} us, \
             p99 {} us, max {} us since authd started",
            self.records,
            self.syncs,
            self.records as f64 / self.syncs as f64,
            self.sync_p50_us,
            self.sync_p99_us,
            self.sync_max_us
        )
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_counters_are_picked_by_id_and_the_run_is_the_difference() {
        let before = AuthdLog::from_counters([(counter::LOG_RECORDS, 100), (counter::LOG_SYNCS, 10)]);
        let after = AuthdLog::from_counters([
            (counter::REPLIES, 999),
            (counter::LOG_RECORDS, 1_100),
            (counter::LOG_SYNCS, 60),
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
                sync_max_us: 4_000
            }
        );
        assert_eq!(
            run.summary(),
            "authd log: 1000 records in 50 fdatasyncs while measuring (20.0 each); fdatasync p50 120 us, \
             p99 350 us, max 4000 us since authd started"
        );
        assert_eq!(run.to_json()["sync_us"]["p99"], 350);
    }

    #[test]
    fn a_run_without_fdatasync_says_so() {
        let after = AuthdLog::from_counters([(counter::LOG_RECORDS, 5)]);
        let run = after.since(&AuthdLog::default());
        assert!(run.summary().contains("no fdatasync"), "{}", run.summary());
    }
}
