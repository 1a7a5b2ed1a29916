//! Recovery: one test per row of the decision table in `engine/src/wal/recovery.rs` (issue 4).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use engine::wal::record::{self, RecordFault};
use engine::wal::reuse;
use engine::wal::segment::{self, SEGMENT_HEADER_BYTES};
use engine::wal::{read_log, DirLock, Lsn, ReadOptions, RecoveryReport, Wal, WalConfig, WalError};

const SEGMENT_BYTES_SMALL: u64 = 64 << 10;

fn config(dir: &Path) -> WalConfig {
    let mut config = WalConfig::new(dir);
    config.segment_bytes = SEGMENT_BYTES_SMALL;
    config
}

/// A payload of 10..100 bytes that only lsn `lsn` has.
fn payload(lsn: Lsn) -> Vec<u8> {
    let length = (lsn * 7 % 90) as usize + 10;
    (0..length)
        .map(|index| (lsn as usize * 31 + index) as u8)
        .collect()
}

fn timestamp_us(lsn: Lsn) -> u64 {
    lsn * 1_000
}

/// Replays the log, checking every record against `payload`, and returns the lsns seen.
fn replay(dir: &Path, after: Lsn, options: ReadOptions) -> Result<(RecoveryReport, Vec<Lsn>), WalError> {
    let mut lsns = Vec::new();
    let report = read_log(dir, after, &options, |lsn, timestamp, bytes| {
        assert_eq!(timestamp, timestamp_us(lsn), "timestamp of lsn {lsn}");
        assert_eq!(bytes, payload(lsn), "payload of lsn {lsn}");
        lsns.push(lsn);
        Ok::<(), WalError>(())
    })?;
    Ok((report, lsns))
}

/// Opens the log (replaying and checking it), appends `count` records, closes it.
fn append_records(dir: &Path, config: WalConfig, options: ReadOptions, count: u64) -> RecoveryReport {
    let lock = DirLock::acquire(dir).expect("lock");
    let (wal, report) = Wal::open(config, lock, 0, &options, |lsn, _, bytes| {
        assert_eq!(bytes, payload(lsn));
        Ok::<(), WalError>(())
    })
    .expect("open");
    for index in 0..count {
        let lsn = report.next_lsn + index;
        assert_eq!(wal.append(timestamp_us(lsn), &payload(lsn)).expect("append"), lsn);
    }
    wal.close().expect("close");
    report
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    segment::list_segments(dir)
        .expect("list")
        .into_iter()
        .map(|segment| segment.path)
        .collect()
}

/// Offset of lsn `lsn` in a segment whose first lsn is `first`.
fn record_offset(first: Lsn, lsn: Lsn) -> u64 {
    SEGMENT_HEADER_BYTES
        + (first..lsn)
            .map(|earlier| record::record_bytes(payload(earlier).len()) as u64)
            .sum::<u64>()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn empty_or_missing_dir_is_an_empty_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (report, lsns) = replay(&dir.path().join("missing"), 0, ReadOptions::default()).expect("read");
    assert!(lsns.is_empty());
    assert_eq!(report.next_lsn, 1);
    let (report, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert!(lsns.is_empty());
    assert_eq!((report.last_lsn, report.next_lsn, report.end), (0, 1, None));
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 3);
    let (_, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, vec![1, 2, 3]);
}

#[test]
fn clean_shutdown_reopens_after_the_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 10);
    let report = append_records(dir.path(), config(dir.path()), ReadOptions::default(), 5);
    assert_eq!(
        (report.records_read, report.next_lsn, report.torn_tail),
        (10, 11, None)
    );
    let (report, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..=15).collect::<Vec<_>>());
    assert_eq!(report.last_lsn, 15);
}

