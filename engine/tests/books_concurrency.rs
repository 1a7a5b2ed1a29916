//! The books under concurrent load (issue 2, "Proof": a concurrency test).
//!
//! Four threads, each a merchant's pair of terminals with its own seeded random stream, hammer
//! eight payers over four shards: purchases, authorizations and what follows them (captures,
//! voids, increments, refunds, reversals), retries, loads, balance checks and time. Almost
//! everything goes to one hot merchant, so its stripes are credited from every shard at once.
//! Each thread books what its approved outcomes say should have moved; afterwards the books
//! must hold exactly that, and the invariants must hold at every audit taken in between.
//!
//! Two more properties ride on the same driver: two threads racing the same requests (a
//! terminal's retry overtaking its original) apply each request once and leave the books a
//! single pass leaves; and the same command sequence on fresh books gives the same digest.

use std::collections::{HashMap, VecDeque};
use std::thread;

use engine::limits::{DAY_US, HOLD_LIFETIME_MAX_US};
use engine::{
    AccountId, Books, BooksConfig, Command, Currency, Extras, HoldId, Limits, MerchantId, NoJournal, Origin,
    Outcome, Reason, RequestKey, TerminalId, TerminalOp,
};

const EUR: Currency = Currency(978);
const SHARDS: u32 = 4;
const PAYERS: usize = 8;
const THREADS: usize = 4;
const OPERATIONS_PER_THREAD: usize = 50_000;
/// Each thread checks the invariants this often while the others keep going.
const AUDIT_EVERY: usize = 10_000;
const BALANCE_INITIAL: u64 = 2_000_000;
/// Fees of the hot merchant (1) and the other one (2), without and with product details.
const FEES_BPS: [(u16, u16); 2] = [(250, 100), (30, 0)];
const HOT: MerchantId = MerchantId(1);
const OTHER: MerchantId = MerchantId(2);
/// Mid-day, so that a run stays within one UTC day.
const START_US: u64 = 20_000 * DAY_US + DAY_US / 2;
/// Requests a driver remembers for retries and reversals; far below the idempotency window.
const HISTORY_MAX: usize = 64;

/// SplitMix64: a tiny seeded generator, so that each thread's stream is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Books with the two merchants, two terminals per driver (hot, other) and the payers loaded.
fn setup(drivers: usize) -> (Books, Vec<AccountId>) {
    let config = BooksConfig {
        shards: SHARDS,
        ..BooksConfig::default()
    };
    let books = Books::new(config).expect("a valid config");
    let run = |command: Command| {
        let outcome = books.execute(&command, START_US, &NoJournal).outcome;
        assert_eq!(outcome.reason, Reason::Approved, "{command:?}");
        outcome.id
    };
    for (fee_bps, fee_bps_with_details) in FEES_BPS {
        run(Command::RegisterMerchant {
            fee_bps,
            fee_bps_with_details,
            origin: engine::Reference::default(),
        });
    }
    for _ in 0..drivers {
        for merchant in [HOT, OTHER] {
            run(Command::RegisterTerminal {
                merchant,
                secret: [7; 32],
            });
        }
    }
    let payers = (0..PAYERS)
        .map(|index| {
            let account = AccountId(run(Command::OpenAccount {
                shard: index as u32 % SHARDS,
                currency: EUR,
                mobile: None,
                limits: Limits::NONE,
            }));
            run(Command::Load {
                account,
                amount: BALANCE_INITIAL,
            });
            account
        })
        .collect();
    (books, payers)
}

/// What a driver's approved outcomes say moved, by account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Change of each payer's balance, by payer index.
    payers: Vec<i128>,
    /// Change of the hot and the other merchant's settlement accounts.
    merchants: [i128; 2],
    /// Change of the issuer's fee account.
    fee: i128,
    /// Loads (the funding account loses them).
    loads: i128,
    approved: u64,
    declined: u64,
}

/// A hold (or purchase) this driver placed, as far as its own outcomes tell.
#[derive(Clone, Copy, Debug)]
struct OwnHold {
    payer: usize,
    merchant: usize,
    held: u64,
    captured: u64,
    refunded: u64,
    /// The fee paid so far (a purchase's: a reversal gives it back).
    fee: u64,
}

