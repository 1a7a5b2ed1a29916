//! Segment files: `wal-<first lsn as 20 digits>.log`, a header, then records.
//!
//! | offset | size | field            | notes                                  |
//! |-------:|-----:|------------------|----------------------------------------|
//! |      0 |    8 | magic            | `AUTHDWAL`                             |
//! |      8 |    4 | `format_version` | u32 LE, [`SEGMENT_FORMAT_VERSION`]     |
//! |     12 |    4 | reserved         | zero                                   |
//! |     16 |    8 | `first_lsn`      | u64 LE, equals the lsn in the name     |
//! |     24 |    4 | `crc32c`         | u32 LE, CRC-32C of bytes 0..24         |
//! |     28 |    4 | reserved         | zero                                   |
//! |     32 |    - | records          | back to back, see [`super::record`]    |
//!
//! Version history: 1, the first: the space after the last record is zeroes. 2: the last
//! record is followed by at least a record header of zeroes (or the end of the file), and what
//! comes after that may be the records of the file's earlier life as another segment
//! ([`super::reuse`]). Both are read; 2 is written.
//!
//! A segment is prepared as `wal-next.prepare`: an old segment kept for reuse
//! ([`super::reuse`]) if there is one of the configured size, else reserved with `fallocate`
//! and then overwritten with zeroes (see [`PreparedSegment::prepare`] for why both), synced;
//! when the writer rolls, it gets its header (and zeroes to the end of its first page), is
//! synced, renamed into place, and the dir synced: a segment under its final name always has a
//! complete header.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::record::{RecordFault, RECORD_HEADER_BYTES};
use super::{reuse, Lsn, WalError};

/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Segment format version written.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// The oldest segment format version read (its unused space is all zeroes, so it reads by the
/// rules of version 2).
pub const SEGMENT_FORMAT_VERSION_MIN: u32 = 1;
/// The first bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AUTHDWAL";

const VERSION_OFFSET: usize = 8;
const FIRST_LSN_OFFSET: usize = 16;
const CRC_OFFSET: usize = 24;
const _: () = assert!(CRC_OFFSET + 8 == SEGMENT_HEADER_BYTES as usize);

const NAME_PREFIX: &str = "wal-";
const NAME_SUFFIX: &str = ".log";
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first record is `first_lsn`.
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{NAME_PREFIX}{:020}{NAME_SUFFIX}", first_lsn)
}

/// The first lsn named by a segment file name, or `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment file found in the data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

/// Every segment in `dir`, by first lsn. A missing dir holds no segments.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentName>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(WalError::io("list", dir, error)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| WalError::io("list", dir, error))?;
        let name = entry.file_name();
        if let Some(first_lsn) = name.to_str().and_then(parse_segment_file_name) {
            if first_lsn == 0 {
                // Lsns start at 1: recovery would count down from 0.
                return Err(WalError::StraySegment { file: entry.path() });
            }
            segments.push(SegmentName {
                first_lsn,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// The header bytes of a segment starting at `first_lsn`.
pub fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0; SEGMENT_HEADER_BYTES as usize];
    header[..VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
    header[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header[FIRST_LSN_OFFSET..CRC_OFFSET].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..CRC_OFFSET]);
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Validates a segment header and returns its first lsn.
pub fn decode_segment_header(bytes: &[u8]) -> Result<Lsn, RecordFault> {
    let fault = |reason| Err(RecordFault::SegmentHeader { reason });
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
        return fault("file shorter than the segment header");
    };
    if header[..VERSION_OFFSET] != SEGMENT_MAGIC {
        return fault("bad magic");
    }
    let mut crc = [0; 4];
    crc.copy_from_slice(&header[CRC_OFFSET..CRC_OFFSET + 4]);
    if u32::from_le_bytes(crc) != crc32c::crc32c(&header[..CRC_OFFSET]) {
        return fault("checksum mismatch");
    }
    if header[CRC_OFFSET + 4..] != [0; 4] {
        return fault("reserved bytes are not zero");
    }
    let mut version = [0; 4];
    version.copy_from_slice(&header[VERSION_OFFSET..VERSION_OFFSET + 4]);
    if !(SEGMENT_FORMAT_VERSION_MIN..=SEGMENT_FORMAT_VERSION).contains(&u32::from_le_bytes(version)) {
        return fault("unknown format version");
    }
    let mut first_lsn = [0; 8];
    first_lsn.copy_from_slice(&header[FIRST_LSN_OFFSET..CRC_OFFSET]);
    let first_lsn = u64::from_le_bytes(first_lsn);
    if first_lsn == 0 {
        return fault("first lsn is 0");
    }
    Ok(first_lsn)
}

/// Syncs a directory so that creates, renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment the writer appends to.
#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    path: PathBuf,
    write_offset: u64,
    /// Bytes from the start of the file that the last fdatasync made durable.
    synced_to: u64,
    /// Bytes from the start of the file whose pages were dropped from the page cache.
    dropped_to: u64,
    capacity: u64,
    reused: bool,
}

