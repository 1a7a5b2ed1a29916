//! A checksummed container of opaque sections: `snapshot-<lsn as 20 digits>.snap`.
//!
//! | offset | size | field            | notes                                  |
//! |-------:|-----:|------------------|----------------------------------------|
//! |      0 |    8 | magic            | `AUTHSNAP`                             |
//! |      8 |    4 | `format_version` | u32 LE, [`SNAPSHOT_FORMAT_VERSION`]    |
//! |     12 |    4 | `section_count`  | u32 LE, <= [`SNAPSHOT_SECTIONS_MAX`]   |
//! |     16 |    8 | `lsn`            | u64 LE, the lsn replay starts after (for the books, the registry's, the smallest of the parts'); equals the name |
//! |     24 |    4 | `crc32c`         | u32 LE, CRC-32C of bytes 0..24         |
//! |     28 |    4 | reserved         | zero                                   |
//! |     32 |    - | sections         | each: length u64 LE, crc32c u32 LE of the section bytes, reserved u32 zero, then the bytes |
//!
//! The file ends right after the last section; anything else is invalid. Version history: 1,
//! the first.
//!
//! [`SnapshotWriter`] streams sections into `<name>.tmp`, at most `pace` bytes a second if
//! given, with an fdatasync every [`PACED_SYNC_BYTES`]. It can [`SnapshotWriter::reserve`] a
//! section's room and [`SnapshotWriter::fill`] it later (unreadable until filled).
//! [`SnapshotWriter::finish`] writes the header with the final count, syncs, renames into place
//! and syncs the dir, so a snapshot under its final name was complete when it was renamed;
//! dropped unfinished, the writer removes the `.tmp`. [`write_snapshot`] is the unpaced,
//! one-call form. [`read_newest_snapshot`] still validates everything and falls back to an
//! older snapshot, reporting each invalid one.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::num::NonZeroU64;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::segment::sync_dir;
use super::{Lsn, WalError};

/// Snapshot format version written and accepted.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Most sections in one snapshot.
pub const SNAPSHOT_SECTIONS_MAX: u32 = 1 << 20;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_BYTES: usize = 32;
/// Bytes before each section.
pub const SECTION_HEADER_BYTES: usize = 16;

const MAGIC: [u8; 8] = *b"AUTHSNAP";
const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".snap";
const CRC_OFFSET: usize = 24;

/// A valid snapshot read whole into memory; sections borrow its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    /// The last lsn the contents cover: replay the log after it.
    pub lsn: Lsn,
    bytes: Vec<u8>,
    sections: Vec<Range<usize>>,
}

impl Snapshot {
    /// Number of sections.
    pub fn section_count(&self) -> usize {
        self.sections.len()
    }

    /// The sections in the order they were written.
    pub fn sections(&self) -> impl Iterator<Item = &[u8]> {
        self.sections.iter().map(|range| &self.bytes[range.clone()])
    }
}

/// What [`read_newest_snapshot`] found: the newest valid snapshot and every newer one it had
/// to skip (each a [`WalError::SnapshotInvalid`] for the caller to log).
#[derive(Debug)]
pub struct SnapshotScan {
    pub newest: Option<Snapshot>,
    pub skipped: Vec<WalError>,
}

/// The file name of the snapshot covering up to `lsn`.
pub fn snapshot_file_name(lsn: Lsn) -> String {
    format!("{NAME_PREFIX}{:020}{NAME_SUFFIX}", lsn)
}

fn parse_snapshot_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_header(lsn: Lsn, section_count: u32) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0; SNAPSHOT_HEADER_BYTES];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&section_count.to_le_bytes());
    header[16..24].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..CRC_OFFSET]);
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Writes the sections as the snapshot covering up to `lsn`, atomically and durably, as fast
/// as the disk goes. Returns the snapshot's path.
pub fn write_snapshot<'a>(
    dir: &Path,
    lsn: Lsn,
    sections: impl IntoIterator<Item = &'a [u8]>,
) -> Result<PathBuf, WalError> {
    let mut writer = SnapshotWriter::create(dir, lsn, None)?;
    for section in sections {
        writer.section(section)?;
    }
    writer.finish()
}

