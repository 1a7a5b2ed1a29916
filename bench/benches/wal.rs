//! Write-ahead log benchmarks (issue 4).
//!
//! - `wal_append_group_commit/<mode>`: APPENDERS threads append PAYLOAD_BYTES records, each
//!   keeping at most WINDOW records in flight (as a connection with pipelined requests would:
//!   append, and wait for durability only when the window is full). Throughput is records/s;
//!   records per fsync is printed once per mode.
//! - `wal_read`: raw replay speed of `read_log` (checksums, order checks, visitor call) over
//!   READ_RECORDS records in page cache; records/s.
//!
//! Reserved for the books: `wal_replay` (replay into the books) and `snapshot_load`.
//!
//! Run: `cargo bench -p bench --bench wal -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::wal::{read_log, DirLock, FsyncMode, ReadOptions, Wal, WalConfig, WalError};

const APPENDERS: u64 = 4;
const WINDOW: u64 = 64;
const PAYLOAD_BYTES: usize = 64;
const READ_RECORDS: u64 = 1_000_000;

fn open(dir: &std::path::Path, mode: FsyncMode) -> Wal {
    let mut config = WalConfig::new(dir);
    config.fsync_mode = mode;
    let lock = DirLock::acquire(dir).expect("lock");
    let (wal, _) = Wal::open(config, lock, 0, &ReadOptions::default(), |_, _, _| {
        Ok::<(), WalError>(())
    })
    .expect("open");
    wal
}

/// Appends `records` from one thread with at most WINDOW records not yet durable.
fn append_windowed(wal: &Wal, records: u64, payload: &[u8]) {
    let mut oldest_in_window = Vec::with_capacity(WINDOW as usize);
    for index in 0..records {
        let lsn = wal.append(index, payload).expect("append");
        oldest_in_window.push(lsn);
        if oldest_in_window.len() as u64 == WINDOW {
            wal.wait_durable(oldest_in_window[0]).expect("durable");
            oldest_in_window.retain(|&pending| pending > wal.durable_lsn());
        }
    }
    if let Some(&last) = oldest_in_window.last() {
        wal.wait_durable(last).expect("durable");
    }
}

fn append_group_commit(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("wal_append_group_commit");
    group.throughput(Throughput::Elements(1));
    let modes = [("always", FsyncMode::Always), ("never", FsyncMode::Never)];
    for (name, mode) in modes {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), mode);
        let payload = [0xA5_u8; PAYLOAD_BYTES];
        let elapsed_ns = AtomicU64::new(0);
        let before = wal.stats();
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let per_thread = iterations.div_ceil(APPENDERS);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..APPENDERS {
                        scope.spawn(|| append_windowed(&wal, per_thread, &payload));
                    }
                });
                let elapsed = started.elapsed();
                elapsed_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
                elapsed.mul_f64(iterations as f64 / (per_thread * APPENDERS) as f64)
            })
        });
        let after = wal.stats();
        let records = after.records_written - before.records_written;
        let syncs = (after.syncs - before.syncs).max(1);
        let seconds = Duration::from_nanos(elapsed_ns.load(Ordering::Relaxed)).as_secs_f64();
        eprintln!(
            "wal_append_group_commit/{name}: {APPENDERS} appenders, window {WINDOW}, \
             {PAYLOAD_BYTES}-byte payloads: {:.0} records/s, {:.1} records per fsync \
             {} us per fdatasync ({records} records, {syncs} syncs, {} append waits)",
            records as f64 / seconds.max(f64::MIN_POSITIVE),
            records as f64 / syncs as f64,
            (after.sync_us - before.sync_us) / syncs,
            after.append_waits - before.append_waits,
        );
        wal.close().expect("close");
    }
    group.finish();
}

fn read(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path(), FsyncMode::Never);
    let payload = [0x5A_u8; PAYLOAD_BYTES];
    for index in 0..READ_RECORDS {
        wal.append(index, &payload).expect("append");
    }
    wal.close().expect("close");
    drop(wal);
    let mut group = criterion.benchmark_group("wal_read");
    group.throughput(Throughput::Elements(READ_RECORDS));
    group.sample_size(10);
    group.bench_function("read_log", |bencher| {
        bencher.iter(|| {
            let mut bytes = 0_u64;
            let report = read_log(dir.path(), 0, &ReadOptions::default(), |_, timestamp, payload| {
                bytes += payload.len() as u64 + timestamp;
                Ok::<(), WalError>(())
            })
            .expect("read");
            assert_eq!(report.records_read, READ_RECORDS);
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, append_group_commit, read);
criterion_main!(benches);
