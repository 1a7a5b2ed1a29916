//! [`WalError`]: everything the log can refuse, with what the operator does next.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::RecordFault;
use super::Lsn;

/// Who holds the data dir's `LOCK` file, as far as its contents tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder(pub Option<u32>);

impl fmt::Display for LockHolder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(formatter, "pid {pid}"),
            None => formatter.write_str("another process (its pid is unreadable)"),
        }
    }
}

/// Errors of the log, the lock and the snapshot container. Cloneable so that a failure of
/// the writer can be handed to every caller.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WalError {
    /// Opening, reading, renaming or removing a file failed outside the writer.
    #[error(
        "cannot {action} {path}: {cause}; check that the data dir exists, is writable and \
             the disk is healthy"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        /// Told in the message, so not a `source` too (a chain printed whole would repeat it).
        cause: Arc<io::Error>,
    },
    /// The data dir is a file (or something else that is not a directory).
    #[error("data dir {dir} is not a directory; pass --data-dir with a directory, or a path to create one")]
    NotADir { dir: PathBuf },
    /// Another process holds the data dir.
    #[error("data dir {dir} is locked by {holder}; stop it or pass --data-dir")]
    Locked { dir: PathBuf, holder: LockHolder },
    /// The writer failed; the log is stopped for good. Nothing after `durable_lsn` was
    /// acknowledged.
    #[error(
        "{operation} {file} failed: {cause}; {advice}; nothing after lsn {durable_lsn} \
             was acknowledged"
    )]
    Failed {
        operation: &'static str,
        file: PathBuf,
        cause: Arc<io::Error>,
        advice: &'static str,
        durable_lsn: Lsn,
    },
    /// A bad record or segment header with valid log data after it.
    #[error(
        "log is corrupt at {file} offset {offset} ({fault}), but valid log data follows \
             at {followed_by} offset {followed_at}; restore the data dir from a backup, or \
             restart with --truncate-corrupt-log to cut the log at that offset (the cut bytes \
             are kept aside in .cut files)"
    )]
    Corrupt {
        file: PathBuf,
        offset: u64,
        fault: RecordFault,
        followed_by: PathBuf,
        followed_at: u64,
    },
    /// Records are missing between two segments (or before the first one).
    #[error(
        "log is missing lsns {first}..={last} (next present in {next_file}); restore the \
             missing segment files from a backup"
    )]
    Gap {
        first: Lsn,
        last: Lsn,
        next_file: PathBuf,
    },
    /// The log ends before the last record the snapshot being recovered from covers: lsns it
    /// vouched for are missing, and appending would hand them out again.
    #[error(
        "the log in {dir} ends at lsn {last_lsn}, but the newest snapshot covers records up to \
             lsn {covered}: the records it vouched for are missing (a disk that lost synced \
             writes, a log restored without its tail); restore the data dir from a backup, \
             or move the newest snapshot aside to recover from the one before it (if there is \
             one), or start with --truncate-corrupt-log to go on from the snapshot as it is"
    )]
    ShorterThanSnapshot {
        dir: PathBuf,
        last_lsn: Lsn,
        covered: Lsn,
    },
    /// Two segments claim the same lsns.
    #[error(
        "segment {file} starts at lsn {first_lsn}, but the segments before it already \
             reach lsn {last_lsn}; move the stray segment out of the data dir"
    )]
    Overlap {
        file: PathBuf,
        first_lsn: Lsn,
        last_lsn: Lsn,
    },
    /// A file named like a segment that authd never writes (first lsn 0).
    #[error("{file} is named like a log segment starting at lsn 0, which authd never writes; move it out of the data dir")]
    StraySegment { file: PathBuf },
    /// A payload over [`super::RECORD_PAYLOAD_BYTES_MAX`]: a caller's bug.
    #[error("payload of {bytes} bytes exceeds the record limit of {max} bytes")]
    PayloadTooLarge { bytes: usize, max: usize },
    /// Writing segments ahead ([`super::WalConfig::preallocate_bytes`]) failed.
    #[error(
        "cannot write {wanted} log segments ahead in {dir} (--wal-preallocate-mb; {ready} \
             ready): {cause}; {advice}, or lower --wal-preallocate-mb"
    )]
    Preallocate {
        dir: PathBuf,
        wanted: usize,
        ready: usize,
        cause: Arc<io::Error>,
        advice: &'static str,
    },
    /// A [`super::WalConfig`] value out of range.
    #[error("{setting} = {value} is out of range {min}..={max}")]
    Config {
        setting: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// A snapshot file that fails validation.
    #[error("snapshot {path} is invalid: {reason}")]
    SnapshotInvalid { path: PathBuf, reason: String },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl WalError {
    /// An [`WalError::Io`] for `action` on `path`.
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> WalError {
        WalError::Io {
            action,
            path: path.to_path_buf(),
            cause: Arc::new(source),
        }
    }

    /// A [`WalError::Preallocate`] with `ready` of `wanted` segments there, with advice chosen
    /// by the cause.
    pub fn preallocate(dir: &Path, wanted: usize, ready: usize, source: io::Error) -> WalError {
        let no_room = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT]
            .map(|errno| Some(errno.raw_os_error()))
            .contains(&source.raw_os_error());
        let advice = if no_room {
            "free disk space"
        } else {
            "check that the data dir is writable and the disk healthy"
        };
        WalError::Preallocate {
            dir: dir.to_path_buf(),
            wanted,
            ready,
            cause: Arc::new(source),
            advice,
        }
    }

    /// A [`WalError::Failed`] of the writer, with advice chosen by the cause.
    pub fn failed(operation: &'static str, file: &Path, source: io::Error, durable_lsn: Lsn) -> WalError {
        let disk_full = source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error());
        let advice = if disk_full {
            "free space and restart authd"
        } else {
            "check the disk (kernel log) and restart authd"
        };
        WalError::Failed {
            operation,
            file: file.to_path_buf(),
            cause: Arc::new(source),
            advice,
            durable_lsn,
        }
    }
}