/// Name of the file a segment is prepared in before it gets its header and its name.
pub const PREPARED_FILE_NAME: &str = "wal-next.prepare";
/// The page size the log pads its writes to (see [`SegmentFile::append`]).
pub const PAGE_BYTES: u64 = 4096;
/// Zeroes for a write's padding: up to the next page boundary, and a page more when that is
/// shorter than a record header (see [`SegmentFile::append`]).
static ZEROES: [u8; 2 * PAGE_BYTES as usize] = [0; 2 * PAGE_BYTES as usize];
const _: () = assert!(RECORD_HEADER_BYTES as u64 <= PAGE_BYTES);

/// Synced bytes the log lets gather before it drops their pages from the page cache in one
/// call (see [`SegmentFile::drop_synced_pages`]).
pub const DROP_CHUNK_BYTES: u64 = 256 * 1024;
/// The newest synced bytes whose pages stay cached: a page written moments ago may still sit
/// in a CPU's batch of pages on their way to the LRU lists (up to 31 folios a CPU), which the
/// kernel cannot drop without first draining every CPU's batch (`lru_add_drain_all`, work
/// queued on each CPU and waited for).
pub const DROP_LAG_BYTES: u64 = 1 << 20;
const _: () = assert!(DROP_CHUNK_BYTES.is_multiple_of(PAGE_BYTES));
const _: () = assert!(DROP_LAG_BYTES.is_multiple_of(PAGE_BYTES));

/// Bytes of zeroes written per call while preparing a segment.
const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;
/// Alignment of `O_DIRECT` buffers, offsets and lengths (the largest logical block size).
const DIRECT_ALIGNMENT_BYTES: usize = 4096;
const _: () = assert!(ZERO_FILL_CHUNK_BYTES.is_multiple_of(DIRECT_ALIGNMENT_BYTES));

/// A file of the segment size, zero-filled or an old segment kept for reuse, not yet a segment.
#[derive(Debug)]
pub struct PreparedSegment {
    file: File,
    path: PathBuf,
    segment_bytes: u64,
    reused: bool,
}

