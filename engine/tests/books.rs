//! Every reason code and every state transition of the books, one behaviour per test.

use engine::books::hold::HoldState;
use engine::limits::{AMOUNT_MINOR_MAX, DAY_US, HOLD_LIFETIME_DEFAULT_US, HOLD_LIFETIME_MAX_US};
use engine::{
    AccountId, Books, BooksConfig, Command, Currency, Extras, HoldId, Journal, JournalError, Limits, Lsn,
    MerchantId, NoJournal, Origin, Outcome, PinBlock, Reason, RequestKey, Status, TerminalId, TerminalOp,
};

const EUR: Currency = Currency(978);
/// 2026-11-23T12:00:00Z, the middle of a UTC day.
const NOON_US: u64 = 1_795_435_200_000_000;
const PIN_1234: PinBlock = PinBlock([0x04, 0x12, 0x34, 0xff, 0xff, 0xff, 0xff, 0xff]);
const PIN_9999: PinBlock = PinBlock([0x04, 0x99, 0x99, 0xff, 0xff, 0xff, 0xff, 0xff]);

struct Shop {
    books: Books,
    merchant: MerchantId,
    terminal: TerminalId,
    payer: AccountId,
    now_us: u64,
    next_request_id: u64,
}

impl Shop {
    /// Books with one merchant (2% fee, 1% with product details), one terminal and one payer
    /// holding 100.00 EUR.
    fn new() -> Shop {
        Shop::with_config(BooksConfig {
            shards: 4,
            ..BooksConfig::default()
        })
    }

    fn with_config(config: BooksConfig) -> Shop {
        let books = Books::new(config).expect("valid config");
        let merchant = MerchantId(
            operator(
                &books,
                Command::RegisterMerchant {
                    fee_bps: 200,
                    fee_bps_with_details: 100,
                    origin: engine::Reference::default(),
                },
            )
            .id as u32,
        );
        let terminal = TerminalId(
            operator(
                &books,
                Command::RegisterTerminal {
                    merchant,
                    secret: [1; 32],
                },
            )
            .id as u32,
        );
        let mut shop = Shop {
            books,
            merchant,
            terminal,
            payer: AccountId(0),
            now_us: NOON_US,
            next_request_id: 1,
        };
        shop.payer = shop.open_payer(Some(33_612_345_678), 10_000);
        shop
    }

    fn open_payer(&self, mobile: Option<u64>, balance: u64) -> AccountId {
        let shard = self.books.pick_shard();
        let open = Command::OpenAccount {
            shard,
            currency: EUR,
            mobile,
            limits: Limits::NONE,
        };
        let account = AccountId(operator(&self.books, open).id);
        if balance > 0 {
            assert_eq!(
                operator(
                    &self.books,
                    Command::Load {
                        account,
                        amount: balance
                    }
                )
                .reason,
                Reason::Approved
            );
        }
        account
    }

    /// A second merchant (no fees) with one terminal of the given secret.
    fn other_merchant(&self, secret: [u8; 32]) -> (MerchantId, TerminalId) {
        let register = Command::RegisterMerchant {
            fee_bps: 0,
            fee_bps_with_details: 0,
            origin: engine::Reference::default(),
        };
        let merchant = MerchantId(self.set(register).id as u32);
        let terminal = TerminalId(self.set(Command::RegisterTerminal { merchant, secret }).id as u32);
        (merchant, terminal)
    }

    fn origin(&self, request_id: u64) -> Origin {
        Origin {
            merchant: self.merchant,
            key: RequestKey {
                terminal: self.terminal,
                request_id,
            },
        }
    }

    /// Send `op` with a fresh request id.
    fn send(&mut self, op: TerminalOp) -> Outcome {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.send_as(request_id, op)
    }

    fn send_as(&self, request_id: u64, op: TerminalOp) -> Outcome {
        let command = Command::Terminal {
            origin: self.origin(request_id),
            op,
        };
        self.books.execute(&command, self.now_us, &NoJournal).outcome
    }

    fn purchase(&mut self, amount: u64) -> Outcome {
        self.send(purchase(self.payer, amount))
    }

    fn authorize(&mut self, amount: u64) -> Outcome {
        self.send(authorize(self.payer, amount))
    }

    fn capture(&mut self, hold: u64, amount: u64, last: bool) -> Outcome {
        self.send(TerminalOp::Capture {
            hold: HoldId(hold),
            amount,
            last,
            extras: Extras::default(),
        })
    }

    fn increment(&mut self, hold: u64, amount: u64) -> Outcome {
        self.send(TerminalOp::Increment {
            hold: HoldId(hold),
            amount,
        })
    }

    fn void(&mut self, hold: u64) -> Outcome {
        self.send(TerminalOp::Void { hold: HoldId(hold) })
    }

    fn set(&self, command: Command) -> Outcome {
        operator(&self.books, command)
    }

    fn set_limits(&self, limits: Limits) -> Outcome {
        self.set(Command::SetLimits {
            account: self.payer,
            limits,
        })
    }

    fn balance(&self) -> (u64, u64) {
        let info = self.books.account_info(self.payer).expect("payer exists");
        (info.balance, info.held)
    }

    fn merchant_balance(&self) -> i128 {
        self.books
            .ledger_balance(AccountId::settlement(self.merchant))
            .expect("ledger account")
    }

    fn fee_balance(&self) -> i128 {
        self.books.ledger_balance(AccountId::FEE).expect("ledger account")
    }

    fn assert_invariants(&self) {
        if let Err(broken) = self.books.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }
}

fn operator(books: &Books, command: Command) -> Outcome {
    books.execute(&command, NOON_US, &NoJournal).outcome
}

fn purchase(payer: AccountId, amount: u64) -> TerminalOp {
    TerminalOp::Purchase {
        payer,
        amount,
        currency: EUR,
        pin: None,
        extras: Extras::default(),
    }
}

fn authorize(payer: AccountId, amount: u64) -> TerminalOp {
    TerminalOp::Authorize {
        payer,
        amount,
        currency: EUR,
        pin: None,
        lifetime_us: 0,
    }
}

fn limits(payment_max: u64, day_amount_max: u64, day_count_max: u32, pin_above: u64) -> Limits {
    Limits {
        payment_max,
        day_amount_max,
        day_count_max,
        pin_above,
    }
}

#[test]
fn purchase_moves_money_and_books_the_fee() {
    let mut shop = Shop::new();
    let outcome = shop.purchase(1_000);
    assert_eq!(outcome.reason, Reason::Approved);
    assert_eq!(outcome.amount, 1_000);
    assert_eq!(shop.balance(), (9_000, 0));
    assert_eq!(shop.merchant_balance(), 980);
    assert_eq!(shop.fee_balance(), 20);
    assert_eq!(shop.books.ledger_balance(AccountId::FUNDING), Some(-10_000));
    shop.assert_invariants();
}

