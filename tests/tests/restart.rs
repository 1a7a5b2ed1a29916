//! Restart (issue 5, "Proof"): authd stopped with SIGTERM comes back with everything; authd
//! killed with SIGKILL, or stopped with SIGTERM, under pipelined load comes back with every
//! reply its clients received reflected in the books, nothing approved lost or doubled, and
//! money conserved.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authd_tests::{add_terminal, balances, device, payer, rss_kb, shop, Authd, Shop};
use support::load::{pipeline, resend_all, Traffic, REQUESTS_PER_TERMINAL_MAX, WINDOW};
use support::{authorize, authorize_lasting, hold_of, purchase, Random};
use wire::client::{Client, Incoming};
use wire::messages::device::OwnBalance;
use wire::messages::terminal::{Capture, Reversal};
use wire::types::{AccountNumber, HoldId, PayerRef, Role};
use wire::{Reply, Request};

/// The issuer's funding account (loads come from it) and fee account.
const FUNDING: u64 = 1;
const FEE: u64 = 2;
/// Every merchant of these tests charges this fee.
const FEE_BPS: u16 = 200;

fn fee_on(amount_minor: u64) -> u64 {
    amount_minor * u64::from(FEE_BPS) / 10_000
}

/// (balance, held, available) of each account, as the operator sees them.
fn books_of(operator: &mut Client, accounts: &[u64]) -> Vec<(i64, u64, u64)> {
    accounts
        .iter()
        .map(|&account| balances(operator, account))
        .collect()
}

fn capture(hold: u64, amount_minor: u64) -> Request {
    Request::Capture(Capture {
        hold_id: HoldId(hold),
        amount_minor,
        final_capture: true,
        loyalty_points: 0,
        product: None,
    })
}

/// Send `request` with `request_id` and wait for its reply.
fn call_with_id(till: &mut Client, request_id: u64, request: &Request) -> Reply {
    till.send_with_id(request_id, request).expect("send");
    till.wait_for(request_id).expect("reply")
}

/// authd's flags with snapshots on (the default: a clean stop writes one, and the restart
/// loads it), then off (the restart replays the log).
const SNAPSHOTS_ON_THEN_OFF: [&[&str]; 2] = [&[], &["--snapshot-interval-s", "0"]];

#[test]
fn after_sigterm_and_a_restart_balances_holds_and_log_ons_are_still_there() {
    // From the snapshot written at the stop, and with snapshots off, from the log alone.
    for flags in SNAPSHOTS_ON_THEN_OFF {
        restart_keeps_balances_holds_and_log_ons(flags);
    }
}

fn restart_keeps_balances_holds_and_log_ons(flags: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), flags);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 33_600_000_001, 10_000);
    let (device_id, device_secret) = device(&mut operator, alice);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let (code, hold, _) = hold_of(&till.call(&authorize(alice, 3_000)).expect("authorize"));
    assert_eq!(code, 0);
    assert_eq!(hold_of(&till.call(&purchase(alice, 250)).expect("purchase")).0, 0);
    let accounts = [alice, shop.settlement, FEE, FUNDING];
    let before = books_of(&mut operator, &accounts);
    assert_eq!(before[0], (9_750, 3_000, 6_750));
    drop((till, operator));
    let status = authd.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM stops authd with exit status 0");

    let authd = Authd::start_in(dir.path(), flags);
    let mut operator = authd.operator();
    assert_eq!(
        books_of(&mut operator, &accounts),
        before,
        "balances and holds survive"
    );
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let captured = till.call(&capture(hold, 1_000)).expect("capture");
    assert_eq!(
        hold_of(&captured),
        (0, hold, 1_000),
        "the hold is capturable after the restart"
    );
    let mut phone = authd.client(Role::PayerDevice, device_id, device_secret);
    let Reply::OwnBalance(own) = phone
        .call(&Request::OwnBalance(OwnBalance {}))
        .expect("own balance")
    else {
        panic!("own balance: unexpected reply type");
    };
    assert_eq!(
        (own.code, own.balance_minor, own.held_minor, own.available_minor),
        (0, 8_750, 0, 8_750),
        "the payer's device logs on and sees the captured hold"
    );
    assert_eq!(
        balances(&mut operator, shop.settlement).0,
        (250 - fee_on(250) + 1_000 - fee_on(1_000)) as i64
    );
    assert_eq!(
        balances(&mut operator, FEE).0,
        (fee_on(250) + fee_on(1_000)) as i64
    );
}

