//! Group commit, backpressure, durability modes, failure and the data-dir lock (issue 4).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use engine::wal::{
    read_log, DirLock, FaultInjection, FsyncMode, LockHolder, Lsn, ReadOptions, Wal, WalConfig, WalError,
    RECORD_BYTES_MAX, RECORD_PAYLOAD_BYTES_MAX,
};

/// Segments of 1 MiB: every open zero-fills one segment and prepares the next.
fn small_config(dir: &Path) -> WalConfig {
    let mut config = WalConfig::new(dir);
    config.segment_bytes = 1 << 20;
    config
}

fn open(config: WalConfig) -> Wal {
    let lock = DirLock::acquire(&config.dir).expect("lock");
    let (wal, _) = Wal::open(config, lock, 0, &ReadOptions::default(), |_, _, _| {
        Ok::<(), WalError>(())
    })
    .expect("open");
    wal
}

fn read_all(dir: &Path) -> BTreeMap<Lsn, (u64, Vec<u8>)> {
    let mut records = BTreeMap::new();
    let mut previous = 0;
    read_log(dir, 0, &ReadOptions::default(), |lsn, timestamp_us, payload| {
        assert_eq!(lsn, previous + 1, "lsns are contiguous");
        previous = lsn;
        records.insert(lsn, (timestamp_us, payload.to_vec()));
        Ok::<(), WalError>(())
    })
    .expect("read");
    records
}

/// Appends from `threads` threads, each with up to `window` records not yet known durable
/// (a connection with pipelined requests), and returns what each append returned.
fn append_concurrently(wal: &Wal, threads: u64, per_thread: u64, window: usize) -> Vec<(Lsn, Vec<u8>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut appended = Vec::new();
                    let mut in_flight = Vec::new();
                    for index in 0..per_thread {
                        let mut payload = vec![thread as u8; 64];
                        payload[..8].copy_from_slice(&index.to_le_bytes());
                        in_flight.push(wal.append(thread, &payload).expect("append"));
                        appended.push((*in_flight.last().expect("pushed"), payload));
                        if in_flight.len() == window || index + 1 == per_thread {
                            wal.wait_durable(*in_flight.last().expect("pushed"))
                                .expect("durable");
                            assert!(in_flight.iter().all(|&lsn| lsn <= wal.durable_lsn()));
                            in_flight.clear();
                        }
                    }
                    appended
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("thread"))
            .collect()
    })
}

#[test]
fn concurrent_appends_share_fsyncs_and_read_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(small_config(dir.path()));
    let appended = append_concurrently(&wal, 8, 300, 50);
    let stats = wal.stats();
    wal.close().expect("close");
    let records = read_all(dir.path());
    assert_eq!(records.len(), appended.len());
    for (lsn, payload) in &appended {
        assert_eq!(&records[lsn].1, payload, "lsn {lsn}");
    }
    assert_eq!(stats.records_written, 2_400);
    // Appends take a microsecond, a sync a hundred or more: every sync must carry many.
    assert!(stats.syncs * 4 <= stats.records_written, "{stats:?}");
}

#[test]
fn full_pending_buffer_makes_append_wait_not_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_config(dir.path());
    config.pending_bytes_max = RECORD_BYTES_MAX;
    config.fsync_mode = FsyncMode::Never;
    let wal = open(config);
    let appended = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..200)
                        .map(|_| wal.append(1, &[7; RECORD_PAYLOAD_BYTES_MAX]).expect("append"))
                        .last()
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().expect("thread"))
            .max()
    });
    let last = appended.expect("appended");
    wal.wait_durable(last).expect("durable");
    assert!(wal.stats().append_waits > 0, "{:?}", wal.stats());
    wal.close().expect("close");
    assert_eq!(read_all(dir.path()).len(), 800);
}

#[test]
fn never_mode_publishes_without_syncing_and_close_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_config(dir.path());
    config.fsync_mode = FsyncMode::Never;
    let wal = open(config);
    let appended = append_concurrently(&wal, 4, 50, 1);
    assert_eq!(wal.stats().syncs, 0, "{:?}", wal.stats());
    wal.close().expect("close");
    assert_eq!(wal.stats().syncs, 1, "close syncs once");
    assert_eq!(read_all(dir.path()).len(), appended.len());
}

