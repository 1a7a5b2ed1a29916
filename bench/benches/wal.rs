//! Write-ahead log benchmarks (issue 4).
//!
//! - `wal_append_group_commit/<mode>`: APPENDERS threads append PAYLOAD_BYTES records, each
//!   keeping at most WINDOW records in flight (as a connection with pipelined requests would:
//!   append, and wait for durability only when the window is full). Throughput is records/s;
//!   records per fsync is printed once per mode.
//! - `wal_read`: raw replay speed of `read_log` (checksums, order checks, visitor call) over
//!   READ_RECORDS records in page cache; records/s.
//!
//! - `wal_replay`: recovery of the books from the log alone, as `Store::open` does it: read,
//!   decode and re-execute REPLAY_PURCHASES purchases over REPLAY_PAYERS payers (plus their
//!   set-up records) into fresh books, shards applied in parallel (one worker per core);
//!   records/s. Target: >= 3 M/s.
//! - `snapshot_load`: rebuild books of SNAPSHOT_PAYERS payers (each with a mobile alias) from
//!   a snapshot already in memory (checksums were verified when it was read); accounts/s.
//!   Target: >= 5 M/s.
//!
//! Run: `cargo bench -p bench --bench wal -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bench::{Picker, EUR, NOON_US};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::journal::codec;
use engine::store::snapshot::{load, Coverage};
use engine::store::{Store, StoreConfig};
use engine::wal::{read_log, DirLock, FsyncMode, ReadOptions, Wal, WalConfig, WalError};
use engine::{
    AccountId, Books, BooksConfig, Command, Limits, MerchantId, Origin, Reference, RequestKey, TerminalId,
};

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

const REPLAY_PAYERS: u32 = 100_000;
const REPLAY_PURCHASES: u64 = 1_000_000;
const SNAPSHOT_PAYERS: u32 = 1_000_000;

fn store_config(dir: &std::path::Path) -> StoreConfig {
    let mut wal = WalConfig::new(dir);
    wal.fsync_mode = FsyncMode::Never;
    StoreConfig {
        books: BooksConfig::default(),
        wal,
        read: ReadOptions::default(),
    }
}

/// A store with a merchant, a terminal and `payers` loaded payers (mobile aliases if asked).
fn populated(dir: &std::path::Path, payers: u32, mobiles: bool) -> (Store, Vec<AccountId>) {
    let (store, _) = Store::open(store_config(dir)).expect("open store");
    let run = |command: Command| store.execute(&command, NOON_US).outcome;
    let merchant = MerchantId(
        run(Command::RegisterMerchant {
            fee_bps: 150,
            fee_bps_with_details: 90,
            origin: Reference::default(),
        })
        .id as u32,
    );
    run(Command::RegisterTerminal {
        merchant,
        secret: [7; 32],
    });
    let accounts = (0..payers)
        .map(|index| {
            let mobile = mobiles.then_some(33_600_000_000 + u64::from(index));
            let open = Command::OpenAccount {
                shard: store.books().pick_shard(),
                currency: EUR,
                mobile,
                limits: Limits::NONE,
            };
            let account = AccountId(run(open).id);
            run(Command::Load {
                account,
                amount: 1_000_000_000,
            });
            account
        })
        .collect();
    (store, accounts)
}

fn replay(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, payers) = populated(dir.path(), REPLAY_PAYERS, false);
    let mut picker = Picker::new(5);
    for request_id in 1..=REPLAY_PURCHASES {
        let payer = payers[picker.below(payers.len())];
        let origin = Origin {
            merchant: MerchantId(1),
            key: RequestKey {
                terminal: TerminalId(1),
                request_id,
            },
        };
        store.execute(&bench::purchase(origin, payer, 1), NOON_US);
    }
    let digest = store.books().digest();
    let records = store.wal().last_lsn();
    store.close().expect("close");
    drop(store);
    let mut group = criterion.benchmark_group("wal_replay");
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    let workers = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let nothing_covered = Coverage {
        registry_lsn: 0,
        shard_lsns: vec![0; BooksConfig::default().shards as usize],
    };
    group.bench_function("purchases_into_books", |bencher| {
        bencher.iter(|| {
            let books = Books::new(BooksConfig::default()).expect("config");
            let ((), applied) =
                engine::store::replay::replay(&books, &nothing_covered, &|| None, workers, |visit| {
                    read_log(dir.path(), 0, &ReadOptions::default(), visit).map(|_| ())
                })
                .expect("replay");
            assert_eq!(applied, records);
            books
        })
    });
    group.finish();
    let books = Books::new(BooksConfig::default()).expect("config");
    read_log(
        dir.path(),
        0,
        &ReadOptions::default(),
        |lsn, timestamp_us, payload| {
            books.replay(&codec::decode(payload).expect("a command"), timestamp_us, lsn);
            Ok::<(), WalError>(())
        },
    )
    .expect("replay");
    assert_eq!(books.digest(), digest, "replay rebuilds the same books");
}

fn snapshot_load(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = populated(dir.path(), SNAPSHOT_PAYERS, true);
    store.snapshot().expect("snapshot");
    let digest = store.books().digest();
    store.close().expect("close");
    drop(store);
    let scan = engine::wal::read_newest_snapshot(dir.path()).expect("read snapshot");
    let snapshot = scan.newest.expect("a snapshot");
    let sections: Vec<&[u8]> = snapshot.sections().collect();
    let mut group = criterion.benchmark_group("snapshot_load");
    group.throughput(Throughput::Elements(u64::from(SNAPSHOT_PAYERS)));
    group.sample_size(10);
    group.bench_function("accounts_with_aliases", |bencher| {
        bencher.iter(|| load(BooksConfig::default(), &sections).expect("load"))
    });
    group.finish();
    let (books, _) = load(BooksConfig::default(), &sections).expect("load");
    assert_eq!(books.digest(), digest, "the snapshot rebuilds the same books");
}

criterion_group!(benches, append_group_commit, read, replay, snapshot_load);
criterion_main!(benches);
