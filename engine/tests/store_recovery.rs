//! Recovery of the books from snapshots and the log, one case per test (issue 4). The WAL's
//! own cases (torn tail, flipped byte, missing segment) are in `wal_recovery.rs`; these are
//! the cases where the books and their snapshots meet the log.

use std::path::Path;

use engine::books::hold_ids::HOLD_SERIAL_SKIP;
use engine::store::books_file::RULES;
use engine::store::{Store, StoreConfig, StoreError};
use engine::wal::{ReadOptions, WalConfig, WalError};
use engine::{
    AccountId, BooksConfig, Command, Currency, Extras, Limits, MerchantId, Origin, Reason, RequestKey,
    TerminalId, TerminalOp,
};

const EUR: Currency = Currency(978);
const NOON_US: u64 = 1_795_435_200_000_000;

fn config(dir: &Path) -> StoreConfig {
    let mut wal = WalConfig::new(dir);
    wal.segment_bytes = 64 << 10;
    StoreConfig {
        books: BooksConfig {
            shards: 4,
            ..BooksConfig::default()
        },
        wal,
        read: ReadOptions::default(),
    }
}

fn run(store: &Store, command: Command) -> engine::Outcome {
    let executed = store.execute(&command, NOON_US);
    store.wal().wait_durable(executed.lsn).expect("durable");
    executed.outcome
}

/// A merchant, a terminal, `payers` loaded payers; returns the payers.
fn set_up(store: &Store, payers: u32) -> Vec<AccountId> {
    run(
        store,
        Command::RegisterMerchant {
            fee_bps: 100,
            fee_bps_with_details: 50,
            origin: engine::Reference::default(),
        },
    );
    run(
        store,
        Command::RegisterTerminal {
            merchant: MerchantId(1),
            secret: [9; 32],
        },
    );
    (0..payers)
        .map(|index| {
            let open = Command::OpenAccount {
                shard: index % 4,
                currency: EUR,
                mobile: Some(33_600_000_000 + u64::from(index)),
                limits: Limits::NONE,
            };
            let account = AccountId(run(store, open).id);
            run(
                store,
                Command::Load {
                    account,
                    amount: 100_000,
                },
            );
            account
        })
        .collect()
}

/// A new store in a temp dir (kept alive by the returned guard) with [`set_up`]'s 8 payers.
fn store_with_payers() -> (tempfile::TempDir, Store, Vec<AccountId>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 8);
    (dir, store, payers)
}

/// Cut the file at `path` to half its length (a damaged snapshot).
fn cut_in_half(path: &Path) {
    let length = std::fs::metadata(path).expect("file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(length / 2))
        .expect("truncate");
}

/// Terminal 1 of merchant 1, request `request_id`.
fn origin(request_id: u64) -> Origin {
    Origin {
        merchant: MerchantId(1),
        key: RequestKey {
            terminal: TerminalId(1),
            request_id,
        },
    }
}

fn purchase(request_id: u64, payer: AccountId, amount: u64) -> Command {
    Command::Terminal {
        origin: origin(request_id),
        op: TerminalOp::Purchase {
            payer,
            amount,
            currency: EUR,
            pin: None,
            extras: Extras::default(),
        },
    }
}

/// Purchases with request ids `from..to`, spread over the payers.
fn pay(store: &Store, payers: &[AccountId], from: u64, to: u64) {
    for request_id in from..to {
        let payer = payers[(request_id % payers.len() as u64) as usize];
        assert_eq!(
            run(store, purchase(request_id, payer, 1 + request_id % 7)).reason,
            Reason::Approved
        );
    }
}

/// The `BOOKS` file of [`config`]'s books under `rules`.
fn books_text(rules: u32) -> String {
    let books = BooksConfig::default();
    format!(
        "shards 4\ncurrency 978\nrules {rules}\nidempotency-window {}\nholds-per-shard-max {}\nhold-retention-us {}\n",
        books.idempotency_window, books.holds_per_shard_max, books.hold_retention_us
    )
}

fn reopen_digest(dir: &Path) -> [u8; 32] {
    let (store, _) = Store::open(config(dir)).expect("reopen");
    store
        .books()
        .check_invariants()
        .expect("invariants after recovery");
    let digest = store.books().digest();
    store.close().expect("close");
    digest
}

/// Books of one shard (no log) with merchant 1 and one payer holding 1,000: (books, payer).
fn one_shard_books() -> (engine::Books, AccountId) {
    let books = engine::Books::new(BooksConfig {
        shards: 1,
        ..BooksConfig::default()
    })
    .expect("config");
    let run = |command| books.execute(&command, NOON_US, &engine::NoJournal).outcome;
    run(register_merchant());
    let payer = AccountId(
        run(Command::OpenAccount {
            shard: 0,
            currency: EUR,
            mobile: None,
            limits: Limits::NONE,
        })
        .id,
    );
    run(Command::Load {
        account: payer,
        amount: 1_000,
    });
    (books, payer)
}

fn register_merchant() -> Command {
    Command::RegisterMerchant {
        fee_bps: 100,
        fee_bps_with_details: 50,
        origin: engine::Reference::default(),
    }
}

/// A new terminal of `merchant` buys 100 from `payer`.
fn purchase_at_a_new_terminal(books: &engine::Books, merchant: MerchantId, payer: AccountId) {
    let run = |command| books.execute(&command, NOON_US, &engine::NoJournal).outcome;
    let terminal = TerminalId(
        run(Command::RegisterTerminal {
            merchant,
            secret: [3; 32],
        })
        .id as u32,
    );
    let origin = Origin {
        merchant,
        key: RequestKey {
            terminal,
            request_id: 1,
        },
    };
    let purchase = TerminalOp::Purchase {
        payer,
        amount: 100,
        currency: EUR,
        pin: None,
        extras: Extras::default(),
    };
    assert_eq!(
        run(Command::Terminal { origin, op: purchase }).reason,
        Reason::Approved
    );
}

/// The files of `dir` with their sizes, by name.
fn dir_listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, entry.metadata().expect("metadata").len())
        })
        .collect();
    files.sort();
    files
}

/// [`refusal`], checking that the refused open left the data dir as it found it.
fn refusal_untouched(config: StoreConfig, expected: fn(&StoreError) -> bool, what: &str) -> String {
    let dir = config.wal.dir.clone();
    let before = dir_listing(&dir);
    let message = refusal(config, expected, what);
    assert_eq!(
        dir_listing(&dir),
        before,
        "{what}: nothing is replayed or written"
    );
    message
}

/// Whole snapshot files in `dir`.
fn snapshot_count(dir: &Path) -> usize {
    dir_listing(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".snap"))
        .count()
}

/// Opens `config` expecting the refusal `expected` tells apart; returns its message. `what`
/// names the case in a failure.
fn refusal(config: StoreConfig, expected: fn(&StoreError) -> bool, what: &str) -> String {
    match Store::open(config) {
        Err(error) if expected(&error) => error.to_string(),
        Err(error) => panic!("{what}: unexpected error: {error}"),
        Ok(_) => panic!("{what}: must not open"),
    }
}

