//! Offers (merchant asks, payer's phone answers) and disputes in the books (issue 7).

use engine::books::dispute::DisputeState;
use engine::books::offer::OfferState;
use engine::limits::OFFER_LIFETIME_DEFAULT_US;
use engine::store::{Store, StoreConfig};
use engine::wal::{ReadOptions, WalConfig};
use engine::{
    AccountId, Books, BooksConfig, Command, Currency, DisputeId, Extras, HoldId, Limits, MerchantId,
    NoJournal, Origin, Outcome, PinBlock, Reason, Reference, RequestKey, TerminalId, TerminalOp,
};

const EUR: Currency = Currency(978);
const NOON_US: u64 = 1_795_435_200_000_000;
const PIN: PinBlock = PinBlock([0x04, 0x12, 0x34, 0xff, 0xff, 0xff, 0xff, 0xff]);
const WRONG: PinBlock = PinBlock([0x04, 0x99, 0x99, 0xff, 0xff, 0xff, 0xff, 0xff]);

struct Cafe {
    books: Books,
    merchant: MerchantId,
    terminal: TerminalId,
    payer: AccountId,
    next_request: std::cell::Cell<u64>,
}

impl Cafe {
    fn new() -> Cafe {
        let books = Books::new(BooksConfig {
            shards: 4,
            ..BooksConfig::default()
        })
        .expect("config");
        let run = |command| books.execute(&command, NOON_US, &NoJournal).outcome;
        let merchant = MerchantId(
            run(Command::RegisterMerchant {
                fee_bps: 300,
                fee_bps_with_details: 100,
                origin: engine::Reference::default(),
            })
            .id as u32,
        );
        let terminal = TerminalId(
            run(Command::RegisterTerminal {
                merchant,
                secret: [1; 32],
            })
            .id as u32,
        );
        let open = Command::OpenAccount {
            shard: 1,
            currency: EUR,
            mobile: Some(33_611_111_111),
            limits: Limits::NONE,
        };
        let payer = AccountId(run(open).id);
        run(Command::Load {
            account: payer,
            amount: 10_000,
        });
        run(Command::SetPin {
            account: payer,
            pin: PIN,
        });
        Cafe {
            books,
            merchant,
            terminal,
            payer,
            next_request: std::cell::Cell::new(1),
        }
    }

    /// Another payer, in `shard`, with 10,000 and no PIN.
    fn open_payer(&self, shard: u32) -> AccountId {
        let open = Command::OpenAccount {
            shard,
            currency: EUR,
            mobile: None,
            limits: Limits::NONE,
        };
        let payer = AccountId(self.run(open, NOON_US).id);
        let load = Command::Load {
            account: payer,
            amount: 10_000,
        };
        assert_eq!(self.run(load, NOON_US).reason, Reason::Approved);
        payer
    }

    fn run(&self, command: Command, now_us: u64) -> Outcome {
        self.books.execute(&command, now_us, &NoJournal).outcome
    }

    fn terminal(&self, op: TerminalOp, now_us: u64) -> Outcome {
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let origin = Origin {
            merchant: self.merchant,
            key: RequestKey {
                terminal: self.terminal,
                request_id,
            },
        };
        self.run(Command::Terminal { origin, op }, now_us)
    }

    /// A purchase of `amount` by the payer, at noon: its hold.
    fn sale(&self, amount: u64) -> HoldId {
        let op = TerminalOp::Purchase {
            payer: self.payer,
            amount,
            currency: EUR,
            pin: None,
            extras: Extras::default(),
        };
        HoldId(self.terminal(op, NOON_US).id)
    }

    fn offer(&self, amount: u64) -> HoldId {
        let op = TerminalOp::Offer {
            payer: self.payer,
            amount,
            currency: EUR,
            lifetime_us: 0,
            reference: Reference::new("2 coffees").expect("short"),
        };
        let outcome = self.terminal(op, NOON_US);
        assert_eq!(outcome.reason, Reason::Approved, "offer");
        HoldId(outcome.id)
    }