#[test]
fn records_up_to_after_are_validated_but_not_visited() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 20);
    let (report, lsns) = replay(dir.path(), 12, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (13..=20).collect::<Vec<_>>());
    assert_eq!((report.records_read, report.records_skipped), (8, 12));
    // A snapshot newer than the log: the log continues after the snapshot.
    let (report, lsns) = replay(dir.path(), 25, ReadOptions::default()).expect("read");
    assert!(lsns.is_empty());
    assert_eq!(report.next_lsn, 26);
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_keeps_all_earlier_records() {
    let original = tempfile::tempdir().expect("tempdir");
    append_records(
        original.path(),
        config(original.path()),
        ReadOptions::default(),
        5,
    );
    let path = segment_paths(original.path()).remove(0);
    let start = record_offset(1, 5);
    let end = start + record::record_bytes(payload(5).len()) as u64;
    for cut in 0..end - start {
        for fill in [0x00_u8, 0xAB] {
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(original.path(), dir.path());
            let torn = dir.path().join(path.file_name().expect("name"));
            let file = fs::OpenOptions::new().write(true).open(&torn).expect("open");
            let garbage = vec![fill; (end - start - cut) as usize];
            file.write_all_at(&garbage, start + cut).expect("tear");
            let (report, lsns) =
                replay(dir.path(), 0, ReadOptions::default()).expect("torn tail is no error");
            assert_eq!(lsns, vec![1, 2, 3, 4], "cut {cut} fill {fill}");
            let torn = report.torn_tail.as_ref().map(|tail| (tail.offset, tail.bytes));
            if fill == 0 {
                // Zeroes after a written prefix: the torn bytes end at the prefix's last
                // non-zero byte; an all-zero prefix is a clean end.
                assert!(
                    torn.is_none_or(|(offset, bytes)| offset == start && bytes <= cut),
                    "cut {cut}: {torn:?}"
                );
                assert_eq!(torn.is_none(), cut == 0, "cut {cut}");
            } else {
                assert_eq!(torn, Some((start, end - start)), "cut {cut} fill {fill}");
            }
            if cut % 8 != 0 {
                continue; // reopening costs several fsyncs; every 8th cut covers it
            }
            // Reopening keeps the torn bytes aside, cuts the tail and continues at lsn 5.
            let report = append_records(dir.path(), config(dir.path()), ReadOptions::default(), 2);
            assert_eq!(report.next_lsn, 5);
            let name = path.file_name().and_then(|name| name.to_str()).expect("name");
            let kept: Option<(PathBuf, u64)> =
                torn.map(|(offset, bytes)| (dir.path().join(format!("{name}.torn-{offset}")), bytes));
            assert_eq!(
                report.kept_aside,
                kept.iter().map(|(path, _)| path.clone()).collect::<Vec<_>>(),
                "cut {cut} fill {fill}"
            );
            if let Some((aside, bytes)) = &kept {
                assert_eq!(fs::metadata(aside).expect("kept aside").len(), *bytes);
            }
            let (report, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
            assert_eq!(lsns, vec![1, 2, 3, 4, 5, 6]);
            assert_eq!(report.torn_tail, None);
        }
    }
}

#[test]
fn flipped_byte_in_the_middle_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 10);
    let path = segment_paths(dir.path()).remove(0);
    let offset = record_offset(1, 5);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset + 30).expect("read");
    file.write_all_at(&[byte[0] ^ 0x10], offset + 30).expect("flip");
    let error = replay(dir.path(), 0, ReadOptions::default()).expect_err("corrupt");
    match &error {
        WalError::Corrupt {
            file,
            offset: at,
            fault,
            followed_by,
            ..
        } => {
            assert_eq!((file, *at, followed_by), (&path, offset, &path));
            assert!(matches!(fault, RecordFault::ChecksumMismatch { .. }), "{fault:?}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("{} offset {offset}", path.display())),
        "{message}"
    );
    assert!(message.contains("--truncate-corrupt-log"), "{message}");
}

#[test]
fn truncate_option_cuts_at_the_corruption_and_keeps_the_rest_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 10);
    let path = segment_paths(dir.path()).remove(0);
    let offset = record_offset(1, 5);
    let file = fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xFF; 4], offset + 8)
        .expect("corrupt the lsn");
    let truncate = ReadOptions {
        truncate_corrupt: true,
    };
    let (report, lsns) = replay(dir.path(), 0, truncate).expect("read with truncate");
    assert_eq!(lsns, vec![1, 2, 3, 4]);
    let cut = report.cut.expect("a cut is reported");
    assert_eq!((cut.file, cut.offset), (path.clone(), offset));
    let report = append_records(dir.path(), config(dir.path()), truncate, 3);
    assert_eq!(report.next_lsn, 5);
    let aside = path.with_file_name(format!(
        "{}.cut-{offset}",
        path.file_name().and_then(|name| name.to_str()).expect("name")
    ));
    assert_eq!(report.kept_aside, vec![aside.clone()]);
    let end = record_offset(1, 11);
    assert_eq!(fs::metadata(&aside).expect("kept aside").len(), end - offset);
    let (report, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..=7).collect::<Vec<_>>());
    assert_eq!(report.cut, None);
    // The same damage again: lsns repeat after a cut, so the name is taken; the earlier
    // incident's bytes stay, the new ones get a numbered name.
    file.write_all_at(&[0xFF; 4], offset + 8)
        .expect("corrupt the lsn again");
    let report = append_records(dir.path(), config(dir.path()), truncate, 1);
    let numbered = aside.with_file_name(format!(
        "{}.1",
        aside.file_name().and_then(|name| name.to_str()).expect("name")
    ));
    assert_eq!(
        report.kept_aside.first(),
        Some(&numbered),
        "{:?}",
        report.kept_aside
    );
    assert!(numbered.exists());
    assert_eq!(fs::metadata(&aside).expect("first").len(), end - offset);
}

