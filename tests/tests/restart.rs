//! Restart (issue 5, "Proof"): authd stopped with SIGTERM comes back with everything; authd
//! killed with SIGKILL, or stopped with SIGTERM, under pipelined load comes back with every
//! reply its clients received reflected in the books, nothing approved lost or doubled, and
//! money conserved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authd_tests::{add_terminal, balances, device, payer, shop, Authd};
use wire::client::{Client, Incoming};
use wire::messages::device::OwnBalance;
use wire::messages::terminal::{Authorize, Capture, Purchase, Reversal};
use wire::types::{AccountNumber, HoldId, PayerRef, Role};
use wire::{Reply, Request};

/// The issuer's funding account (loads come from it) and fee account.
const FUNDING: u64 = 1;
const FEE: u64 = 2;
/// Every merchant of these tests charges this fee.
const FEE_BPS: u16 = 200;

fn authorize(payer: u64, amount_minor: u64) -> Request {
    Request::Authorize(Authorize {
        payer: PayerRef::Account(AccountNumber(payer)),
        amount_minor,
        currency: 978,
        hold_lifetime_s: 0,
        pin: None,
    })
}

fn purchase(payer: u64, amount_minor: u64) -> Request {
    Request::Purchase(Purchase {
        payer: PayerRef::Account(AccountNumber(payer)),
        amount_minor,
        currency: 978,
        pin: None,
        loyalty_points: 0,
        product: None,
    })
}

/// (code, hold or transaction id, amount) of a hold reply.
fn hold_of(reply: &Reply) -> (u8, u64, u64) {
    match reply {
        Reply::Authorize(body) | Reply::Capture(body) | Reply::Purchase(body) => {
            (body.code, body.hold_id.0, body.amount_minor)
        }
        other => panic!("not a hold reply: {other:?}"),
    }
}

fn fee_on(amount_minor: u64) -> u64 {
    amount_minor * u64::from(FEE_BPS) / 10_000
}

#[test]
fn after_sigterm_and_a_restart_everything_is_still_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), &[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, FEE_BPS, 100);
    let alice = payer(&mut operator, 33_600_000_001, 10_000);
    let (device_id, device_secret) = device(&mut operator, alice);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let (hold_request_id, purchase_request_id) = (71_000_001, 71_000_002);
    till.send_with_id(hold_request_id, &authorize(alice, 3_000))
        .expect("send authorize");
    let hold_reply = till.wait_for(hold_request_id).expect("authorize");
    let (code, hold, held) = hold_of(&hold_reply);
    assert_eq!((code, held), (0, 3_000));
    till.send_with_id(purchase_request_id, &purchase(alice, 250))
        .expect("send purchase");
    let purchase_reply = till.wait_for(purchase_request_id).expect("purchase");
    assert_eq!(hold_of(&purchase_reply).0, 0);
    // A terminal gave up on a purchase that has not arrived: the marker must outlive the stop.
    let late_request_id = 71_000_003;
    let reversal = Request::Reversal(Reversal {
        payer: PayerRef::Account(AccountNumber(alice)),
        original_request_id: late_request_id,
    });
    assert_eq!(till.call(&reversal).expect("reversal").outcome(), (0, 0));
    let accounts = [alice, shop.settlement, FEE, FUNDING];
    let before: Vec<_> = accounts
        .iter()
        .map(|&account| balances(&mut operator, account))
        .collect();
    assert_eq!(before[0], (9_750, 3_000, 6_750));
    drop((till, operator));
    let status = authd.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM stops authd with exit status 0");

    let authd = Authd::start_in(dir.path(), &[]);
    let mut operator = authd.operator();
    let after: Vec<_> = accounts
        .iter()
        .map(|&account| balances(&mut operator, account))
        .collect();
    assert_eq!(after, before, "balances and holds survive the restart");
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    till.send_with_id(purchase_request_id, &purchase(alice, 250))
        .expect("resend purchase");
    assert_eq!(
        till.wait_for(purchase_request_id).expect("retried purchase"),
        purchase_reply,
        "a retry after the restart gets the original reply"
    );
    till.send_with_id(hold_request_id, &authorize(alice, 3_000))
        .expect("resend authorize");
    assert_eq!(
        till.wait_for(hold_request_id).expect("retried authorize"),
        hold_reply
    );
    till.send_with_id(late_request_id, &purchase(alice, 999))
        .expect("send the late original");
    assert_eq!(
        till.wait_for(late_request_id).expect("late original").outcome(),
        (5, 20),
        "the reversal's marker survived the restart: the late original is declined, Reversed"
    );
    let after_retries: Vec<_> = accounts
        .iter()
        .map(|&account| balances(&mut operator, account))
        .collect();
    assert_eq!(after_retries, before, "retries moved no money");

    let capture = Capture {
        hold_id: HoldId(hold),
        amount_minor: 1_000,
        final_capture: true,
        loyalty_points: 0,
        product: None,
    };
    let captured = till.call(&Request::Capture(capture)).expect("capture");
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