/// A snapshot being written: sections go to `<name>.tmp` as they come, and
/// [`SnapshotWriter::finish`] syncs the file and renames it into place. Dropped unfinished (an
/// error, a log that failed meanwhile), it removes the temporary file.
///
/// With a `pace`, at most that many bytes a second are written, synced every
/// [`PACED_SYNC_BYTES`]. A snapshot of full hold tables is over a gigabyte: written at once
/// and synced at the end, the disk took it all in one go while the log's fdatasyncs waited
/// behind it (0.3-0.5 s with no answer at 500,000 purchases a second). Paced, a log sync
/// waits for one step at most.
pub struct SnapshotWriter {
    dir: PathBuf,
    lsn: Lsn,
    temporary: PathBuf,
    writer: BufWriter<File>,
    /// Renamed into place: nothing to remove when dropped.
    finished: bool,
    /// Bytes written so far: where the next section starts.
    offset: u64,
    section_count: u32,
    step: PacedStep,
}

/// A section whose place was kept ([`SnapshotWriter::reserve`]) to be filled in later.
#[derive(Debug)]
pub struct ReservedSection {
    offset: u64,
    len: usize,
}

impl SnapshotWriter {
    /// Start the snapshot covering up to `lsn` in `dir`.
    pub fn create(dir: &Path, lsn: Lsn, pace: Option<NonZeroU64>) -> Result<SnapshotWriter, WalError> {
        let temporary = dir.join(format!("{}{TEMPORARY_SUFFIX}", snapshot_file_name(lsn)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(|error| WalError::io("create", &temporary, error))?;
        let mut snapshot = SnapshotWriter {
            dir: dir.to_path_buf(),
            lsn,
            temporary,
            writer: BufWriter::with_capacity(1 << 20, file),
            finished: false,
            offset: 0,
            section_count: 0,
            step: PacedStep::new(pace),
        };
        // The real header, with the section count, is written by `finish`.
        snapshot.write(&encode_header(lsn, 0))?;
        Ok(snapshot)
    }

    /// Append a section.
    pub fn section(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        assert!(
            self.section_count < SNAPSHOT_SECTIONS_MAX,
            "too many snapshot sections"
        );
        self.write(&section_header(bytes))?;
        for chunk in bytes.chunks(PACED_SYNC_BYTES) {
            self.write(chunk)?;
            if self.step.wrote(chunk.len()) {
                self.flush()?;
                self.file()
                    .sync_data()
                    .map_err(|error| self.io_error("sync", error))?;
                self.step.synced();
            }
        }
        self.section_count += 1;
        Ok(())
    }

    /// Keep the place of a section of `len` bytes, to be filled in by [`SnapshotWriter::fill`].
    /// Until then its header's reserved bytes are not zero, so a snapshot whose reserved
    /// section was never filled does not read (all zeroes would read as an empty section).
    pub fn reserve(&mut self, len: usize) -> Result<ReservedSection, WalError> {
        assert!(
            self.section_count < SNAPSHOT_SECTIONS_MAX,
            "too many snapshot sections"
        );
        let offset = self.offset;
        let mut unfilled = [0; SECTION_HEADER_BYTES];
        unfilled[12..].copy_from_slice(&u32::MAX.to_le_bytes());
        self.write(&unfilled)?;
        for chunk in vec![0; len].chunks(PACED_SYNC_BYTES) {
            self.write(chunk)?;
        }
        self.section_count += 1;
        Ok(ReservedSection { offset, len })
    }

    /// Fill in a reserved section with `bytes`, which must have the length reserved.
    pub fn fill(&mut self, reserved: ReservedSection, bytes: &[u8]) -> Result<(), WalError> {
        assert_eq!(
            bytes.len(),
            reserved.len,
            "a section fills exactly the room reserved"
        );
        self.flush()?;
        let file = self.file();
        file.write_all_at(&section_header(bytes), reserved.offset)
            .and_then(|()| file.write_all_at(bytes, reserved.offset + SECTION_HEADER_BYTES as u64))
            .map_err(|error| self.io_error("write", error))
    }

    /// Write the header, sync the file, rename it into place and sync the dir. Returns the
    /// snapshot's path.
    pub fn finish(mut self) -> Result<PathBuf, WalError> {
        self.flush()?;
        let file = self.file();
        file.write_all_at(&encode_header(self.lsn, self.section_count), 0)
            .map_err(|error| self.io_error("write", error))?;
        file.sync_all().map_err(|error| self.io_error("sync", error))?;
        let path = self.dir.join(snapshot_file_name(self.lsn));
        fs::rename(&self.temporary, &path).map_err(|error| self.io_error("rename", error))?;
        // In place: nothing to remove any more, whatever happens next.
        self.finished = true;
        sync_dir(&self.dir).map_err(|error| WalError::io("sync", &self.dir, error))?;
        Ok(path)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.writer
            .write_all(bytes)
            .map_err(|error| WalError::io("write", &self.temporary, error))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Write what is buffered to the file.
    fn flush(&mut self) -> Result<(), WalError> {
        self.writer
            .flush()
            .map_err(|error| WalError::io("write", &self.temporary, error))
    }

    /// The file (what is buffered is not in it: [`SnapshotWriter::flush`] first).
    fn file(&self) -> &File {
        self.writer.get_ref()
    }

    fn io_error(&self, action: &'static str, error: std::io::Error) -> WalError {
        WalError::io(action, &self.temporary, error)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Unfinished: a full disk is the usual cause, so give the space back. (A crash
            // leaves the file to `remove_stale_temporaries`.)
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// The header of a section: length, checksum, four reserved zero bytes.
fn section_header(bytes: &[u8]) -> [u8; SECTION_HEADER_BYTES] {
    let mut header = [0; SECTION_HEADER_BYTES];
    header[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    header[8..12].copy_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    header
}

/// What a snapshot is written as before its rename.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Bytes a paced snapshot writes between two of its fdatasyncs.
pub const PACED_SYNC_BYTES: usize = 1 << 20;

/// Removes snapshot files a crash left half written. Call it holding the dir's lock.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io("list", dir, error)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io("list", dir, error))?;
        let name = entry.file_name();
        let stale = name
            .to_str()
            .and_then(|name| name.strip_suffix(TEMPORARY_SUFFIX))
            .and_then(parse_snapshot_file_name)
            .is_some();
        if stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(|error| WalError::io("remove", &path, error))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Where a paced write stands: bytes since the last sync, and when that step began.
struct PacedStep {
    pace: Option<NonZeroU64>,
    unsynced: usize,
    began: Instant,
}

impl PacedStep {
    fn new(pace: Option<NonZeroU64>) -> PacedStep {
        PacedStep {
            pace,
            unsynced: 0,
            began: Instant::now(),
        }
    }

    /// `bytes` more were written; true when a sync is due (only when paced).
    fn wrote(&mut self, bytes: usize) -> bool {
        self.unsynced += bytes;
        self.pace.is_some() && self.unsynced >= PACED_SYNC_BYTES
    }

    /// The step was synced: wait out what is left of its share of time, start the next.
    fn synced(&mut self) {
        if let Some(pace) = self.pace {
            let share = Duration::from_secs_f64(self.unsynced as f64 / pace.get() as f64);
            if let Some(left) = share.checked_sub(self.began.elapsed()) {
                std::thread::sleep(left);
            }
        }
        self.unsynced = 0;
        self.began = Instant::now();
    }
}

/// Snapshot files in `dir`, newest first.
fn list_snapshots(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io("list", dir, error)),
    };
    let mut snapshots = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io("list", dir, error))?;
        if let Some(lsn) = entry.file_name().to_str().and_then(parse_snapshot_file_name) {
            snapshots.push((lsn, entry.path()));
        }
    }
    snapshots.sort_by_key(|snapshot| std::cmp::Reverse(snapshot.0));
    Ok(snapshots)
}

/// The newest valid snapshot in `dir`; invalid newer ones are skipped and reported.
pub fn read_newest_snapshot(dir: &Path) -> Result<SnapshotScan, WalError> {
    let mut skipped = Vec::new();
    for (lsn, path) in list_snapshots(dir)? {
        let bytes = fs::read(&path).map_err(|error| WalError::io("read", &path, error))?;
        match parse_snapshot(&bytes, lsn) {
            Ok(sections) => {
                let newest = Snapshot {
                    path,
                    lsn,
                    bytes,
                    sections,
                };
                return Ok(SnapshotScan {
                    newest: Some(newest),
                    skipped,
                });
            }
            Err(reason) => skipped.push(WalError::SnapshotInvalid { path, reason }),
        }
    }
    Ok(SnapshotScan {
        newest: None,
        skipped,
    })
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// Validates a whole snapshot file and returns the byte range of each section.
fn parse_snapshot(bytes: &[u8], named_lsn: Lsn) -> Result<Vec<Range<usize>>, String> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(format!("{} bytes is shorter than its header", bytes.len()));
    }
    if bytes[..8] != MAGIC {
        return Err("bad magic".into());
    }
    if read_u32(bytes, CRC_OFFSET) != crc32c::crc32c(&bytes[..CRC_OFFSET]) || read_u32(bytes, 28) != 0 {
        return Err("header checksum mismatch".into());
    }
    let version = read_u32(bytes, 8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let section_count = read_u32(bytes, 12);
    if section_count > SNAPSHOT_SECTIONS_MAX {
        return Err(format!("{section_count} sections exceed {SNAPSHOT_SECTIONS_MAX}"));
    }
    let lsn = read_u64(bytes, 16);
    if lsn != named_lsn {
        return Err(format!("header lsn {lsn} differs from the file name"));
    }
    let mut sections = Vec::with_capacity(section_count as usize);
    let mut offset = SNAPSHOT_HEADER_BYTES;
    for index in 0..section_count {
        let Some(header) = bytes.get(offset..offset + SECTION_HEADER_BYTES) else {
            return Err(format!(
                "truncated: section {index} header at offset {offset} is missing"
            ));
        };
        let length = read_u64(header, 0);
        let start = offset + SECTION_HEADER_BYTES;
        let available = (bytes.len() - start) as u64;
        if length > available {
            return Err(format!(
                "truncated: section {index} at offset {offset} needs {length} bytes, {available} left"
            ));
        }
        let range = start..start + length as usize;
        if read_u32(header, 8) != crc32c::crc32c(&bytes[range.clone()]) || read_u32(header, 12) != 0 {
            return Err(format!("section {index} at offset {offset}: checksum mismatch"));
        }
        offset = range.end;
        sections.push(range);
    }
    if offset != bytes.len() {
        return Err(format!(
            "{} unexpected bytes after the last section",
            bytes.len() - offset
        ));
    }
    Ok(sections)
}

/// The snapshots in `dir` older than `lsn`.
pub fn snapshots_before(dir: &Path, lsn: Lsn) -> Result<Vec<PathBuf>, WalError> {
    Ok(list_snapshots(dir)?
        .into_iter()
        .filter(|(snapshot_lsn, _)| *snapshot_lsn < lsn)
        .map(|(_, path)| path)
        .collect())
}

/// Removes snapshots older than `lsn`; returns what it removed.
pub fn remove_snapshots_before(dir: &Path, lsn: Lsn) -> Result<Vec<PathBuf>, WalError> {
    let removed = snapshots_before(dir, lsn)?;
    for path in &removed {
        fs::remove_file(path).map_err(|error| WalError::io("remove", path, error))?;
    }
    if !removed.is_empty() {
        sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_sections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sections: [&[u8]; 3] = [b"shard 0", b"", b"shard 2 with more bytes"];
        write_snapshot(dir.path(), 77, sections).expect("write");
        let scan = read_newest_snapshot(dir.path()).expect("read");
        let snapshot = scan.newest.expect("a snapshot");
        assert!(scan.skipped.is_empty());
        assert_eq!(snapshot.lsn, 77);
        assert_eq!(snapshot.sections().collect::<Vec<_>>(), sections.to_vec());
    }

    #[test]
    fn a_paced_snapshot_takes_its_bytes_over_time_and_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Sections of 2.5 steps and of less than one: steps cross section boundaries.
        let big: Vec<u8> = (0..PACED_SYNC_BYTES * 5 / 2).map(|index| index as u8).collect();
        let sections: [&[u8]; 2] = [&big, b"tail"];
        let started = Instant::now();
        let mut writer = SnapshotWriter::create(dir.path(), 9, NonZeroU64::new(20_000_000)).expect("create");
        for section in sections {
            writer.section(section).expect("write");
        }
        writer.finish().expect("finish");
        // Two whole steps were synced and waited for; the rest is synced with the file.
        let floor = Duration::from_secs_f64(2.0 * PACED_SYNC_BYTES as f64 / 20e6);
        assert!(started.elapsed() >= floor, "{:?} < {floor:?}", started.elapsed());
        let snapshot = read_newest_snapshot(dir.path())
            .expect("read")
            .newest
            .expect("a snapshot");
        assert_eq!(snapshot.sections().collect::<Vec<_>>(), sections.to_vec());
    }

    #[test]
    fn a_reserved_section_is_filled_in_place_and_an_unfilled_one_does_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = SnapshotWriter::create(dir.path(), 3, None).expect("create");
        let meta = writer.reserve(4).expect("reserve");
        writer.section(b"after").expect("write");
        writer.fill(meta, b"meta").expect("fill");
        writer.finish().expect("finish");
        let snapshot = read_newest_snapshot(dir.path())
            .expect("read")
            .newest
            .expect("a snapshot");
        assert_eq!(snapshot.sections().collect::<Vec<_>>(), [&b"meta"[..], b"after"]);

        // Empty, the one case where zeroes would pass as a section.
        let mut writer = SnapshotWriter::create(dir.path(), 4, None).expect("create");
        let _never_filled = writer.reserve(0).expect("reserve");
        writer.finish().expect("finish");
        let scan = read_newest_snapshot(dir.path()).expect("read");
        assert_eq!(scan.newest.map(|snapshot| snapshot.lsn), Some(3), "falls back");
        assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
    }

    #[test]
    fn an_unfinished_snapshot_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = SnapshotWriter::create(dir.path(), 8, None).expect("create");
        writer.section(b"half").expect("write");
        drop(writer);
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn only_a_paced_write_syncs_in_steps() {
        let mut unpaced = PacedStep::new(None);
        assert!(!unpaced.wrote(PACED_SYNC_BYTES * 4), "one sync, at the end");
        let mut paced = PacedStep::new(NonZeroU64::new(u64::MAX));
        assert!(!paced.wrote(PACED_SYNC_BYTES - 1));
        assert!(paced.wrote(1), "a whole step");
        paced.synced();
        assert!(!paced.wrote(1), "counted from the sync");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sections: [&[u8]; 2] = [b"ab", b"cdef"];
        let path = write_snapshot(dir.path(), 5, sections).expect("write");
        let bytes = fs::read(path).expect("read");
        assert!(parse_snapshot(&bytes, 5).is_ok());
        for length in 0..bytes.len() {
            assert!(parse_snapshot(&bytes[..length], 5).is_err(), "length {length}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_snapshot(&flipped, 5).is_err(), "bit {bit}");
        }
    }
}