#[test]
fn product_details_select_the_lower_fee_and_loyalty_accrues() {
    let mut shop = Shop::new();
    let extras = Extras {
        product_details: true,
        loyalty_points: 7,
    };
    let op = TerminalOp::Purchase {
        payer: shop.payer,
        amount: 1_000,
        currency: EUR,
        pin: None,
        extras,
    };
    assert_eq!(shop.send(op).reason, Reason::Approved);
    assert_eq!(shop.merchant_balance(), 990);
    assert_eq!(shop.fee_balance(), 10);
    let hold = shop.authorize(500).id;
    let capture = TerminalOp::Capture {
        hold: HoldId(hold),
        amount: 500,
        last: true,
        extras,
    };
    assert_eq!(shop.send(capture).reason, Reason::Approved);
    assert_eq!(
        shop.books
            .account_info(shop.payer)
            .map(|info| info.loyalty_points),
        Some(14)
    );
}

#[test]
fn authorize_then_partial_captures_then_final_capture_releases_the_rest() {
    let mut shop = Shop::new();
    let hold = shop.authorize(3_000);
    assert_eq!(hold.reason, Reason::Approved);
    assert_eq!(shop.balance(), (10_000, 3_000));
    assert_eq!(shop.capture(hold.id, 1_000, false).reason, Reason::Approved);
    assert_eq!(shop.balance(), (9_000, 2_000));
    assert_eq!(shop.capture(hold.id, 500, true).reason, Reason::Approved);
    assert_eq!(shop.balance(), (8_500, 0));
    let kept = shop.books.hold(HoldId(hold.id)).expect("kept");
    assert_eq!(
        (kept.state, kept.captured, kept.held),
        (HoldState::Captured, 1_500, 0)
    );
    assert_eq!(shop.capture(hold.id, 1, false).reason, Reason::HoldNotActive);
    shop.assert_invariants();
}

#[test]
fn capturing_everything_held_finishes_the_hold() {
    let mut shop = Shop::new();
    let hold = shop.authorize(700).id;
    assert_eq!(shop.capture(hold, 700, false).reason, Reason::Approved);
    assert_eq!(
        shop.books.hold(HoldId(hold)).map(|h| h.state),
        Some(HoldState::Captured)
    );
}

#[test]
fn capture_above_hold_is_declined() {
    let mut shop = Shop::new();
    let hold = shop.authorize(500).id;
    assert_eq!(shop.capture(hold, 501, false).reason, Reason::AmountAboveOriginal);
    assert_eq!(shop.balance(), (10_000, 500));
}

#[test]
fn capture_after_void_is_declined() {
    let mut shop = Shop::new();
    let hold = shop.authorize(500).id;
    let void = shop.void(hold);
    assert_eq!((void.reason, void.amount), (Reason::Approved, 500));
    assert_eq!(shop.balance(), (10_000, 0));
    assert_eq!(shop.capture(hold, 100, false).reason, Reason::HoldNotActive);
    assert_eq!(shop.void(hold).reason, Reason::HoldNotActive);
}

#[test]
fn a_hold_of_another_merchant_is_unknown_to_this_terminal() {
    let mut shop = Shop::new();
    let hold = shop.authorize(500).id;
    let (other, till) = shop.other_merchant([2; 32]);
    let origin = Origin {
        merchant: other,
        key: RequestKey {
            terminal: till,
            request_id: 1,
        },
    };
    let op = TerminalOp::Capture {
        hold: HoldId(hold),
        amount: 500,
        last: true,
        extras: Extras::default(),
    };
    let outcome = shop
        .books
        .execute(&Command::Terminal { origin, op }, NOON_US, &NoJournal)
        .outcome;
    assert_eq!(outcome.reason, Reason::HoldUnknown);
    assert_eq!(
        shop.capture(hold + 4 * 1_000, 1, false).reason,
        Reason::HoldUnknown,
        "no such hold"
    );
    assert_eq!(shop.capture(0, 1, false).reason, Reason::HoldUnknown, "hold id 0");
}

#[test]
fn refunds_add_up_to_the_capture_and_never_beyond() {
    let mut shop = Shop::new();
    let sale = shop.purchase(1_000).id;
    let refund = |amount| TerminalOp::Refund {
        hold: HoldId(sale),
        amount,
    };
    assert_eq!(shop.send(refund(600)).reason, Reason::Approved);
    assert_eq!(shop.send(refund(401)).reason, Reason::AmountAboveOriginal);
    assert_eq!(shop.send(refund(400)).reason, Reason::Approved);
    assert_eq!(shop.send(refund(1)).reason, Reason::AmountAboveOriginal);
    assert_eq!(shop.balance(), (10_000, 0));
    assert_eq!(
        shop.merchant_balance(),
        980 - 1_000,
        "the merchant bears the refund, the fee stays"
    );
    assert_eq!(shop.fee_balance(), 20);
    shop.assert_invariants();
}

#[test]
fn refund_of_an_uncaptured_hold_is_declined() {
    let mut shop = Shop::new();
    let hold = shop.authorize(1_000).id;
    assert_eq!(
        shop.send(TerminalOp::Refund {
            hold: HoldId(hold),
            amount: 1
        })
        .reason,
        Reason::AmountAboveOriginal
    );
}

#[test]
fn a_hold_expires_at_exactly_its_expiry() {
    let mut shop = Shop::new();
    let first = shop.authorize(100).id;
    let second = shop.authorize(100).id;
    let expires_us = NOON_US + HOLD_LIFETIME_DEFAULT_US;
    shop.now_us = expires_us - 1;
    assert_eq!(
        shop.capture(first, 100, true).reason,
        Reason::Approved,
        "one microsecond before expiry"
    );
    shop.now_us = expires_us;
    assert_eq!(
        shop.capture(second, 100, true).reason,
        Reason::HoldExpired,
        "at expiry"
    );
    assert_eq!(
        shop.books.hold(HoldId(second)).map(|h| h.state),
        Some(HoldState::Expired)
    );
    assert_eq!(shop.balance(), (9_900, 0));
    shop.assert_invariants();
}

