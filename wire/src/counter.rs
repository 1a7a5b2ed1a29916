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
/// Replies with reason r are counted under `REASON_BASE + r` (only non-zero ones are sent).
pub const REASON_BASE: u16 = 100;