#[test]
fn an_empty_dir_opens_empty_books() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, recovered) = Store::open(config(dir.path())).expect("open");
    assert!(recovered.snapshot.is_none());
    assert_eq!(recovered.records_applied, 0);
    assert!(
        recovered.rerecorded.is_none(),
        "a new dir's first record is no change"
    );
    assert_eq!(store.books().merchant(MerchantId(1)), None);
}

#[test]
fn a_clean_shutdown_reopens_the_same_books() {
    let (dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 200);
    let digest = store.books().digest();
    store.close().expect("close");
    drop(store);
    assert_eq!(reopen_digest(dir.path()), digest);
}

#[test]
fn snapshot_then_log_reopens_the_same_books_and_replays_only_the_tail() {
    let (dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 300);
    store.snapshot().expect("snapshot");
    pay(&store, &payers, 300, 350);
    let digest = store.books().digest();
    store.close().expect("close");
    drop(store);
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen");
    assert!(recovered.snapshot.is_some());
    assert_eq!(
        recovered.records_applied, 50,
        "only what came after the snapshot is replayed"
    );
    assert_eq!(store.books().digest(), digest);
    assert_eq!(
        store.books().resolve_mobile(33_600_000_003),
        Some(payers[3]),
        "aliases come back"
    );
}

#[test]
fn idempotency_survives_a_snapshot_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 2);
    let original = run(&store, purchase(77, payers[0], 500));
    store.snapshot().expect("snapshot");
    store.close().expect("close");
    drop(store);
    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    let balance = store.books().account_info(payers[0]).map(|info| info.balance);
    assert_eq!(
        run(&store, purchase(77, payers[0], 500)),
        original,
        "the retry gets the original outcome"
    );
    assert_eq!(
        store.books().account_info(payers[0]).map(|info| info.balance),
        balance,
        "and no second debit"
    );
}

#[test]
fn a_truncated_newest_snapshot_falls_back_to_the_previous_one() {
    let (dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 200);
    store.snapshot().expect("first snapshot");
    pay(&store, &payers, 200, 400);
    let newest = store.snapshot().expect("second snapshot");
    pay(&store, &payers, 400, 450);
    let digest = store.books().digest();
    store.close().expect("close");
    drop(store);
    cut_in_half(&newest);
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen from the older snapshot");
    assert_eq!(
        recovered.skipped_snapshots.len(),
        1,
        "the damaged snapshot is reported, not silently skipped"
    );
    assert_ne!(
        recovered.snapshot.as_ref().map(|(path, _)| path.clone()),
        Some(newest)
    );
    assert_eq!(store.books().digest(), digest);
}

#[test]
fn a_snapshot_of_other_books_is_refused_with_the_flag_to_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    set_up(&store, 2);
    store.snapshot().expect("snapshot");
    store.close().expect("close");
    drop(store);
    let mut shards = config(dir.path());
    shards.books.shards = 8;
    let mut currency = config(dir.path());
    currency.books.currency = Currency(840);
    for (other, flag) in [(shards, "--shards 4"), (currency, "--currency 978")] {
        // As in a dir written before the BOOKS file existed: the snapshot's own check refuses.
        let _ = std::fs::remove_file(dir.path().join("BOOKS"));
        let snapshot = |error: &StoreError| matches!(error, StoreError::Snapshot { .. });
        let message = refusal(other, snapshot, "books of another shape");
        assert!(message.contains(flag), "{message}");
        assert!(
            !dir.path().join("BOOKS").exists(),
            "a refused shape is not recorded"
        );
    }
    let (_store, _) = Store::open(config(dir.path())).expect("the right flags open the books");
    let recorded = std::fs::read_to_string(dir.path().join("BOOKS")).expect("BOOKS");
    assert_eq!(recorded, books_text(RULES));
}

#[test]
fn a_log_of_other_books_is_refused_before_any_snapshot_with_the_flag_to_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 2);
    store.close().expect("close");
    drop(store);
    let differs = |other: StoreConfig, flag: &str| {
        let books_differ = |error: &StoreError| matches!(error, StoreError::BooksDiffer { .. });
        let message = refusal(other, books_differ, "a log of other books");
        assert!(
            message.contains(flag) && message.contains("--data-dir"),
            "{message}"
        );
    };
    let mut shards = config(dir.path());
    shards.books.shards = 8;
    differs(shards, "--shards 4");
    let mut currency = config(dir.path());
    currency.books.currency = Currency(840);
    differs(currency, "--currency 978");
    // Refused, nothing lost: the right flags open the same books.
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen");
    assert!(recovered.records_applied > 0);
    for payer in payers {
        assert!(store.books().account_info(payer).is_some(), "payer {payer:?}");
    }
}

#[test]
fn a_configuration_that_cannot_build_books_is_not_recorded_as_the_dirs_shape() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut invalid = config(dir.path());
    invalid.books.shards = 3;
    assert!(matches!(Store::open(invalid), Err(StoreError::Config(_))));
    assert!(!dir.path().join("BOOKS").exists());
    let (_store, _) = Store::open(config(dir.path())).expect("the dir opens with valid flags");
}

#[test]
fn a_log_with_nothing_to_vouch_for_its_shape_waits_for_the_operator() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    set_up(&store, 2);
    store.close().expect("close");
    drop(store);
    // As an authd from before the BOOKS file left it: a log, no snapshot.
    let books_file = dir.path().join("BOOKS");
    std::fs::remove_file(&books_file).expect("remove BOOKS");
    let untouched = dir_listing(dir.path());
    let mut fewer_shards = config(dir.path());
    fewer_shards.books.shards = 1;
    for attempt in [config(dir.path()), fewer_shards] {
        let unknown = |error: &StoreError| matches!(error, StoreError::BooksUnknown { .. });
        let message = refusal_untouched(attempt, unknown, "nothing vouches for the flags");
        assert!(message.contains("shards N"), "{message}");
    }
    // The operator names the shape. The rules of a log from before the BOOKS file are not
    // this build's: the next open asks for a snapshot covering the log first.
    std::fs::write(&books_file, "shards 4\ncurrency 978\n").expect("the operator writes it");
    let older = |error: &StoreError| matches!(error, StoreError::RulesOlder { .. });
    let message = refusal(config(dir.path()), older, "a log of unknown rules");
    assert!(message.contains("rules 0"), "{message}");
    let but_books = dir_listing(dir.path())
        .into_iter()
        .filter(|(name, _)| name != "BOOKS")
        .collect::<Vec<_>>();
    assert_eq!(but_books, untouched, "still nothing replayed or written");
}