#[test]
fn advancing_time_releases_due_holds_only() {
    let mut shop = Shop::new();
    let short = shop.send(TerminalOp::Authorize {
        payer: shop.payer,
        amount: 300,
        currency: EUR,
        pin: None,
        lifetime_us: 60_000_000,
    });
    let long = shop.authorize(200);
    assert_eq!(shop.books.advance_time(NOON_US + 59_999_999, &NoJournal), 0);
    assert_eq!(shop.books.advance_time(NOON_US + 60_000_000, &NoJournal), 1);
    assert_eq!(
        shop.books.hold(HoldId(short.id)).map(|h| h.state),
        Some(HoldState::Expired)
    );
    assert_eq!(
        shop.books.hold(HoldId(long.id)).map(|h| h.state),
        Some(HoldState::Active)
    );
    assert_eq!(shop.balance(), (10_000, 200));
    shop.now_us = NOON_US + 60_000_000;
    assert_eq!(shop.capture(short.id, 1, false).reason, Reason::HoldExpired);
    shop.assert_invariants();
}

#[test]
fn a_hold_lifetime_above_the_maximum_is_declined() {
    let mut shop = Shop::new();
    let op = |lifetime_us| TerminalOp::Authorize {
        payer: shop.payer,
        amount: 1,
        currency: EUR,
        pin: None,
        lifetime_us,
    };
    let (at_max, above_max) = (op(HOLD_LIFETIME_MAX_US), op(HOLD_LIFETIME_MAX_US + 1));
    assert_eq!(shop.send(at_max).reason, Reason::Approved);
    assert_eq!(shop.send(above_max).reason, Reason::InvalidRequest);
}

#[test]
fn increment_raises_an_active_hold_within_funds() {
    let mut shop = Shop::new();
    let hold = shop.authorize(4_000).id;
    assert_eq!(shop.increment(hold, 5_000).reason, Reason::Approved);
    assert_eq!(shop.balance(), (10_000, 9_000));
    assert_eq!(shop.increment(hold, 1_001).reason, Reason::InsufficientFunds);
    assert_eq!(shop.capture(hold, 9_000, true).reason, Reason::Approved);
    assert_eq!(shop.increment(hold, 1).reason, Reason::HoldNotActive);
    shop.assert_invariants();
}

#[test]
fn payment_limit_at_exactly_the_max_is_approved_and_one_above_declined() {
    let mut shop = Shop::new();
    shop.set_limits(limits(500, u64::MAX, u32::MAX, u64::MAX));
    assert_eq!(shop.purchase(500).reason, Reason::Approved);
    assert_eq!(shop.purchase(501).reason, Reason::PaymentLimitExceeded);
}

#[test]
fn daily_amount_limit_counts_the_utc_day_and_resets_the_next() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, 1_000, u32::MAX, u64::MAX));
    assert_eq!(shop.purchase(600).reason, Reason::Approved);
    assert_eq!(
        shop.authorize(400).reason,
        Reason::Approved,
        "exactly the daily maximum"
    );
    assert_eq!(shop.purchase(1).reason, Reason::DailyAmountExceeded);
    shop.now_us = (NOON_US / DAY_US + 1) * DAY_US;
    assert_eq!(shop.purchase(1_000).reason, Reason::Approved, "a new UTC day");
}

#[test]
fn daily_count_limit_allows_exactly_the_max() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, u64::MAX, 2, u64::MAX));
    assert_eq!(shop.purchase(1).reason, Reason::Approved);
    assert_eq!(shop.authorize(1).reason, Reason::Approved);
    assert_eq!(shop.purchase(1).reason, Reason::DailyCountExceeded);
}

#[test]
fn pin_is_required_above_the_threshold_only() {
    let mut shop = Shop::new();
    shop.set(Command::SetPin {
        account: shop.payer,
        pin: PIN_1234,
    });
    shop.set_limits(limits(u64::MAX, u64::MAX, u32::MAX, 1_000));
    assert_eq!(
        shop.purchase(1_000).reason,
        Reason::Approved,
        "at the threshold no PIN is needed"
    );
    assert_eq!(shop.purchase(1_001).reason, Reason::PinRequired);
    let with_pin = |pin| TerminalOp::Purchase {
        payer: shop.payer,
        amount: 1_001,
        currency: EUR,
        pin,
        extras: Extras::default(),
    };
    let (right, wrong) = (with_pin(Some(PIN_1234)), with_pin(Some(PIN_9999)));
    assert_eq!(shop.send(right).reason, Reason::Approved);
    assert_eq!(shop.send(wrong).reason, Reason::PinIncorrect);
}

#[test]
fn three_wrong_pins_lock_and_a_new_pin_unlocks() {
    let mut shop = Shop::new();
    shop.set(Command::SetPin {
        account: shop.payer,
        pin: PIN_1234,
    });
    shop.set_limits(limits(u64::MAX, u64::MAX, u32::MAX, 0));
    let pay = |pin| TerminalOp::Purchase {
        payer: shop.payer,
        amount: 10,
        currency: EUR,
        pin: Some(pin),
        extras: Extras::default(),
    };
    let (right, wrong) = (pay(PIN_1234), pay(PIN_9999));
    assert_eq!(shop.send(wrong).reason, Reason::PinIncorrect);
    assert_eq!(
        shop.send(right).reason,
        Reason::Approved,
        "a right PIN resets the count"
    );
    assert_eq!(shop.send(wrong).reason, Reason::PinIncorrect);
    assert_eq!(shop.send(wrong).reason, Reason::PinIncorrect);
    assert_eq!(
        shop.send(wrong).reason,
        Reason::PinLocked,
        "the third wrong PIN in a row locks"
    );
    assert_eq!(
        shop.send(right).reason,
        Reason::PinLocked,
        "even the right PIN is refused while locked"
    );
    assert!(shop
        .books
        .account_info(shop.payer)
        .is_some_and(|info| info.pin_locked));
    shop.set(Command::SetPin {
        account: shop.payer,
        pin: PIN_9999,
    });
    assert_eq!(shop.send(wrong).reason, Reason::Approved, "the new PIN works");
}

#[test]
fn a_pin_proof_for_an_account_without_pin_is_incorrect_and_not_counted() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, u64::MAX, u32::MAX, 0));
    let pay = TerminalOp::Purchase {
        payer: shop.payer,
        amount: 10,
        currency: EUR,
        pin: Some(PIN_1234),
        extras: Extras::default(),
    };
    for _ in 0..5 {
        assert_eq!(shop.send(pay).reason, Reason::PinIncorrect);
    }
    assert!(shop
        .books
        .account_info(shop.payer)
        .is_some_and(|info| !info.pin_locked));
}