#[test]
fn a_clean_stop_writes_a_snapshot_so_the_restart_replays_nothing() {
    for (flags, snapshot_at_stop) in SNAPSHOTS_ON_THEN_OFF.into_iter().zip([true, false]) {
        let dir = tempfile::tempdir().expect("temp dir");
        let authd = Authd::start_in(dir.path(), flags);
        let mut operator = authd.operator();
        let shop = shop(&mut operator, FEE_BPS, 100);
        let alice = payer(&mut operator, 0, 10_000);
        let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
        assert_eq!(hold_of(&till.call(&purchase(alice, 250)).expect("purchase")).0, 0);
        let accounts = [alice, shop.settlement, FEE, FUNDING];
        let before = books_of(&mut operator, &accounts);
        drop((till, operator));
        assert_eq!(newest_snapshot(dir.path()), None, "no snapshot before the stop");
        assert_eq!(authd.terminate().code(), Some(0));
        assert_eq!(
            newest_snapshot(dir.path()).is_some(),
            snapshot_at_stop,
            "{flags:?}"
        );

        let authd = Authd::start_in(dir.path(), flags);
        let mut operator = authd.operator();
        assert_eq!(books_of(&mut operator, &accounts), before, "{flags:?}");
        let replayed = records_replayed(&authd);
        assert_eq!(replayed == 0, snapshot_at_stop, "{flags:?}: {replayed} replayed");
    }
}

/// The records authd said it replayed at start (its `recovered` line, waited for).
fn records_replayed(authd: &Authd) -> u64 {
    logged(authd, "recovered", "records_replayed")
}

/// The value of `key` in the first line authd logged for `event` (waited for).
fn logged(authd: &Authd, event: &str, key: &str) -> u64 {
    let (event, key) = (format!("event={event} "), format!(" {key}="));
    waited_for(authd, &event, |stderr| {
        stderr
            .lines()
            .filter(|line| line.contains(&event))
            .find_map(|line| line.split(&key).nth(1)?.split(' ').next()?.parse().ok())
    })
}

