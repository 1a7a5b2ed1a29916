//! The books' hot paths, one core and two.
//!
//! Run: `cargo bench -p bench --bench engine`. Ids: `purchase_1m_accounts` (one thread,
//! 1,000,000 payers, uniform, each next purchase prefetched as the server does within a batch),
//! `purchase_1m_accounts_one_by_one` (the same without knowing the next one), `authorize_capture_1m_accounts` (a pair per iteration),
//! `purchase_hot_merchant_2_threads` (two threads, one merchant receives everything; time per
//! purchase = elapsed / purchases of both threads, so speedup = one-thread time / this).
//! Holds are capped per shard so the ring reaches its steady state (oldest purchase pruned per
//! new one) instead of growing for the whole run.

use std::time::{Duration, Instant};

use bench::{Fixture, Picker, EUR, NOON_US};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{BooksConfig, Command, Extras, HoldId, NoJournal, TerminalOp};

const PAYERS: u32 = 1_000_000;

fn config() -> BooksConfig {
    BooksConfig {
        shards: 64,
        holds_per_shard_max: 1 << 15,
        ..BooksConfig::default()
    }
}

/// Purchases as the server executes them: the request after the current one is known (it came
/// in the same read) and `Books::prefetch` starts loading its payer and window slot first.
fn purchase_1m_accounts(c: &mut Criterion) {
    let fixture = Fixture::new(config(), PAYERS, 1);
    let mut picker = Picker::new(7);
    let mut request_id = 0u64;
    let mut make = || {
        request_id += 1;
        let payer = fixture.payer_at(picker.below(fixture.payers.len()));
        fixture.purchase(0, request_id, payer, 1)
    };
    let mut next = make();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("purchase_1m_accounts", |b| {
        b.iter(|| {
            let command = std::mem::replace(&mut next, make());
            fixture.books.prefetch(&next);
            let executed = fixture.books.execute(&command, NOON_US, &NoJournal);
            debug_assert!(executed.outcome.reason.is_approved());
            executed
        })
    });
    // The same, one request at a time with nothing known ahead (a client that waits for each
    // reply): every purchase waits for its own cache misses.
    group.bench_function("purchase_1m_accounts_one_by_one", |b| {
        b.iter(|| {
            let command = make();
            let executed = fixture.books.execute(&command, NOON_US, &NoJournal);
            debug_assert!(executed.outcome.reason.is_approved());
            executed
        })
    });
    group.finish();
}

fn authorize_capture_1m_accounts(c: &mut Criterion) {
    let fixture = Fixture::new(config(), PAYERS, 1);
    let mut picker = Picker::new(11);
    let mut request_id = 0u64;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("authorize_capture_1m_accounts", |b| {
        b.iter(|| {
            let payer = fixture.payer_at(picker.below(fixture.payers.len()));
            request_id += 1;
            let authorize = Command::Terminal {
                origin: fixture.origin(0, request_id),
                op: TerminalOp::Authorize {
                    payer,
                    amount: 5,
                    currency: EUR,
                    pin: None,
                    lifetime_us: 0,
                },
            };
            let hold = fixture.books.execute(&authorize, NOON_US, &NoJournal).outcome.id;
            request_id += 1;
            let capture = Command::Terminal {
                origin: fixture.origin(0, request_id),
                op: TerminalOp::Capture {
                    hold: HoldId(hold),
                    amount: 3,
                    last: true,
                    extras: Extras::default(),
                },
            };
            fixture.books.execute(&capture, NOON_US, &NoJournal)
        })
    });
    group.finish();
}

/// `purchases` purchases from one thread on terminal `terminal`, request ids from `first_id`,
/// each next one prefetched (as in `purchase_1m_accounts`).
fn run_purchases(fixture: &Fixture, terminal: usize, first_id: u64, purchases: u64, seed: u64) {
    let mut picker = Picker::new(seed);
    let mut make = |request_id| {
        let payer = fixture.payer_at(picker.below(fixture.payers.len()));
        fixture.purchase(terminal, request_id, payer, 1)
    };
    let mut next = make(first_id);
    for request_id in first_id..first_id + purchases {
        let command = std::mem::replace(&mut next, make(request_id + 1));
        fixture.books.prefetch(&next);
        std::hint::black_box(fixture.books.execute(&command, NOON_US, &NoJournal));
    }
}

fn purchase_hot_merchant_2_threads(c: &mut Criterion) {
    let fixture = Fixture::new(config(), PAYERS, 2);
    let mut next_id = 1u64;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("purchase_hot_merchant_2_threads", |b| {
        b.iter_custom(|iterations| {
            let per_thread = iterations.div_ceil(2);
            let first_id = next_id;
            next_id += per_thread;
            let start = Instant::now();
            std::thread::scope(|scope| {
                for terminal in 0..2 {
                    let fixture = &fixture;
                    scope.spawn(move || {
                        run_purchases(fixture, terminal, first_id, per_thread, 3 + terminal as u64)
                    });
                }
            });
            // Criterion divides by `iterations`; both threads together did 2 x per_thread.
            let elapsed = start.elapsed();
            Duration::from_secs_f64(elapsed.as_secs_f64() * iterations as f64 / (2 * per_thread) as f64)
        })
    });
    group.finish();
    fixture
        .books
        .check_invariants()
        .expect("invariants hold after the two-thread run");
}

criterion_group!(
    benches,
    purchase_1m_accounts,
    authorize_capture_1m_accounts,
    purchase_hot_merchant_2_threads
);
criterion_main!(benches);
