//! Reading the log back: replay in lsn order, and decide what ends it.
//!
//! [`read_log`] reads the segments that may hold records after `after` (the lsn a snapshot
//! covers), validates every record (checksum, then lsn = previous + 1) and hands those with
//! lsn > `after` to the visitor. It never changes a file; [`super::Wal::open`] applies what
//! the report says (cuts the tail, keeps cut bytes aside) before appending.
//!
//! Decision table (one test per row in `engine/tests/wal_recovery.rs`):
//!
//! | # | what the reader finds                                              | decision |
//! |---|--------------------------------------------------------------------|----------|
//! | 1 | no segment files                                                   | empty log; next lsn = after + 1 |
//! | 2 | records, then end of file, only zero bytes, or zero bytes up to the page boundary at least a record header away and then no valid record with lsn >= expected | clean end of that segment: what follows is the old records of a reused segment (format 2) or zeroes; a successor must then start at the lsn expected (rows 8, 9) |
//! | 3 | newest segment: bad bytes at X, no valid record after X            | torn tail: the log ends at X; reported in [`RecoveryReport::torn_tail`], its bytes kept aside (`<segment>.torn-<X>`) and cut by `Wal::open` |
//! | 4 | newest segment: bad bytes at X, a valid record (lsn >= expected) later in it | [`WalError::Corrupt`] naming file and X |
//! | 5 | older segment: bad bytes at X (a successor exists, and a segment is synced before its successor is created) | [`WalError::Corrupt`] naming file and X |
//! | 6 | rows 4-5 with [`ReadOptions::truncate_corrupt`]                    | the log ends at X; [`RecoveryReport::cut`] names what `Wal::open` keeps aside (`<segment>.cut-<X>`, later segments renamed `*.cut`) |
//! | 7 | a segment whose header is bad or disagrees with its name           | bad bytes at offset 0: rows 3-6 apply |
//! | 8 | next segment starts after the lsn expected (a missing segment), or the first one starts after `after + 1` | [`WalError::Gap`] naming the missing lsns |
//! | 9 | next segment starts before the lsn expected                        | [`WalError::Overlap`] |
//! | 10| a record with lsn <= `after`                                       | validated, not visited |
//!
//! "Bad bytes" is any record that fails [`super::record::decode`], has an unexpected lsn, or
//! a zero record header that row 2 does not take for the end. Row 4 also catches an unsynced
//! tail that the kernel wrote out of order before a power loss: such records were never
//! acknowledged, so cutting with the truncate option loses nothing acknowledged; the log
//! refuses to decide alone. An unsynced fragment with no whole record in it, past the zeroes
//! that pad a write to a page boundary, reads as a reused segment's old bytes (row 2): the
//! segment is cut there, as the torn tail of row 3 would be, but the fragment is not kept
//! aside. Non-zero bytes before that boundary are bad bytes.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::record::{self, RecordFault, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use super::segment::{self, SegmentName, PAGE_BYTES, SEGMENT_HEADER_BYTES};
use super::{Lsn, WalError, SEGMENT_BYTES_MAX};

/// How [`read_log`] treats corruption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// End the log at the first corrupt record instead of failing (the operator's explicit
    /// `--truncate-corrupt-log`). The cut is reported, never silent.
    pub truncate_corrupt: bool,
}

/// Where the valid log ends: `Wal::open` cuts the segment there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    pub file: PathBuf,
    pub offset: u64,
}

/// A torn record at the end of the newest segment (a crash mid-write): cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the zeroes of a write's padding, or else to the file's last
    /// non-zero byte (kept aside by `Wal::open`).
    pub bytes: u64,
    pub fault: RecordFault,
}

/// Corruption cut away at the operator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionCut {
    pub file: PathBuf,
    pub offset: u64,
    pub fault: RecordFault,
    /// Segments after `file`, dropped from the log whole.
    pub later_segments: Vec<PathBuf>,
}

/// What [`read_log`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records up to this lsn were not visited (the snapshot has them).
    pub after: Lsn,
    /// The lsn the log reaches: its last record, or the one before an empty newest segment.
    pub last_lsn: Lsn,
    /// The lsn the next append gets: `max(last_lsn, after) + 1`.
    pub next_lsn: Lsn,
    /// Records handed to the visitor.
    pub records_read: u64,
    /// Records validated but not visited (lsn <= after).
    pub records_skipped: u64,
    /// Segment files read.
    pub segments_read: u64,
    /// The end of the valid log, if any segment was read.
    pub end: Option<LogEnd>,
    pub torn_tail: Option<TornTail>,
    pub cut: Option<CorruptionCut>,
    /// Files `Wal::open` wrote or renamed to keep cut bytes aside (empty from [`read_log`]).
    pub kept_aside: Vec<PathBuf>,
    /// Lsns the snapshot covers that the log does not hold, skipped on the operator's word
    /// ([`ReadOptions::truncate_corrupt`]; `Wal::open_covering` only): first and last.
    pub lsns_skipped: Option<(Lsn, Lsn)>,
    /// Free segments `Wal::open` zero-filled ahead ([`super::reuse::preallocate`]; 0 from
    /// [`read_log`]).
    pub preallocated: usize,
}