#[test]
fn a_log_tail_written_under_older_rules_is_not_replayed_under_these() {
    let dir = tempfile::tempdir().expect("temp dir");
    let books_file = dir.path().join("BOOKS");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 2);
    store.close().expect("close");
    drop(store);
    // As if an authd deciding by rules 0 had written this log; and as a dir with no BOOKS file
    // but a snapshot, whose log goes on past it (rules unknown).
    std::fs::write(&books_file, books_text(0)).expect("write");
    let refused = |what: &str| {
        let older = |error: &StoreError| matches!(error, StoreError::RulesOlder { .. });
        let message = refusal_untouched(config(dir.path()), older, what);
        assert!(message.contains("until it stops cleanly"), "{what}: {message}");
    };
    refused("rules 0");
    {
        std::fs::write(&books_file, books_text(RULES)).expect("write");
        let (store, _) = Store::open(config(dir.path())).expect("open");
        store.snapshot().expect("snapshot");
        set_up(&store, 1);
        store.close().expect("close");
    }
    std::fs::remove_file(&books_file).expect("remove BOOKS");
    refused("no BOOKS, a snapshot and a tail");
    // The old build stopped cleanly: a snapshot covers the whole log. (Written here by this
    // build, under the shape the file names.)
    std::fs::write(&books_file, books_text(RULES)).expect("write");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    store.snapshot().expect("snapshot");
    store.close().expect("close");
    drop(store);
    std::fs::write(&books_file, books_text(0)).expect("write");
    let (store, recovered) = Store::open(config(dir.path())).expect("nothing to replay: it opens");
    assert_eq!(recovered.records_applied, 0);
    assert!(store.books().account_info(payers[0]).is_some());
    drop(store);
    let rewritten = std::fs::read_to_string(&books_file).expect("BOOKS");
    assert_eq!(rewritten, books_text(RULES), "from now on, these rules");
    // What the older rules wrote before that snapshot is gone: no fallback can replay it.
    assert_eq!(snapshot_count(dir.path()), 1);
    // A newer build's dir is refused.
    std::fs::write(&books_file, books_text(RULES + 1)).expect("write");
    let newer = |error: &StoreError| matches!(error, StoreError::RulesNewer { .. });
    let message = refusal(config(dir.path()), newer, "a newer build's books");
    assert!(message.contains("newer"), "{message}");
}

#[test]
fn a_damaged_books_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    store.close().expect("close");
    drop(store);
    let books_file = dir.path().join("BOOKS");
    let written = std::fs::read_to_string(&books_file).expect("a new data dir gets a BOOKS file");
    assert_eq!(written, books_text(RULES));
    for damaged in [
        "",
        "shards 4\n",
        "shards four\ncurrency 978\n",
        "shards 4\ncurrency 978\ncolour blue\n",
    ] {
        std::fs::write(&books_file, damaged).expect("write");
        let unreadable = |error: &StoreError| matches!(error, StoreError::BooksFile { .. });
        let message = refusal(config(dir.path()), unreadable, damaged);
        assert!(
            message.contains("BOOKS") && message.contains("--shards"),
            "{message}"
        );
    }
}

#[test]
fn a_second_store_on_the_same_dir_is_refused_and_told_who_holds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_store, _) = Store::open(config(dir.path())).expect("open");
    match Store::open(config(dir.path())) {
        Err(StoreError::Wal(error @ WalError::Locked { .. })) => {
            let message = error.to_string();
            assert!(message.contains(&std::process::id().to_string()), "{message}");
            assert!(message.contains("--data-dir"), "{message}");
        }
        Err(error) => panic!("unexpected error: {error}"),
        Ok(_) => panic!("a second store must not open a locked dir"),
    }
}

/// The lsn in a snapshot's file name.
fn snapshot_lsn(path: &Path) -> u64 {
    let name = path.file_name().and_then(|name| name.to_str()).expect("name");
    let digits = name
        .strip_prefix("snapshot-")
        .and_then(|rest| rest.strip_suffix(".snap"));
    digits
        .and_then(|digits| digits.parse().ok())
        .expect("a snapshot's name")
}

#[test]
fn snapshots_keep_old_segments_for_reuse_up_to_the_limit_and_remove_the_rest() {
    let segment_bytes = config(Path::new(".")).wal.segment_bytes;
    for kept_max in [0u64, 1, 1_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path());
        config.wal.reuse_bytes_max = kept_max * segment_bytes;
        let (store, _) = Store::open(config.clone()).expect("open");
        let payers = set_up(&store, 8);
        let free = || engine::wal::reuse::free_segments(dir.path()).expect("list");
        let listed = || {
            engine::wal::segment::list_segments(dir.path())
                .expect("list")
                .len()
        };
        pay(&store, &payers, 1, 4_000);
        let before = listed();
        let first = snapshot_lsn(&store.snapshot().expect("first"));
        pay(&store, &payers, 4_000, 4_100);
        let redundant = store.wal().segments_before(first).expect("list").len() as u64;
        assert!(redundant >= 4, "{redundant}");
        store.snapshot().expect("second");
        assert!(listed() < before, "segments {before} then {}", listed());
        let kept = free();
        assert_eq!(
            kept.len() as u64,
            redundant.min(kept_max),
            "kept at most {kept_max}"
        );
        let names: Vec<String> = dir_listing(dir.path())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(!names.iter().any(|name| name.ends_with(".removing")), "{names:?}");
        // The log takes them as it rolls (two rolls here): a zero-filled segment was ready
        // for the first.
        pay(&store, &payers, 4_100, 6_000);
        let reused = store.wal().stats().segments_reused;
        assert_eq!(reused > 0, kept_max > 0, "{reused} reused");
        let untaken: Vec<_> = free();
        // And one more may be taken already, prepared for the next roll.
        let taken = kept.len() as u64 - untaken.len() as u64;
        assert!(
            taken == reused || taken == reused + 1,
            "{taken} taken, {reused} reused"
        );
        assert_eq!(untaken.is_empty(), kept_max < 4, "{untaken:?} left of {kept:?}");
        // What was kept and not taken goes at the next snapshot; what it frees is kept.
        let newest = store.snapshot().expect("third");
        assert!(untaken.iter().all(|path| !path.exists()), "{untaken:?}");
        assert!(free().len() as u64 <= kept_max);
        pay(&store, &payers, 6_000, 6_100);
        let live = store.books().digest();
        drop(store);
        // The log written over reused segments recovers exactly, from the newest snapshot
        // or, with it damaged, from the fallback and every segment after it.
        assert_eq!(reopen_digest(dir.path()), live, "kept at most {kept_max}");
        cut_in_half(&newest);
        assert_eq!(reopen_digest(dir.path()), live, "kept at most {kept_max}");
    }
}

