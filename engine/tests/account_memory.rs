//! A smoke version of `bench/src/bin/account_memory.rs`: payer accounts stay within the
//! 256-byte budget (hot part, cold part, alias index) at half a million accounts. Alone in
//! its test binary so no other test's allocations disturb the resident set.

use engine::{Books, BooksConfig, Command, Currency, Limits, NoJournal};

const ACCOUNTS: u64 = 500_000;
const BYTES_PER_ACCOUNT_MAX: u64 = 256;

mod resident;

use resident::resident_bytes;

#[test]
fn a_payer_account_costs_at_most_256_bytes_including_its_alias() {
    let books = Books::new(BooksConfig::default()).expect("default config");
    let before = resident_bytes();
    for index in 0..ACCOUNTS {
        let open = Command::OpenAccount {
            shard: books.pick_shard(),
            currency: Currency(978),
            mobile: Some(33_600_000_000 + index),
            limits: Limits::NONE,
        };
        assert!(books.execute(&open, 0, &NoJournal).outcome.reason.is_approved());
    }
    let per_account = (resident_bytes() - before) / ACCOUNTS;
    assert!(
        per_account <= BYTES_PER_ACCOUNT_MAX,
        "{per_account} bytes per account"
    );
    assert!(
        per_account >= 64,
        "{per_account} bytes is less than the hot part alone: not measuring"
    );
}