#[test]
fn payer_admission_declines_unknown_frozen_closed_and_foreign_currency() {
    let mut shop = Shop::new();
    assert_eq!(
        shop.send(purchase(AccountId(999_999_999), 1)).reason,
        Reason::AccountUnknown
    );
    assert_eq!(
        shop.send(purchase(AccountId::FEE, 1)).reason,
        Reason::AccountUnknown,
        "a ledger account"
    );
    let dollars = TerminalOp::Purchase {
        payer: shop.payer,
        amount: 1,
        currency: Currency(840),
        pin: None,
        extras: Extras::default(),
    };
    assert_eq!(shop.send(dollars).reason, Reason::CurrencyMismatch);
    shop.set(Command::SetAccountStatus {
        account: shop.payer,
        status: Status::Frozen,
    });
    assert_eq!(shop.purchase(1).reason, Reason::AccountFrozen);
    shop.set(Command::SetAccountStatus {
        account: shop.payer,
        status: Status::Active,
    });
    assert_eq!(shop.purchase(1).reason, Reason::Approved);
    shop.set(Command::SetAccountStatus {
        account: shop.payer,
        status: Status::Closed,
    });
    assert_eq!(shop.purchase(1).reason, Reason::AccountClosed);
    let reopen = shop.set(Command::SetAccountStatus {
        account: shop.payer,
        status: Status::Active,
    });
    assert_eq!(reopen.reason, Reason::AccountClosed, "closed is final");
}

#[test]
fn closing_an_account_with_an_active_hold_is_refused() {
    let mut shop = Shop::new();
    let hold = shop.authorize(10).id;
    let close = Command::SetAccountStatus {
        account: shop.payer,
        status: Status::Closed,
    };
    assert_eq!(shop.set(close).reason, Reason::InvalidRequest);
    shop.void(hold);
    assert_eq!(shop.set(close).reason, Reason::Approved);
}

#[test]
fn payee_admission_declines_unknown_frozen_and_foreign_terminals() {
    let mut shop = Shop::new();
    let (_, foreign) = shop.other_merchant([3; 32]);
    let pay_as = |merchant, terminal| Command::Terminal {
        origin: Origin {
            merchant,
            key: RequestKey {
                terminal,
                request_id: 77,
            },
        },
        op: purchase(shop.payer, 1),
    };
    let reason = |command: Command| shop.books.execute(&command, NOON_US, &NoJournal).outcome.reason;
    assert_eq!(
        reason(pay_as(MerchantId(99), shop.terminal)),
        Reason::MerchantInvalid
    );
    assert_eq!(reason(pay_as(shop.merchant, foreign)), Reason::TerminalInvalid);
    assert_eq!(
        reason(pay_as(shop.merchant, TerminalId(99))),
        Reason::TerminalInvalid
    );
    shop.set(Command::SetTerminalStatus {
        terminal: shop.terminal,
        status: Status::Frozen,
    });
    assert_eq!(shop.purchase(1).reason, Reason::TerminalInvalid);
    shop.set(Command::SetTerminalStatus {
        terminal: shop.terminal,
        status: Status::Active,
    });
    shop.set(Command::SetMerchantStatus {
        merchant: shop.merchant,
        status: Status::Frozen,
    });
    assert_eq!(shop.purchase(1).reason, Reason::MerchantInvalid);
}

#[test]
fn amounts_must_be_positive_and_bounded() {
    let mut shop = Shop::new();
    assert_eq!(shop.purchase(0).reason, Reason::AmountInvalid);
    assert_eq!(shop.purchase(AMOUNT_MINOR_MAX + 1).reason, Reason::AmountInvalid);
    assert_eq!(shop.purchase(AMOUNT_MINOR_MAX).reason, Reason::InsufficientFunds);
}

#[test]
fn a_balance_stops_at_its_ceiling_for_loads_and_for_refunds() {
    let mut shop = Shop::new();
    let ceiling = engine::books::shard::BALANCE_MINOR_MAX;
    let load = |shop: &Shop, amount| {
        shop.set(Command::Load {
            account: shop.payer,
            amount,
        })
        .reason
    };
    // 10,000 loaded at the start; fill up to exactly the ceiling.
    let mut balance = shop.balance().0;
    while balance < ceiling {
        let amount = (ceiling - balance).min(AMOUNT_MINOR_MAX);
        assert_eq!(load(&shop, amount), Reason::Approved);
        balance += amount;
    }
    assert_eq!(shop.balance(), (ceiling, 0));
    assert_eq!(load(&shop, 1), Reason::AmountInvalid, "one past the ceiling");
    let paid = shop.purchase(500);
    assert_eq!(paid.reason, Reason::Approved);
    assert_eq!(load(&shop, 500), Reason::Approved, "back at the ceiling");
    let refund = |amount| TerminalOp::Refund {
        hold: HoldId(paid.id),
        amount,
    };
    assert_eq!(
        shop.send(refund(500)).reason,
        Reason::AmountInvalid,
        "past the ceiling"
    );
    assert_eq!(shop.balance(), (ceiling, 0), "nothing moved");
    assert_eq!(shop.purchase(200).reason, Reason::Approved);
    assert_eq!(
        shop.send(refund(200)).reason,
        Reason::Approved,
        "up to the ceiling"
    );
    assert_eq!(shop.balance(), (ceiling, 0));
    // A reversal gives the purchase back: past the ceiling, it is declined too.
    assert_eq!(
        shop.send_as(900, purchase(shop.payer, 300)).reason,
        Reason::Approved
    );
    assert_eq!(load(&shop, 300), Reason::Approved);
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 900,
    };
    assert_eq!(shop.send(reversal).reason, Reason::AmountInvalid);
    assert_eq!(shop.balance(), (ceiling, 0), "nothing moved");
    shop.assert_invariants();
}

#[test]
fn insufficient_funds_counts_what_is_held() {
    let mut shop = Shop::new();
    shop.authorize(9_000);
    assert_eq!(shop.purchase(1_001).reason, Reason::InsufficientFunds);
    assert_eq!(shop.purchase(1_000).reason, Reason::Approved);
    assert_eq!(shop.balance(), (9_000, 9_000));
}

#[test]
fn a_repeated_request_gets_the_original_outcome_and_changes_nothing() {
    let shop = Shop::new();
    let first = shop.send_as(42, purchase(shop.payer, 250));
    let digest = shop.books.digest();
    let again = shop.send_as(42, purchase(shop.payer, 250));
    assert_eq!(first, again);
    assert_eq!(shop.books.digest(), digest);
    assert_eq!(shop.balance(), (9_750, 0));
}

#[test]
fn a_repeated_decline_is_declined_again_even_if_it_would_now_pass() {
    let shop = Shop::new();
    assert_eq!(
        shop.send_as(5, purchase(shop.payer, 20_000)).reason,
        Reason::InsufficientFunds
    );
    shop.set(Command::Load {
        account: shop.payer,
        amount: 20_000,
    });
    assert_eq!(
        shop.send_as(5, purchase(shop.payer, 20_000)).reason,
        Reason::InsufficientFunds
    );
}