#[test]
fn snapshots_keep_as_many_free_segments_as_were_written_ahead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.wal.reuse_bytes_max = 0;
    let (store, _) = Store::open(config.clone()).expect("open");
    let payers = set_up(&store, 8);
    pay(&store, &payers, 1, 2_000);
    store.snapshot().expect("first");
    drop(store);
    // Reopened with 8 segments written ahead: the log takes some, snapshots keep the rest.
    config.wal.preallocate_bytes = 8 * config.wal.segment_bytes;
    let (store, recovered) = Store::open(config.clone()).expect("reopen");
    assert_eq!(recovered.log.preallocated, 8);
    let free = || engine::wal::reuse::free_segments(dir.path()).expect("list");
    pay(&store, &payers, 2_000, 3_000);
    let untaken = free();
    store.snapshot().expect("second");
    store.snapshot().expect("third");
    // (The preparer of the last roll may have taken one more meanwhile.)
    let kept = free();
    assert!(
        kept.len() >= 2 && kept.len() + 1 >= untaken.len() && kept.iter().all(|path| untaken.contains(path)),
        "{kept:?} kept of {untaken:?}"
    );
    // More free segments than were written ahead: the next snapshot keeps 8 of them.
    for index in 0..10 {
        let name = engine::wal::segment::segment_file_name(1_000_000_000 + index);
        let extra = dir
            .path()
            .join(format!("{name}{}", engine::wal::reuse::FREE_SUFFIX));
        std::fs::write(extra, vec![0; config.wal.segment_bytes as usize]).expect("write");
    }
    store.snapshot().expect("fourth");
    assert_eq!(free().len(), 8, "{:?}", free());

    let live = store.books().digest();
    drop(store);
    assert_eq!(reopen_digest(dir.path()), live);
}

/// Parallel replay (engine/src/store/replay.rs) must build exactly the books a sequential
/// replay builds, including where a decision reads outside its shard: a merchant frozen and
/// unfrozen between payments, and mobile numbers taken and retried across shards.
#[test]
fn parallel_replay_equals_the_live_books_and_a_sequential_replay() {
    let (dir, store, payers) = store_with_payers();
    let mut request_id = 1_000;
    for round in 0..40u64 {
        let status = if round % 3 == 1 {
            engine::Status::Frozen
        } else {
            engine::Status::Active
        };
        run(
            &store,
            Command::SetMerchantStatus {
                merchant: MerchantId(1),
                status,
            },
        );
        for payer in &payers {
            request_id += 1;
            run(&store, purchase(request_id, *payer, 1 + round));
        }
        let mobile = Some(33_700_000_000 + round % 7);
        let open = Command::OpenAccount {
            shard: (round % 4) as u32,
            currency: EUR,
            mobile,
            limits: Limits::NONE,
        };
        run(&store, open);
    }
    let live = store.books().digest();
    store.close().expect("close");
    drop(store);
    let sequential = engine::Books::new(config(dir.path()).books).expect("config");
    engine::wal::read_log(
        dir.path(),
        0,
        &ReadOptions::default(),
        |lsn, timestamp_us, payload| {
            let command = engine::journal::codec::decode(payload).expect("a command");
            sequential.replay(&command, timestamp_us, lsn);
            Ok::<(), WalError>(())
        },
    )
    .expect("read");
    assert_eq!(sequential.digest(), live, "sequential replay");
    assert_eq!(reopen_digest(dir.path()), live, "parallel replay");
}