/// What `find` finds in authd's stderr, waited for (it is read on a thread of its own).
fn waited_for<T>(authd: &Authd, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stderr = authd.stderr();
        if let Some(found) = find(&stderr) {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} in: {stderr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// That authd logged `event` before it logged that it listens (waited for).
fn assert_logged_before_listening(authd: &Authd, event: &str) {
    let stderr = waited_for(authd, "listening", |stderr| {
        stderr.contains("event=listening ").then(|| stderr.to_string())
    });
    let (logged, listening) = (
        stderr.find(&format!("event={event} ")),
        stderr.find("event=listening "),
    );
    assert!(logged < listening && logged.is_some(), "{stderr}");
}

#[test]
fn segments_written_ahead_are_there_before_authd_listens_and_topped_up_at_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 1 MiB ahead in 64 KiB segments, with reuse off: only what was written ahead is free.
    let flags = [
        "--segment-bytes",
        "65536",
        "--wal-preallocate-mb",
        "1",
        "--wal-reuse-mb",
        "0",
    ];
    let free = || {
        let entries = std::fs::read_dir(dir.path()).expect("list");
        entries
            .filter(|entry| {
                let name = entry.as_ref().expect("entry").file_name();
                name.to_string_lossy().ends_with(".free")
            })
            .count() as u64
    };
    let authd = Authd::start_in(dir.path(), &flags);
    assert_eq!(logged(&authd, "log_preallocated", "segments"), 16);
    assert_logged_before_listening(&authd, "log_preallocated");
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 1_000_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    for _ in 0..1_500 {
        assert_eq!(hold_of(&till.call(&purchase(alice, 1)).expect("purchase")).0, 0);
    }
    let before = books_of(&mut operator, &[alice, shop.settlement]);
    drop((till, operator));
    assert_eq!(authd.terminate().code(), Some(0));
    let left = free();
    assert!(left <= 16 - 3, "the log took at least three: {left} free");

    let authd = Authd::start_in(dir.path(), &flags);
    assert_eq!(logged(&authd, "log_preallocated", "segments"), 16 - left);
    let mut operator = authd.operator();
    assert_eq!(books_of(&mut operator, &[alice, shop.settlement]), before);
}

#[test]
fn prefaulted_hold_rings_are_resident_before_authd_listens_and_again_after_a_restart() {
    // Four rings of 1,000,000 holds: hundreds of MB, where an authd of four shards without
    // the flag keeps a few tens resident.
    let holds = ["--holds-per-shard-max", "1000000"];
    let plain = Authd::start(&holds);
    let plain_kb = rss_kb(plain.pid());
    drop(plain);

    let dir = tempfile::tempdir().expect("temp dir");
    let flags = [holds[0], holds[1], "--prefault-holds"];
    let authd = Authd::start_in(dir.path(), &flags);
    let pages = logged(&authd, "holds_prefaulted", "pages");
    assert!(
        pages >= 4 * 1_000_000 / 64,
        "a hold takes 64 bytes at least: {pages} pages"
    );
    assert_logged_before_listening(&authd, "holds_prefaulted");
    let prefaulted_kb = rss_kb(authd.pid());
    assert!(
        prefaulted_kb >= pages * 4 && prefaulted_kb > plain_kb + pages * 4 / 2,
        "{prefaulted_kb} kB resident with {pages} pages prefaulted, {plain_kb} kB without"
    );
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 1_000_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let (code, hold, _) = hold_of(&till.call(&authorize(alice, 700)).expect("authorize"));
    assert_eq!(code, 0);
    drop((till, operator));
    assert_eq!(authd.terminate().code(), Some(0));

    // The restored ring is written up to its hold; the rest is prefaulted again, and the hold
    // is still there to capture.
    let authd = Authd::start_in(dir.path(), &flags);
    let again = logged(&authd, "holds_prefaulted", "pages");
    assert!(
        again + 1 >= pages && again <= pages,
        "{again} pages against {pages}"
    );
    assert!(rss_kb(authd.pid()) >= again * 4);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let captured = hold_of(&till.call(&capture(hold, 700)).expect("capture"));
    assert_eq!(captured, (0, hold, 700));
}

#[test]
fn after_sigterm_and_a_restart_retries_get_their_original_replies() {
    // From the snapshot written at the stop, and with snapshots off, from the log alone.
    for flags in SNAPSHOTS_ON_THEN_OFF {
        restart_keeps_retries_answered(flags);
    }
}

fn restart_keeps_retries_answered(flags: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), flags);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let sent = [
        (71_000_001, authorize(alice, 3_000)),
        (71_000_002, purchase(alice, 250)),
    ];
    let replies: Vec<Reply> = sent
        .iter()
        .map(|(request_id, request)| call_with_id(&mut till, *request_id, request))
        .collect();
    assert!(replies.iter().all(|reply| reply.outcome() == (0, 0)));
    // A terminal gave up on a purchase that has not arrived: the marker must outlive the stop.
    let late_request_id = 71_000_003;
    let reversal = Request::Reversal(Reversal {
        payer: PayerRef::Account(AccountNumber(alice)),
        original_request_id: late_request_id,
    });
    assert_eq!(till.call(&reversal).expect("reversal").outcome(), (0, 0));
    let accounts = [alice, shop.settlement, FEE, FUNDING];
    let before = books_of(&mut operator, &accounts);
    drop((till, operator));
    assert_eq!(authd.terminate().code(), Some(0));

    let authd = Authd::start_in(dir.path(), flags);
    let mut operator = authd.operator();
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    for ((request_id, request), reply) in sent.iter().zip(&replies) {
        assert_eq!(
            &call_with_id(&mut till, *request_id, request),
            reply,
            "request {request_id}: a retry after the restart gets the original reply"
        );
    }
    assert_eq!(
        call_with_id(&mut till, late_request_id, &purchase(alice, 999)).outcome(),
        (5, 20),
        "the reversal's marker survived the restart: the late original is declined, Reversed"
    );
    assert_eq!(
        books_of(&mut operator, &accounts),
        before,
        "retries moved no money"
    );
}

