//! The write-ahead log: a durable, ordered log of opaque payloads.
//!
//! The log knows nothing about the books. A caller hands it a timestamp and a payload of at most
//! [`RECORD_PAYLOAD_BYTES_MAX`] bytes and gets back the payload's log sequence number ([`Lsn`]);
//! once [`Wal::durable_lsn`] reaches that number the record survives a crash. The layout:
//!
//! - [`record`]: one record = a 24-byte little-endian header (crc32c, length, lsn, timestamp)
//!   and the payload. The checksum covers every byte after itself.
//! - [`segment`]: records live in segment files `wal-<first lsn, 20 digits>.log` in the data
//!   dir. Each starts with a 32-byte header (magic, format version, first lsn, checksum) and is
//!   preallocated to [`WalConfig::segment_bytes`] and zero-filled (on a background thread, ahead
//!   of need) so that fdatasync never has file metadata to write; or it is an old segment that
//!   a snapshot made redundant, kept for reuse ([`reuse`]), whose blocks are written already.
//!   When the next record does not fit, the writer syncs the full segment and starts the next
//!   one, so a segment that has a successor is always complete on disk.
//! - [`writer`]: group commit. [`Wal::append`] runs while the caller holds its shard lock: it
//!   takes one short mutex, assigns the next lsn and copies the record into the pending buffer
//!   (no syscall, no allocation). The log order is therefore the apply order (PERFORMANCE.md,
//!   "The ordering trap"), and "durable up to lsn P" is one number. One batch at a time is
//!   committed ([`committer`]): swap the pending buffer with the spare, write everything with
//!   one `pwrite`, sync once according to [`FsyncMode`], publish [`Wal::durable_lsn`] and call
//!   every notifier. The writer thread commits for everyone (group commit), except that an
//!   event loop that finds the log idle commits its own [`Batch`] in place, sparing a thread
//!   hand-off and two wake-ups per round trip. When the pending buffer holds
//!   [`WalConfig::pending_bytes_max`] bytes, `append` waits for the writer (backpressure). A
//!   failed write or sync stops the log for good (see [`WalError::Failed`]).
//! - [`recovery`]: [`read_log`] replays records in lsn order and classifies whatever ends the log
//!   (decision table in its module doc); [`Wal::open`] replays, cuts a torn tail, and continues
//!   at the next lsn in a fresh segment.
//! - [`lock`]: the `LOCK` file that keeps a second process out of the data dir.
//! - [`snapshot_file`]: a checksummed container of opaque sections written atomically; the
//!   books decide what goes in it.
//! - [`removal`]: big files (old segments and snapshots) removed a step at a time, so that the
//!   disk's discards do not hold the log's fdatasyncs.
//!
//! Startup order for a server: [`DirLock::acquire`], [`read_newest_snapshot`], then
//! [`Wal::open`] with the snapshot's lsn, replaying into the books from its visitor. After a new
//! snapshot is written, [`Wal::remove_segments_before`] drops the segments it covers. Keep the
//! segments back to the previous snapshot if a corrupt newest snapshot should still be
//! recoverable from the one before it.
//!
//! The formats, recovery rules and limits are also described in DESIGN.md ("The write-ahead log").

mod committer;
pub mod error;
pub mod lock;
pub mod record;
pub mod recovery;
pub mod removal;
pub mod reuse;
pub mod segment;
pub mod snapshot_file;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};