/// A small deterministic generator (xorshift64*): the seed is printed so a failure replays.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let seed = std::env::var("AUTHD_TEST_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        eprintln!("seed {seed} (set AUTHD_TEST_SEED={seed} to replay)");
        Random(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One terminal's traffic: what it sent and which replies came back before the stop.
struct Traffic {
    terminal: u32,
    secret: [u8; 32],
    merchant: usize,
    sent: BTreeMap<u64, Request>,
    received: BTreeMap<u64, Reply>,
}

/// Requests a terminal sends before collecting their replies.
const WINDOW: usize = 32;
/// Requests a terminal sends at most (the stop comes long before).
const REQUESTS_PER_TERMINAL_MAX: usize = 20_000;

/// Pipeline purchases and authorizations in windows until the connection breaks.
fn pipeline(
    addr: SocketAddr,
    mut traffic: Traffic,
    payers: &[u64],
    seed: u64,
    received: &AtomicU64,
) -> Traffic {
    let mut random = Random(seed | 1);
    let mut client = Client::connect(addr, Role::Terminal, traffic.terminal, traffic.secret).expect("log on");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    while traffic.sent.len() < REQUESTS_PER_TERMINAL_MAX {
        let mut window = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW {
            let payer = payers[random.below(payers.len() as u64) as usize];
            let amount = 1 + random.below(2_000);
            let request = if random.below(10) < 7 {
                purchase(payer, amount)
            } else {
                authorize(payer, amount)
            };
            let request_id = 1_000_000 + traffic.sent.len() as u64;
            // Remembered before it is sent: a request cut by the stop is resent after it.
            traffic.sent.insert(request_id, request.clone());
            if client.send_with_id(request_id, &request).is_err() {
                return traffic;
            }
            window.push(request_id);
        }
        for _ in 0..window.len() {
            match client.recv() {
                Ok(Incoming::Reply { request_id, reply }) => {
                    traffic.received.insert(request_id, reply);
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Incoming::Push(push)) => panic!("no push expected: {push:?}"),
                Err(_) => return traffic,
            }
        }
    }
    traffic
}

/// Resend every request of `traffic` with its original id; the replies by id.
fn resend_all(authd: &Authd, traffic: &Traffic) -> BTreeMap<u64, Reply> {
    let mut client = authd.client(Role::Terminal, traffic.terminal, traffic.secret);
    let mut replies = BTreeMap::new();
    let sent: Vec<(&u64, &Request)> = traffic.sent.iter().collect();
    for chunk in sent.chunks(WINDOW) {
        for (request_id, request) in chunk {
            client.send_with_id(**request_id, request).expect("resend");
        }
        for _ in 0..chunk.len() {
            match client.recv().expect("reply to a resent request") {
                Incoming::Reply { request_id, reply } => {
                    replies.insert(request_id, reply);
                }
                Incoming::Push(push) => panic!("no push expected: {push:?}"),
            }
        }
    }
    assert_eq!(
        replies.len(),
        traffic.sent.len(),
        "every resent request is answered once"
    );
    replies
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

/// Pipeline from four terminals, `stop` authd at a random moment, restart it on the same dir,
/// resend everything, and check the books against the replies.
fn stop_under_load_then_check_the_books(stop: impl FnOnce(Authd)) {
    let mut random = Random::seeded();
    let dir = tempfile::tempdir().expect("temp dir");
    let authd = Authd::start_in(dir.path(), &[]);
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
    drop(operator);
    let payers: Arc<Vec<u64>> = Arc::new(loads.keys().copied().collect());
    let received = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = terminals
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

    // Stop at a random moment: once a random number of replies has come back.
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
        sent < terminals.len() * REQUESTS_PER_TERMINAL_MAX,
        "the stop came during the load"
    );

    let authd = Authd::start_in(dir.path(), &[]);
    let mut expected = Expected::default();
    for traffic in &traffics {
        let replies = resend_all(&authd, traffic);
        for (request_id, reply) in &traffic.received {
            assert_eq!(
                replies.get(request_id),
                Some(reply),
                "terminal {} request {request_id}: a retry after the crash gets the reply received before it",
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

    let mut operator = authd.operator();
    let mut total: i64 = 0;
    for (&payer, &load) in &loads {
        let spent = expected.spent_by_payer.get(&payer).copied().unwrap_or(0);
        let held = expected.held_by_payer.get(&payer).copied().unwrap_or(0);
        let balance = load - spent;
        assert_eq!(
            balances(&mut operator, payer),
            (balance as i64, held, balance - held),
            "payer {payer}: every approved purchase once, every approved hold once"
        );
        total += balance as i64;
    }
    let mut settled_total: i64 = 0;
    for (merchant, shop) in shops.iter().enumerate() {
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
    assert_eq!(funding, -(loads.values().sum::<u64>() as i64));
    assert_eq!(
        total + settled_total + fees + funding,
        0,
        "the books balance to zero"
    );
}

/// The newest snapshot file of `dir`, if any.
fn newest_snapshot(dir: &std::path::Path) -> Option<String> {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("snapshot-") && name.ends_with(".snap"))
        .max()
}

/// Wait (bounded) for the ticker to write a snapshot newer than `after`.
fn wait_for_snapshot(dir: &std::path::Path, after: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(name) = newest_snapshot(dir).filter(|name| Some(name.as_str()) > after) {
            return name;
        }
        assert!(Instant::now() < deadline, "no snapshot newer than {after:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn snapshots_by_the_ticker_plus_the_log_tail_recover_everything_after_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--snapshot-interval-s", "1"];
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
    let first = wait_for_snapshot(dir.path(), None);
    send(&mut till, 81_000_002, purchase(alice, 2_000));
    let second = wait_for_snapshot(dir.path(), Some(&first));
    let hold_reply = send(&mut till, 81_000_003, authorize(alice, 4_000));
    send(&mut till, 81_000_004, purchase(alice, 3_000));
    let accounts = [alice, shop.settlement, FEE, FUNDING];
    let before: Vec<_> = accounts
        .iter()
        .map(|&account| balances(&mut operator, account))
        .collect();
    assert_eq!(before[0], (94_000, 4_000, 90_000));
    drop((till, operator));
    authd.kill();
    eprintln!("killed after snapshots {first} and {second}");

    let authd = Authd::start_in(dir.path(), &flags);
    let mut operator = authd.operator();
    let after: Vec<_> = accounts
        .iter()
        .map(|&account| balances(&mut operator, account))
        .collect();
    assert_eq!(after, before, "snapshot plus log tail give the same books");
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    for (request_id, request, reply) in &sent {
        till.send_with_id(*request_id, request).expect("resend");
        assert_eq!(
            &till.wait_for(*request_id).expect("retry"),
            reply,
            "request {request_id}, before or after a snapshot, replays"
        );
    }
    let capture = Capture {
        hold_id: HoldId(hold_of(&hold_reply).1),
        amount_minor: 4_000,
        final_capture: true,
        loyalty_points: 0,
        product: None,
    };
    assert_eq!(
        hold_of(&till.call(&Request::Capture(capture)).expect("capture")).0,
        0
    );
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
    let authorize = Request::Authorize(Authorize {
        payer: PayerRef::Account(AccountNumber(alice)),
        amount_minor: 3_000,
        currency: 978,
        hold_lifetime_s: 1,
        pin: None,
    });
    let (code, hold, _) = hold_of(&till.call(&authorize).expect("authorize"));
    assert_eq!(code, 0);
    assert_eq!(balances(&mut operator, alice), (10_000, 3_000, 7_000));
    // The ticker expires due holds once a second: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while balances(&mut operator, alice).1 != 0 {
        assert!(Instant::now() < deadline, "the 1 s hold never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let capture = Request::Capture(Capture {
        hold_id: HoldId(hold),
        amount_minor: 1_000,
        final_capture: true,
        loyalty_points: 0,
        product: None,
    });
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
