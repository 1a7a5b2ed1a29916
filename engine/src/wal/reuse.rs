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
//!
//! A fresh data dir has nothing to reuse until its second snapshot. With
//! `--wal-preallocate-mb` the log zero-fills free segments when it opens, before authd
//! serves ([`preallocate`]), and a snapshot's removal keeps that many of the free segments the
//! log did not take, whichever they are.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::removal::REMOVING_SUFFIX;
use super::segment::{
    parse_segment_file_name, segment_file_name, sync_dir, PreparedSegment, PREPARED_FILE_NAME,
};
use super::{Lsn, WalConfig, WalError};

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

/// Whether the file at `path` is `segment_bytes` long (one whose size cannot be read is not).
pub(super) fn is_of_size(path: &Path, segment_bytes: u64) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.len() == segment_bytes)
}

/// Takes a free segment of `segment_bytes` as the next one to write, if `dir` has one: renamed
/// to `prepared` and the dir synced. One of another size (`--segment-bytes` changed) stays
/// free, for the next snapshot's removal to take apart at its pace; one that went meanwhile (a
/// removal took it) is skipped.
pub(super) fn take(dir: &Path, prepared: &Path, segment_bytes: u64) -> io::Result<Option<PreparedSegment>> {
    let free = free_segments(dir).map_err(|error| io::Error::other(error.to_string()))?;
    for path in free {
        if !is_of_size(&path, segment_bytes) {
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

/// Zero-fills free segments of the configured size until `config.dir` holds as many as
/// [`WalConfig::preallocate_bytes`] make (rounded up to whole segments), counting those there
/// already; returns how many it wrote. Each is prepared like any segment
/// ([`PreparedSegment::prepare`]: reserved first, so a full disk fails here and not under
/// load), then renamed free under a name no segment of this log will have: the first lsns
/// counted down from `u64::MAX` whose free name, and that name set aside for removal, are not
/// taken, so that segments a snapshot freed, named by lower lsns, are taken first. The dir is
/// synced once at the end. A failure removes the unfinished file and tells what was ready.
pub fn preallocate(config: &WalConfig) -> Result<usize, WalError> {
    let dir = config.dir.as_path();
    let wanted = config.segments_for(config.preallocate_bytes);
    let found = free_segments(dir)?
        .iter()
        .filter(|path| is_of_size(path, config.segment_bytes))
        .count();
    let unused_name = |free: &PathBuf| {
        let mut removing = free.as_os_str().to_owned();
        removing.push(REMOVING_SUFFIX);
        !free.exists() && !Path::new(&removing).exists()
    };
    let names = (0..=Lsn::MAX)
        .rev()
        .map(|lsn| dir.join(format!("{}{FREE_SUFFIX}", segment_file_name(lsn))))
        .filter(unused_name);
    for (ready, free) in (found..wanted).zip(names) {
        let prepared = PreparedSegment::prepare(dir, config.segment_bytes)
            .and_then(|prepared| fs::rename(dir.join(PREPARED_FILE_NAME), &free).map(|()| drop(prepared)));
        if let Err(error) = prepared {
            let _ = fs::remove_file(dir.join(PREPARED_FILE_NAME));
            return Err(WalError::preallocate(dir, wanted, ready, error));
        }
    }
    let written = wanted.saturating_sub(found);
    if written > 0 {
        sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_ahead(dir: &Path, segments: u64) -> WalConfig {
        let mut config = WalConfig::new(dir);
        config.segment_bytes = 8192;
        config.preallocate_bytes = segments * config.segment_bytes;
        config
    }

    #[test]
    fn preallocation_tops_up_the_free_segments_of_the_size_with_zeroes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Four segments: part of one rounds up to a whole.
        let mut config = written_ahead(dir.path(), 3);
        config.preallocate_bytes += 1;
        // Free ones of the size count (a freed one, one written ahead by an earlier start),
        // one of another size does not; neither a free name nor a name set aside for removal
        // is written over.
        let freed = free_file(dir.path(), 7, 8192);
        let other_size = free_file(dir.path(), 8, 4096);
        let ahead_before = free_file(dir.path(), Lsn::MAX, 8192);
        let removing = dir.path().join(format!(
            "{}{FREE_SUFFIX}{REMOVING_SUFFIX}",
            segment_file_name(Lsn::MAX - 1)
        ));
        fs::write(&removing, vec![0xEE; 8192]).expect("write");
        assert_eq!(preallocate(&config).expect("preallocate"), 2);
        let free = free_segments(dir.path()).expect("list");
        let written = dir
            .path()
            .join(format!("{}{FREE_SUFFIX}", segment_file_name(Lsn::MAX - 2)));
        let written_too = dir
            .path()
            .join(format!("{}{FREE_SUFFIX}", segment_file_name(Lsn::MAX - 3)));
        // By name: what a snapshot freed is taken before what was written ahead.
        assert_eq!(
            free,
            [freed, other_size, written_too, written, ahead_before.clone()]
        );
        for path in &free[2..4] {
            let bytes = fs::read(path).expect("read");
            assert!(
                bytes.len() == 8192 && bytes.iter().all(|&byte| byte == 0),
                "{path:?}"
            );
        }
        for untouched in [&ahead_before, &removing] {
            assert_eq!(
                fs::read(untouched).expect("read"),
                vec![0xEE; 8192],
                "{untouched:?}"
            );
        }
        assert!(!dir.path().join(PREPARED_FILE_NAME).exists());
        assert_eq!(preallocate(&config).expect("again"), 0);
        // Taken, they are written again at the next open.
        let prepared = dir.path().join(PREPARED_FILE_NAME);
        for _ in 0..3 {
            take(dir.path(), &prepared, 8192)
                .expect("take")
                .expect("one fits");
            fs::remove_file(&prepared).expect("remove");
        }
        assert_eq!(preallocate(&config).expect("after taking"), 3);
        assert_eq!(free_segments(dir.path()).expect("list").len(), 5);
        assert_eq!(preallocate(&written_ahead(dir.path(), 0)).expect("none"), 0);
    }

    #[test]
    fn a_failed_preallocation_removes_its_file_and_says_what_was_ready_and_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Segments larger than any file the file system allows stand in for a full disk.
        let mut config = written_ahead(dir.path(), 2);
        config.segment_bytes = 1 << 60;
        config.preallocate_bytes = 2 << 60;
        let error = preallocate(&config).expect_err("fails");
        let message = error.to_string();
        assert!(
            matches!(
                error,
                WalError::Preallocate {
                    wanted: 2,
                    ready: 0,
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains("or lower --wal-preallocate-mb"), "{message}");
        assert!(!dir.path().join(PREPARED_FILE_NAME).exists());
        let full = WalError::preallocate(dir.path(), 4, 1, io::Error::from_raw_os_error(28));
        assert!(
            full.to_string().contains("(--wal-preallocate-mb; 1 ready)"),
            "{full}"
        );
        assert!(full.to_string().contains("free disk space, or lower"), "{full}");
    }

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