/// What the approved replies add up to.
#[derive(Default)]
struct Expected {
    spent_by_payer: BTreeMap<u64, u64>,
    held_by_payer: BTreeMap<u64, u64>,
    settled_by_merchant: BTreeMap<usize, u64>,
    purchased: u64,
    fees: u64,
    approved: u64,
    declined: u64,
}

impl Expected {
    fn add(&mut self, merchant: usize, request: &Request, reply: &Reply) {
        let (code, _, amount) = hold_of(reply);
        if code != 0 {
            self.declined += 1;
            return;
        }
        self.approved += 1;
        match request {
            Request::Purchase(body) => {
                assert_eq!(amount, body.amount_minor, "a purchase is approved in full");
                let PayerRef::Account(payer) = body.payer else {
                    unreachable!("the load pays by account")
                };
                *self.spent_by_payer.entry(payer.0).or_default() += amount;
                *self.settled_by_merchant.entry(merchant).or_default() += amount - fee_on(amount);
                self.purchased += amount;
                self.fees += fee_on(amount);
            }
            Request::Authorize(body) => {
                assert_eq!(
                    amount, body.amount_minor,
                    "an authorization holds the whole amount"
                );
                let PayerRef::Account(payer) = body.payer else {
                    unreachable!("the load pays by account")
                };
                *self.held_by_payer.entry(payer.0).or_default() += amount;
            }
            other => panic!("the load sends no {other:?}"),
        }
    }
}

#[test]
fn after_sigkill_under_pipelined_load_every_reply_received_is_in_the_books() {
    stop_under_load_then_check_the_books(Authd::kill);
}

#[test]
fn sigterm_under_pipelined_load_exits_with_0_and_keeps_every_reply_received() {
    stop_under_load_then_check_the_books(|authd| {
        let status = authd.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM under load stops authd with exit status 0"
        );
    });
}

/// What the load runs against: two merchants with two terminals each, six payers.
struct Setup {
    shops: [Shop; 2],
    /// (terminal, secret, index of its merchant in `shops`).
    terminals: Vec<(u32, [u8; 32], usize)>,
    /// Each payer's account and the amount loaded on it.
    loads: BTreeMap<u64, u64>,
}

fn set_up(authd: &Authd) -> Setup {
    let mut operator = authd.operator();
    let shops = [
        shop(&mut operator, FEE_BPS, 100),
        shop(&mut operator, FEE_BPS, 100),
    ];
    let mut terminals = Vec::new();
    for (merchant, shop) in shops.iter().enumerate() {
        terminals.push((shop.terminal, shop.secret, merchant));
        let (terminal, secret) = add_terminal(&mut operator, shop.merchant);
        terminals.push((terminal, secret, merchant));
    }
    // Five payers with plenty, one who runs out: declines are replies too and must replay.
    let mut loads = BTreeMap::new();
    for index in 0..6u64 {
        let load = if index == 5 { 20_000 } else { 100_000_000 };
        loads.insert(payer(&mut operator, 0, load), load);
    }
    Setup {
        shops,
        terminals,
        loads,
    }
}