impl PreparedSegment {
    /// Reserves `segment_bytes` with `fallocate` (so a full disk shows here, not mid-log),
    /// then writes zeroes over all of it and syncs. Written blocks, unlike fallocated
    /// "unwritten" extents, need no extent conversion at the first write, so the writer's
    /// fdatasync has no metadata to journal (measured: ~130-150 us instead of ~210 us per
    /// 16 KiB write + fdatasync on this machine's ext4). The writer prepares the next segment
    /// on a background thread while it fills the current one.
    ///
    /// The zeroes bypass the page cache (`O_DIRECT`) where the file system allows it: written
    /// through the cache, 64 MiB of dirty pages joined the ext4 journal's ordered data, and
    /// every log fdatasync in the second after a roll waited for them (open loop at
    /// 300,000/s: a p99 of 15-40 ms in every third second, the segments' lifetime).
    pub fn prepare(dir: &Path, segment_bytes: u64) -> io::Result<PreparedSegment> {
        let path = dir.join(PREPARED_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, segment_bytes)?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(&path);
        let mut zeroes = vec![0; ZERO_FILL_CHUNK_BYTES + DIRECT_ALIGNMENT_BYTES];
        let mut offset = 0;
        if let Ok(direct) = direct {
            // O_DIRECT wants the buffer, the offset and the length aligned.
            let start = zeroes
                .as_ptr()
                .align_offset(DIRECT_ALIGNMENT_BYTES)
                .min(DIRECT_ALIGNMENT_BYTES);
            let aligned = &zeroes[start..start + ZERO_FILL_CHUNK_BYTES];
            let direct_end = segment_bytes - segment_bytes % DIRECT_ALIGNMENT_BYTES as u64;
            while offset < direct_end {
                let chunk = (direct_end - offset).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
                if direct.write_all_at(&aligned[..chunk], offset).is_err() {
                    break; // Not for this file system after all: the cache takes the rest.
                }
                offset += chunk as u64;
            }
        }
        zeroes.truncate(ZERO_FILL_CHUNK_BYTES);
        while offset < segment_bytes {
            let chunk = (segment_bytes - offset).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
            file.write_all_at(&zeroes[..chunk], offset)?;
            offset += chunk as u64;
        }
        file.sync_all()?;
        Ok(PreparedSegment {
            file,
            path,
            segment_bytes,
            reused: false,
        })
    }

    /// With `reuse`, an old segment of `segment_bytes` kept for reuse ([`reuse`]), if there is
    /// one: its blocks are written already. Else, or if taking one fails (the log must not
    /// stop for want of what is an optimisation), [`PreparedSegment::prepare`].
    pub fn reuse_or_prepare(dir: &Path, segment_bytes: u64, reuse: bool) -> io::Result<PreparedSegment> {
        if reuse {
            if let Ok(Some(reused)) = reuse::take(dir, &dir.join(PREPARED_FILE_NAME), segment_bytes) {
                return Ok(reused);
            }
        }
        PreparedSegment::prepare(dir, segment_bytes)
    }

    /// An old segment of `segment_bytes`, already renamed to `path` ([`reuse::take`]).
    pub(super) fn reused(file: File, path: PathBuf, segment_bytes: u64) -> PreparedSegment {
        PreparedSegment {
            file,
            path,
            segment_bytes,
            reused: true,
        }
    }

    /// Whether this is an old segment taken for reuse rather than a zero-filled file.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Gives the prepared file its header and zeroes to the end of its first page (over a
    /// reused segment's old records: the new segment reads as empty), syncs it, and renames it
    /// to the segment name of `first_lsn` (replacing a segment of that name, which the caller
    /// has made sure holds no records), then syncs the dir.
    pub fn activate(self, dir: &Path, first_lsn: Lsn) -> io::Result<SegmentFile> {
        let path = dir.join(segment_file_name(first_lsn));
        let mut first_page = [0; PAGE_BYTES as usize];
        first_page[..SEGMENT_HEADER_BYTES as usize].copy_from_slice(&encode_segment_header(first_lsn));
        let first_page_bytes = PAGE_BYTES.min(self.segment_bytes) as usize;
        self.file.write_all_at(&first_page[..first_page_bytes], 0)?;
        self.file.sync_data()?;
        fs::rename(&self.path, &path)?;
        sync_dir(dir)?;
        Ok(SegmentFile {
            file: self.file,
            path,
            write_offset: SEGMENT_HEADER_BYTES,
            synced_to: 0,
            dropped_to: 0,
            capacity: self.segment_bytes,
            reused: self.reused,
        })
    }
}