/// One terminal pair's request stream; every choice comes from its seeded `Rng` and from the
/// outcomes it got, so a driver run alone is deterministic.
struct Driver {
    rng: Rng,
    /// The hot merchant's and the other merchant's terminal.
    terminals: [TerminalId; 2],
    payers: Vec<AccountId>,
    next_request_id: u64,
    now_us: u64,
    holds: HashMap<u64, OwnHold>,
    /// Ids of holds still worth acting on, newest last.
    recent_holds: VecDeque<u64>,
    history: VecDeque<(Origin, TerminalOp, Outcome)>,
    /// (terminal, request id) of approved requests since reversed.
    reversed: std::collections::HashSet<(u32, u64)>,
    /// Only terminal requests (for the race test, whose requests must be idempotent).
    keyed_only: bool,
    tally: Tally,
    /// Every command sent, with its timestamp and outcome.
    sent: Vec<(Command, u64, Outcome)>,
}

impl Driver {
    fn new(index: usize, seed: u64, payers: &[AccountId]) -> Driver {
        let first = 1 + 2 * index as u32;
        Driver {
            rng: Rng(seed),
            terminals: [TerminalId(first), TerminalId(first + 1)],
            payers: payers.to_vec(),
            next_request_id: 0,
            now_us: START_US,
            holds: HashMap::new(),
            recent_holds: VecDeque::new(),
            history: VecDeque::new(),
            reversed: std::collections::HashSet::new(),
            keyed_only: false,
            tally: Tally {
                payers: vec![0; payers.len()],
                ..Tally::default()
            },
            sent: Vec::new(),
        }
    }

    fn origin(&mut self, merchant: usize) -> Origin {
        self.next_request_id += 1;
        Origin {
            merchant: MerchantId(1 + merchant as u32),
            key: RequestKey {
                terminal: self.terminals[merchant],
                request_id: self.next_request_id,
            },
        }
    }