impl RecoveryReport {
    /// The report of a log with nothing after `after`.
    fn empty(after: Lsn) -> RecoveryReport {
        RecoveryReport {
            after,
            last_lsn: after,
            next_lsn: after + 1,
            records_read: 0,
            records_skipped: 0,
            segments_read: 0,
            end: None,
            torn_tail: None,
            cut: None,
            kept_aside: Vec::new(),
            lsns_skipped: None,
            preallocated: 0,
        }
    }
}

/// How one segment's records end.
enum SegmentStop {
    Clean { offset: usize },
    Bad { offset: usize, fault: RecordFault },
}

/// Replays the records with lsn > `after` in order; see the module doc for what ends the log.
/// The visitor's error stops the replay and is returned.
pub fn read_log<E, F>(
    dir: &Path,
    after: Lsn,
    options: &ReadOptions,
    mut visit: F,
) -> Result<RecoveryReport, E>
where
    E: From<WalError>,
    F: FnMut(Lsn, u64, &[u8]) -> Result<(), E>,
{
    let segments = segment::list_segments(dir)?;
    let mut report = RecoveryReport::empty(after);
    // The last segment starting at or before after + 1 holds it; earlier ones are covered.
    let start = segments
        .iter()
        .rposition(|segment| segment.first_lsn <= after + 1)
        .unwrap_or(0);
    let Some(first) = segments.get(start) else {
        return Ok(report);
    };
    if first.first_lsn > after + 1 {
        return Err(gap(after + 1, first).into());
    }
    let mut expected = first.first_lsn;
    let mut bytes = Vec::new();
    for (index, segment) in segments.iter().enumerate().skip(start) {
        check_continuity(segment, expected, after)?;
        read_segment_file(&segment.path, &mut bytes, index + 1 == segments.len())?;
        report.segments_read += 1;
        let stop = replay_segment(&bytes, segment, &mut expected, &mut report, &mut visit)?;
        let offset = match stop {
            SegmentStop::Clean { offset } => offset as u64,
            SegmentStop::Bad { offset, fault } => {
                let later = &segments[index + 1..];
                classify_bad(
                    &bytes,
                    segment,
                    offset,
                    fault,
                    expected,
                    later,
                    options,
                    &mut report,
                )?;
                offset as u64
            }
        };
        report.end = Some(LogEnd {
            file: segment.path.clone(),
            offset,
        });
        if report.torn_tail.is_some() || report.cut.is_some() {
            break;
        }
    }
    report.last_lsn = expected - 1;
    report.next_lsn = report.last_lsn.max(after) + 1;
    Ok(report)
}

/// Whether every byte is zero; folds whole chunks so that the compiler vectorizes it (the
/// unused part of the newest segment is tens of MiB of zeroes).
fn is_all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|chunk| chunk.iter().fold(0, |any, &byte| any | byte) == 0)
}

/// Rows 8 and 9 of the decision table: the segment must start at the lsn expected.
fn check_continuity(segment: &SegmentName, expected: Lsn, after: Lsn) -> Result<(), WalError> {
    if segment.first_lsn > expected {
        return Err(gap(expected.max(after + 1), segment));
    }
    if segment.first_lsn < expected {
        return Err(WalError::Overlap {
            file: segment.path.clone(),
            first_lsn: segment.first_lsn,
            last_lsn: expected - 1,
        });
    }
    Ok(())
}

fn gap(first: Lsn, next: &SegmentName) -> WalError {
    WalError::Gap {
        first,
        last: next.first_lsn - 1,
        next_file: next.path.clone(),
    }
}

