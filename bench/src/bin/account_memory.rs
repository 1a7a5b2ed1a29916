//! How many bytes a payer account costs, all in: hot and cold parts, the mobile alias index,
//! allocator slack. Opens N payers (default 10,000,000, each with a mobile number) on empty
//! books and divides the growth of the resident set by N.
//!
//! Run: `cargo run --release -p bench --bin account_memory -- 10000000`

use std::process::ExitCode;

use bench::{EUR, NOON_US};
use engine::{Books, BooksConfig, Command, Limits, NoJournal};

/// Target of issue 2: at most this many bytes per payer account including indexes.
const BYTES_PER_ACCOUNT_MAX: u64 = 256;

fn main() -> ExitCode {
    let count: u64 = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 10_000_000,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            eprintln!("usage: account_memory [COUNT]; COUNT is a positive number of payers");
            return ExitCode::FAILURE;
        }
    };
    let books = Books::new(BooksConfig::default()).expect("default config is valid");
    let Some(before) = resident_bytes() else {
        eprintln!("cannot read /proc/self/statm; this measurement needs Linux");
        return ExitCode::FAILURE;
    };
    for index in 0..count {
        let open = Command::OpenAccount {
            shard: books.pick_shard(),
            currency: EUR,
            mobile: Some(33_600_000_000 + index),
            limits: Limits::NONE,
        };
        let executed = books.execute(&open, NOON_US, &NoJournal);
        assert!(
            executed.outcome.reason.is_approved(),
            "opening payer {index}: {:?}",
            executed.outcome
        );
    }
    let after = resident_bytes().unwrap_or(before);
    let per_account = after.saturating_sub(before) / count;
    println!(
        "payers {count} rss_growth_bytes {} bytes_per_account {per_account}",
        after - before
    );
    if per_account > BYTES_PER_ACCOUNT_MAX {
        eprintln!("{per_account} bytes per account is above the {BYTES_PER_ACCOUNT_MAX} byte target");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Resident set size from /proc/self/statm (second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