    fn amount(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => 1,
            1..=7 => 1 + self.rng.below(2_000),
            _ => 1 + self.rng.below(200_000),
        }
    }

    fn extras(&mut self) -> Extras {
        Extras {
            product_details: self.rng.chance(30),
            loyalty_points: if self.rng.chance(20) {
                self.rng.below(100) as u32
            } else {
                0
            },
        }
    }

    /// A recent hold of this driver, if any.
    fn pick_hold(&mut self) -> Option<(u64, OwnHold)> {
        if self.recent_holds.is_empty() {
            return None;
        }
        let index = self.rng.below(self.recent_holds.len() as u64) as usize;
        let id = self.recent_holds[index];
        Some((id, self.holds[&id]))
    }

    /// One random step against `books`.
    fn step(&mut self, books: &Books) {
        self.now_us += 1 + self.rng.below(20);
        let merchant = usize::from(self.rng.chance(20));
        let payer = self.payers[self.rng.below(self.payers.len() as u64) as usize];
        match self.rng.below(100) {
            0..=29 => {
                let op = TerminalOp::Purchase {
                    payer,
                    amount: self.amount(),
                    currency: EUR,
                    pin: None,
                    extras: self.extras(),
                };
                let origin = self.origin(merchant);
                self.send(books, origin, op);
            }
            30..=44 => {
                let op = TerminalOp::Authorize {
                    payer,
                    amount: self.amount(),
                    currency: EUR,
                    pin: None,
                    // Some holds expire within a few hundred steps; most live a week.
                    lifetime_us: if self.rng.chance(20) { 2_000 } else { 0 },
                };
                let origin = self.origin(merchant);
                self.send(books, origin, op);
            }
            roll @ 45..=74 => {
                if let Some((merchant, op)) = self.hold_op(roll) {
                    let origin = self.origin(merchant);
                    self.send(books, origin, op);
                }
            }
            75..=79 => self.reverse(books),
            80..=86 => self.retry(books),
            87..=91 if !self.keyed_only => {
                let amount = 1 + self.rng.below(50_000);
                self.operator(
                    books,
                    Command::Load {
                        account: payer,
                        amount,
                    },
                );
            }
            92..=97 if !self.keyed_only => {
                let amount = self.amount();
                let origin = self.origin(merchant);
                let outcome = books.balance_check(origin, payer, amount, EUR);
                let answers = [Reason::Approved, Reason::InsufficientFunds];
                assert!(answers.contains(&outcome.reason), "{outcome:?}");
                assert_eq!(outcome.id, 0, "a balance check never tells the balance");
            }
            98..=99 if !self.keyed_only => {
                let shard = self.rng.below(u64::from(SHARDS)) as u32;
                self.operator(books, Command::AdvanceTime { shard });
            }
            _ => {}
        }
    }

    /// A request on one of this driver's holds: capture, void, increment or refund; with the
    /// merchant (0 hot, 1 other) whose terminal must send it.
    fn hold_op(&mut self, roll: u64) -> Option<(usize, TerminalOp)> {
        let (id, hold) = self.pick_hold()?;
        let hold_id = HoldId(id);
        let op = match roll {
            45..=56 => {
                let amount = match self.rng.below(4) {
                    0 => hold.held,
                    1 => hold.held + 1,
                    _ => 1 + self.rng.below(hold.held.max(1)),
                };
                TerminalOp::Capture {
                    hold: hold_id,
                    amount,
                    last: self.rng.chance(50),
                    extras: self.extras(),
                }
            }
            57..=61 => TerminalOp::Void { hold: hold_id },
            62..=66 => TerminalOp::Increment {
                hold: hold_id,
                amount: 1 + self.rng.below(1_000),
            },
            _ => {
                let left = hold.captured - hold.refunded;
                let amount = if self.rng.chance(10) {
                    left + 1
                } else {
                    1 + self.rng.below(left.max(1))
                };
                TerminalOp::Refund {
                    hold: hold_id,
                    amount,
                }
            }
        };
        Some((hold.merchant, op))
    }

    /// Reverse one of the recent requests (possibly a reversal itself) from its terminal.
    fn reverse(&mut self, books: &Books) {
        if self.history.is_empty() {
            return;
        }
        let index = self.rng.below(self.history.len() as u64) as usize;
        let (original, op, original_outcome) = self.history[index];
        let payer = match op {
            TerminalOp::Authorize { payer, .. }
            | TerminalOp::Purchase { payer, .. }
            | TerminalOp::Reversal { payer, .. } => payer,
            TerminalOp::Increment { hold, .. }
            | TerminalOp::Capture { hold, .. }
            | TerminalOp::Void { hold }
            | TerminalOp::Refund { hold, .. } => self.payers[self.holds[&hold.0].payer],
            TerminalOp::Offer { .. }
            | TerminalOp::OfferCancel { .. }
            | TerminalOp::ReportFailedProvisioning { .. } => {
                unreachable!("this workload sends no offers or disputes")
            }
        };
        let origin = self.origin((original.merchant.0 - 1) as usize);
        let op = TerminalOp::Reversal {
            payer,
            original_request_id: original.key.request_id,
        };
        self.send(books, origin, op);
        let reversal_approved = self
            .history
            .back()
            .is_some_and(|(_, _, outcome)| outcome.reason.is_approved());
        if reversal_approved && original_outcome.reason.is_approved() {
            // An approved original, reversed: its retries are told so.
            self.reversed
                .insert((original.key.terminal.0, original.key.request_id));
        }
    }

    /// Resend one of the recent requests unchanged: it must get its original outcome.
    fn retry(&mut self, books: &Books) {
        if self.history.is_empty() {
            return;
        }
        let index = self.rng.below(self.history.len() as u64) as usize;
        let (origin, op, outcome) = self.history[index];
        let command = Command::Terminal { origin, op };
        let again = books.execute(&command, self.now_us, &NoJournal).outcome;
        self.sent.push((command, self.now_us, again));
        let expected = match self
            .reversed
            .contains(&(origin.key.terminal.0, origin.key.request_id))
        {
            true => Outcome::declined(Reason::Reversed),
            false => outcome,
        };
        assert_eq!(again, expected, "a retry gets the original outcome: {command:?}");
    }

    fn operator(&mut self, books: &Books, command: Command) {
        let outcome = books.execute(&command, self.now_us, &NoJournal).outcome;
        self.sent.push((command, self.now_us, outcome));
        if let (Command::Load { account, amount }, true) = (command, outcome.reason.is_approved()) {
            let payer = self.payer_index(account);
            self.tally.payers[payer] += i128::from(amount);
            self.tally.loads += i128::from(amount);
        }
    }

    fn payer_index(&self, account: AccountId) -> usize {
        self.payers
            .iter()
            .position(|&payer| payer == account)
            .expect("one of the payers")
    }

    fn send(&mut self, books: &Books, origin: Origin, op: TerminalOp) {
        let command = Command::Terminal { origin, op };
        let outcome = books.execute(&command, self.now_us, &NoJournal).outcome;
        self.sent.push((command, self.now_us, outcome));
        if outcome.reason.is_approved() {
            self.tally.approved += 1;
            self.book(origin, op, outcome);
        } else {
            self.tally.declined += 1;
        }
        self.history.push_back((origin, op, outcome));
        if self.history.len() > HISTORY_MAX {
            self.history.pop_front();
        }
    }

    /// Book what an approved request moved, as the request and its outcome say.
    fn book(&mut self, origin: Origin, op: TerminalOp, outcome: Outcome) {
        let merchant = (origin.merchant.0 - 1) as usize;
        let amount = outcome.amount;
        match op {
            TerminalOp::Offer { .. }
            | TerminalOp::OfferCancel { .. }
            | TerminalOp::ReportFailedProvisioning { .. } => {
                unreachable!("this workload sends no offers or disputes")
            }
            TerminalOp::Purchase { payer, extras, .. } => {
                let fee = fee_on(amount, merchant, extras.product_details);
                let payer = self.payer_index(payer);
                self.pay(payer, merchant, i128::from(amount), i128::from(fee));
                let hold = OwnHold {
                    payer,
                    merchant,
                    held: 0,
                    captured: amount,
                    refunded: 0,
                    fee,
                };
                self.remember_hold(outcome.id, hold);
            }
            TerminalOp::Authorize { payer, .. } => {
                let hold = OwnHold {
                    payer: self.payer_index(payer),
                    merchant,
                    held: amount,
                    captured: 0,
                    refunded: 0,
                    fee: 0,
                };
                self.remember_hold(outcome.id, hold);
            }
            TerminalOp::Capture {
                hold, last, extras, ..
            } => {
                let entry = self.holds.get_mut(&hold.0).expect("own hold");
                // What the fee of the hold's captures grows by, at this capture's rate.
                let fee = fee_on(entry.captured + amount, merchant, extras.product_details)
                    - fee_on(entry.captured, merchant, extras.product_details);
                entry.fee += fee;
                entry.captured += amount;
                entry.held = if last { 0 } else { entry.held - amount };
                let payer = entry.payer;
                self.pay(payer, merchant, i128::from(amount), i128::from(fee));
            }
            TerminalOp::Increment { hold, .. } => {
                self.holds.get_mut(&hold.0).expect("own hold").held += amount;
            }
            TerminalOp::Void { hold } => self.holds.get_mut(&hold.0).expect("own hold").held = 0,
            TerminalOp::Refund { hold, .. } => {
                let entry = self.holds.get_mut(&hold.0).expect("own hold");
                entry.refunded += amount;
                // The merchant bears a refund in full; the fee is not returned.
                let payer = entry.payer;
                self.tally.payers[payer] += i128::from(amount);
                self.tally.merchants[merchant] -= i128::from(amount);
            }
            TerminalOp::Reversal {
                original_request_id, ..
            } => {
                let key = RequestKey {
                    terminal: origin.key.terminal,
                    request_id: original_request_id,
                };
                let original = self.history.iter().find(|(sent, ..)| sent.key == key);
                let Some(&(_, original, _)) = original else {
                    panic!("a reversal names a request of the history");
                };
                match original {
                    // A purchase undone: everything it moved goes back, the fee too.
                    TerminalOp::Purchase { .. } if amount > 0 => {
                        let entry = self.holds.get_mut(&outcome.id).expect("own purchase");
                        assert_eq!(amount, entry.captured, "a reversal undoes the whole purchase");
                        entry.refunded = entry.captured;
                        let (payer, fee) = (entry.payer, entry.fee);
                        self.pay(payer, merchant, -i128::from(amount), -i128::from(fee));
                    }
                    TerminalOp::Authorize { .. } => {
                        if let Some(entry) = self.holds.get_mut(&outcome.id) {
                            entry.held = 0;
                        }
                    }
                    TerminalOp::Increment { hold, .. } => {
                        let entry = self.holds.get_mut(&hold.0).expect("own hold");
                        entry.held = entry.held.saturating_sub(amount);
                    }
                    _ => assert_eq!(amount, 0, "only payments and increments are undone: {original:?}"),
                }
            }
        }
    }

    /// `amount` from a payer to a merchant, `fee` of it to the issuer (negative: back).
    fn pay(&mut self, payer: usize, merchant: usize, amount: i128, fee: i128) {
        self.tally.payers[payer] -= amount;
        self.tally.merchants[merchant] += amount - fee;
        self.tally.fee += fee;
    }

    fn remember_hold(&mut self, id: u64, hold: OwnHold) {
        self.holds.insert(id, hold);
        self.recent_holds.push_back(id);
        if self.recent_holds.len() > HISTORY_MAX {
            self.recent_holds.pop_front();
        }
    }
}