#[test]
fn a_snapshot_whose_books_do_not_add_up_is_refused_though_its_checksums_pass() {
    let (books, payer) = one_shard_books();
    let books_config = *books.config();
    purchase_at_a_new_terminal(&books, MerchantId(1), payer);
    let (_, sections) = engine::store::snapshot::take(&books, || 10);
    let load = |sections: &[Vec<u8>]| {
        let slices: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        engine::store::snapshot::load(books_config, &slices).map(|_| ())
    };
    assert!(load(&sections).is_ok(), "the untouched snapshot loads");
    // Shard 0: index, shard bits and payer count (u32 each), then the first payer's balance
    // and held (u64 each). Held 1 with no hold behind it passes decoding (held <= balance).
    let mut unbacked = sections.clone();
    unbacked[2][20..28].copy_from_slice(&1u64.to_le_bytes());
    match load(&unbacked) {
        Err(error @ engine::store::snapshot::LoadError::Inconsistent(_)) => {
            assert!(error.to_string().contains("held 1"), "{error}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // Registry: merchant count (u32), then the first merchant's status (u8) and fee (u16).
    let mut fee = sections.clone();
    fee[1][5..7].copy_from_slice(&10_001u16.to_le_bytes());
    match load(&fee) {
        Err(error) => assert!(error.to_string().contains("merchant fee"), "{error}"),
        Ok(()) => panic!("a fee above the amount must not load"),
    }
    // The purchase's hold after the one payer (121 bytes), the first sequence (u64) and the
    // hold count (u32): its payer slot (u32), then its merchant (u32). A merchant id no
    // registry can hold would size its ledger stripe without end.
    let hold_merchant = 12 + 121 + 8 + 4 + 4;
    assert_eq!(sections[2][hold_merchant..hold_merchant + 4], 1u32.to_le_bytes());
    let mut stray = sections.clone();
    stray[2][hold_merchant..hold_merchant + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    match load(&stray) {
        Err(error) => assert!(error.to_string().contains("merchant id out of range"), "{error}"),
        Ok(()) => panic!("a hold of an impossible merchant must not load"),
    }
}

#[test]
fn a_snapshot_with_a_shard_in_another_shards_section_is_refused_naming_the_section() {
    let (_dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 100);
    let last = store.wal().last_lsn();
    let (_, mut sections) = engine::store::snapshot::take(store.books(), || last);
    sections.swap(2, 3);
    let slices: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    match engine::store::snapshot::load(*store.books().config(), &slices) {
        Err(error) => {
            let said = error.to_string();
            assert!(said.contains("snapshot section 2"), "{said}");
            assert!(
                said.contains("index or shard bits do not match its section"),
                "{said}"
            );
        }
        Ok(_) => panic!("shards swapped between sections must not load"),
    }
}

#[test]
fn shards_copied_one_after_another_carry_nothing_of_each_other() {
    // A snapshot copies every shard into one image whose buffers it reuses: a big shard
    // copied first must leave nothing behind in a smaller one's section.
    let (_dir, store, payers) = store_with_payers();
    // Shard 0 holds payers 0 and 4 (opened round robin): only they buy.
    let shard_zero = [payers[0], payers[4]];
    pay(&store, &shard_zero, 1, 400);
    let last = store.wal().last_lsn();
    let (_, sections) = engine::store::snapshot::take(store.books(), || last);
    assert!(
        sections[2].len() > sections[3].len() + 300 * engine::books::state::HOLD_BYTES,
        "shard 0 is the big one"
    );
    for index in 0..4u32 {
        let mut fresh = engine::books::state::ShardImage::default();
        let mut alone = Vec::new();
        store
            .books()
            .snapshot_shard(index, || last, &mut fresh, &mut alone);
        assert_eq!(
            sections[2 + index as usize],
            alone,
            "shard {index} copied after others, against alone"
        );
    }
}

#[test]
fn a_snapshot_given_up_midway_leaves_nothing_and_the_next_one_is_whole() {
    let (dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 50);
    // Asked before each part: the registry and two shards go out, then it stops.
    let asked = std::cell::Cell::new(0);
    let keep_going = || {
        asked.set(asked.get() + 1);
        asked.get() <= 3
    };
    match store.snapshot_paced(None, keep_going) {
        Err(StoreError::SnapshotAbandoned) => {}
        other => panic!("expected SnapshotAbandoned, got {other:?}"),
    }
    assert_eq!(asked.get(), 4);
    assert_eq!(snapshot_count(dir.path()), 0);
    let leftovers: Vec<_> = dir_listing(dir.path())
        .into_iter()
        .filter(|(name, _)| name.starts_with("snapshot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    store.snapshot().expect("the next snapshot");
    assert_eq!(snapshot_count(dir.path()), 1);
    let live = store.books().digest();
    drop(store);
    assert_eq!(reopen_digest(dir.path()), live);
}

#[test]
fn a_snapshot_taken_part_by_part_while_payments_and_registrations_go_on_recovers_them_all() {
    // A paced snapshot takes its parts seconds apart; here the pause between parts is made
    // long on purpose, while purchases, account openings (registry) and merchant changes go on.
    let (dir, store, payers) = store_with_payers();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let busy = scope.spawn(|| {
            let mut request_id = 10_000;
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                for payer in &payers {
                    request_id += 1;
                    run(&store, purchase(request_id, *payer, 1 + round % 5));
                }
                let open = Command::OpenAccount {
                    shard: (round % 4) as u32,
                    currency: EUR,
                    mobile: Some(33_800_000_000 + round),
                    limits: Limits::NONE,
                };
                run(&store, open);
            }
            round
        });
        let between_parts = || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            true
        };
        store.snapshot_paced(None, between_parts).expect("snapshot");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            busy.join().expect("payments") > 5,
            "payments went on during the snapshot"
        );
    });
    pay(&store, &payers, 50_000, 50_040);
    let live = store.books().digest();
    let last = store.wal().last_lsn();
    drop(store);
    // Restart from that snapshot and the log after its parts, each from its own lsn.
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen");
    assert!(recovered.records_applied > 0, "{recovered:?}");
    assert_eq!(store.wal().last_lsn(), last);
    store
        .books()
        .check_invariants()
        .expect("invariants after recovery");
    assert_eq!(store.books().digest(), live);
}

#[test]
fn paced_removal_takes_apart_what_the_previous_snapshot_made_redundant_and_what_was_left_aside() {
    let (dir, store, payers) = store_with_payers();
    // Left aside by a stop or a crash in the middle of a removal (no real file's name).
    let left = dir.path().join("wal-00000000009999999999.log.removing");
    std::fs::write(&left, vec![0u8; 10_000]).expect("write");
    let pace = std::num::NonZeroU64::new(1_000_000_000);
    let mut newest = std::path::PathBuf::new();
    for round in 0..3u64 {
        pay(&store, &payers, 1 + round * 1_000, (round + 1) * 1_000);
        newest = store.snapshot_paced(pace, || true).expect("snapshot");
        let swept = store.remove_redundant(pace, || true);
        assert!(swept.failed.is_empty(), "{swept:?}");
        if round == 0 {
            assert_eq!(
                swept.removed, 1,
                "only what was left aside: nothing is redundant yet"
            );
            assert!(!left.exists(), "swept");
        }
    }
    assert!(
        !dir.path().join("wal-00000000000000000001.log").exists(),
        "the first segment went"
    );
    let names: Vec<String> = dir_listing(dir.path())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(!names.iter().any(|name| name.ends_with(".removing")), "{names:?}");
    let snapshots: Vec<u64> = names
        .iter()
        .filter_map(|name| {
            name.strip_prefix("snapshot-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(snapshots.len(), 2, "the newest and its fallback: {names:?}");
    let fallback = snapshots.iter().copied().min().expect("a snapshot");
    assert_eq!(
        store.wal().segments_before(fallback).expect("list"),
        Vec::<std::path::PathBuf>::new(),
        "segments the fallback does not need are gone: {names:?}"
    );
    let live = store.books().digest();
    drop(store);
    // What the fallback needs stayed: with the newest snapshot damaged, it recovers everything.
    cut_in_half(&newest);
    assert_eq!(reopen_digest(dir.path()), live);
}

#[test]
fn a_removal_stopped_midway_leaves_the_rest_aside_and_the_next_open_finishes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.wal.segment_bytes = 16 << 20;
    let (store, _) = Store::open(config.clone()).expect("open");
    let payers = set_up(&store, 8);
    pay(&store, &payers, 1, 2_000);
    store.snapshot().expect("first");
    // A big old segment for the next removal to cut in steps.
    let big = dir.path().join("wal-00000000000000000000.log.removing");
    std::fs::write(
        &big,
        vec![0u8; 3 * engine::wal::removal::REMOVE_STEP_BYTES as usize],
    )
    .expect("write");
    let asked = std::cell::Cell::new(0);
    let twice = || {
        asked.set(asked.get() + 1);
        asked.get() <= 2
    };
    let swept = store.remove_redundant(std::num::NonZeroU64::new(u64::MAX), twice);
    assert_eq!((swept.removed, swept.left), (0, 1), "{swept:?}");
    assert_eq!(
        std::fs::metadata(&big).expect("still aside").len(),
        engine::wal::removal::REMOVE_STEP_BYTES,
        "two steps cut"
    );
    let live = store.books().digest();
    drop(store);
    let (store, recovered) = Store::open(config).expect("reopen with a file half taken apart");
    assert_eq!(store.books().digest(), live);
    assert!(recovered.removal_failed.is_empty(), "{recovered:?}");
    assert!(!big.exists(), "the open finished taking it apart");
}

#[test]
fn an_open_reports_a_file_set_aside_that_will_not_go_and_opens_all_the_same() {
    let (dir, store, payers) = store_with_payers();
    pay(&store, &payers, 1, 50);
    let live = store.books().digest();
    drop(store);
    // A dir cannot be cut or unlinked as a file.
    std::fs::create_dir(dir.path().join("stuck.removing")).expect("mkdir");
    let (store, recovered) = Store::open(config(dir.path())).expect("opens");
    assert_eq!(recovered.removal_failed.len(), 1, "{recovered:?}");
    assert!(
        recovered.removal_failed[0].to_string().contains("stuck.removing"),
        "names the file: {}",
        recovered.removal_failed[0]
    );
    assert_eq!(store.books().digest(), live);
}

#[test]
fn a_snapshot_whose_shards_are_newer_than_its_registry_loads() {
    // The registry is saved first, then each shard: a merchant registered in between can
    // have holds in a shard whose registry does not know it yet (replay brings it in).
    let (books, payer) = one_shard_books();
    let (_, older) = engine::store::snapshot::take(&books, || 10);
    let merchant = MerchantId(
        books
            .execute(&register_merchant(), NOON_US, &engine::NoJournal)
            .outcome
            .id as u32,
    );
    purchase_at_a_new_terminal(&books, merchant, payer);
    let (_, newer) = engine::store::snapshot::take(&books, || 20);
    // The older registry beside the newer shard.
    let fuzzy = [newer[0].as_slice(), older[1].as_slice(), newer[2].as_slice()];
    assert!(
        engine::store::snapshot::load(*books.config(), &fuzzy).is_ok(),
        "a snapshot taken while a merchant was registered must load"
    );
}

#[test]
fn books_that_name_a_merchant_the_registry_never_registers_are_refused_after_replay() {
    let (books, payer) = one_shard_books();
    purchase_at_a_new_terminal(&books, MerchantId(1), payer);
    let (coverage, mut sections) = engine::store::snapshot::take(&books, || 10);
    // The hold's merchant (see the test above for the offset): 5, within what a registry can
    // hold, so the snapshot itself loads; but replay registers no merchant 5.
    let hold_merchant = 12 + 121 + 8 + 4 + 4;
    sections[2][hold_merchant..hold_merchant + 4].copy_from_slice(&5u32.to_le_bytes());
    let slices: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    assert!(engine::store::snapshot::load(*books.config(), &slices).is_ok());
    let dir = tempfile::tempdir().expect("temp dir");
    engine::wal::write_snapshot(dir.path(), coverage.registry_lsn, slices.iter().copied()).expect("write");
    let mut one_shard = config(dir.path());
    one_shard.books.shards = 1;
    // A snapshot alone, no log: only opened on the operator's word.
    one_shard.read.truncate_corrupt = true;
    let inconsistent = |error: &StoreError| matches!(error, StoreError::Inconsistent { .. });
    let message = refusal(one_shard, inconsistent, "books naming an unregistered merchant");
    assert!(message.contains("unknown merchant 5"), "{message}");
}

#[test]
fn a_snapshot_half_written_by_a_crash_is_removed_at_the_next_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stale = dir.path().join("snapshot-00000000000000000007.snap.tmp");
    let other = dir.path().join("notes.tmp");
    std::fs::write(&stale, b"half").expect("write");
    std::fs::write(&other, b"not ours").expect("write");
    let (_store, _) = Store::open(config(dir.path())).expect("open");
    assert!(!stale.exists(), "the half-written snapshot is removed");
    assert!(other.exists(), "other files are left alone");
}

#[test]
fn a_snapshot_whose_shards_cover_the_whole_log_opens_under_newer_rules() {
    // A snapshot taken while payments went on: the registry part is taken first, at an
    // earlier position than the shards. Records between the two are covered by their shards,
    // so nothing is replayed and the older rules of the log do not matter.
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    set_up(&store, 2);
    let last = store.wal().last_lsn();
    let positions = std::cell::Cell::new(0);
    let (coverage, sections) = engine::store::snapshot::take(store.books(), || {
        // The registry's part first, one record before the end; every shard at the end.
        let position = positions.get();
        positions.set(position + 1);
        if position == 0 {
            last - 1
        } else {
            last
        }
    });
    assert_eq!(coverage.registry_lsn, last - 1);
    engine::wal::write_snapshot(
        dir.path(),
        coverage.registry_lsn,
        sections.iter().map(Vec::as_slice),
    )
    .expect("write");
    store.close().expect("close");
    drop(store);
    std::fs::write(dir.path().join("BOOKS"), books_text(0)).expect("write");
    let (_store, recovered) = Store::open(config(dir.path())).expect("nothing to replay: it opens");
    assert_eq!(recovered.records_applied, 0);
}

#[test]
fn a_log_tail_is_replayed_only_with_the_settings_it_was_written_with() {
    // Replayed with a window of 1, the retry below would be charged a second time; with one
    // hold per shard, the second purchase would be declined; with a retention of 1 us, the
    // refund would find no hold. So the tail is refused, and the settings change only where a
    // snapshot covers the whole log.
    let dir = tempfile::tempdir().expect("temp dir");
    let books_file = dir.path().join("BOOKS");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 4);
    for request_id in 1..=3 {
        assert_eq!(
            run(&store, purchase(request_id, payers[0], 100)).reason,
            Reason::Approved
        );
    }
    let retried = run(&store, purchase(1, payers[0], 100));
    assert_eq!(
        retried.reason,
        Reason::Approved,
        "the retry gets the original outcome"
    );
    let balance = |store: &Store| store.books().account_info(payers[0]).map(|info| info.balance);
    let acknowledged = balance(&store);
    store.close().expect("close");
    drop(store);
    let defaults = BooksConfig::default();
    type Change = fn(&mut BooksConfig);
    let changes: [(Change, String); 3] = [
        (
            |books| books.idempotency_window = 1,
            format!("--idempotency-window {}", defaults.idempotency_window),
        ),
        (
            |books| books.holds_per_shard_max = 1,
            format!("--holds-per-shard-max {}", defaults.holds_per_shard_max),
        ),
        (
            |books| books.hold_retention_us = 1,
            format!(
                "a hold retention of {} us (an authd built with that default)",
                defaults.hold_retention_us
            ),
        ),
    ];
    let refused = |change: Change, named: &str| {
        let mut changed = config(dir.path());
        change(&mut changed.books);
        let differ = |error: &StoreError| matches!(error, StoreError::SettingsDiffer { .. });
        let message = refusal_untouched(changed, differ, named);
        assert!(message.contains(&format!("start with {named}")), "{message}");
    };
    for (change, named) in &changes {
        refused(*change, named);
    }
    // A BOOKS file from before the settings lines: unknown settings, refused whatever the
    // flags; only the authd that wrote the tail can cover it with a snapshot.
    std::fs::write(&books_file, format!("shards 4\ncurrency 978\nrules {RULES}\n")).expect("write");
    let unknown = |error: &StoreError| matches!(error, StoreError::SettingsUnknown { .. });
    let message = refusal_untouched(config(dir.path()), unknown, "unknown settings");
    assert!(message.contains("start the authd that wrote them"), "{message}");
    std::fs::write(&books_file, books_text(RULES)).expect("write");
    // With its own settings the tail replays to what was acknowledged; a clean stop covers it.
    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    assert_eq!(balance(&store), acknowledged);
    store.snapshot().expect("snapshot");
    assert_eq!(run(&store, purchase(4, payers[0], 100)).reason, Reason::Approved);
    store.snapshot().expect("the stop's snapshot");
    store.close().expect("close");
    drop(store);
    // Nothing left to replay: the new settings take effect, and are recorded.
    let mut narrow = config(dir.path());
    narrow.books.idempotency_window = 1;
    let (store, recovered) = Store::open(narrow.clone()).expect("nothing to replay: it opens");
    assert_eq!(recovered.records_applied, 0);
    let rerecorded = recovered.rerecorded.expect("the new settings are recorded");
    let before = rerecorded.before.and_then(|before| before.settings);
    assert_eq!(
        before.map(|settings| settings.idempotency_window),
        Some(defaults.idempotency_window)
    );
    assert!(
        rerecorded
            .removed
            .iter()
            .any(|path| path.to_string_lossy().ends_with(".snap")),
        "the older snapshot is reported removed: {:?}",
        rerecorded.removed
    );
    assert_eq!(balance(&store), acknowledged.map(|balance| balance - 100));
    drop(store);
    let rewritten = std::fs::read_to_string(&books_file).expect("BOOKS");
    assert!(rewritten.contains("\nidempotency-window 1\n"), "{rewritten}");
    // What the old settings wrote before that snapshot is gone: no fallback replays it.
    assert_eq!(snapshot_count(dir.path()), 1);
    let (store, _) = Store::open(narrow).expect("reopen with the recorded settings");
    assert_eq!(balance(&store), acknowledged.map(|balance| balance - 100));
}

#[test]
fn a_snapshot_covers_only_what_the_log_made_durable() {
    // A purchase whose record the disk refused was answered 96, but it was applied in
    // memory: a snapshot taken then must not carry it (nor claim its lsn, which the next
    // start hands out again).
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = std::sync::Arc::new(engine::wal::FaultInjection::default());
    let mut failing = config(dir.path());
    failing.wal.faults = Some(std::sync::Arc::clone(&faults));
    let (store, _) = Store::open(failing).expect("open");
    let payers = set_up(&store, 2);
    let balance =
        |store: &Store, payer: AccountId| store.books().account_info(payer).map(|info| info.balance);
    let acknowledged = balance(&store, payers[0]);
    faults
        .fail_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = store.execute(&purchase(1, payers[0], 100), NOON_US);
    assert!(
        store.wal().wait_durable(refused.lsn).is_err(),
        "never durable: answered 96"
    );
    if let Ok(path) = store.snapshot() {
        panic!("snapshot {path:?} covers a record the log never wrote");
    }
    assert!(store.close().is_err());
    drop(store);
    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    assert_eq!(
        balance(&store, payers[0]),
        acknowledged,
        "the refused purchase is not in the books"
    );
    assert_eq!(run(&store, purchase(2, payers[1], 100)).reason, Reason::Approved);
    let after = balance(&store, payers[1]);
    store.close().expect("close");
    drop(store);
    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    assert_eq!(
        balance(&store, payers[1]),
        after,
        "the next acknowledged purchase survives"
    );
}

#[test]
fn a_log_that_ends_before_what_the_snapshot_covers_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    set_up(&store, 2);
    let last = store.wal().last_lsn();
    // A snapshot that vouches for three records the log does not have (a disk that lost
    // synced writes, a log restored without its tail).
    let (coverage, sections) = engine::store::snapshot::take(store.books(), || last + 3);
    engine::wal::write_snapshot(
        dir.path(),
        coverage.registry_lsn,
        sections.iter().map(Vec::as_slice),
    )
    .expect("write");
    store.close().expect("close");
    drop(store);
    let shorter = |error: &StoreError| matches!(error, StoreError::Wal(WalError::ShorterThanSnapshot { .. }));
    let message = refusal_untouched(
        config(dir.path()),
        shorter,
        "lsns the snapshot covers would be reused",
    );
    assert!(message.contains(&format!("ends at lsn {last}")), "{message}");
    assert!(message.contains("move the newest snapshot aside"), "{message}");
    // On the operator's word the log goes on after what the snapshot covers, and a new
    // snapshot covers the gap, so the next open (without the flag) finds none.
    let mut accept = config(dir.path());
    accept.read.truncate_corrupt = true;
    let (store, recovered) = Store::open(accept).expect("the operator accepts the loss");
    assert_eq!(recovered.log.lsns_skipped, Some((last + 1, last + 3)));
    let open = Command::OpenAccount {
        shard: 0,
        currency: EUR,
        mobile: None,
        limits: Limits::NONE,
    };
    let payer = AccountId(run(&store, open).id);
    assert_eq!(store.wal().last_lsn(), last + 4, "no lsn handed out twice");
    store.close().expect("close");
    drop(store);
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen without the flag");
    assert_eq!(recovered.log.lsns_skipped, None);
    assert!(store.books().account_info(payer).is_some());
}