#[test]
fn the_same_key_with_different_content_is_a_conflict() {
    let shop = Shop::new();
    shop.send_as(42, purchase(shop.payer, 250));
    assert_eq!(
        shop.send_as(42, purchase(shop.payer, 251)).reason,
        Reason::DuplicateConflict
    );
    assert_eq!(
        shop.send_as(42, authorize(shop.payer, 250)).reason,
        Reason::DuplicateConflict
    );
    assert_eq!(shop.balance(), (9_750, 0));
}

#[test]
fn the_window_forgets_the_oldest_request_when_full() {
    let config = BooksConfig {
        shards: 1,
        idempotency_window: 2,
        ..BooksConfig::default()
    };
    let shop = Shop::with_config(config);
    shop.send_as(1, purchase(shop.payer, 1));
    shop.send_as(2, purchase(shop.payer, 1));
    shop.send_as(3, purchase(shop.payer, 1));
    assert_eq!(shop.send_as(3, purchase(shop.payer, 1)).reason, Reason::Approved);
    assert_eq!(shop.balance().0, 9_997, "request 3 is still recognised");
    shop.send_as(1, purchase(shop.payer, 1));
    assert_eq!(
        shop.balance().0,
        9_996,
        "request 1 was forgotten and counts again"
    );
}

#[test]
fn the_window_size_is_checked_at_both_edges() {
    use engine::limits::IDEMPOTENCY_WINDOW_MAX;
    let with_window = |idempotency_window| {
        Books::new(BooksConfig {
            shards: 1,
            idempotency_window,
            ..BooksConfig::default()
        })
    };
    assert!(with_window(1).is_ok());
    assert!(with_window(IDEMPOTENCY_WINDOW_MAX).is_ok());
    for refused in [0, IDEMPOTENCY_WINDOW_MAX + 1] {
        let Err(error) = with_window(refused) else {
            panic!("a window of {refused} entries was accepted");
        };
        assert!(
            error.to_string().contains("--idempotency-window"),
            "says what to pass: {error}"
        );
    }
}

#[test]
fn a_reversal_before_the_original_declines_the_late_original() {
    let shop = Shop::new();
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 9,
    };
    assert_eq!(shop.send_as(10, reversal).reason, Reason::Approved);
    assert_eq!(
        shop.send_as(9, purchase(shop.payer, 300)).reason,
        Reason::Reversed
    );
    assert_eq!(
        shop.send_as(9, purchase(shop.payer, 300)).reason,
        Reason::Reversed,
        "and its retries"
    );
    assert_eq!(shop.balance(), (10_000, 0));
}

#[test]
fn a_reversal_after_a_purchase_undoes_it_exactly() {
    let shop = Shop::new();
    let extras = Extras {
        product_details: false,
        loyalty_points: 5,
    };
    let op = TerminalOp::Purchase {
        payer: shop.payer,
        amount: 1_000,
        currency: EUR,
        pin: None,
        extras,
    };
    let sale = shop.send_as(9, op);
    assert_eq!(sale.reason, Reason::Approved);
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 9,
    };
    let undone = shop.send_as(10, reversal);
    assert_eq!((undone.reason, undone.amount), (Reason::Approved, 1_000));
    assert_eq!(shop.balance(), (10_000, 0));
    assert_eq!((shop.merchant_balance(), shop.fee_balance()), (0, 0));
    assert_eq!(
        shop.books.account_info(shop.payer).map(|i| i.loyalty_points),
        Some(0)
    );
    assert_eq!(
        shop.send_as(11, reversal).amount,
        0,
        "a second reversal finds nothing left to undo"
    );
    assert_eq!(
        shop.send_as(9, op).reason,
        Reason::Reversed,
        "a late retry of the original is told it was reversed, and changes nothing"
    );
    assert_eq!(shop.balance(), (10_000, 0));
    shop.assert_invariants();
}

#[test]
fn a_reversal_after_an_authorization_voids_the_hold_and_gives_back_the_day() {
    let shop = Shop::new();
    shop.set_limits(limits(u64::MAX, 1_000, 1, u64::MAX));
    let hold = shop.send_as(9, authorize(shop.payer, 1_000));
    assert_eq!(hold.reason, Reason::Approved);
    shop.send_as(
        10,
        TerminalOp::Reversal {
            payer: shop.payer,
            original_request_id: 9,
        },
    );
    assert_eq!(
        shop.books.hold(HoldId(hold.id)).map(|h| h.state),
        Some(HoldState::Voided)
    );
    assert_eq!(shop.balance(), (10_000, 0));
    assert_eq!(
        shop.send_as(11, purchase(shop.payer, 1_000)).reason,
        Reason::Approved,
        "the day's limits were restored"
    );
}

#[test]
fn a_reversal_of_a_captured_authorization_is_declined() {
    let mut shop = Shop::new();
    let hold = shop.send_as(9, authorize(shop.payer, 100)).id;
    shop.capture(hold, 100, true);
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 9,
    };
    assert_eq!(shop.send_as(10, reversal).reason, Reason::HoldNotActive);
}

#[test]
fn balance_check_says_sufficient_or_not_without_the_figure() {
    let mut shop = Shop::new();
    let origin = shop.origin(1);
    let sufficient = shop.books.balance_check(origin, shop.payer, 10_000, EUR);
    assert_eq!(sufficient, Outcome::approved(0, 10_000));
    shop.authorize(1);
    let insufficient = shop.books.balance_check(origin, shop.payer, 10_000, EUR);
    assert_eq!(insufficient, Outcome::declined(Reason::InsufficientFunds));
}

#[test]
fn holds_beyond_the_shard_capacity_are_declined_while_the_oldest_is_active() {
    let config = BooksConfig {
        shards: 1,
        holds_per_shard_max: 2,
        ..BooksConfig::default()
    };
    let mut shop = Shop::with_config(config);
    assert_eq!(shop.authorize(1).reason, Reason::Approved);
    assert_eq!(shop.purchase(1).reason, Reason::Approved);
    assert_eq!(shop.authorize(1).reason, Reason::CapacityExceeded);
}

struct FailingJournal;

impl Journal for FailingJournal {
    fn append(&self, _timestamp_us: u64, _command: &Command) -> Result<Lsn, JournalError> {
        Err(JournalError("disk full".into()))
    }
}

