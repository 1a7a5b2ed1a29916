//! What a snapshot costs the hot path: purchase latency (HdrHistogram, per operation) on books of
//! N payers, first with no snapshot running, then while snapshots are written back to back in
//! another thread. A snapshot takes one shard lock at a time, so only payments on the shard
//! being copied wait, for as long as that shard takes to copy.
//!
//! Run: `cargo run --release -p bench --bin snapshot_latency -- 1000000 3`
//! (payers, seconds per phase). The log runs with fsync `never` so the figure is the lock's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bench::{Picker, EUR, NOON_US};
use engine::store::{Store, StoreConfig};
use engine::wal::{FsyncMode, ReadOptions, WalConfig};
use engine::{
    AccountId, BooksConfig, Command, Extras, Limits, MerchantId, Origin, Reference, RequestKey, TerminalId,
    TerminalOp,
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
    let mut phase = |label: &str, snapshots: bool| -> anyhow::Result<()> {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let stop = AtomicBool::new(false);
        let written = std::thread::scope(|scope| {
            let snapshotter = scope.spawn(|| {
                let mut written = 0u32;
                while snapshots && !stop.load(Ordering::Relaxed) {
                    store.snapshot().expect("snapshot");
                    written += 1;
                }
                written
            });
            let deadline = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < deadline {
                request_id += 1;
                let payer = AccountId(engine::limits::PAYER_ID_BASE + picker.below(payers as usize) as u64);
                let origin = Origin {
                    merchant,
                    key: RequestKey { terminal, request_id },
                };
                let op = TerminalOp::Purchase {
                    payer,
                    amount: 1,
                    currency: EUR,
                    pin: None,
                    extras: Extras::default(),
                };
                let started = Instant::now();
                std::hint::black_box(store.execute(&Command::Terminal { origin, op }, NOON_US));
                latency.saturating_record(started.elapsed().as_nanos() as u64);
            }
            stop.store(true, Ordering::Relaxed);
            snapshotter.join().expect("snapshotter")
        });
        println!(
            "{label:<22} ops {:>9}  p50 {:>6} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>10} ns  snapshots written {written}",
            latency.len(),
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.value_at_quantile(0.999),
            latency.max()
        );
        Ok(())
    };
    println!("purchases on {payers} payers, {seconds} s per phase, fsync never");
    phase("no snapshot", false)?;
    phase("snapshots back to back", true)?;
    Ok(())
}