    fn answer(&self, offer: HoldId, accept: bool, pin: Option<PinBlock>, now_us: u64) -> Outcome {
        self.run(
            Command::OfferAnswer {
                offer,
                payer: Some(self.payer),
                accept,
                pin,
            },
            now_us,
        )
    }

    fn state(&self, offer: HoldId) -> OfferState {
        self.books.offer(offer).expect("offer kept").state
    }

    fn balance(&self) -> (u64, u64) {
        let info = self.books.account_info(self.payer).expect("payer");
        (info.balance, info.held)
    }

    fn check(&self) {
        if let Err(broken) = self.books.check_invariants() {
            panic!("invariants: {broken}");
        }
    }
}

#[test]
fn an_accepted_offer_is_captured_with_the_fee_and_reported_as_events() {
    let cafe = Cafe::new();
    let offer = cafe.offer(1_000);
    assert_eq!(cafe.balance(), (10_000, 1_000), "the offer holds the funds");
    let pending = cafe
        .books
        .pending_offers(Some(cafe.payer), HoldId(0), NOON_US, 16);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].reference.as_str(), "2 coffees");
    let accepted = cafe.answer(offer, true, Some(PIN), NOON_US + 1);
    assert_eq!((accepted.reason, accepted.amount), (Reason::Approved, 1_000));
    assert_eq!(cafe.state(offer), OfferState::Accepted);
    assert_eq!(cafe.balance(), (9_000, 0));
    assert_eq!(
        cafe.books.ledger_balance(AccountId::settlement(cafe.merchant)),
        Some(970)
    );
    assert_eq!(cafe.books.ledger_balance(AccountId::FEE), Some(30));
    let states: Vec<OfferState> = cafe
        .books
        .take_offer_events()
        .iter()
        .map(|(_, event)| event.view.state)
        .collect();
    assert_eq!(states, vec![OfferState::Offered, OfferState::Accepted]);
    assert!(cafe
        .books
        .pending_offers(Some(cafe.payer), HoldId(0), NOON_US, 16)
        .is_empty());
    cafe.check();
}

#[test]
fn a_terminal_cannot_capture_increment_or_void_an_offer_only_cancel_it() {
    let cafe = Cafe::new();
    // Above no PIN threshold here, but an offer's capture needs the payer's accept in any case.
    let offer = cafe.offer(500);
    let capture = TerminalOp::Capture {
        hold: offer,
        amount: 500,
        last: true,
        extras: Extras::default(),
    };
    for op in [
        capture,
        TerminalOp::Increment {
            hold: offer,
            amount: 100,
        },
        TerminalOp::Void { hold: offer },
    ] {
        assert_eq!(cafe.terminal(op, NOON_US).reason, Reason::NotPermitted, "{op:?}");
    }
    assert_eq!(cafe.state(offer), OfferState::Offered);
    assert_eq!(
        cafe.balance(),
        (10_000, 500),
        "the hold is as the offer placed it"
    );
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::Approved
    );
    assert_eq!(cafe.balance(), (9_500, 0), "the payer paid what the offer showed");
    assert_eq!(
        cafe.terminal(capture, NOON_US).reason,
        Reason::NotPermitted,
        "nor once accepted"
    );
    // Cancelling stays the merchant's way out of a pending offer.
    let pending = cafe.offer(300);
    assert_eq!(
        cafe.terminal(TerminalOp::OfferCancel { offer: pending }, NOON_US)
            .reason,
        Reason::Approved
    );
    assert_eq!(cafe.state(pending), OfferState::Cancelled);
    assert_eq!(cafe.balance(), (9_500, 0));
    // A refund of an accepted offer is the merchant's to give.
    let refund = TerminalOp::Refund {
        hold: offer,
        amount: 200,
    };
    assert_eq!(cafe.terminal(refund, NOON_US).reason, Reason::Approved);
    assert_eq!(cafe.balance(), (9_700, 0));
    cafe.check();
}