/// Reads a segment whole; `from_disk` drops its clean cached pages first (see below).
fn read_segment_file(path: &Path, bytes: &mut Vec<u8>, from_disk: bool) -> Result<(), WalError> {
    bytes.clear();
    let file = File::open(path).map_err(|error| WalError::io("open", path, error))?;
    if from_disk {
        // After a failed fdatasync the kernel marks the unwritten pages clean and keeps them:
        // an authd restarted without a reboot would replay records the disk never got
        // (commands answered 96) and append after them. Only the newest segment can hold
        // such pages (a segment is synced before the next one is created), so its clean
        // pages are dropped and read again from the disk; dirty ones (a crash of authd
        // alone) stay and are read, as they will reach the disk. Advice only: if refused,
        // the cache is read.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    }
    let length = file
        .metadata()
        .map_err(|error| WalError::io("stat", path, error))?
        .len();
    if length > SEGMENT_BYTES_MAX {
        let error = std::io::Error::other(format!("larger than {SEGMENT_BYTES_MAX} bytes"));
        return Err(WalError::io("read segment", path, error));
    }
    // Reserve exactly (the length is bounded above), then read at most that much: no
    // reallocation while reading a 64 MiB segment.
    bytes.reserve_exact(length as usize);
    file.take(length)
        .read_to_end(bytes)
        .map_err(|error| WalError::io("read", path, error))?;
    Ok(())
}

/// Visits the segment's valid records in order and says how they end.
fn replay_segment<E, F>(
    bytes: &[u8],
    segment: &SegmentName,
    expected: &mut Lsn,
    report: &mut RecoveryReport,
    visit: &mut F,
) -> Result<SegmentStop, E>
where
    F: FnMut(Lsn, u64, &[u8]) -> Result<(), E>,
{
    match segment::decode_segment_header(bytes) {
        Ok(first_lsn) if first_lsn == segment.first_lsn => {}
        Ok(_) => {
            let reason = "first lsn differs from the file name";
            let fault = RecordFault::SegmentHeader { reason };
            return Ok(SegmentStop::Bad { offset: 0, fault });
        }
        Err(fault) => return Ok(SegmentStop::Bad { offset: 0, fault }),
    }
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let record = match record::decode(rest) {
            Ok(record) if record.lsn == *expected => record,
            Ok(record) => {
                let fault = RecordFault::UnexpectedLsn {
                    expected: *expected,
                    found: record.lsn,
                };
                return Ok(SegmentStop::Bad { offset, fault });
            }
            Err(_) if is_all_zero(rest) => return Ok(SegmentStop::Clean { offset }),
            Err(fault) => {
                let zero_header = rest[..RECORD_HEADER_BYTES.min(rest.len())]
                    .iter()
                    .all(|&b| b == 0);
                if !zero_header {
                    return Ok(SegmentStop::Bad { offset, fault });
                }
                // Row 2: the writer's padding (zeroes up to the page boundary at least a
                // header away), then a reused segment's old records (their lsns are all below
                // the segment's first), unless a record the log still expects follows. An
                // older segment that ends early leaves a gap before its successor (row 8).
                let padded_to = (offset + RECORD_HEADER_BYTES)
                    .next_multiple_of(PAGE_BYTES as usize)
                    .min(bytes.len());
                if is_all_zero(&bytes[offset..padded_to])
                    && find_valid_record(bytes, offset + 1, *expected).is_none()
                {
                    return Ok(SegmentStop::Clean { offset });
                }
                let fault = RecordFault::ZeroesBeforeData;
                return Ok(SegmentStop::Bad { offset, fault });
            }
        };
        if record.lsn > report.after {
            visit(record.lsn, record.timestamp_us, record.payload)?;
            report.records_read += 1;
        } else {
            report.records_skipped += 1;
        }
        *expected += 1;
        offset += record.bytes_total();
    }
    Ok(SegmentStop::Clean { offset })
}

/// Rows 3-6 of the decision table: torn tail, corruption, or a requested cut.
#[allow(clippy::too_many_arguments)]
fn classify_bad(
    bytes: &[u8],
    segment: &SegmentName,
    offset: usize,
    fault: RecordFault,
    expected: Lsn,
    later: &[SegmentName],
    options: &ReadOptions,
    report: &mut RecoveryReport,
) -> Result<(), WalError> {
    let evidence = match later.first() {
        Some(next) => Some((next.path.clone(), 0)),
        None => {
            find_valid_record(bytes, offset + 1, expected).map(|found| (segment.path.clone(), found as u64))
        }
    };
    let Some((followed_by, followed_at)) = evidence else {
        report.torn_tail = Some(TornTail {
            file: segment.path.clone(),
            offset: offset as u64,
            bytes: torn_end(bytes, offset).saturating_sub(offset) as u64,
            fault,
        });
        return Ok(());
    };
    if !options.truncate_corrupt {
        return Err(WalError::Corrupt {
            file: segment.path.clone(),
            offset: offset as u64,
            fault,
            followed_by,
            followed_at,
        });
    }
    report.cut = Some(CorruptionCut {
        file: segment.path.clone(),
        offset: offset as u64,
        fault,
        later_segments: later.iter().map(|next| next.path.clone()).collect(),
    });
    Ok(())
}