#[test]
fn bad_bytes_in_an_older_segment_are_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 2_000);
    let paths = segment_paths(dir.path());
    assert!(paths.len() >= 3, "{} segments", paths.len());
    let second = segment::list_segments(dir.path()).expect("list")[1].first_lsn;
    // The last record of the first segment: no valid record after it in that file.
    let offset = record_offset(1, second - 1);
    let file = fs::OpenOptions::new().write(true).open(&paths[0]).expect("open");
    file.write_all_at(&[0; 8], offset).expect("zero its header");
    match replay(dir.path(), 0, ReadOptions::default()) {
        Err(WalError::Corrupt {
            file,
            offset: at,
            followed_by,
            ..
        }) => {
            assert_eq!(
                (file, at, followed_by),
                (paths[0].clone(), offset, paths[1].clone())
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let truncate = ReadOptions {
        truncate_corrupt: true,
    };
    let report = append_records(dir.path(), config(dir.path()), truncate, 1);
    assert_eq!(report.next_lsn, second - 1);
    assert_eq!(
        report.kept_aside.len(),
        paths.len(),
        "the cut tail and every later segment"
    );
    let (_, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..second).collect::<Vec<_>>());
}

#[test]
fn bad_segment_header_with_records_after_it_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 5);
    let path = segment_paths(dir.path()).remove(0);
    let file = fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(b"X", 0).expect("break the magic");
    match replay(dir.path(), 0, ReadOptions::default()) {
        Err(WalError::Corrupt {
            file,
            offset: 0,
            fault: RecordFault::SegmentHeader { .. },
            ..
        }) => {
            assert_eq!(file, path)
        }
        other => panic!("expected Corrupt at offset 0, got {other:?}"),
    }
}

#[test]
fn missing_middle_segment_names_the_missing_lsns() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 2_000);
    let segments = segment::list_segments(dir.path()).expect("list");
    assert!(segments.len() >= 3);
    fs::remove_file(&segments[1].path).expect("remove");
    match replay(dir.path(), 0, ReadOptions::default()) {
        Err(WalError::Gap {
            first,
            last,
            next_file,
        }) => {
            assert_eq!((first, last), (segments[1].first_lsn, segments[2].first_lsn - 1));
            assert_eq!(next_file, segments[2].path);
        }
        other => panic!("expected Gap, got {other:?}"),
    }
}

#[test]
fn log_starting_after_the_snapshot_is_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 2_000);
    let segments = segment::list_segments(dir.path()).expect("list");
    fs::remove_file(&segments[0].path).expect("remove");
    match replay(dir.path(), 0, ReadOptions::default()) {
        Err(WalError::Gap { first: 1, last, .. }) => assert_eq!(last, segments[1].first_lsn - 1),
        other => panic!("expected Gap from lsn 1, got {other:?}"),
    }
    let (_, lsns) = replay(dir.path(), segments[1].first_lsn - 1, ReadOptions::default()).expect("read");
    assert_eq!(lsns.first(), Some(&segments[1].first_lsn));
}