#[test]
fn pending_offers_page_in_id_order_across_shards() {
    let cafe = Cafe::new();
    let mut payers = vec![cafe.payer];
    payers.extend([0, 2, 3, 1].map(|shard| cafe.open_payer(shard)));
    let mut offered = Vec::new();
    for round in 0..7u64 {
        for (index, payer) in payers.iter().enumerate() {
            let op = TerminalOp::Offer {
                payer: *payer,
                amount: 10 + round,
                currency: EUR,
                lifetime_us: 0,
                reference: Reference::new("page").expect("short"),
            };
            let outcome = cafe.terminal(op, NOON_US);
            assert_eq!(outcome.reason, Reason::Approved);
            offered.push(HoldId(outcome.id));
            if (round + index as u64).is_multiple_of(3) {
                // Answered ones are no longer pending.
                assert_eq!(
                    cafe.run(
                        Command::OfferAnswer {
                            offer: HoldId(outcome.id),
                            payer: Some(*payer),
                            accept: false,
                            pin: None
                        },
                        NOON_US
                    )
                    .reason,
                    Reason::Approved
                );
            }
        }
    }
    let pending: Vec<HoldId> = {
        let mut ids: Vec<HoldId> = offered
            .iter()
            .copied()
            .filter(|offer| cafe.state(*offer) == OfferState::Offered)
            .collect();
        ids.sort_unstable_by_key(|offer| offer.0);
        ids
    };
    let listed = |payer: Option<AccountId>, after: u64, count_max: usize| -> Vec<HoldId> {
        cafe.books
            .pending_offers(payer, HoldId(after), NOON_US, count_max)
            .iter()
            .map(|view| view.offer)
            .collect()
    };
    for after in std::iter::once(0).chain(offered.iter().map(|offer| offer.0)) {
        for count_max in [1, 3, 100] {
            let expected: Vec<HoldId> = pending
                .iter()
                .copied()
                .filter(|offer| offer.0 > after)
                .take(count_max)
                .collect();
            assert_eq!(
                listed(None, after, count_max),
                expected,
                "gateway after {after}, {count_max}"
            );
        }
    }
    // One payer's page holds only theirs.
    let theirs: Vec<HoldId> = pending
        .iter()
        .copied()
        .filter(|offer| {
            cafe.books
                .offer(*offer)
                .is_some_and(|view| view.payer == payers[2])
        })
        .collect();
    assert_eq!(listed(Some(payers[2]), 0, 100), theirs);
    assert_eq!(listed(Some(payers[2]), 0, 2), theirs[..2].to_vec());
    // The index of pending offers is rebuilt when books are loaded from a snapshot.
    let (_, sections) = engine::store::snapshot::take(&cafe.books, || 1);
    let slices: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    let (loaded, _) = engine::store::snapshot::load(*cafe.books.config(), &slices).expect("load");
    let reloaded: Vec<HoldId> = loaded
        .pending_offers(None, HoldId(0), NOON_US, 100)
        .iter()
        .map(|view| view.offer)
        .collect();
    assert_eq!(reloaded, pending);
}

#[test]
fn disputes_page_in_id_order_across_shards() {
    let cafe = Cafe::new();
    let mut payers = vec![cafe.payer];
    payers.extend([0, 2, 3, 1, 0].map(|shard| cafe.open_payer(shard)));
    let mut disputes = Vec::new();
    for round in 0..4u64 {
        for payer in &payers {
            let op = TerminalOp::Purchase {
                payer: *payer,
                amount: 100 + round,
                currency: EUR,
                pin: None,
                extras: Extras::default(),
            };
            let paid = cafe.terminal(op, NOON_US);
            assert_eq!(paid.reason, Reason::Approved, "{paid:?}");
            let open = Command::DisputeOpen {
                hold: HoldId(paid.id),
                amount: 10,
                cause: 1,
            };
            let opened = cafe.run(open, NOON_US);
            assert_eq!(opened.reason, Reason::Approved);
            disputes.push(opened.id);
        }
    }
    disputes.sort_unstable();
    for after in std::iter::once(0).chain(disputes.iter().copied()) {
        for count_max in [1, 3, 100] {
            let expected: Vec<u64> = disputes
                .iter()
                .copied()
                .filter(|id| *id > after)
                .take(count_max)
                .collect();
            let listed: Vec<u64> = cafe
                .books
                .disputes(DisputeId(after), count_max)
                .iter()
                .map(|view| view.dispute.0)
                .collect();
            assert_eq!(listed, expected, "after {after}, {count_max}");
        }
    }
}