#[test]
fn a_journal_failure_answers_system_malfunction_and_changes_nothing() {
    let shop = Shop::new();
    let digest = shop.books.digest();
    let command = Command::Terminal {
        origin: shop.origin(1),
        op: purchase(shop.payer, 10),
    };
    let executed = shop.books.execute(&command, NOON_US, &FailingJournal);
    assert_eq!(executed.outcome.reason, Reason::SystemMalfunction);
    assert_eq!(shop.books.digest(), digest);
    let register = Command::RegisterMerchant {
        fee_bps: 1,
        fee_bps_with_details: 1,
        origin: engine::Reference::default(),
    };
    assert_eq!(
        shop.books
            .execute(&register, NOON_US, &FailingJournal)
            .outcome
            .reason,
        Reason::SystemMalfunction
    );
    assert_eq!(shop.books.digest(), digest);
}

#[test]
fn mobile_aliases_are_unique_and_resolve_to_their_account() {
    let shop = Shop::new();
    assert_eq!(shop.books.resolve_mobile(33_612_345_678), Some(shop.payer));
    let taken = Command::OpenAccount {
        shard: 0,
        currency: EUR,
        mobile: Some(33_612_345_678),
        limits: Limits::NONE,
    };
    assert_eq!(shop.set(taken).reason, Reason::InvalidRequest);
    let malformed = Command::OpenAccount {
        shard: 0,
        currency: EUR,
        mobile: Some(12),
        limits: Limits::NONE,
    };
    assert_eq!(shop.set(malformed).reason, Reason::InvalidRequest);
    let foreign = Command::OpenAccount {
        shard: 0,
        currency: Currency(840),
        mobile: None,
        limits: Limits::NONE,
    };
    assert_eq!(shop.set(foreign).reason, Reason::CurrencyMismatch);
    assert_eq!(shop.books.resolve_mobile(33_600_000_000), None);
}

#[test]
fn merchant_fees_are_validated() {
    let shop = Shop::new();
    let above_whole = Command::RegisterMerchant {
        fee_bps: 10_001,
        fee_bps_with_details: 0,
        origin: engine::Reference::default(),
    };
    assert_eq!(shop.set(above_whole).reason, Reason::InvalidRequest);
    let details_dearer = Command::RegisterMerchant {
        fee_bps: 100,
        fee_bps_with_details: 101,
        origin: engine::Reference::default(),
    };
    assert_eq!(shop.set(details_dearer).reason, Reason::InvalidRequest);
}

#[test]
fn a_fee_of_the_whole_amount_is_accepted() {
    let shop = Shop::new();
    let whole = Command::RegisterMerchant {
        fee_bps: engine::limits::FEE_BPS_MAX,
        fee_bps_with_details: engine::limits::FEE_BPS_MAX,
        origin: engine::Reference::default(),
    };
    assert_eq!(shop.set(whole).reason, Reason::Approved);
}

#[test]
fn loyalty_points_per_capture_stop_at_their_maximum() {
    let mut shop = Shop::new();
    let points = |loyalty_points| TerminalOp::Purchase {
        payer: shop.payer,
        amount: 10,
        currency: EUR,
        pin: None,
        extras: Extras {
            product_details: false,
            loyalty_points,
        },
    };
    let (at_max, past_max) = (
        points(engine::limits::LOYALTY_POINTS_MAX),
        points(engine::limits::LOYALTY_POINTS_MAX + 1),
    );
    assert_eq!(shop.send(past_max).reason, Reason::InvalidRequest);
    assert_eq!(shop.balance(), (10_000, 0), "nothing taken");
    assert_eq!(shop.send(at_max).reason, Reason::Approved);
    assert_eq!(shop.balance(), (9_990, 0));
}

#[test]
fn a_capture_is_refundable_until_its_retention_ends_and_not_after() {
    let config = BooksConfig {
        shards: 1,
        hold_retention_us: DAY_US,
        ..BooksConfig::default()
    };
    let mut shop = Shop::with_config(config);
    let paid = HoldId(shop.purchase(300).id);
    let refund = TerminalOp::Refund {
        hold: paid,
        amount: 100,
    };
    // Finished holds are forgotten when time advances (the ticker, every second) past
    // finished + retention; until then their refunds are taken.
    shop.books.advance_time(NOON_US + DAY_US - 1, &NoJournal);
    assert_eq!(shop.send(refund).reason, Reason::Approved, "a microsecond before");
    shop.books.advance_time(NOON_US + DAY_US, &NoJournal);
    assert_eq!(
        shop.send(refund).reason,
        Reason::HoldUnknown,
        "at the end of retention"
    );
    assert_eq!(shop.balance(), (9_800, 0));
    shop.assert_invariants();
}

#[test]
fn shard_counts_must_be_powers_of_two() {
    assert!(Books::new(BooksConfig {
        shards: 3,
        ..BooksConfig::default()
    })
    .is_err());
    assert!(Books::new(BooksConfig {
        shards: 0,
        ..BooksConfig::default()
    })
    .is_err());
    assert!(Books::new(BooksConfig {
        shards: 1 << 13,
        ..BooksConfig::default()
    })
    .is_err());
    assert!(Books::new(BooksConfig {
        shards: 1,
        ..BooksConfig::default()
    })
    .is_ok());
    assert!(Books::new(BooksConfig {
        shards: engine::limits::SHARDS_MAX,
        // One hold a shard: the default would reserve 94 GB of hold rings, which a machine
        // with strict overcommit refuses.
        holds_per_shard_max: 1,
        ..BooksConfig::default()
    })
    .is_ok());
}

#[test]
fn a_shard_must_keep_at_least_one_hold() {
    let holds = |holds_per_shard_max| {
        Books::new(BooksConfig {
            holds_per_shard_max,
            ..BooksConfig::default()
        })
    };
    match holds(0) {
        Err(error) => assert!(error.to_string().contains("--holds-per-shard-max"), "{error}"),
        Ok(_) => panic!("books that can keep no hold would decline every payment"),
    }
    assert!(holds(1).is_ok());
}

#[test]
fn replaying_the_same_commands_gives_the_same_digest() {
    let build = || {
        let mut shop = Shop::new();
        let hold = shop.authorize(500).id;
        shop.capture(hold, 200, false);
        shop.purchase(300);
        shop.send(TerminalOp::Reversal {
            payer: shop.payer,
            original_request_id: 1_000,
        });
        shop.books
            .advance_time(NOON_US + HOLD_LIFETIME_DEFAULT_US, &NoJournal);
        shop.books.digest()
    };
    assert_eq!(build(), build());
    let mut other = Shop::new();
    other.purchase(1);
    assert_ne!(build(), other.books.digest());
}