pub use error::{LockHolder, WalError};
pub use lock::DirLock;
pub use record::{RecordFault, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
pub use recovery::{read_log, CorruptionCut, LogEnd, ReadOptions, RecoveryReport, TornTail};
pub use segment::{SEGMENT_FORMAT_VERSION, SEGMENT_FORMAT_VERSION_MIN, SEGMENT_HEADER_BYTES};
pub use snapshot_file::{read_newest_snapshot, write_snapshot, Snapshot, SnapshotScan, SnapshotWriter};
pub use writer::{Batch, Committed, Durable, Notifier, Wal, WalStats, HELD_PAST_US};

/// Default size of one segment file (64 MiB); segments are preallocated to this size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest allowed segment: its header plus one record of the largest size.
pub const SEGMENT_BYTES_MIN: u64 = SEGMENT_HEADER_BYTES + RECORD_BYTES_MAX as u64;
/// Largest allowed segment (1 GiB); recovery reads one whole segment into memory at a time.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Default bound of the pending buffer (1 MiB): `append` waits when it is full.
pub const PENDING_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Largest allowed pending buffer (64 MiB); two buffers of this size are allocated.
pub const PENDING_BYTES_MAX_MAX: usize = 64 << 20;

/// Default pause of the writer thread before a commit that follows a large batch (100 us): see
/// [`WalConfig::commit_delay_us`].
pub const COMMIT_DELAY_US_DEFAULT: u64 = 100;
/// Longest allowed commit delay (10 ms).
pub const COMMIT_DELAY_US_MAX: u64 = 10_000;
/// Default size of a batch, in records, from which the next commit waits
/// ([`WalConfig::commit_delay_min_records`]).
pub const COMMIT_DELAY_MIN_RECORDS_DEFAULT: u64 = 64;

/// Default bound of the old segments kept for reuse (16 GiB: the log of five minutes, one
/// snapshot interval, at 1,000,000 purchases a second is about 24 GB, at 500,000 about 12).
pub const REUSE_BYTES_MAX_DEFAULT: u64 = 16 << 30;
/// Largest [`WalConfig::reuse_bytes_max`] and [`WalConfig::preallocate_bytes`] (1 TiB).
pub const FREE_BYTES_MAX_MAX: u64 = 1 << 40;

const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(RECORD_BYTES_MAX <= PENDING_BYTES_MAX_DEFAULT);
const _: () = assert!(PENDING_BYTES_MAX_DEFAULT <= PENDING_BYTES_MAX_MAX);

/// Log sequence number: the first record of a log is lsn 1; 0 means "nothing". The same
/// `u64` as `crate::ids::Lsn`, declared here too so that the log stands on its own.
pub type Lsn = u64;

/// When the writer syncs, and so when [`Wal::durable_lsn`] advances.
///
/// There is no "batch" mode (sync at most every N us): measured against `Always` with 4
/// appenders x 64 records in flight, a 500 us interval gathered 245 instead of 137 records per
/// sync but reached 290-305k instead of 700-805k records/s, and adds up to the interval to every
/// reply. `Always` already puts everything that arrives during one sync into the next. Under
/// heavy load only, the writer pauses briefly before a commit ([`WalConfig::commit_delay_us`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncMode {
    /// fdatasync after every write, then publish. The default.
    #[default]
    Always,
    /// Publish right after the write, never sync (except at [`Wal::close`]). A crash of the
    /// machine loses acknowledged records: for benchmarks only, and authd must say so.
    Never,
}

/// Test hook: makes the writer's next writes or syncs fail as if the disk were full.
#[derive(Debug, Default)]
pub struct FaultInjection {
    /// Every write fails with ENOSPC while set.
    pub fail_writes: AtomicBool,
    /// Every fdatasync fails with EIO while set.
    pub fail_syncs: AtomicBool,
    /// Every fdatasync takes at least this many microseconds more (a slow disk), so that
    /// tests can make commits overlap.
    pub sync_delay_us: AtomicU64,
}