#[test]
fn a_dispute_against_a_partly_captured_open_hold_resolves_either_way() {
    for for_payer in [true, false] {
        let cafe = Cafe::new();
        let authorize = TerminalOp::Authorize {
            payer: cafe.payer,
            amount: 1_000,
            currency: EUR,
            pin: Some(PIN),
            lifetime_us: 0,
        };
        let hold = HoldId(cafe.terminal(authorize, NOON_US).id);
        let part = TerminalOp::Capture {
            hold,
            amount: 400,
            last: false,
            extras: Extras::default(),
        };
        assert_eq!(cafe.terminal(part, NOON_US).reason, Reason::Approved);
        assert_eq!(cafe.balance(), (9_600, 600), "the rest is still held");
        let open = Command::DisputeOpen {
            hold,
            amount: 300,
            cause: 1,
        };
        let dispute = cafe.run(open, NOON_US);
        assert_eq!(dispute.reason, Reason::Approved);
        assert_eq!(cafe.balance(), (9_900, 900), "credited, held until resolved");
        cafe.check();
        let rest = TerminalOp::Capture {
            hold,
            amount: 600,
            last: true,
            extras: Extras::default(),
        };
        assert_eq!(cafe.terminal(rest, NOON_US).reason, Reason::Approved);
        let resolve = Command::DisputeResolve {
            dispute: DisputeId(dispute.id),
            for_payer,
        };
        assert_eq!(cafe.run(resolve, NOON_US).reason, Reason::Approved);
        let expected = if for_payer { 9_300 } else { 9_000 };
        assert_eq!(cafe.balance(), (expected, 0), "for the payer: {for_payer}");
        cafe.check();
    }
}

#[test]
fn disputes_and_failed_provisioning_stop_at_the_balance_ceiling() {
    let cafe = Cafe::new();
    let ceiling = engine::books::shard::BALANCE_MINOR_MAX;
    let load = |amount| {
        cafe.run(
            Command::Load {
                account: cafe.payer,
                amount,
            },
            NOON_US,
        )
        .reason
    };
    let mut balance = cafe.balance().0;
    while balance < ceiling {
        let amount = (ceiling - balance).min(engine::limits::AMOUNT_MINOR_MAX);
        assert_eq!(load(amount), Reason::Approved);
        balance += amount;
    }
    let purchase = TerminalOp::Purchase {
        payer: cafe.payer,
        amount: 500,
        currency: EUR,
        pin: Some(PIN),
        extras: Extras::default(),
    };
    let paid = HoldId(cafe.terminal(purchase, NOON_US).id);
    assert_eq!(load(500), Reason::Approved, "back at the ceiling");
    let report = TerminalOp::ReportFailedProvisioning {
        hold: paid,
        amount: 500,
        cause: 1,
    };
    assert_eq!(cafe.terminal(report, NOON_US).reason, Reason::AmountInvalid);
    let open = Command::DisputeOpen {
        hold: paid,
        amount: 500,
        cause: 1,
    };
    assert_eq!(cafe.run(open, NOON_US).reason, Reason::AmountInvalid);
    assert_eq!(cafe.balance(), (ceiling, 0), "nothing moved");
    cafe.check();
}