/// Pipeline from every terminal, `stop` authd once a random number of replies came back,
/// and return what each terminal sent and received.
fn load_then_stop(
    authd: Authd,
    setup: &Setup,
    random: &mut Random,
    stop: impl FnOnce(Authd),
) -> Vec<Traffic> {
    let payers: Arc<Vec<u64>> = Arc::new(setup.loads.keys().copied().collect());
    let received = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = setup
        .terminals
        .iter()
        .map(|&(terminal, secret, merchant)| {
            let traffic = Traffic {
                terminal,
                secret,
                merchant,
                sent: BTreeMap::new(),
                received: BTreeMap::new(),
            };
            let (addr, payers, received, seed) = (
                authd.addr,
                Arc::clone(&payers),
                Arc::clone(&received),
                random.next(),
            );
            std::thread::spawn(move || pipeline(addr, traffic, &payers, seed, &received))
        })
        .collect();
    let stop_after = 200 + random.below(3_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::Relaxed) < stop_after {
        assert!(
            Instant::now() < deadline,
            "the load did not reach {stop_after} replies"
        );
        std::thread::yield_now();
    }
    stop(authd);
    let traffics: Vec<Traffic> = threads
        .into_iter()
        .map(|thread| thread.join().expect("load thread"))
        .collect();
    let sent: usize = traffics.iter().map(|traffic| traffic.sent.len()).sum();
    let answered: usize = traffics.iter().map(|traffic| traffic.received.len()).sum();
    eprintln!("stopped after {answered} replies to {sent} requests sent");
    assert!(
        sent < setup.terminals.len() * REQUESTS_PER_TERMINAL_MAX,
        "the stop came during the load"
    );
    traffics
}

/// Resend everything; every reply received before the stop must come back the same. Returns
/// what all the (final) replies add up to.
fn replay(authd: &Authd, traffics: &[Traffic]) -> Expected {
    let mut expected = Expected::default();
    for traffic in traffics {
        let replies = resend_all(authd, traffic);
        for (request_id, reply) in &traffic.received {
            assert_eq!(
                replies.get(request_id),
                Some(reply),
                "terminal {} request {request_id}: a retry after the stop gets the reply received before it",
                traffic.terminal
            );
        }
        for (request_id, request) in &traffic.sent {
            expected.add(traffic.merchant, request, &replies[request_id]);
        }
    }
    eprintln!(
        "{} approved, {} declined; {} purchased",
        expected.approved, expected.declined, expected.purchased
    );
    assert!(expected.approved > 0);
    expected
}

/// The books must be exactly what the approved replies add up to, and balance to zero.
fn check_books(authd: &Authd, setup: &Setup, expected: &Expected) {
    let mut operator = authd.operator();
    let mut payers_total: i64 = 0;
    for (&payer, &load) in &setup.loads {
        let spent = expected.spent_by_payer.get(&payer).copied().unwrap_or(0);
        let held = expected.held_by_payer.get(&payer).copied().unwrap_or(0);
        let balance = load - spent;
        assert_eq!(
            balances(&mut operator, payer),
            (balance as i64, held, balance - held),
            "payer {payer}: every approved purchase once, every approved hold once"
        );
        payers_total += balance as i64;
    }
    let mut settled_total: i64 = 0;
    for (merchant, shop) in setup.shops.iter().enumerate() {
        let settled = balances(&mut operator, shop.settlement).0;
        let expected_settled = expected.settled_by_merchant.get(&merchant).copied().unwrap_or(0);
        assert_eq!(
            settled, expected_settled as i64,
            "merchant {}'s settlement",
            shop.merchant
        );
        settled_total += settled;
    }
    let fees = balances(&mut operator, FEE).0;
    assert_eq!(fees, expected.fees as i64);
    assert_eq!(
        settled_total + fees,
        expected.purchased as i64,
        "approved purchases = settlement + fee accounts"
    );
    let funding = balances(&mut operator, FUNDING).0;
    assert_eq!(funding, -(setup.loads.values().sum::<u64>() as i64));
    assert_eq!(
        payers_total + settled_total + fees + funding,
        0,
        "the books balance to zero"
    );
}

