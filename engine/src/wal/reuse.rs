//! Old segments kept for reuse, so that the log does not zero-fill a new file for every segment.
//!
//! A segment is zero-filled before it is used (see [`super::segment::PreparedSegment`]): 64 MiB
//! written and synced for every 64 MiB of records, which doubles what the log writes, and on a
//! disk with a write-back cache every log fdatasync during the fill waits for its zeroes too.
//! At 500,000 purchases a second, a roll every ~1.7 s: in ten runs (five pairs) with one
//! segment big enough for the whole run against the default, the share of requests that
//! fdatasyncs alone held past 10 ms was 0.2-1.0% against 8.9-17%; with reuse in a steady state
//! (a snapshot every 10 s), 2.9-4.7% against 10.4-13.3% without (BENCHMARKS.md, "Zero-filled
//! segments").
//!
//! A segment that a snapshot made redundant has every block written already. Instead of being
//! removed, it is renamed `<name>.free` ([`set_free`]), and the writer takes it ([`take`]) in
//! place of a zero-filled file: it writes the new header over its first page and records over
//! the old ones. Its old records stay past the new ones, so the log ends its records with at
//! least a record header of zeroes (`SegmentFile::append`), and recovery reads such a header as
//! the end of the segment whatever follows it (`recovery`, decision table).
//!
//! What is free is renamed `wal-next.prepare` before a byte of it changes, and the dir synced:
//! a crash can leave it under no segment name with a new header.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::segment::{parse_segment_file_name, sync_dir, PreparedSegment};
use super::WalError;

/// What a segment kept for reuse is called: its name and this.
pub const FREE_SUFFIX: &str = ".free";

/// Keeps the segment at `path` for reuse, under its name and [`FREE_SUFFIX`]. The caller syncs
/// the dir.
pub fn set_free(path: &Path) -> Result<(), WalError> {
    let mut free = path.as_os_str().to_owned();
    free.push(FREE_SUFFIX);
    fs::rename(path, &free).map_err(|error| WalError::io("rename", path, error))
}

/// The segments kept for reuse in `dir` (a segment's name and [`FREE_SUFFIX`]), by name
/// (oldest first).
pub fn free_segments(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let mut paths = Vec::new();
    let entries = fs::read_dir(dir).map_err(|error| WalError::io("list", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io("list", dir, error))?;
        let name = entry.file_name();
        let segment = name.to_str().and_then(|name| name.strip_suffix(FREE_SUFFIX));
        if segment.and_then(parse_segment_file_name).is_some() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Takes a free segment of `segment_bytes` as the next one to write, if `dir` has one: renamed
/// to `prepared` and the dir synced. One of another size (`--segment-bytes` changed) stays
/// free, for the next snapshot's removal to take apart at its pace; one that went meanwhile (a
/// removal took it) is skipped.
pub(super) fn take(dir: &Path, prepared: &Path, segment_bytes: u64) -> io::Result<Option<PreparedSegment>> {
    let free = free_segments(dir).map_err(|error| io::Error::other(error.to_string()))?;
    for path in free {
        if !fs::metadata(&path).is_ok_and(|meta| meta.len() == segment_bytes) {
            continue;
        }
        match fs::rename(&path, prepared) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        }
        sync_dir(dir)?;
        let file = fs::OpenOptions::new().read(true).write(true).open(prepared)?;
        return Ok(Some(PreparedSegment::reused(
            file,
            prepared.to_path_buf(),
            segment_bytes,
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::segment::{segment_file_name, PREPARED_FILE_NAME};

    fn free_file(dir: &Path, first_lsn: u64, bytes: usize) -> PathBuf {
        let path = dir.join(format!("{}{FREE_SUFFIX}", segment_file_name(first_lsn)));
        fs::write(&path, vec![0xEE; bytes]).expect("write");
        path
    }

    #[test]
    fn only_free_segments_of_the_size_are_taken_and_other_files_are_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prepared = dir.path().join(PREPARED_FILE_NAME);
        // Another size (--segment-bytes changed), and names that are no segment's.
        let other_size = free_file(dir.path(), 1, 8192);
        let strangers = ["notes.free", "wal-1.log.free", "wal-00000000000000000003.log"];
        for name in strangers {
            fs::write(dir.path().join(name), vec![0xEE; 4096]).expect("write");
        }
        assert_eq!(
            free_segments(dir.path()).expect("list"),
            std::slice::from_ref(&other_size)
        );
        assert!(take(dir.path(), &prepared, 4096).expect("take").is_none());
        assert!(other_size.exists() && !prepared.exists());
        // One of the size is taken, once.
        let fitting = free_file(dir.path(), 2, 4096);
        let taken = take(dir.path(), &prepared, 4096)
            .expect("take")
            .expect("one fits");
        assert!(taken.is_reused() && prepared.exists() && !fitting.exists());
        assert!(take(dir.path(), &prepared, 4096).expect("take").is_none());
        for name in strangers {
            assert!(dir.path().join(name).exists(), "{name}");
        }
    }
}