#[test]
fn the_first_final_state_wins_and_late_answers_change_nothing() {
    let cafe = Cafe::new();
    let offer = cafe.offer(500);
    assert_eq!(cafe.answer(offer, false, None, NOON_US).reason, Reason::Approved);
    assert_eq!(cafe.state(offer), OfferState::Rejected);
    assert_eq!(
        cafe.answer(offer, false, None, NOON_US).reason,
        Reason::Approved,
        "a repeated reject agrees"
    );
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::OfferClosed
    );
    assert_eq!(
        cafe.terminal(TerminalOp::OfferCancel { offer }, NOON_US).reason,
        Reason::OfferClosed
    );
    assert_eq!(cafe.balance(), (10_000, 0));

    let offer = cafe.offer(500);
    assert_eq!(
        cafe.terminal(TerminalOp::OfferCancel { offer }, NOON_US).reason,
        Reason::Approved
    );
    assert_eq!(cafe.state(offer), OfferState::Cancelled);
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::OfferClosed,
        "cancel won the race"
    );

    let offer = cafe.offer(500);
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::Approved
    );
    assert_eq!(
        cafe.terminal(TerminalOp::OfferCancel { offer }, NOON_US).reason,
        Reason::OfferClosed,
        "accept won"
    );
    let again = cafe.answer(offer, true, Some(PIN), NOON_US);
    assert_eq!(
        (again.reason, again.amount),
        (Reason::Approved, 500),
        "a repeated accept agrees, once"
    );
    assert_eq!(cafe.balance(), (9_500, 0));
    cafe.check();
}

#[test]
fn an_offer_expires_at_exactly_its_expiry() {
    let cafe = Cafe::new();
    let offer = cafe.offer(700);
    let expires_us = NOON_US + OFFER_LIFETIME_DEFAULT_US;
    assert_eq!(cafe.books.advance_time(expires_us - 1, &NoJournal), 0);
    assert_eq!(cafe.state(offer), OfferState::Offered);
    assert_eq!(cafe.books.advance_time(expires_us, &NoJournal), 1);
    assert_eq!(cafe.state(offer), OfferState::Expired);
    assert_eq!(cafe.balance(), (10_000, 0));
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), expires_us).reason,
        Reason::OfferClosed
    );
    let late = cafe.offer(100);
    let answer = cafe.answer(late, true, Some(PIN), NOON_US + OFFER_LIFETIME_DEFAULT_US);
    assert_eq!(
        answer.reason,
        Reason::OfferClosed,
        "an answer after expiry finds it expired"
    );
    assert_eq!(cafe.state(late), OfferState::Expired);
    cafe.check();
}

#[test]
fn wrong_pins_count_toward_the_lockout_and_a_right_pin_then_accepts() {
    let cafe = Cafe::new();
    let offer = cafe.offer(300);
    assert_eq!(
        cafe.answer(offer, true, None, NOON_US).reason,
        Reason::PinRequired
    );
    assert_eq!(
        cafe.answer(offer, true, Some(WRONG), NOON_US).reason,
        Reason::PinIncorrect
    );
    assert_eq!(
        cafe.state(offer),
        OfferState::Offered,
        "a wrong PIN leaves the offer pending"
    );
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::Approved
    );
    let offer = cafe.offer(300);
    for _ in 0..2 {
        assert_eq!(
            cafe.answer(offer, true, Some(WRONG), NOON_US).reason,
            Reason::PinIncorrect
        );
    }
    assert_eq!(
        cafe.answer(offer, true, Some(WRONG), NOON_US).reason,
        Reason::PinLocked
    );
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::PinLocked
    );
    assert_eq!(
        cafe.answer(offer, false, None, NOON_US).reason,
        Reason::Approved,
        "rejecting needs no PIN"
    );
    cafe.check();
}

