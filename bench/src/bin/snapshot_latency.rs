//! What a snapshot costs the hot path: purchase latency (HdrHistogram, per operation) on books of
//! N payers, first with no snapshot running, then while snapshots are written back to back in
//! another thread. A snapshot takes one shard lock at a time, so only payments on the shard
//! being copied wait, for as long as that shard takes to copy.
//!
//! Run: `cargo run --release -p bench --bin snapshot_latency -- 1000000 3 [prefill] [pace]`
//! (payers, seconds per phase, purchases made before measuring, MB/s the snapshot file is
//! written at: 0, the default, as fast as the disk goes, as at authd's stop; authd's
//! background snapshots use `--snapshot-write-mb-s`, 64). The log runs with fsync
//! `never` so the figure is the lock's. A purchase leaves a hold behind for refunds, up to
//! `--holds-per-shard-max` (262,144) per shard: 16,777,216 prefilled purchases fill the 64
//! shards, as half a minute at 500,000 purchases a second does in authd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench::{Picker, EUR, NOON_US};
use engine::store::{Store, StoreConfig};
use engine::wal::{FsyncMode, ReadOptions, WalConfig};
use engine::{
    AccountId, BooksConfig, Command, Limits, MerchantId, Origin, Reference, RequestKey, TerminalId,
};
use hdrhistogram::Histogram;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let payers: u32 = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(3);
    let prefill: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(0);
    let pace_mb_s: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(0);
    let pace = std::num::NonZeroU64::new(pace_mb_s * 1_000_000);
    let dir = tempfile::tempdir()?;
    let mut wal = WalConfig::new(dir.path());
    wal.fsync_mode = FsyncMode::Never;
    let (store, _) = Store::open(StoreConfig {
        books: BooksConfig::default(),
        wal,
        read: ReadOptions::default(),
    })?;
    let run = |command: Command| store.execute(&command, NOON_US).outcome;
    let register = Command::RegisterMerchant {
        fee_bps: 100,
        fee_bps_with_details: 50,
        origin: Reference::default(),
    };
    let merchant = MerchantId(run(register).id as u32);
    let terminal = TerminalId(
        run(Command::RegisterTerminal {
            merchant,
            secret: [1; 32],
        })
        .id as u32,
    );
    for _ in 0..payers {
        let open = Command::OpenAccount {
            shard: store.books().pick_shard(),
            currency: EUR,
            mobile: None,
            limits: Limits::NONE,
        };
        let account = AccountId(run(open).id);
        run(Command::Load {
            account,
            amount: 1_000_000_000,
        });
    }
    let mut request_id = 0u64;
    let mut picker = Picker::new(9);
    let purchase = |request_id: u64, picker: &mut Picker| {
        let payer = AccountId(engine::limits::PAYER_ID_BASE + picker.below(payers as usize) as u64);
        let origin = Origin {
            merchant,
            key: RequestKey { terminal, request_id },
        };
        store.execute(&bench::purchase(origin, payer, 1), NOON_US)
    };
    let started = Instant::now();
    for _ in 0..prefill {
        request_id += 1;
        purchase(request_id, &mut picker);
    }
    if prefill > 0 {
        println!(
            "prefilled {prefill} purchases in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let mut phase = |label: &str, snapshots: bool| -> anyhow::Result<()> {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut snapshot_seconds = 0.0;
        let stop = AtomicBool::new(false);
        let written = std::thread::scope(|scope| {
            let snapshotter = scope.spawn(|| {
                let mut written = 0u32;
                let started = Instant::now();
                while snapshots && !stop.load(Ordering::Relaxed) {
                    store.snapshot_paced(pace, || true).expect("snapshot");
                    let removal_pace =
                        pace.map(|pace| pace.saturating_mul(engine::server::REMOVAL_PACE_FACTOR));
                    let swept = store.remove_redundant(removal_pace, || true);
                    assert!(swept.failed.is_empty(), "{:?}", swept.failed);
                    written += 1;
                }
                (written, started.elapsed().as_secs_f64())
            });
            let deadline = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < deadline {
                request_id += 1;
                let started = Instant::now();
                std::hint::black_box(purchase(request_id, &mut picker));
                latency.saturating_record(started.elapsed().as_nanos() as u64);
            }
            stop.store(true, Ordering::Relaxed);
            let (written, seconds) = snapshotter.join().expect("snapshotter");
            snapshot_seconds = seconds;
            written
        });
        let past_ms = latency.count_between(1_000_000, latency.max().max(1_000_000));
        println!(
            "{label:<22} ops {:>9}  p50 {:>6} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>10} ns  past 1 ms {past_ms:>6}  snapshots written {written} ({:.2} s each)",
            latency.len(),
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.value_at_quantile(0.999),
            latency.max(),
            if written > 0 { snapshot_seconds / f64::from(written) } else { 0.0 }
        );
        Ok(())
    };
    println!("purchases on {payers} payers, {seconds} s per phase, fsync never, snapshots written at {pace_mb_s} MB/s (0: unpaced)");
    phase("no snapshot", false)?;
    phase("snapshots back to back", true)?;
    Ok(())
}