#[test]
fn notifiers_fire_after_each_durable_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(small_config(dir.path()));
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    wal.add_notifier(Box::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    let lsn = wal.append(1, b"one").expect("append");
    wal.wait_durable(lsn).expect("durable");
    let lsn = wal.append(2, b"two").expect("append");
    wal.wait_durable(lsn).expect("durable");
    wal.close().expect("close");
    assert!(calls.load(Ordering::Relaxed) >= 2);
    assert!(calls.load(Ordering::Relaxed) <= wal.stats().batches_written);
}

#[test]
fn oversized_payload_and_append_after_close_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(small_config(dir.path()));
    let too_large = vec![0; RECORD_PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(
        wal.append(1, &too_large),
        Err(WalError::PayloadTooLarge { .. })
    ));
    assert_eq!(
        wal.append(1, &[0; RECORD_PAYLOAD_BYTES_MAX])
            .expect("largest fits"),
        1
    );
    wal.close().expect("close");
    assert_eq!(wal.durable_lsn(), 1, "close makes everything durable");
    assert!(matches!(wal.append(1, b"late"), Err(WalError::Closed)));
}

#[test]
fn failed_write_stops_the_log_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let mut config = small_config(dir.path());
    config.faults = Some(Arc::clone(&faults));
    let wal = open(config);
    let notified = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&notified);
    wal.add_notifier(Box::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    for lsn in 1..=5 {
        assert_eq!(wal.append(lsn, b"kept").expect("append"), lsn);
    }
    wal.wait_durable(5).expect("durable");
    let before = notified.load(Ordering::Relaxed);
    faults.fail_writes.store(true, Ordering::Relaxed);
    let lost = wal.append(6, b"never durable").expect("queued");
    let error = wal.wait_durable(lost).expect_err("the write fails");
    let message = error.to_string();
    assert!(
        matches!(error, WalError::Failed { durable_lsn: 5, .. }),
        "{error:?}"
    );
    assert!(message.contains("write to"), "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    assert!(message.contains("free space and restart authd"), "{message}");
    assert!(
        message.contains("nothing after lsn 5 was acknowledged"),
        "{message}"
    );
    assert!(matches!(wal.append(7, b"refused"), Err(WalError::Failed { .. })));
    faults.fail_writes.store(false, Ordering::Relaxed);
    assert!(matches!(
        wal.append(8, b"still refused"),
        Err(WalError::Failed { .. })
    ));
    assert_eq!(wal.durable_lsn(), 5);
    assert!(wal.close().is_err());
    // Notifiers run after waiters are woken; after close the writer has finished them.
    assert!(notified.load(Ordering::Relaxed) > before, "callers are told");
    drop(wal);
    assert_eq!(read_all(dir.path()).len(), 5);
}

#[test]
fn failed_fsync_does_not_publish_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let mut config = small_config(dir.path());
    config.faults = Some(Arc::clone(&faults));
    let wal = open(config);
    let lsn = wal.append(1, b"durable").expect("append");
    wal.wait_durable(lsn).expect("durable");
    faults.fail_syncs.store(true, Ordering::Relaxed);
    let lsn = wal.append(2, b"written, not synced").expect("append");
    let error = wal.wait_durable(lsn).expect_err("sync fails");
    assert!(error.to_string().contains("fdatasync of"), "{error}");
    assert!(error.to_string().contains("check the disk"), "{error}");
    assert_eq!(wal.durable_lsn(), 1);
}

#[test]
fn second_opener_is_told_the_holders_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = DirLock::acquire(dir.path()).expect("first");
    let error = DirLock::acquire(dir.path()).expect_err("second");
    let pid = std::process::id();
    assert!(matches!(&error, WalError::Locked { holder: LockHolder(Some(holder)), .. } if *holder == pid));
    assert_eq!(
        error.to_string(),
        format!(
            "data dir {} is locked by pid {pid}; stop it or pass --data-dir",
            dir.path().display()
        )
    );
    drop(held);
    DirLock::acquire(dir.path()).expect("free again after the holder is gone");
}

#[test]
fn config_out_of_range_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_config(dir.path());
    config.segment_bytes = 1_000;
    let lock = DirLock::acquire(dir.path()).expect("lock");
    let result = Wal::open(config, lock, 0, &ReadOptions::default(), |_, _, _| {
        Ok::<(), WalError>(())
    });
    assert!(matches!(
        result,
        Err(WalError::Config {
            setting: "segment_bytes",
            ..
        })
    ));
}

#[test]
fn wal_is_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Wal>();
    shared::<WalError>();
}