#[test]
fn at_capacity_the_oldest_finished_hold_makes_room() {
    let config = BooksConfig {
        shards: 1,
        holds_per_shard_max: 2,
        ..BooksConfig::default()
    };
    let mut shop = Shop::with_config(config);
    let oldest = shop.purchase(1).id;
    let middle = shop.purchase(1).id;
    assert_eq!(shop.purchase(1).reason, Reason::Approved);
    let refund = |hold| TerminalOp::Refund {
        hold: HoldId(hold),
        amount: 1,
    };
    assert_eq!(
        shop.send(refund(oldest)).reason,
        Reason::HoldUnknown,
        "its refund window ended early"
    );
    assert_eq!(shop.send(refund(middle)).reason, Reason::Approved);
    shop.assert_invariants();
}

#[test]
fn a_reversal_naming_itself_is_declined() {
    let shop = Shop::new();
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 10,
    };
    assert_eq!(shop.send_as(10, reversal).reason, Reason::InvalidRequest);
    assert_eq!(
        shop.send_as(10, reversal).reason,
        Reason::InvalidRequest,
        "and its retry"
    );
    shop.assert_invariants();
}

#[test]
fn a_payer_device_is_registered_only_for_an_existing_payer() {
    let shop = Shop::new();
    let device = shop.set(Command::RegisterDevice {
        account: shop.payer,
        secret: [5; 32],
    });
    assert_eq!(device.reason, Reason::Approved);
    let found = shop.books.device(engine::DeviceId(device.id as u32));
    assert_eq!(found, Some((shop.payer, Status::Active, [5; 32])));
    let unknown = shop.set(Command::RegisterDevice {
        account: AccountId(999_999_999),
        secret: [5; 32],
    });
    assert_eq!(unknown.reason, Reason::AccountUnknown);
    let ledger = shop.set(Command::RegisterDevice {
        account: AccountId::FEE,
        secret: [5; 32],
    });
    assert_eq!(ledger.reason, Reason::AccountUnknown);
}

#[test]
fn payments_admit_the_payer_before_the_payee() {
    let shop = Shop::new();
    let unknown_payer_at_unknown_merchant = Command::Terminal {
        origin: Origin {
            merchant: MerchantId(9),
            key: RequestKey {
                terminal: shop.terminal,
                request_id: 1,
            },
        },
        op: purchase(AccountId(999_999_999), 5),
    };
    let outcome = shop
        .books
        .execute(&unknown_payer_at_unknown_merchant, NOON_US, &NoJournal)
        .outcome;
    assert_eq!(outcome.reason, Reason::AccountUnknown);
}

#[test]
fn a_reversal_of_a_partly_captured_authorization_is_declined_and_keeps_the_day() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, 1_000, u32::MAX, u64::MAX));
    let hold = shop.send_as(9, authorize(shop.payer, 1_000)).id;
    assert_eq!(shop.capture(hold, 999, false).reason, Reason::Approved);
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 9,
    };
    assert_eq!(shop.send_as(10, reversal).reason, Reason::HoldNotActive);
    assert_eq!(
        shop.purchase(1_000).reason,
        Reason::DailyAmountExceeded,
        "the day's usage stays"
    );
}

#[test]
fn a_reversal_naming_another_payer_is_declined() {
    let shop = Shop::new();
    let same_shard =
        |account| shop.books.shard_of_account(account) == shop.books.shard_of_account(shop.payer);
    let other = (0..8)
        .map(|_| shop.open_payer(None, 1_000))
        .find(|account| same_shard(*account));
    let other = other.expect("round robin comes back to the first payer's shard");
    assert_eq!(
        shop.send_as(9, purchase(shop.payer, 100)).reason,
        Reason::Approved
    );
    let wrong_payer = TerminalOp::Reversal {
        payer: other,
        original_request_id: 9,
    };
    assert_eq!(shop.send_as(10, wrong_payer).reason, Reason::InvalidRequest);
    assert_eq!(shop.balance(), (9_900, 0), "the purchase stands");
}

#[test]
fn prefetching_changes_nothing_whatever_it_is_given() {
    // Two books fed the same commands, one prefetching each next command first (and some
    // that name nothing), end with the same digest; the window, payers growing past their
    // first allocation (the prefetch address moves), and invalid ids are all exercised.
    let run = |prefetch: bool| {
        let mut shop = Shop::with_config(BooksConfig {
            shards: 2,
            idempotency_window: 8,
            ..BooksConfig::default()
        });
        let mut payers = vec![shop.payer];
        for _ in 0..40 {
            let open = Command::OpenAccount {
                shard: shop.books.pick_shard(),
                currency: Currency(978),
                mobile: None,
                limits: Limits::NONE,
            };
            let account = AccountId(operator(&shop.books, open).id);
            operator(
                &shop.books,
                Command::Load {
                    account,
                    amount: 1_000,
                },
            );
            payers.push(account);
        }
        let strangers = [AccountId(0), AccountId(u64::MAX), AccountId(payers[40].0 + 1_000)];
        for (step, payer) in payers.iter().cycle().take(200).enumerate() {
            let request_id = shop.next_request_id;
            shop.next_request_id += 1;
            let command = Command::Terminal {
                origin: shop.origin(request_id),
                op: purchase(*payer, 1 + step as u64 % 7),
            };
            if prefetch {
                shop.books.prefetch(&command);
                let stranger = strangers[step % strangers.len()];
                shop.books.prefetch(&Command::Terminal {
                    origin: shop.origin(request_id + 1),
                    op: purchase(stranger, 1),
                });
                shop.books.prefetch(&Command::Load {
                    account: stranger,
                    amount: 1,
                });
            }
            shop.books.execute(&command, shop.now_us, &NoJournal);
        }
        shop.books.check_invariants().expect("invariants hold");
        shop.books.digest()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn merchants_are_registered_up_to_the_cap_then_declined() {
    // At the cap itself: a merchant's settlement account id must stay below the payer ids.
    let books = Books::new(BooksConfig {
        shards: 1,
        ..BooksConfig::default()
    })
    .expect("config");
    let register = || {
        operator(
            &books,
            Command::RegisterMerchant {
                fee_bps: 0,
                fee_bps_with_details: 0,
                origin: engine::Reference::default(),
            },
        )
    };
    let cap = engine::limits::MERCHANTS_MAX;
    for id in 1..=cap {
        let outcome = register();
        assert_eq!((outcome.reason, outcome.id), (Reason::Approved, u64::from(id)));
    }
    assert_eq!(register().reason, Reason::CapacityExceeded);
    let last = MerchantId(cap);
    assert!(AccountId::settlement(last).0 < engine::limits::PAYER_ID_BASE);
}

#[test]
fn a_clock_stepped_back_across_midnight_gives_no_fresh_daily_limit() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, 1_000, u32::MAX, u64::MAX));
    let midnight = (NOON_US / DAY_US + 1) * DAY_US;
    shop.now_us = midnight + 5_000_000;
    assert_eq!(shop.purchase(1_000).reason, Reason::Approved);
    // The clock steps back ten seconds, into yesterday: the day's limit is still spent.
    shop.now_us = midnight - 5_000_000;
    assert_eq!(shop.purchase(1).reason, Reason::DailyAmountExceeded);
    shop.now_us = midnight + DAY_US;
    assert_eq!(shop.purchase(1_000).reason, Reason::Approved, "the next UTC day");
}