#[test]
fn offers_are_checked_like_authorizations_without_the_pin() {
    let cafe = Cafe::new();
    cafe.run(
        Command::SetLimits {
            account: cafe.payer,
            limits: Limits {
                pin_above: 0,
                ..Limits::NONE
            },
        },
        NOON_US,
    );
    let offer = |amount| TerminalOp::Offer {
        payer: cafe.payer,
        amount,
        currency: EUR,
        lifetime_us: 0,
        reference: Reference::default(),
    };
    assert_eq!(
        cafe.terminal(offer(500), NOON_US).reason,
        Reason::Approved,
        "the PIN comes with the accept"
    );
    assert_eq!(
        cafe.terminal(offer(9_501), NOON_US).reason,
        Reason::InsufficientFunds
    );
    let too_long = TerminalOp::Offer {
        payer: cafe.payer,
        amount: 1,
        currency: EUR,
        lifetime_us: engine::limits::OFFER_LIFETIME_MAX_US + 1,
        reference: Reference::default(),
    };
    assert_eq!(cafe.terminal(too_long, NOON_US).reason, Reason::InvalidRequest);
    let longest = TerminalOp::Offer {
        payer: cafe.payer,
        amount: 1,
        currency: EUR,
        lifetime_us: engine::limits::OFFER_LIFETIME_MAX_US,
        reference: Reference::default(),
    };
    let offer = cafe.terminal(longest, NOON_US);
    assert_eq!(offer.reason, Reason::Approved, "the longest lifetime is allowed");
    let expires_us = NOON_US + engine::limits::OFFER_LIFETIME_MAX_US;
    // (The test's earlier offers, with the default lifetime, expire long before.)
    cafe.books.advance_time(expires_us - 1, &NoJournal);
    assert_eq!(cafe.state(HoldId(offer.id)), OfferState::Offered);
    assert_eq!(cafe.books.advance_time(expires_us, &NoJournal), 1);
    assert_eq!(cafe.state(HoldId(offer.id)), OfferState::Expired);
}

#[test]
fn a_gateway_answers_for_any_payer_and_another_payer_cannot() {
    let cafe = Cafe::new();
    let offer = cafe.offer(200);
    let open = Command::OpenAccount {
        shard: 1,
        currency: EUR,
        mobile: None,
        limits: Limits::NONE,
    };
    let stranger = AccountId(cafe.run(open, NOON_US).id);
    let stolen = cafe.run(
        Command::OfferAnswer {
            offer,
            payer: Some(stranger),
            accept: false,
            pin: None,
        },
        NOON_US,
    );
    assert_eq!(stolen.reason, Reason::HoldUnknown);
    assert_eq!(
        cafe.books.pending_offers(None, HoldId(0), NOON_US, 16).len(),
        1,
        "a gateway sees every payer's"
    );
    let relayed = cafe.run(
        Command::OfferAnswer {
            offer,
            payer: None,
            accept: true,
            pin: Some(PIN),
        },
        NOON_US,
    );
    assert_eq!(relayed.reason, Reason::Approved);
    assert_eq!(cafe.state(offer), OfferState::Accepted);
}

#[test]
fn failed_provisioning_refunds_the_payer_at_once_and_records_why() {
    let cafe = Cafe::new();
    let sale = cafe.sale(1_000);
    let report = cafe.terminal(
        TerminalOp::ReportFailedProvisioning {
            hold: sale,
            amount: 400,
            cause: 1,
        },
        NOON_US,
    );
    assert_eq!((report.reason, report.amount), (Reason::Approved, 400));
    assert_eq!(cafe.balance(), (9_400, 0));
    let disputes = cafe.books.disputes(DisputeId(0), 16);
    assert_eq!(disputes.len(), 1);
    assert_eq!(
        (disputes[0].hold, disputes[0].state, disputes[0].cause),
        (sale, DisputeState::ResolvedForPayer, 1)
    );
    let beyond = cafe.terminal(
        TerminalOp::ReportFailedProvisioning {
            hold: sale,
            amount: 601,
            cause: 1,
        },
        NOON_US,
    );
    assert_eq!(beyond.reason, Reason::AmountAboveOriginal);
    cafe.check();
}