#[test]
fn with_fsync_never_a_snapshot_syncs_the_log_it_covers() {
    // Else a power loss could keep the snapshot (synced) and lose the log under it.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut never = config(dir.path());
    never.wal.fsync_mode = engine::wal::FsyncMode::Never;
    let (store, _) = Store::open(never).expect("open");
    set_up(&store, 2);
    let syncs = store.wal().stats().syncs;
    store.snapshot().expect("snapshot");
    assert!(store.wal().stats().syncs > syncs, "the snapshot synced the log");
}

#[test]
fn a_device_registration_replays_against_the_accounts_it_saw() {
    // The registry's part of a snapshot is taken before the shards' parts. A registration
    // between the two, for an account opened after it, was declined; replayed against a
    // shard part that has the account, it must be declined again.
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let open = Command::OpenAccount {
        shard: 1,
        currency: EUR,
        mobile: None,
        limits: Limits::NONE,
    };
    // The first account of shard 1 has the same id in any books of this shape.
    let scratch = engine::Books::new(config(dir.path()).books).expect("books");
    let future = AccountId(scratch.execute(&open, NOON_US, &engine::NoJournal).outcome.id);
    let (early, early_sections) = engine::store::snapshot::take(store.books(), || store.wal().last_lsn());
    let register = |secret| Command::RegisterDevice {
        account: future,
        secret,
    };
    assert_eq!(run(&store, register([1; 32])).reason, Reason::AccountUnknown);
    assert_eq!(AccountId(run(&store, open).id), future);
    assert_eq!(run(&store, register([2; 32])).reason, Reason::Approved);
    let (late, mut sections) = engine::store::snapshot::take(store.books(), || store.wal().last_lsn());
    // The registry's part from before the registrations, the shards' from after.
    sections[1] = early_sections[1].clone();
    let meta = &mut sections[0];
    let at = meta.len() - 8 * (late.shard_lsns.len() + 1);
    meta[at..at + 8].copy_from_slice(&early.registry_lsn.to_le_bytes());
    engine::wal::write_snapshot(dir.path(), early.registry_lsn, sections.iter().map(Vec::as_slice))
        .expect("write");
    let live = store.books().digest();
    store.close().expect("close");
    drop(store);
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen");
    assert_eq!(recovered.snapshot.map(|(_, lsn)| lsn), Some(early.registry_lsn));
    assert_eq!(
        store
            .books()
            .device(engine::DeviceId(1))
            .map(|(_, _, secret)| secret),
        Some([2; 32]),
        "device 1 is the approved registration"
    );
    assert_eq!(store.books().digest(), live);
}