#[test]
fn a_retry_of_a_reversed_purchase_is_told_it_was_reversed() {
    let mut shop = Shop::new();
    assert_eq!(
        shop.send_as(77, purchase(shop.payer, 300)).reason,
        Reason::Approved
    );
    let reversal = TerminalOp::Reversal {
        payer: shop.payer,
        original_request_id: 77,
    };
    assert_eq!(shop.send(reversal).reason, Reason::Approved);
    let digest = shop.books.digest();
    // The terminal retries the purchase (it never saw the first reply): not "approved", or
    // the merchant would deliver for money given back.
    assert_eq!(
        shop.send_as(77, purchase(shop.payer, 300)).reason,
        Reason::Reversed
    );
    assert_eq!(shop.books.digest(), digest, "and nothing changes");
    assert_eq!(shop.balance(), (10_000, 0));
}

#[test]
fn released_holds_give_back_the_days_usage() {
    // A merchant must not use up a payer's daily limits with authorizations it voids.
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, 1_000, 2, u64::MAX));
    for _ in 0..3 {
        let hold = shop.authorize(1_000);
        assert_eq!(hold.reason, Reason::Approved);
        assert_eq!(shop.void(hold.id).reason, Reason::Approved);
    }
    // A final partial capture gives back what it left; the payment still counts once.
    let hold = shop.authorize(1_000);
    assert_eq!(shop.capture(hold.id, 400, true).reason, Reason::Approved);
    assert_eq!(
        shop.purchase(600).reason,
        Reason::Approved,
        "600 of the day's 1,000 left"
    );
    assert_eq!(shop.purchase(1).reason, Reason::DailyAmountExceeded);
    shop.assert_invariants();
}

#[test]
fn captures_in_small_parts_pay_the_fee_of_the_whole() {
    // 2% of 1,000 is 20; rounded down part by part, 16 captures of 62 and one of 8 would pay 16.
    let mut shop = Shop::new();
    let hold = shop.authorize(1_000);
    for _ in 0..16 {
        assert_eq!(shop.capture(hold.id, 62, false).reason, Reason::Approved);
    }
    assert_eq!(shop.capture(hold.id, 8, true).reason, Reason::Approved);
    assert_eq!(shop.fee_balance(), 20);
    assert_eq!(shop.merchant_balance(), 980);
    shop.assert_invariants();
}

#[test]
fn a_capture_pays_its_own_rate_whatever_the_rate_of_the_captures_before() {
    // 1% with product details, 2% without: a 1-unit capture after 9,900 at 1% must not take
    // the difference between the two rates on 9,900 (which would be the whole unit and more).
    let mut shop = Shop::new();
    let hold = shop.authorize(10_000);
    let capture = |shop: &mut Shop, amount, details, last| {
        let op = TerminalOp::Capture {
            hold: HoldId(hold.id),
            amount,
            last,
            extras: Extras {
                product_details: details,
                loyalty_points: 0,
            },
        };
        shop.send(op).reason
    };
    assert_eq!(capture(&mut shop, 9_900, true, false), Reason::Approved);
    assert_eq!(shop.fee_balance(), 99);
    assert_eq!(capture(&mut shop, 1, false, true), Reason::Approved);
    assert_eq!(shop.fee_balance(), 99, "2% of 9,901 less 2% of 9,900 is 0");
    assert_eq!(shop.merchant_balance(), 9_901 - 99);
    shop.assert_invariants();
}

#[test]
fn an_increment_past_the_pin_threshold_needs_a_pin() {
    let mut shop = Shop::new();
    shop.set_limits(limits(u64::MAX, u64::MAX, u32::MAX, 2_500));
    // At the threshold: no PIN needed; one more by increment would need one.
    let hold = shop.authorize(2_500);
    assert_eq!(hold.reason, Reason::Approved);
    assert_eq!(shop.increment(hold.id, 1).reason, Reason::PinRequired);
    assert_eq!(shop.balance(), (10_000, 2_500), "nothing more held");
    // A hold authorized with its PIN (above the threshold) grows without one.
    shop.set(Command::SetPin {
        account: shop.payer,
        pin: PIN_1234,
    });
    let with_pin = TerminalOp::Authorize {
        payer: shop.payer,
        amount: 3_000,
        currency: EUR,
        pin: Some(PIN_1234),
        lifetime_us: 0,
    };
    let above = shop.send(with_pin);
    assert_eq!(above.reason, Reason::Approved);
    let grown = shop.increment(above.id, 100);
    assert_eq!(grown.reason, Reason::Approved);
    shop.assert_invariants();
}

/// Every start skips 2^32 hold ids; a start that would leave no room for its run's holds is
/// refused, naming the shard, and the largest start allowed still gives ids that work.
#[test]
fn a_start_with_no_hold_ids_left_is_refused_naming_the_shard() {
    use engine::books::hold_ids::HOLD_SERIAL_SKIP;
    use engine::books::HoldIdsError;
    let mut shop = Shop::with_config(BooksConfig {
        shards: 2,
        ..BooksConfig::default()
    });
    let shard = shop.books.shard_of_account(shop.payer).expect("a payer's shard");
    let serial_max = engine::books::hold_ids::serial_max(1);
    assert_eq!(serial_max, (u64::MAX >> 1) - HOLD_SERIAL_SKIP);
    let start = |serial| Command::StartHoldIds { shard, serial };
    assert_eq!(shop.set(start(serial_max + 1)).reason, Reason::InvalidRequest);
    assert_eq!(shop.set(start(serial_max)).reason, Reason::Approved);
    let hold = shop.authorize(100);
    assert_eq!(hold.id, (serial_max << 1) | u64::from(shard));
    assert_eq!(shop.void(hold.id).reason, Reason::Approved);
    assert_eq!(
        shop.books.start_hold_ids(NOON_US, &NoJournal),
        Err(HoldIdsError::UsedUp {
            shard,
            serial: serial_max + 1 + HOLD_SERIAL_SKIP,
            serial_max,
        })
    );
}