#[test]
fn an_operator_dispute_credits_provisionally_and_resolves_either_way() {
    let cafe = Cafe::new();
    let sale = cafe.sale(1_000);
    let merchant_before = cafe.books.ledger_balance(AccountId::settlement(cafe.merchant));
    let open = cafe.run(
        Command::DisputeOpen {
            hold: sale,
            amount: 600,
            cause: 2,
        },
        NOON_US,
    );
    assert_eq!(open.reason, Reason::Approved);
    assert_eq!(cafe.balance(), (9_600, 600), "credited but held until resolved");
    let second = cafe.run(
        Command::DisputeOpen {
            hold: sale,
            amount: 100,
            cause: 2,
        },
        NOON_US,
    );
    assert_eq!(
        second.reason,
        Reason::InvalidRequest,
        "one open dispute per capture"
    );
    cafe.check();
    let for_merchant = cafe.run(
        Command::DisputeResolve {
            dispute: DisputeId(open.id),
            for_payer: false,
        },
        NOON_US,
    );
    assert_eq!(for_merchant.reason, Reason::Approved);
    assert_eq!(cafe.balance(), (9_000, 0));
    assert_eq!(
        cafe.books.ledger_balance(AccountId::settlement(cafe.merchant)),
        merchant_before
    );
    let twice = cafe.run(
        Command::DisputeResolve {
            dispute: DisputeId(open.id),
            for_payer: true,
        },
        NOON_US,
    );
    assert_eq!(
        twice.reason,
        Reason::DisputeUnknown,
        "a resolved dispute stays resolved"
    );
    let open = cafe.run(
        Command::DisputeOpen {
            hold: sale,
            amount: 1_000,
            cause: 4,
        },
        NOON_US,
    );
    assert_eq!(
        open.reason,
        Reason::Approved,
        "the whole capture is disputable again"
    );
    let for_payer = cafe.run(
        Command::DisputeResolve {
            dispute: DisputeId(open.id),
            for_payer: true,
        },
        NOON_US,
    );
    assert_eq!(for_payer.reason, Reason::Approved);
    assert_eq!(cafe.balance(), (10_000, 0));
    let beyond = cafe.run(
        Command::DisputeOpen {
            hold: sale,
            amount: 1,
            cause: 4,
        },
        NOON_US,
    );
    assert_eq!(
        beyond.reason,
        Reason::AmountAboveOriginal,
        "nothing left to dispute"
    );
    let unknown = cafe.run(
        Command::DisputeResolve {
            dispute: DisputeId(99 << 2),
            for_payer: true,
        },
        NOON_US,
    );
    assert_eq!(unknown.reason, Reason::DisputeUnknown);
    cafe.check();
}