/// How to run the log. Start from [`WalConfig::new`] and change what you need.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// The data dir holding segments, snapshots and the `LOCK` file.
    pub dir: PathBuf,
    /// Size of each segment file; [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`].
    pub segment_bytes: u64,
    /// Bound of the pending buffer; [`RECORD_BYTES_MAX`]..=[`PENDING_BYTES_MAX_MAX`].
    pub pending_bytes_max: usize,
    /// When to sync.
    pub fsync_mode: FsyncMode,
    /// Microseconds the writer thread waits before a commit that follows a batch of at least
    /// [`WalConfig::commit_delay_min_records`] records, so that the next batch is larger and
    /// the log makes fewer fdatasyncs under heavy load (each costs ~43 us of CPU here). 0 never
    /// waits; at most [`COMMIT_DELAY_US_MAX`]. No pause with [`FsyncMode::Never`], after a
    /// smaller batch, or after the writer went idle; a batch committed in place by an event
    /// loop waits for nothing.
    pub commit_delay_us: u64,
    /// The batch size, in records, from which the next commit waits `commit_delay_us`; >= 1.
    pub commit_delay_min_records: u64,
    /// Bytes of old segments kept for reuse instead of removed after a snapshot
    /// ([`reuse`]; the store decides which); 0 removes them all.
    pub reuse_bytes_max: u64,
    /// Bytes of segments written ahead when the log opens ([`reuse::preallocate`]): free
    /// segments zero-filled until there are this many (rounded up to whole segments), and as
    /// many free segments kept by a snapshot's removal, so that a fresh data dir does not
    /// zero-fill a segment per 64 MiB of records under load. 0 (the default) writes none ahead.
    pub preallocate_bytes: u64,
    /// Injected failures, for tests.
    pub faults: Option<std::sync::Arc<FaultInjection>>,
}

impl WalConfig {
    /// The defaults for a data dir.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            pending_bytes_max: PENDING_BYTES_MAX_DEFAULT,
            fsync_mode: FsyncMode::Always,
            commit_delay_us: COMMIT_DELAY_US_DEFAULT,
            commit_delay_min_records: COMMIT_DELAY_MIN_RECORDS_DEFAULT,
            reuse_bytes_max: REUSE_BYTES_MAX_DEFAULT,
            preallocate_bytes: 0,
            faults: None,
        }
    }

    /// Checks every value against its limit.
    pub fn validate(&self) -> Result<(), WalError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(WalError::Config {
                setting: "segment_bytes",
                value: self.segment_bytes,
                min: SEGMENT_BYTES_MIN,
                max: SEGMENT_BYTES_MAX,
            });
        }
        if !(RECORD_BYTES_MAX..=PENDING_BYTES_MAX_MAX).contains(&self.pending_bytes_max) {
            return Err(WalError::Config {
                setting: "pending_bytes_max",
                value: self.pending_bytes_max as u64,
                min: RECORD_BYTES_MAX as u64,
                max: PENDING_BYTES_MAX_MAX as u64,
            });
        }
        if self.commit_delay_us > COMMIT_DELAY_US_MAX {
            return Err(WalError::Config {
                setting: "commit_delay_us",
                value: self.commit_delay_us,
                min: 0,
                max: COMMIT_DELAY_US_MAX,
            });
        }
        for (setting, value) in [
            ("reuse_bytes_max", self.reuse_bytes_max),
            ("preallocate_bytes", self.preallocate_bytes),
        ] {
            if value > FREE_BYTES_MAX_MAX {
                return Err(WalError::Config {
                    setting,
                    value,
                    min: 0,
                    max: FREE_BYTES_MAX_MAX,
                });
            }
        }
        if self.commit_delay_min_records == 0 {
            return Err(WalError::Config {
                setting: "commit_delay_min_records",
                value: 0,
                min: 1,
                max: u64::MAX,
            });
        }
        Ok(())
    }

    /// Whether the log takes free segments ([`reuse`]) before it zero-fills one: with reuse on,
    /// or with segments written ahead.
    pub(crate) fn takes_free_segments(&self) -> bool {
        self.reuse_bytes_max > 0 || self.preallocate_bytes > 0
    }

    /// How many segments `bytes` make, rounded up (written ahead, at least what was asked).
    pub(crate) fn segments_for(&self, bytes: u64) -> usize {
        usize::try_from(bytes.div_ceil(self.segment_bytes)).unwrap_or(usize::MAX)
    }
}