#[test]
fn a_snapshot_with_nothing_new_keeps_the_older_generation() {
    // Written again under the newest one's name, it would count as "the previous" snapshot and
    // remove the one before it: the fallback if the newest is damaged.
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 2);
    store.snapshot().expect("first");
    pay(&store, &payers, 1, 4);
    let newest = store.snapshot().expect("second");
    let snapshots = || snapshot_count(dir.path());
    assert_eq!(snapshots(), 2);
    assert_eq!(store.snapshot().expect("nothing new"), newest);
    assert_eq!(snapshots(), 2, "the older generation is kept");
}

#[test]
fn a_snapshot_without_any_log_segment_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    let payers = set_up(&store, 2);
    store.snapshot().expect("snapshot");
    let digest = store.books().digest();
    store.close().expect("close");
    drop(store);
    for (name, _) in dir_listing(dir.path()) {
        if name.starts_with("wal-") {
            std::fs::remove_file(dir.path().join(name)).expect("remove a segment");
        }
    }
    let missing = |error: &StoreError| matches!(error, StoreError::LogMissing { .. });
    let message = refusal_untouched(
        config(dir.path()),
        missing,
        "the records after the snapshot are missing",
    );
    assert!(message.contains("--truncate-corrupt-log"), "{message}");
    let mut accept = config(dir.path());
    accept.read.truncate_corrupt = true;
    let (store, _) = Store::open(accept).expect("the operator accepts the loss");
    assert_eq!(store.books().digest(), digest);
    assert!(store.books().account_info(payers[1]).is_some());
}

