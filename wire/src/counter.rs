//! Counter ids in a STATS reply (PROTOCOL.md, "STATS", lists them): what authctl prints and
//! loadgen reads after a run.

/// Replies sent, all kinds.
pub const REPLIES: u16 = 1;
/// Requests per second over the last second.
pub const REPLIES_PER_S: u16 = 2;
/// Connections open now.
pub const CONNECTIONS_OPEN: u16 = 3;
/// Connections accepted since start.
pub const CONNECTIONS_ACCEPTED: u16 = 4;
/// Connections refused at `--connections-max`.
pub const CONNECTIONS_REFUSED: u16 = 5;
/// Log-ons refused (wrong secret, unknown id, rate limited).
pub const LOGONS_FAILED: u16 = 6;
/// Log records written.
pub const LOG_RECORDS: u16 = 7;
/// Log syncs (fdatasync).
pub const LOG_SYNCS: u16 = 8;
/// Log sync latency, median, microseconds.
pub const LOG_SYNC_P50_US: u16 = 9;
/// Log sync latency, 99th percentile, microseconds.
pub const LOG_SYNC_P99_US: u16 = 10;
/// Log sync latency, maximum, microseconds.
pub const LOG_SYNC_MAX_US: u16 = 11;
/// Frames refused as malformed.
pub const FRAMES_MALFORMED: u16 = 12;
/// Microseconds spent in log syncs.
pub const LOG_SYNC_US: u16 = 13;
/// Microseconds in which an arriving request would have waited more than 1 ms for log syncs
/// alone.
///
/// With `--fsync always` a request that arrives during a sync waits at least for the rest of it
/// and then the whole next sync (its record goes into a later batch). For each sync this counts
/// the part of it in which that rest plus the next sync exceed 1 ms. Over a span of time, it is
/// the least share of requests arriving evenly in that span, each writing a record, that waited
/// more than 1 ms for syncs alone (PROTOCOL.md, STATS, says what a sync's time includes). 0 with
/// `--fsync never`.
pub const LOG_HELD_PAST_1MS_US: u16 = 14;
/// The same as [`LOG_HELD_PAST_1MS_US`] for 2 ms.
pub const LOG_HELD_PAST_2MS_US: u16 = 15;
/// The same as [`LOG_HELD_PAST_1MS_US`] for 5 ms.
pub const LOG_HELD_PAST_5MS_US: u16 = 16;
/// The same as [`LOG_HELD_PAST_1MS_US`] for 10 ms.
pub const LOG_HELD_PAST_10MS_US: u16 = 17;
/// The same as [`LOG_HELD_PAST_1MS_US`] for 20 ms.
pub const LOG_HELD_PAST_20MS_US: u16 = 18;
/// 1 if every reply waits for its record's fdatasync (`--fsync always`), 0 if not.
pub const LOG_FSYNC_ALWAYS: u16 = 19;
/// Log segments started since start, zero-filled or reused.
pub const LOG_SEGMENTS_STARTED: u16 = 20;
/// Of [`LOG_SEGMENTS_STARTED`], old segments written over instead of zero-filled files
/// (`--wal-reuse-mb`): the rest wrote a whole segment of zeroes first.
pub const LOG_SEGMENTS_REUSED: u16 = 21;
/// The held-time counters with their thresholds in microseconds, shortest first.
pub const LOG_HELD_PAST: [(u16, u64); 5] = [
    (LOG_HELD_PAST_1MS_US, 1_000),
    (LOG_HELD_PAST_2MS_US, 2_000),
    (LOG_HELD_PAST_5MS_US, 5_000),
    (LOG_HELD_PAST_10MS_US, 10_000),
    (LOG_HELD_PAST_20MS_US, 20_000),
];
/// Replies with reason r are counted under `REASON_BASE + r` (only non-zero ones are sent).
pub const REASON_BASE: u16 = 100;
