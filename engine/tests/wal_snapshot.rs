//! The snapshot container: atomic writes, and fallback past an invalid newest snapshot (issue 4).

use std::fs;

use engine::wal::snapshot_file::{remove_snapshots_before, snapshot_file_name};
use engine::wal::{read_newest_snapshot, write_snapshot, WalError};

#[test]
fn empty_dir_has_no_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scan = read_newest_snapshot(dir.path()).expect("scan");
    assert!(scan.newest.is_none());
    assert!(scan.skipped.is_empty());
}

#[test]
fn truncated_newest_snapshot_falls_back_to_the_previous_one_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let older: [&[u8]; 2] = [b"shard 0 at 100", b"shard 1 at 100"];
    write_snapshot(dir.path(), 100, older).expect("write older");
    let newest =
        write_snapshot(dir.path(), 200, [&b"shard 0 at 200"[..], b"shard 1 at 200"]).expect("write newest");
    let length = fs::metadata(&newest).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open")
        .set_len(length - 3)
        .expect("truncate");
    let scan = read_newest_snapshot(dir.path()).expect("scan");
    let snapshot = scan.newest.expect("the older snapshot");
    assert_eq!(snapshot.lsn, 100);
    assert_eq!(snapshot.sections().collect::<Vec<_>>(), older.to_vec());
    assert_eq!(scan.skipped.len(), 1);
    match &scan.skipped[0] {
        WalError::SnapshotInvalid { path, reason } => {
            assert_eq!(path, &newest);
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected SnapshotInvalid, got {other:?}"),
    }
}

#[test]
fn corrupt_snapshots_are_all_reported_when_none_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    for lsn in [10, 20] {
        let path = write_snapshot(dir.path(), lsn, [&b"contents"[..]]).expect("write");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&path, bytes).expect("corrupt");
    }
    let scan = read_newest_snapshot(dir.path()).expect("scan");
    assert!(scan.newest.is_none());
    assert_eq!(scan.skipped.len(), 2);
}

#[test]
fn leftover_temporary_file_is_ignored_and_older_snapshots_can_be_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_snapshot(dir.path(), 5, [&b"five"[..]]).expect("write");
    write_snapshot(dir.path(), 9, [&b"nine"[..]]).expect("write");
    let temporary = dir.path().join(format!("{}.tmp", snapshot_file_name(12)));
    fs::write(&temporary, b"half written").expect("write tmp");
    let scan = read_newest_snapshot(dir.path()).expect("scan");
    assert_eq!(scan.newest.map(|snapshot| snapshot.lsn), Some(9));
    let removed = remove_snapshots_before(dir.path(), 9).expect("remove");
    assert_eq!(removed, vec![dir.path().join(snapshot_file_name(5))]);
    assert_eq!(
        read_newest_snapshot(dir.path())
            .expect("scan")
            .newest
            .map(|snapshot| snapshot.lsn),
        Some(9)
    );
}

#[test]
fn rewriting_a_snapshot_replaces_it_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_snapshot(dir.path(), 7, [&b"first"[..]]).expect("write");
    write_snapshot(dir.path(), 7, [&b"second"[..]]).expect("write again");
    let snapshot = read_newest_snapshot(dir.path())
        .expect("scan")
        .newest
        .expect("snapshot");
    assert_eq!(snapshot.sections().collect::<Vec<_>>(), vec![&b"second"[..]]);
}
