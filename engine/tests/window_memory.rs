//! The idempotency window's index is resident from the start: its pages are written when the
//! books are built, not faulted in by the first requests (which stalled the first second of
//! load in a fresh authd). Alone in its test binary so no other test's allocations disturb the
//! resident set.

use engine::{Books, BooksConfig};

mod resident;

use resident::resident_bytes;

#[test]
fn the_window_index_is_resident_as_soon_as_the_books_exist() {
    let config = BooksConfig::default();
    // A 64-byte bucket per two entries, rounded up to a power of two, in every shard.
    let index_bytes = u64::from(config.idempotency_window)
        .div_ceil(2)
        .next_power_of_two()
        * 64
        * u64::from(config.shards);
    let before = resident_bytes();
    let books = Books::new(config).expect("default config");
    let grown = resident_bytes() - before;
    assert!(
        grown >= index_bytes * 9 / 10,
        "{grown} bytes resident after building the books, the index alone is {index_bytes}"
    );
    drop(books);
}