#[test]
fn a_record_that_is_no_command_is_refused_naming_its_lsn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(config(dir.path())).expect("open");
    set_up(&store, 1);
    let last = store.wal().last_lsn();
    store.close().expect("close");
    drop(store);
    {
        // A record with a valid checksum whose payload no command decodes from.
        let lock = engine::wal::DirLock::acquire(dir.path()).expect("lock");
        let (wal, _) = engine::wal::Wal::open(
            config(dir.path()).wal,
            lock,
            0,
            &ReadOptions::default(),
            |_, _, _| Ok::<(), WalError>(()),
        )
        .expect("open the log");
        assert_eq!(wal.append(NOON_US, &[0xEE; 16]).expect("append"), last + 1);
        wal.close().expect("close");
    }
    let record = |error: &StoreError| matches!(error, StoreError::Record { .. });
    let message = refusal(
        config(dir.path()),
        record,
        "an unknown command must not be skipped",
    );
    assert!(message.contains(&format!("log record {}", last + 1)), "{message}");
    assert!(message.contains("a newer authd wrote it"), "{message}");
}

/// A refund of 1 from `hold`, by request `request_id`.
fn refund(request_id: u64, hold: u64) -> Command {
    Command::Terminal {
        origin: origin(request_id),
        op: TerminalOp::Refund {
            hold: engine::HoldId(hold),
            amount: 1,
        },
    }
}

/// The server shows an offer before its record is durable: a start skips hold ids past any a
/// crashed run may have shown, so an id whose record was lost names no hold after the restart,
/// never a new one; the skips survive snapshots and replay.
#[test]
fn a_hold_id_whose_record_was_lost_is_never_given_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = std::sync::Arc::new(engine::wal::FaultInjection::default());
    let mut failing = config(dir.path());
    failing.wal.faults = Some(std::sync::Arc::clone(&faults));
    let (store, _) = Store::open(failing).expect("open");
    let payers = set_up(&store, 8);
    store.start_hold_ids(NOON_US).expect("the first start");
    let kept = run(&store, purchase(1, payers[0], 10));
    assert_eq!(kept.reason, Reason::Approved);
    // Shown (a server would push it at once), but its record never reaches the disk.
    faults
        .fail_writes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let lost = store.execute(&purchase(2, payers[0], 10), NOON_US);
    assert_eq!(lost.outcome.reason, Reason::Approved);
    assert!(store.wal().wait_durable(lost.lsn).is_err());
    drop(store);

    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    // The crash lost it: the test's premise.
    assert_eq!(
        run(&store, refund(3, lost.outcome.id)).reason,
        Reason::HoldUnknown
    );
    store.start_hold_ids(NOON_US).expect("the second start");
    let after = run(&store, purchase(4, payers[0], 10));
    assert_eq!(after.reason, Reason::Approved);
    // The same sequence of the same shard (of 4: two bits), its serial a skip further.
    assert_eq!(after.id, lost.outcome.id + (HOLD_SERIAL_SKIP << 2));
    assert_eq!(
        run(&store, refund(5, lost.outcome.id)).reason,
        Reason::HoldUnknown
    );
    assert_eq!(run(&store, refund(6, kept.id)).reason, Reason::Approved);
    assert_eq!(run(&store, refund(7, after.id)).reason, Reason::Approved);
    let digest = store.books().digest();
    drop(store);
    // Replayed from the log alone, then from a snapshot: the same ids name the same holds.
    assert_eq!(reopen_digest(dir.path()), digest);
    let (store, _) = Store::open(config(dir.path())).expect("reopen");
    store.snapshot().expect("snapshot");
    drop(store);
    let (store, recovered) = Store::open(config(dir.path())).expect("reopen from the snapshot");
    assert_eq!(recovered.records_applied, 0, "everything is in the snapshot");
    assert_eq!(store.books().digest(), digest);
    store.start_hold_ids(NOON_US).expect("the third start");
    assert_eq!(run(&store, refund(8, after.id)).reason, Reason::Approved);
    assert_eq!(
        run(&store, refund(9, lost.outcome.id)).reason,
        Reason::HoldUnknown
    );
    let third = run(&store, purchase(10, payers[0], 10));
    assert_eq!(third.id, after.id + ((1 + HOLD_SERIAL_SKIP) << 2));
}

/// Starts with no hold between them (a crash loop) replace their run instead of adding one;
/// replayed from the log or loaded from a snapshot, the ids are the same.
#[test]
fn starts_without_holds_between_them_replay_and_load_alike() {
    let (dir, store, payers) = store_with_payers();
    for _ in 0..3 {
        store.start_hold_ids(NOON_US).expect("start");
    }
    let hold = run(&store, purchase(1, payers[1], 10));
    let serial = hold.id >> 2;
    assert!(
        (2 * HOLD_SERIAL_SKIP..3 * HOLD_SERIAL_SKIP).contains(&serial),
        "the first start keeps serials, the next two skip: {serial}"
    );
    let kept = store
        .books()
        .hold(engine::HoldId(hold.id))
        .expect("the hold by its id");
    let digest = store.books().digest();
    drop(store);
    for snapshot in [false, true] {
        let (store, recovered) = Store::open(config(dir.path())).expect("reopen");
        assert_eq!(recovered.snapshot.is_some(), snapshot);
        assert_eq!(store.books().digest(), digest, "snapshot {snapshot}");
        let found = store.books().hold(engine::HoldId(hold.id));
        assert_eq!(found.as_ref(), Some(&kept), "snapshot {snapshot}");
        if !snapshot {
            store.snapshot().expect("snapshot");
        }
    }
}