/// The fee of merchant `merchant` (0 hot, 1 other) on `amount`, rounded down.
fn fee_on(amount: u64, merchant: usize, product_details: bool) -> u64 {
    let (bps, bps_with_details) = FEES_BPS[merchant];
    let bps = if product_details { bps_with_details } else { bps };
    (u128::from(amount) * u128::from(bps) / 10_000) as u64
}

/// The sum of the drivers' tallies.
fn total(tallies: &[Tally]) -> Tally {
    let mut total = Tally {
        payers: vec![0; PAYERS],
        ..Tally::default()
    };
    for tally in tallies {
        for (sum, change) in total.payers.iter_mut().zip(&tally.payers) {
            *sum += change;
        }
        total.merchants[0] += tally.merchants[0];
        total.merchants[1] += tally.merchants[1];
        total.fee += tally.fee;
        total.loads += tally.loads;
        total.approved += tally.approved;
        total.declined += tally.declined;
    }
    total
}

fn assert_invariants(books: &Books) {
    if let Err(broken) = books.check_invariants() {
        panic!("invariant broken: {broken}");
    }
}

/// What the books say moved since `setup`, in the shape of a tally.
fn books_moved(books: &Books, payers: &[AccountId]) -> Tally {
    let ledger = |account| books.ledger_balance(account).expect("a ledger account");
    let balance = |payer| i128::from(books.account_info(payer).expect("a payer").balance);
    let initial = i128::from(BALANCE_INITIAL);
    Tally {
        payers: payers.iter().map(|&payer| balance(payer) - initial).collect(),
        merchants: [
            ledger(AccountId::settlement(HOT)),
            ledger(AccountId::settlement(OTHER)),
        ],
        fee: ledger(AccountId::FEE),
        loads: -ledger(AccountId::FUNDING) - initial * payers.len() as i128,
        approved: 0,
        declined: 0,
    }
}