/// Pipeline from four terminals, `stop` authd at a random moment, restart it on the same dir,
/// resend everything, and check the books against the replies.
fn stop_under_load_then_check_the_books(stop: impl FnOnce(Authd)) {
    let mut random = Random::seeded();
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), &[]);
    let setup = set_up(&authd);
    let traffics = load_then_stop(authd, &setup, &mut random, stop);
    let authd = Authd::start_in(dir.path(), &[]);
    let expected = replay(&authd, &traffics);
    check_books(&authd, &setup, &expected);
}

/// The newest snapshot file of `dir`, if any.
fn newest_snapshot(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("snapshot-") && name.ends_with(".snap"))
        .max()
}

/// Wait (bounded) for the snapshot thread to write a snapshot newer than `after`; if none comes, the
/// failure shows what authd logged (a `snapshot_failed` says why).
fn wait_for_snapshot(authd: &Authd, dir: &Path, after: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(name) = newest_snapshot(dir).filter(|name| Some(name.as_str()) > after) {
            return name;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot newer than {after:?}; authd's log:\n{}",
            authd.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn snapshots_on_schedule_plus_the_log_tail_recover_everything_after_sigkill() {
    // Paced by default, and at both ends of --snapshot-write-mb-s.
    let paces: [&[&str]; 3] = [
        &[],
        &["--snapshot-write-mb-s", "0"],
        &["--snapshot-write-mb-s", "100000"],
    ];
    for pace in paces {
        snapshots_plus_the_log_tail_recover_everything(pace);
    }
}

fn snapshots_plus_the_log_tail_recover_everything(pace: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = [&["--snapshot-interval-s", "1"], pace].concat();
    let authd = Authd::start_in(dir.path(), &flags);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 100_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let mut sent = Vec::new();
    let mut send = |till: &mut Client, request_id: u64, request: Request| {
        till.send_with_id(request_id, &request).expect("send");
        let reply = till.wait_for(request_id).expect("reply");
        assert_eq!(hold_of(&reply).0, 0);
        sent.push((request_id, request, reply.clone()));
        reply
    };
    send(&mut till, 81_000_001, purchase(alice, 1_000));
    let first = wait_for_snapshot(&authd, dir.path(), None);
    // Logged with its size and time, what an operator sizes the pace and the interval by.
    let size = std::fs::metadata(dir.path().join(&first))
        .expect("snapshot")
        .len();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = authd.stderr();
        if let Some(line) = log.lines().find(|line| line.contains("event=snapshot_written")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no snapshot_written line:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains(&format!(" bytes={size} ")), "{size} bytes: {line}");
    assert!(line.contains(" ms="), "{line}");
    send(&mut till, 81_000_002, purchase(alice, 2_000));
    let second = wait_for_snapshot(&authd, dir.path(), Some(&first));
    let hold_reply = send(&mut till, 81_000_003, authorize(alice, 4_000));
    send(&mut till, 81_000_004, purchase(alice, 3_000));
    let accounts = [alice, shop.settlement, FEE, FUNDING];
    let before = books_of(&mut operator, &accounts);
    assert_eq!(before[0], (94_000, 4_000, 90_000));
    drop((till, operator));
    authd.kill();
    eprintln!("killed after snapshots {first} and {second}");

    let authd = Authd::start_in(dir.path(), &flags);
    let mut operator = authd.operator();
    assert_eq!(
        books_of(&mut operator, &accounts),
        before,
        "snapshot plus log tail give the same books"
    );
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    for (request_id, request, reply) in &sent {
        till.send_with_id(*request_id, request).expect("resend");
        assert_eq!(
            &till.wait_for(*request_id).expect("retry"),
            reply,
            "request {request_id}, before or after a snapshot, replays"
        );
    }
    let captured = till
        .call(&capture(hold_of(&hold_reply).1, 4_000))
        .expect("capture");
    assert_eq!(captured.outcome(), (0, 0));
    assert_eq!(balances(&mut operator, alice), (90_000, 0, 90_000));
}

#[test]
fn a_hold_expired_by_the_clock_stays_expired_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), &[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let authorize = authorize_lasting(alice, 3_000, 1);
    let (code, hold, _) = hold_of(&till.call(&authorize).expect("authorize"));
    assert_eq!(code, 0);
    assert_eq!(balances(&mut operator, alice), (10_000, 3_000, 7_000));
    // The ticker expires due holds once a second: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while balances(&mut operator, alice).1 != 0 {
        assert!(Instant::now() < deadline, "the 1 s hold never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let capture = capture(hold, 1_000);
    let declined = till.call(&capture).expect("capture");
    assert_ne!(hold_of(&declined).0, 0, "an expired hold cannot be captured");
    drop((till, operator));
    assert_eq!(authd.terminate().code(), Some(0));

    let authd = Authd::start_in(dir.path(), &[]);
    let mut operator = authd.operator();
    assert_eq!(balances(&mut operator, alice), (10_000, 0, 10_000));
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let again = till.call(&capture).expect("capture after restart");
    assert_eq!(
        again.outcome(),
        declined.outcome(),
        "still expired after the restart"
    );
}

#[test]
fn holds_expire_on_time_while_a_snapshot_is_stuck() {
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), &["--snapshot-interval-s", "1"]);
    // A snapshot is written as `snapshot-<lsn>.snap.tmp` first: where that name is a FIFO
    // nobody reads, the snapshot waits in open() for as long as the test lasts. Made after
    // the start (which removes stale temporaries) and before the first record, for every lsn
    // this test reaches.
    for lsn in 1..=32u64 {
        let fifo = dir.path().join(format!("snapshot-{lsn:020}.snap.tmp"));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
    }
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    // Due in 3 s: by then the first snapshot (at most ~1.1 s after the first record) is stuck.
    let authorize = authorize_lasting(alice, 3_000, 3);
    assert_eq!(hold_of(&till.call(&authorize).expect("authorize")).0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while balances(&mut operator, alice).1 != 0 {
        assert!(
            Instant::now() < deadline,
            "the 3 s hold did not expire in 10 s while a snapshot was stuck"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The snapshot was stuck all along (else the test proved nothing): none was written.
    assert_eq!(newest_snapshot(dir.path()), None, "a snapshot got through");
    // The test ends with a kill (`Authd`'s drop): a clean stop would wait for the snapshot.
}

#[test]
fn a_retry_racing_its_original_on_another_connection_moves_money_once() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 0, 1_000_000);
    const REQUESTS: u64 = 300;
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
            std::thread::spawn(move || {
                let mut replies = BTreeMap::new();
                for chunk in (1..=REQUESTS).collect::<Vec<u64>>().chunks(WINDOW) {
                    for &request_id in chunk {
                        let amount = request_id;
                        till.send_with_id(request_id, &purchase(alice, amount))
                            .expect("send");
                    }
                    for _ in chunk {
                        let Incoming::Reply { request_id, reply } = till.recv().expect("reply") else {
                            panic!("no push expected");
                        };
                        replies.insert(request_id, reply);
                    }
                }
                replies
            })
        })
        .collect();
    let [first, second]: [BTreeMap<u64, Reply>; 2] = racers
        .into_iter()
        .map(|racer| racer.join().expect("racer"))
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("two racers"));
    assert_eq!(
        first, second,
        "both connections get the one decision for each request id"
    );
    assert!(first.values().all(|reply| hold_of(reply).0 == 0));
    let spent: u64 = (1..=REQUESTS).sum();
    assert_eq!(
        balances(&mut operator, alice).0,
        (1_000_000 - spent) as i64,
        "each purchase once"
    );
}