impl SegmentFile {
    /// Prepares and activates a new segment in one go (see [`PreparedSegment`]).
    pub fn create(dir: &Path, first_lsn: Lsn, segment_bytes: u64) -> io::Result<SegmentFile> {
        PreparedSegment::prepare(dir, segment_bytes)?.activate(dir, first_lsn)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is an old segment reused ([`reuse`]) rather than a zero-filled one.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Bytes still free for records.
    pub fn remaining(&self) -> u64 {
        self.capacity.saturating_sub(self.write_offset)
    }

    /// Writes `bytes` after the last record, and zeroes up to the next page boundary, or to
    /// the one after when fewer than a record header's bytes are left before it (and never past
    /// the end of the file). The zeroes end the segment's records for recovery: after them may
    /// come a reused segment's old records. And every page a write touches is either cached
    /// (the one the last write ended in) or overwritten whole, so the kernel never reads a page
    /// from disk to complete it: the zero-fill bypasses the cache, and without the padding each
    /// record that started a page made the pwrite wait for a read of that page
    /// (`ext4_block_write_begin` in a profile of the open loop).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(bytes.len() as u64 <= self.remaining());
        let end = self.write_offset + bytes.len() as u64;
        let mut to_boundary = (PAGE_BYTES - end % PAGE_BYTES) % PAGE_BYTES;
        if to_boundary < RECORD_HEADER_BYTES as u64 {
            to_boundary += PAGE_BYTES;
        }
        let padding = to_boundary.min(self.capacity.saturating_sub(end)) as usize;
        let slices = [io::IoSlice::new(bytes), io::IoSlice::new(&ZEROES[..padding])];
        let written = match rustix::io::pwritev(&self.file, &slices, self.write_offset) {
            Ok(written) => written,
            Err(rustix::io::Errno::INTR) => 0,
            Err(error) => return Err(error.into()),
        };
        // A short write: the rest of the records, then the rest of the padding (the zeroes
        // that end the records must be there whatever the write did).
        if written < bytes.len() {
            self.file
                .write_all_at(&bytes[written..], self.write_offset + written as u64)?;
        }
        let padded = written.saturating_sub(bytes.len());
        if padded < padding {
            self.file
                .write_all_at(&ZEROES[padded..padding], end + padded as u64)?;
        }
        self.write_offset = end;
        Ok(())
    }

    /// fdatasync: the records written so far survive a crash.
    pub fn sync_data(&mut self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.file)?;
        self.synced_to = self.write_offset;
        Ok(())
    }

    /// Drops from the page cache the synced pages older than the newest [`DROP_LAG_BYTES`],
    /// once [`DROP_CHUNK_BYTES`] of them have gathered. The page the next write continues in
    /// is among those kept (see [`SegmentFile::append`]). The log never reads these pages while
    /// it runs (recovery reads the files), and a page-cache page freed soon after its write is
    /// the one the next allocation gets, still in memory. Without this the log takes a new
    /// page for every 4 KiB, and on a VM whose free memory goes back to the host each costs a
    /// first touch (in a profile of the open loop, 9% of authd's time in copying records into
    /// the cache, and a further 9% in zeroing fresh pages for the hold rings: BENCHMARKS.md,
    /// "The log's pages dropped once synced"). Only synced pages are dropped, so with fsync
    /// `never` this happens after the sync of a roll (all of the segment but its newest MiB)
    /// and, at the next commit, after a snapshot's. A failed drop changes nothing but the
    /// cache, so it is not an error. Returns the bytes dropped.
    pub fn drop_synced_pages(&mut self) -> u64 {
        let end = (self.synced_to - self.synced_to % PAGE_BYTES).saturating_sub(DROP_LAG_BYTES);
        let Some(len) = end.checked_sub(self.dropped_to).and_then(NonZeroU64::new) else {
            return 0;
        };
        if len.get() < DROP_CHUNK_BYTES {
            return 0;
        }
        let advice = rustix::fs::Advice::DontNeed;
        if rustix::fs::fadvise(&self.file, self.dropped_to, Some(len), advice).is_err() {
            return 0;
        }
        self.dropped_to = end;
        len.get()
    }
}