#[test]
fn four_threads_on_one_hot_merchant_leave_exactly_the_money_their_approvals_moved() {
    let (books, payers) = setup(THREADS);
    let tallies: Vec<Tally> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|index| {
                let (books, payers) = (&books, &payers);
                scope.spawn(move || {
                    let mut driver = Driver::new(index, 0xB00C_5000 + index as u64, payers);
                    for operation in 1..=OPERATIONS_PER_THREAD {
                        driver.step(books);
                        if operation % AUDIT_EVERY == 0 {
                            // A consistent cut taken while the other threads keep paying.
                            assert_invariants(books);
                        }
                    }
                    driver.tally
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker"))
            .collect()
    });
    assert_invariants(&books);
    let total = total(&tallies);
    assert!(total.approved > 50_000 && total.declined > 5_000, "{total:?}");
    let mut moved = books_moved(&books, &payers);
    (moved.approved, moved.declined) = (total.approved, total.declined);
    assert_eq!(moved, total, "books vs what the approved outcomes moved");
    assert!(total.merchants[0] > 0 && total.fee > 0);

    // Once every hold has expired nothing is held, and the money stays where it went.
    let late_us = START_US + 2 * HOLD_LIFETIME_MAX_US;
    books.advance_time(late_us, &NoJournal);
    for &payer in &payers {
        let info = books.account_info(payer).expect("a payer");
        assert_eq!((info.held, info.available), (0, info.balance), "{payer:?}");
    }
    assert_eq!(books_moved(&books, &payers).payers, total.payers);
    assert_invariants(&books);
}

#[test]
fn two_threads_racing_the_same_requests_apply_each_once_and_leave_what_one_pass_leaves() {
    // One pass alone, of terminal requests only (each is keyed, so a second copy is a retry).
    let (alone, payers) = setup(1);
    let mut driver = Driver::new(0, 0x5EED_0001, &payers);
    driver.keyed_only = true;
    for _ in 0..20_000 {
        driver.step(&alone);
    }
    let expected: Vec<Outcome> = driver.sent.iter().map(|&(_, _, outcome)| outcome).collect();
    assert!(driver.tally.approved > 2_000, "{:?}", driver.tally);

    // The same requests from two threads at once: whichever copy of a request comes first
    // decides, the other is answered from the window; both see every original outcome.
    let (raced, _) = setup(1);
    let runs: Vec<Vec<Outcome>> = thread::scope(|scope| {
        let runners: Vec<_> = (0..2)
            .map(|_| {
                let (raced, sent) = (&raced, &driver.sent);
                scope.spawn(move || {
                    let run = sent
                        .iter()
                        .map(|(command, now_us, _)| raced.execute(command, *now_us, &NoJournal));
                    run.map(|executed| executed.outcome).collect()
                })
            })
            .collect();
        runners
            .into_iter()
            .map(|runner| runner.join().expect("a runner"))
            .collect()
    });
    // One difference is allowed: a copy that comes after the other thread reversed its
    // request is told `Reversed` where the single pass, not there yet, approved it.
    let reversed_later = |command: &Command| match command {
        Command::Terminal { origin, .. } => driver
            .reversed
            .contains(&(origin.key.terminal.0, origin.key.request_id)),
        _ => false,
    };
    for run in &runs {
        let first_difference =
            run.iter()
                .zip(&expected)
                .zip(&driver.sent)
                .position(|((got, want), (command, _, _))| {
                    let told_reversed = want.reason.is_approved()
                        && *got == Outcome::declined(Reason::Reversed)
                        && reversed_later(command);
                    got != want && !told_reversed
                });
        assert_eq!(
            first_difference, None,
            "a raced outcome differs from the single pass"
        );
    }
    assert_invariants(&raced);
    assert_eq!(
        raced.digest(),
        alone.digest(),
        "raced books differ from the single pass"
    );
}

#[test]
fn the_same_commands_on_fresh_books_give_the_same_outcomes_and_digest() {
    let pass = |seed: u64| {
        let (books, payers) = setup(1);
        let mut driver = Driver::new(0, seed, &payers);
        for _ in 0..20_000 {
            driver.step(&books);
        }
        (books, driver.sent)
    };
    let (first, sent) = pass(0x5EED_0002);
    let (replayed, _) = setup(1);
    for (command, now_us, outcome) in &sent {
        let executed = replayed.execute(command, *now_us, &NoJournal);
        assert_eq!(executed.outcome, *outcome, "{command:?} at {now_us}");
    }
    assert_eq!(replayed.digest(), first.digest());
    let (again, _) = pass(0x5EED_0002);
    assert_eq!(again.digest(), first.digest());
    let (other, _) = pass(0x5EED_0003);
    assert_ne!(other.digest(), first.digest(), "the digest sees the books' state");
}