/// Where the torn bytes from `offset` end: where zeroes run, at least a record header's
/// worth, to a page boundary (a write's padding: past it, a reused segment may hold its old
/// records), else after the file's last non-zero byte. Zeroes inside a payload do not end it
/// unless they reach a boundary.
fn torn_end(bytes: &[u8], offset: usize) -> usize {
    let mut zeroes_from = None;
    for (at, &byte) in bytes.iter().enumerate().skip(offset) {
        if byte != 0 {
            zeroes_from = None;
            continue;
        }
        let from = *zeroes_from.get_or_insert(at);
        let next = at + 1;
        if next.is_multiple_of(PAGE_BYTES as usize) && next - from >= RECORD_HEADER_BYTES {
            return from;
        }
    }
    bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(offset, |at| (at + 1).max(offset))
}

/// The first offset at or after `from` holding a valid record with lsn >= `min_lsn`. No
/// record of this file can be further on than the number of headers that fit in it, which
/// rules out most offsets in a reused segment's old records before their checksum is computed.
fn find_valid_record(bytes: &[u8], from: usize, min_lsn: Lsn) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_BYTES)?;
    let max_lsn = min_lsn.saturating_add((bytes.len() / RECORD_HEADER_BYTES) as u64);
    (from..=last).find(|&offset| {
        let rest = &bytes[offset..];
        let plausible = record::peek_lsn(rest).is_some_and(|lsn| (min_lsn..=max_lsn).contains(&lsn))
            && record::peek_length(rest).is_some_and(|length| length as usize <= RECORD_PAYLOAD_BYTES_MAX);
        plausible && record::decode(rest).is_ok()
    })
}

/// Applies a report before appending: keeps cut and torn bytes aside, renames dropped
/// segments, syncs the dir (so that what was kept aside is there before anything is cut), then
/// cuts the newest segment at the end of its valid records (dropping its torn tail and unused
/// preallocated space). Returns the paths written aside.
pub fn prepare_for_append(dir: &Path, report: &RecoveryReport) -> Result<Vec<PathBuf>, WalError> {
    let mut kept_aside = Vec::new();
    if let Some(cut) = &report.cut {
        let aside = keep_tail_aside(&cut.file, cut.offset, None, "cut")?;
        kept_aside.push(aside);
        for later in &cut.later_segments {
            let aside = unused_name(later, ".cut");
            fs::rename(later, &aside).map_err(|error| WalError::io("rename", later, error))?;
            kept_aside.push(aside);
        }
    }
    // A torn tail is most likely a write the crash interrupted, never acknowledged; but
    // damage to the last acknowledged record looks the same. Its bytes are kept, not lost.
    if let Some(torn) = report.torn_tail.as_ref().filter(|torn| torn.bytes > 0) {
        let end = torn.offset + torn.bytes;
        kept_aside.push(keep_tail_aside(&torn.file, torn.offset, Some(end), "torn")?);
    }
    segment::sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    if let Some(end) = &report.end {
        segment::seal_segment(&end.file, end.offset)?;
    }
    segment::sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
    Ok(kept_aside)
}

/// `path` with `suffix`, or with `suffix` and a number if that name is taken (an earlier
/// incident's file, since lsns, and so segment names, can repeat after a cut).
fn unused_name(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    let plain = PathBuf::from(&name);
    if !plain.exists() {
        return plain;
    }
    (1u32..)
        .map(|number| {
            let mut numbered = name.clone();
            numbered.push(format!(".{number}"));
            PathBuf::from(numbered)
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or(plain)
}

/// Copies the bytes of `file` from `offset` to `end`, or without one to its last non-zero
/// byte, into `<file>.<what>-<offset>` (numbered if taken), synced.
fn keep_tail_aside(file: &Path, offset: u64, end: Option<u64>, what: &str) -> Result<PathBuf, WalError> {
    let mut bytes = Vec::new();
    read_segment_file(file, &mut bytes, false)?;
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    let end = match end {
        Some(end) => usize::try_from(end)
            .unwrap_or(usize::MAX)
            .clamp(start, bytes.len()),
        None => bytes
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(start, |at| (at + 1).max(start)),
    };
    let aside = unused_name(file, &format!(".{what}-{offset}"));
    fs::write(&aside, &bytes[start..end]).map_err(|error| WalError::io("write", &aside, error))?;
    File::open(&aside)
        .and_then(|written| written.sync_all())
        .map_err(|error| WalError::io("sync", &aside, error))?;
    Ok(aside)
}