#[test]
fn overlapping_segments_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 2_000);
    let segments = segment::list_segments(dir.path()).expect("list");
    let stray = dir
        .path()
        .join(segment::segment_file_name(segments[1].first_lsn - 1));
    fs::copy(&segments[1].path, &stray).expect("copy");
    assert!(matches!(
        replay(dir.path(), 0, ReadOptions::default()),
        Err(WalError::Overlap { .. }) | Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn a_segment_named_for_lsn_0_is_refused_naming_it() {
    for existing_records in [0, 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        if existing_records > 0 {
            append_records(
                dir.path(),
                config(dir.path()),
                ReadOptions::default(),
                existing_records,
            );
        }
        let stray = dir.path().join(segment::segment_file_name(0));
        fs::write(&stray, b"").expect("write");
        for options in [
            ReadOptions::default(),
            ReadOptions {
                truncate_corrupt: true,
            },
        ] {
            match replay(dir.path(), 0, options) {
                Err(error @ WalError::StraySegment { .. }) => {
                    assert!(
                        error.to_string().contains("wal-00000000000000000000.log"),
                        "{error}"
                    )
                }
                other => panic!("{existing_records} records: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn many_records_roll_across_segments_and_read_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 5_000);
    let segments = segment::list_segments(dir.path()).expect("list");
    assert!(segments.len() >= 5, "{} segments", segments.len());
    for segment in &segments {
        assert!(fs::metadata(&segment.path).expect("stat").len() <= SEGMENT_BYTES_SMALL);
    }
    let (report, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..=5_000).collect::<Vec<_>>());
    assert_eq!(report.segments_read, segments.len() as u64);
}

#[test]
fn removing_segments_before_a_snapshot_keeps_the_rest_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = DirLock::acquire(dir.path()).expect("lock");
    let (wal, _) = Wal::open(config(dir.path()), lock, 0, &ReadOptions::default(), |_, _, _| {
        Ok::<(), WalError>(())
    })
    .expect("open");
    for lsn in 1..=3_000 {
        wal.append(timestamp_us(lsn), &payload(lsn)).expect("append");
    }
    wal.wait_durable(3_000).expect("durable");
    let before = segment::list_segments(dir.path()).expect("list");
    let removed = wal.remove_segments_before(1_500).expect("remove");
    assert!(!removed.is_empty());
    let after = segment::list_segments(dir.path()).expect("list");
    assert_eq!(before.len(), after.len() + removed.len());
    assert!(after[0].first_lsn <= 1_501, "the segment holding lsn 1501 stays");
    wal.close().expect("close");
    let (_, lsns) = replay(dir.path(), 1_500, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1_501..=3_000).collect::<Vec<_>>());
}

/// Lsns written before segments are kept for reuse.
const WRITTEN: Lsn = 6_000;
/// The segments whose records all come at or before it are kept for reuse.
const FREED_BEFORE: Lsn = 4_000;
/// Lsns written after: the free segments take them (the first segment after may come from the
/// zero-filling that began before; the three after it are reused, the newest one part full).
const LAST: Lsn = 9_500;

/// A dir where [`write_over_reused_segments`] wrote its log.
fn log_over_reused_segments() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_over_reused_segments(dir.path());
    dir
}

/// Writes lsns 1..=WRITTEN, keeps for reuse the segments that lsn FREED_BEFORE makes
/// redundant, and writes lsns up to LAST over them, then closes the log (which leaves the
/// newest segment as it is: its old records after the new ones).
fn write_over_reused_segments(dir: &Path) {
    let (wal, _) = reopen_after(dir, 0);
    let write = |lsns: std::ops::RangeInclusive<Lsn>| {
        for lsn in lsns.clone() {
            wal.append(timestamp_us(lsn), &payload(lsn)).expect("append");
        }
        wal.wait_durable(*lsns.end()).expect("durable");
    };
    write(1..=WRITTEN);
    let redundant = wal.segments_before(FREED_BEFORE).expect("list");
    assert!(redundant.len() >= 3, "{} segments", redundant.len());
    for path in &redundant {
        reuse::set_free(path).expect("keep for reuse");
    }
    let freed = redundant.len() as u64;
    segment::sync_dir(dir).expect("sync");
    write(WRITTEN + 1..=LAST);
    let reused = wal.stats().segments_reused;
    assert!(
        reused >= 3 && reused <= freed,
        "{reused} of {freed} free segments reused"
    );
    drop(wal);
}

/// Opens the log in `dir` for appending after `after`, without checking what it replays.
fn reopen_after(dir: &Path, after: Lsn) -> (Wal, RecoveryReport) {
    open_with(config(dir), after)
}

/// Opens the log `config` describes for appending after `after`, without checking what it
/// replays.
fn open_with(config: WalConfig, after: Lsn) -> (Wal, RecoveryReport) {
    let lock = DirLock::acquire(&config.dir).expect("lock");
    Wal::open(config, lock, after, &ReadOptions::default(), |_, _, _| {
        Ok::<(), WalError>(())
    })
    .expect("open")
}

/// The newest segment of [`write_over_reused_segments`], where its records end, and where the
/// padding after them does (the page boundary at least a record header further).
fn newest_and_its_end(dir: &Path) -> (segment::SegmentName, u64, u64) {
    let newest = segment::list_segments(dir).expect("list").pop().expect("newest");
    let end = record_offset(newest.first_lsn, LAST + 1);
    let padded_to = (end + record::RECORD_HEADER_BYTES as u64).next_multiple_of(4096);
    (newest, end, padded_to)
}

#[test]
fn reused_segments_read_to_their_zeroes_whatever_old_records_follow() {
    let dir = log_over_reused_segments();
    // The newest segment is a reused one: old records follow its own.
    let (report, lsns) = replay(dir.path(), FREED_BEFORE, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (FREED_BEFORE + 1..=LAST).collect::<Vec<_>>());
    let end = report.end.expect("an end");
    let bytes = fs::read(&end.file).expect("read");
    assert!(
        bytes[end.offset as usize..].iter().any(|&byte| byte != 0),
        "old records after the end"
    );
    assert_eq!(report.torn_tail, None);
    // Reopening cuts nothing away and goes on after LAST.
    let (wal, report) = reopen_after(dir.path(), FREED_BEFORE);
    assert_eq!((report.next_lsn, report.kept_aside.len()), (LAST + 1, 0));
    wal.append(timestamp_us(LAST + 1), &payload(LAST + 1))
        .expect("append");
    wal.close().expect("close");
    let (_, lsns) = replay(dir.path(), FREED_BEFORE, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (FREED_BEFORE + 1..=LAST + 1).collect::<Vec<_>>());
}

#[test]
fn zeroes_where_a_record_the_log_still_expects_was_are_corruption_in_a_reused_segment() {
    let original = log_over_reused_segments();
    let segments = segment::list_segments(original.path()).expect("list");
    let count = segments.len();
    // The newest segment (a record after the zeroes) and an older one (its successor starts
    // later than the lsn after the zeroes).
    for index in [count - 1, count - 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), dir.path());
        let first = segments[index].first_lsn;
        let offset = record_offset(first, first + 3);
        let path = dir.path().join(segments[index].path.file_name().expect("name"));
        let file = fs::OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0; record::RECORD_HEADER_BYTES], offset)
            .expect("zero a record header");
        match replay(dir.path(), FREED_BEFORE, ReadOptions::default()) {
            Err(WalError::Corrupt {
                file,
                offset: at,
                fault: RecordFault::ZeroesBeforeData,
                ..
            }) => assert_eq!((file, at), (path, offset), "segment {index}"),
            other => panic!("segment {index}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_missing_segment_after_a_reused_one_is_a_gap() {
    let dir = log_over_reused_segments();
    // The newest segment, reused, holds old records after its own; a later segment makes it
    // an older one, with the segments between missing.
    let (reused, _, padded_to) = newest_and_its_end(dir.path());
    let bytes = fs::read(&reused.path).expect("read");
    assert!(
        bytes[padded_to as usize..].iter().any(|&byte| byte != 0),
        "old records after {padded_to}"
    );
    let later = segment::SegmentFile::create(dir.path(), LAST + 100, SEGMENT_BYTES_SMALL).expect("create");
    match replay(dir.path(), FREED_BEFORE, ReadOptions::default()) {
        Err(WalError::Gap {
            first,
            last,
            next_file,
        }) => assert_eq!(
            (first, last, next_file.as_path()),
            (LAST + 1, LAST + 99, later.path())
        ),
        other => panic!("expected a gap, got {other:?}"),
    }
}

#[test]
fn bytes_inside_a_writes_padding_are_a_torn_tail_kept_up_to_the_padding() {
    let dir = log_over_reused_segments();
    let (newest, end, padded_to) = newest_and_its_end(dir.path());
    // A stray byte after the last record's zero header, inside the padding: no writer put it
    // there, so it is no reused segment's old record.
    let stray = end + 30;
    assert!(stray < padded_to, "{stray} {padded_to}");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&newest.path)
        .expect("open");
    file.write_all_at(&[1], stray).expect("stray byte");
    let (report, lsns) = replay(dir.path(), FREED_BEFORE, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (FREED_BEFORE + 1..=LAST).collect::<Vec<_>>());
    let torn = report.torn_tail.expect("a torn tail");
    // Kept up to the zeroes that run to the page boundary, not the old records after it.
    assert_eq!((torn.offset, torn.bytes), (end, stray + 1 - end));
    let (wal, report) = reopen_after(dir.path(), FREED_BEFORE);
    assert_eq!(report.next_lsn, LAST + 1);
    let [aside] = report.kept_aside.as_slice() else {
        panic!("one file kept aside: {:?}", report.kept_aside)
    };
    assert_eq!(fs::read(aside).expect("kept").len() as u64, stray + 1 - end);
    drop(wal);
}

