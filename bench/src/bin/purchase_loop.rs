//! The `purchase_1m_accounts` workload as a plain loop, for profilers that count rather than
//! time: `valgrind --tool=callgrind --toggle-collect='purchase_loop::measured'` counts the
//! instructions of the measured purchases only, repeatably on a shared machine; `perf record`
//! shows where the cycles wait.
//!
//! Run: `cargo run --release -p bench --bin purchase_loop -- [PAYERS] [WARM-UP] [MEASURED]
//! [PREFETCH]` (defaults 1,000,000 payers, 3,000,000 purchases to fill the window and the hold
//! rings, then 3,000,000 measured; PREFETCH 1 prefetches each next purchase as the server does
//! within a batch, 0 does not). Prints nanoseconds per measured purchase.

use std::time::Instant;

use bench::{argument, Fixture, Picker, NOON_US};
use engine::{BooksConfig, NoJournal};

/// `count` purchases with request ids from `first_id`, payers from `seed`, each next one
/// prefetched before the current one executes if `prefetch`; returns approvals.
#[inline(never)]
fn purchases(fixture: &Fixture, first_id: u64, count: u64, seed: u64, prefetch: bool) -> u64 {
    let mut picker = Picker::new(seed);
    let mut make = |request_id| {
        let payer = fixture.payer_at(picker.below(fixture.payers.len()));
        fixture.purchase(0, request_id, payer, 1)
    };
    let mut approved = 0;
    let mut next = make(first_id);
    for request_id in first_id..first_id + count {
        let command = next;
        next = make(request_id + 1);
        if prefetch {
            fixture.books.prefetch(&next);
        }
        let executed = fixture.books.execute(&command, NOON_US, &NoJournal);
        approved += u64::from(executed.outcome.reason.is_approved());
    }
    approved
}

/// The measured purchases (a separate symbol, for callgrind's `--toggle-collect`).
#[inline(never)]
fn measured(fixture: &Fixture, first_id: u64, count: u64, prefetch: bool) -> u64 {
    purchases(fixture, first_id, count, 7, prefetch)
}

fn main() {
    let payers = argument(1, 1_000_000);
    let warm_up = argument(2, 3_000_000);
    let count = argument(3, 3_000_000);
    let prefetch = argument(4, 1) == 1;
    let config = BooksConfig {
        shards: 64,
        holds_per_shard_max: 1 << 15,
        ..BooksConfig::default()
    };
    let fixture = Fixture::new(config, u32::try_from(payers).unwrap_or(u32::MAX), 1);
    let mut approved = purchases(&fixture, 1, warm_up, 9, prefetch);
    let start = Instant::now();
    approved += measured(&fixture, warm_up + 1, count, prefetch);
    let elapsed = start.elapsed();
    println!(
        "{:.1} ns per purchase ({count} measured after {warm_up}, {payers} payers, {approved} approved)",
        elapsed.as_nanos() as f64 / count.max(1) as f64
    );
}