/// Cuts a segment file at `length` bytes (dropping preallocated space or a torn tail) and
/// syncs it.
pub fn seal_segment(path: &Path, length: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| WalError::io("open", path, error))?;
    file.set_len(length)
        .map_err(|error| WalError::io("truncate", path, error))?;
    file.sync_all().map_err(|error| WalError::io("sync", path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_lsn_and_round_trip() {
        let name = segment_file_name(42);
        assert_eq!(name, "wal-00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&name), Some(42));
        assert_eq!(parse_segment_file_name("wal-42.log"), None);
        assert_eq!(parse_segment_file_name("wal-00000000000000000042.log.tmp"), None);
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn header_round_trips_and_every_flip_is_detected() {
        let header = encode_segment_header(5);
        assert_eq!(decode_segment_header(&header), Ok(5));
        for bit in 0..header.len() * 8 {
            let mut flipped = header;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_segment_header(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn a_prepared_segment_of_any_size_is_all_zeroes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Whole O_DIRECT chunks, a partial chunk, and a tail the cache must write.
        let sizes = [
            ZERO_FILL_CHUNK_BYTES as u64 * 2,
            ZERO_FILL_CHUNK_BYTES as u64 + 3 * DIRECT_ALIGNMENT_BYTES as u64,
            3 * DIRECT_ALIGNMENT_BYTES as u64 + 100,
        ];
        for size in sizes {
            // Old bytes where the segment goes: zero-filling must overwrite every one.
            fs::write(
                dir.path().join(PREPARED_FILE_NAME),
                vec![0xAB; size as usize + 10],
            )
            .expect("write");
            let prepared = PreparedSegment::prepare(dir.path(), size).expect("prepare");
            let bytes = fs::read(&prepared.path).expect("read");
            assert_eq!(bytes.len() as u64, size);
            assert!(bytes.iter().all(|&byte| byte == 0), "size {size}");
        }
    }

    #[test]
    fn appends_padded_to_a_page_leave_records_back_to_back_and_zeroes_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 3 * PAGE_BYTES + 100;
        let mut segment = SegmentFile::create(dir.path(), 1, size).expect("create");
        let mut expected = encode_segment_header(1).to_vec();
        // Within a page, across a boundary, and up to the very end (no padding past it).
        for (index, length) in [100usize, 5000, 3000].into_iter().enumerate() {
            let bytes = vec![index as u8 + 1; length];
            segment.append(&bytes).expect("append");
            expected.extend_from_slice(&bytes);
        }
        let last = vec![9; segment.remaining() as usize];
        segment.append(&last).expect("append");
        expected.extend_from_slice(&last);
        assert_eq!(segment.remaining(), 0);
        assert_eq!(fs::read(segment.path()).expect("read"), expected);
        let mut short = SegmentFile::create(dir.path(), 2, size).expect("create");
        short.append(&[7; 10]).expect("append");
        let bytes = fs::read(short.path()).expect("read");
        assert_eq!(bytes.len() as u64, size, "padding never grows the file");
        assert_eq!(&bytes[SEGMENT_HEADER_BYTES as usize..][..10], &[7; 10]);
        assert!(bytes[SEGMENT_HEADER_BYTES as usize + 10..]
            .iter()
            .all(|&byte| byte == 0));
    }

    #[test]
    fn a_segment_drops_only_synced_pages_a_lag_behind_and_keeps_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 8 * DROP_CHUNK_BYTES + DROP_LAG_BYTES;
        let mut segment = SegmentFile::create(dir.path(), 1, size).expect("create");
        let mut expected = encode_segment_header(1).to_vec();
        let mut drops = 0;
        // Record batches of odd sizes, so that writes start and end mid-page, synced as the
        // committer does, but only every third time: the drop must follow the syncs.
        for index in 0.. {
            let length = 1 + (index * 7919) % 20_000;
            if length as u64 > segment.remaining() {
                break;
            }
            let bytes = vec![(index % 251) as u8 + 1; length];
            segment.append(&bytes).expect("append");
            expected.extend_from_slice(&bytes);
            if index % 3 == 0 {
                segment.sync_data().expect("sync");
                assert_eq!(segment.synced_to, expected.len() as u64);
            }
            let before = segment.dropped_to;
            let dropped = segment.drop_synced_pages();
            let after = segment.dropped_to;
            assert_eq!(dropped, after - before);
            if after > before {
                drops += 1;
                assert!(after - before >= DROP_CHUNK_BYTES, "{before}..{after}");
            }
            assert_eq!(after % PAGE_BYTES, 0);
            let synced_page = segment.synced_to - segment.synced_to % PAGE_BYTES;
            assert!(
                after <= synced_page.saturating_sub(DROP_LAG_BYTES),
                "dropped to {after}, synced to {}",
                segment.synced_to
            );
        }
        assert!(drops >= 4, "the pages were dropped {drops} times");
        let bytes = fs::read(segment.path()).expect("read");
        assert_eq!(&bytes[..expected.len()], &expected[..]);
        assert!(bytes[expected.len()..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn over_a_reused_segment_every_append_is_followed_by_a_zero_record_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 3 * PAGE_BYTES;
        let free = dir
            .path()
            .join(format!("{}{}", segment_file_name(1), reuse::FREE_SUFFIX));
        fs::write(&free, vec![0xEE; size as usize]).expect("write");
        let prepared = PreparedSegment::reuse_or_prepare(dir.path(), size, true).expect("prepare");
        assert!(prepared.is_reused() && !free.exists());
        let mut segment = prepared.activate(dir.path(), 7).expect("activate");
        assert!(segment.is_reused());
        let bytes = fs::read(segment.path()).expect("read");
        assert_eq!(decode_segment_header(&bytes), Ok(7));
        let page = PAGE_BYTES as usize;
        assert!(bytes[SEGMENT_HEADER_BYTES as usize..page]
            .iter()
            .all(|&byte| byte == 0));
        assert!(
            bytes[page..].iter().all(|&byte| byte == 0xEE),
            "nothing zero-filled"
        );
        // One byte at a time, so that a write ends at every offset, near page boundaries too,
        // and at the end of the file (no padding past it).
        let mut end = SEGMENT_HEADER_BYTES as usize;
        while segment.remaining() > 0 {
            segment.append(&[0x11]).expect("append");
            end += 1;
            let bytes = fs::read(segment.path()).expect("read");
            assert_eq!(bytes.len() as u64, size, "padding never grows the file");
            let after = &bytes[end..(end + RECORD_HEADER_BYTES).min(bytes.len())];
            assert!(
                after.iter().all(|&byte| byte == 0),
                "after a write ending at {end}"
            );
            // Past the padding, the old bytes are left alone.
            let padded_to = (end + RECORD_HEADER_BYTES)
                .next_multiple_of(page)
                .min(bytes.len());
            assert!(bytes[padded_to..].iter().all(|&byte| byte == 0xEE), "end {end}");
        }
    }

    #[test]
    fn created_segment_is_preallocated_and_starts_with_its_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = SegmentFile::create(dir.path(), 1, 1 << 20).expect("create");
        let bytes = fs::read(segment.path()).expect("read");
        assert_eq!(bytes.len(), 1 << 20);
        assert_eq!(decode_segment_header(&bytes), Ok(1));
        assert_eq!(segment.remaining(), (1 << 20) - SEGMENT_HEADER_BYTES);
    }
}