#[test]
fn offers_and_disputes_survive_a_snapshot_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || StoreConfig {
        books: BooksConfig {
            shards: 4,
            ..BooksConfig::default()
        },
        wal: WalConfig::new(dir.path()),
        read: ReadOptions::default(),
    };
    let (store, _) = Store::open(config()).expect("open");
    let run = |command: Command| store.execute(&command, NOON_US).outcome;
    let merchant = MerchantId(
        run(Command::RegisterMerchant {
            fee_bps: 100,
            fee_bps_with_details: 50,
            origin: engine::Reference::default(),
        })
        .id as u32,
    );
    let terminal = TerminalId(
        run(Command::RegisterTerminal {
            merchant,
            secret: [3; 32],
        })
        .id as u32,
    );
    let payer = AccountId(
        run(Command::OpenAccount {
            shard: 2,
            currency: EUR,
            mobile: None,
            limits: Limits::NONE,
        })
        .id,
    );
    run(Command::Load {
        account: payer,
        amount: 5_000,
    });
    let origin = |request_id| Origin {
        merchant,
        key: RequestKey { terminal, request_id },
    };
    let offer_op = TerminalOp::Offer {
        payer,
        amount: 800,
        currency: EUR,
        lifetime_us: 0,
        reference: Reference::new("tea").expect("short"),
    };
    let pending = HoldId(
        run(Command::Terminal {
            origin: origin(1),
            op: offer_op,
        })
        .id,
    );
    let pay = TerminalOp::Purchase {
        payer,
        amount: 900,
        currency: EUR,
        pin: None,
        extras: Extras::default(),
    };
    let sale = HoldId(
        run(Command::Terminal {
            origin: origin(2),
            op: pay,
        })
        .id,
    );
    run(Command::DisputeOpen {
        hold: sale,
        amount: 300,
        cause: 1,
    });
    store.snapshot().expect("snapshot");
    let offer2 = HoldId(
        run(Command::Terminal {
            origin: origin(3),
            op: offer_op,
        })
        .id,
    );
    let digest = store.books().digest();
    store.wal().wait_durable(store.wal().last_lsn()).expect("durable");
    store.close().expect("close");
    drop(store);
    let (store, _) = Store::open(config()).expect("reopen");
    assert_eq!(store.books().digest(), digest);
    assert_eq!(
        store
            .books()
            .offer(pending)
            .map(|view| (view.state, view.reference.as_str().to_string())),
        Some((OfferState::Offered, "tea".to_string()))
    );
    assert_eq!(
        store.books().offer(offer2).map(|view| view.state),
        Some(OfferState::Offered)
    );
    assert_eq!(
        store.books().disputes(DisputeId(0), 8)[0].state,
        DisputeState::Open
    );
    store
        .books()
        .check_invariants()
        .expect("invariants after restart");
}

#[test]
fn a_shard_records_disputes_up_to_its_cap_then_declines_changing_nothing() {
    // Disputes are kept for the record and never pruned, so a shard takes
    // DISPUTES_PER_SHARD_MAX of them. Failed-provisioning reports of 1 on one big purchase
    // fill the payer's shard.
    let cafe = Cafe::new();
    let cap = engine::limits::DISPUTES_PER_SHARD_MAX as u64;
    cafe.run(
        Command::Load {
            account: cafe.payer,
            amount: 2 * cap,
        },
        NOON_US,
    );
    let sale = cafe.sale(cap + 1);
    let report = TerminalOp::ReportFailedProvisioning {
        hold: sale,
        amount: 1,
        cause: 1,
    };
    for _ in 0..cap {
        assert_eq!(cafe.terminal(report, NOON_US).reason, Reason::Approved);
    }
    let before = cafe.balance();
    let beyond = cafe.terminal(report, NOON_US);
    assert_eq!(beyond.reason, Reason::CapacityExceeded);
    assert_eq!(cafe.balance(), before, "the declined report refunds nothing");
    cafe.check();
}

#[test]
fn an_offer_is_accepted_only_while_payer_and_merchant_are_active() {
    let cafe = Cafe::new();
    let offer = cafe.offer(500);
    let set_payer = |status| {
        cafe.run(
            Command::SetAccountStatus {
                account: cafe.payer,
                status,
            },
            NOON_US,
        )
    };
    let set_merchant = |status| {
        cafe.run(
            Command::SetMerchantStatus {
                merchant: cafe.merchant,
                status,
            },
            NOON_US,
        )
    };
    assert_eq!(set_payer(engine::Status::Frozen).reason, Reason::Approved);
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::AccountFrozen
    );
    assert_eq!(set_payer(engine::Status::Active).reason, Reason::Approved);
    assert_eq!(set_merchant(engine::Status::Frozen).reason, Reason::Approved);
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::MerchantInvalid
    );
    assert_eq!(set_merchant(engine::Status::Active).reason, Reason::Approved);
    assert_eq!(cafe.state(offer), OfferState::Offered, "still pending");
    assert_eq!(
        cafe.answer(offer, true, Some(PIN), NOON_US).reason,
        Reason::Approved
    );
    assert_eq!(cafe.balance(), (9_500, 0));
    cafe.check();
}