#[test]
fn with_reuse_off_free_segments_are_not_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let free = dir
        .path()
        .join(format!("{}{}", segment::segment_file_name(1), reuse::FREE_SUFFIX));
    fs::write(&free, vec![0xEE; SEGMENT_BYTES_SMALL as usize]).expect("write");
    let mut off = config(dir.path());
    off.reuse_bytes_max = 0;
    let (wal, _) = open_with(off, 0);
    for lsn in 1..=2_000 {
        wal.append(timestamp_us(lsn), &payload(lsn)).expect("append");
    }
    wal.wait_durable(2_000).expect("durable");
    let stats = wal.stats();
    assert!(stats.segments_created >= 2, "{stats:?}");
    assert_eq!(stats.segments_reused, 0);
    assert!(free.exists());
    drop(wal);
    // With reuse on, the next open takes it.
    append_records(dir.path(), config(dir.path()), ReadOptions::default(), 1);
    assert!(!free.exists());
    let (_, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..=2_001).collect::<Vec<_>>());
}

#[test]
fn segments_written_ahead_are_what_the_log_writes_even_with_reuse_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ahead = config(dir.path());
    ahead.reuse_bytes_max = 0;
    // Part of a segment rounds up to a whole one: 5.
    ahead.preallocate_bytes = 4 * SEGMENT_BYTES_SMALL + 1;
    let free_count = || reuse::free_segments(dir.path()).expect("list").len();
    let (wal, report) = open_with(ahead.clone(), 0);
    assert_eq!(report.preallocated, 5);
    // Three segments' worth of records: the first segment and both rolls take a free one.
    for lsn in 1..=2_000 {
        wal.append(timestamp_us(lsn), &payload(lsn)).expect("append");
    }
    wal.wait_durable(2_000).expect("durable");
    let stats = wal.stats();
    assert!(stats.segments_created >= 3, "{stats:?}");
    assert_eq!(stats.segments_reused, stats.segments_created, "{stats:?}");
    drop(wal);
    // The next open writes ahead what was taken, and no more.
    let left = free_count();
    assert!(left < 5, "{left} free");
    let (wal, report) = open_with(ahead, 0);
    assert_eq!(report.preallocated, 5 - left);
    drop(wal);
    let (_, lsns) = replay(dir.path(), 0, ReadOptions::default()).expect("read");
    assert_eq!(lsns, (1..=2_000).collect::<Vec<_>>());
    // Without it, nothing is written ahead.
    let before = free_count();
    let (wal, report) = open_with(config(dir.path()), 0);
    assert_eq!(report.preallocated, 0);
    drop(wal);
    assert!(free_count() < before);
}

/// A log of 60 records written once, copied by each proptest case.
fn template_log() -> &'static Path {
    static TEMPLATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            append_records(dir.path(), config(dir.path()), ReadOptions::default(), 60);
            dir
        })
        .path()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Damage anywhere never panics the reader, and whatever it accepts is a prefix of what
    /// was written, byte for byte (`replay` checks every payload).
    #[test]
    fn damaged_log_never_panics_or_yields_wrong_records(
        damage in proptest::collection::vec((0u64..8_000, proptest::num::u8::ANY), 1..4),
        truncate_corrupt: bool,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(template_log(), dir.path());
        let path = segment_paths(dir.path()).remove(0);
        let file = fs::OpenOptions::new().write(true).open(&path).expect("open");
        for (offset, byte) in damage {
            file.write_all_at(&[byte], offset).expect("damage");
        }
        let options = ReadOptions { truncate_corrupt };
        if let Ok((report, lsns)) = replay(dir.path(), 0, options) {
            proptest::prop_assert_eq!(lsns, (1..=report.last_lsn).collect::<Vec<_>>());
        }
    }
}
