//! The flows of the seed documents over TCP (issue 7): a merchant's offer presented to the
//! payer's phone at once, answered with the PIN, the outcome pushed to the terminal; reject,
//! cancel, expiry, PIN lockout, accept racing cancel, a crash between offer and accept, a
//! reconnecting terminal, a gateway relaying for two payers, and disputes.

use std::time::{Duration, Instant};

use authd_tests::{balances, device, payer, Authd};
use wire::client::{Client, Incoming};
use wire::messages::device::{AcceptOffer, ListOffers, RejectOffer};
use wire::messages::operator::{
    DisputeList, DisputeOpen, DisputeResolve, RegisterDevice, RegisterMerchant, RegisterTerminal, SetPin,
};
use wire::messages::terminal::{Offer, OfferCancel, OfferStatus, Purchase, ReportFailedProvisioning};
use wire::types::{
    AccountNumber, DisputeCause, DisputeId, DisputeOutcome, DisputeState, HoldId, MerchantId, OfferId,
    OfferState, PayerRef, Role, ShortText,
};
use wire::{PinBlock, Push, Reply, Request};

const FEE: u64 = 2;

struct World {
    authd: Authd,
    operator: Client,
    merchant: u32,
    settlement: u64,
    terminal: (u32, [u8; 32]),
}

fn pin(digits: &str) -> PinBlock {
    PinBlock::from_digits(digits).expect("valid PIN")
}

impl World {
    fn start_in(dir: Option<&std::path::Path>) -> World {
        World::start_with(dir, &[])
    }

    fn start_with(dir: Option<&std::path::Path>, flags: &[&str]) -> World {
        let authd = match dir {
            Some(dir) => Authd::start_in(dir, flags),
            None => Authd::start(flags),
        };
        let mut operator = authd.operator();
        let register = RegisterMerchant {
            fee_bps: 200,
            fee_bps_with_product: 100,
            origin: ShortText::new("CAFE42").expect("short"),
        };
        let Reply::RegisterMerchant(merchant) =
            operator.call(&Request::RegisterMerchant(register)).expect("call")
        else {
            panic!("reply")
        };
        assert_eq!(merchant.code, 0);
        let request = Request::RegisterTerminal(RegisterTerminal {
            merchant_id: merchant.merchant_id,
        });
        let Reply::RegisterTerminal(terminal) = operator.call(&request).expect("call") else {
            panic!("reply")
        };
        World {
            authd,
            operator,
            merchant: merchant.merchant_id.0,
            settlement: merchant.settlement_account.0,
            terminal: (terminal.terminal_id.0, terminal.secret),
        }
    }

    /// A payer with a mobile number, a balance, PIN 1234 and a logged-on device.
    fn payer_with_phone(&mut self, mobile: u64) -> (u64, Client) {
        let account = payer(&mut self.operator, mobile, 10_000);
        let set = Request::SetPin(SetPin {
            account: AccountNumber(account),
            pin: pin("1234"),
        });
        assert!(matches!(self.operator.call(&set), Ok(Reply::SetPin(reply)) if reply.code == 0));
        let (id, secret) = device(&mut self.operator, account);
        (account, self.authd.client(Role::PayerDevice, id, secret))
    }

    fn till(&self) -> Client {
        self.authd
            .client(Role::Terminal, self.terminal.0, self.terminal.1)
    }
}

fn offer(till: &mut Client, mobile: u64, amount: u64, expires_in_s: u32) -> u64 {
    let request = Request::Offer(Offer {
        payer: PayerRef::Mobile(mobile),
        amount_minor: amount,
        currency: 978,
        expires_in_s,
        reference: ShortText::new("2 coffees").expect("short"),
    });
    let Reply::Offer(reply) = till.call(&request).expect("offer") else {
        panic!("reply type")
    };
    assert_eq!(reply.code, 0, "offer approved");
    reply.offer_id.0
}

/// The next push on `client`, within 10 s.
fn next_push(client: &mut Client) -> Push {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    loop {
        match client.recv().expect("a push arrives") {
            Incoming::Push(push) => return push,
            Incoming::Reply { .. } => continue,
        }
    }
}

fn accept(phone: &mut Client, offer: u64, digits: &str) -> (u8, u8) {
    let request = Request::AcceptOffer(AcceptOffer {
        offer_id: OfferId(offer),
        pin: pin(digits),
    });
    let Reply::AcceptOffer(reply) = phone.call(&request).expect("accept") else {
        panic!("reply type")
    };
    (reply.code, reply.reason)
}

/// A device's LIST_OFFERS page after offer id `after`.
fn list_offers(phone: &mut Client, after: u64) -> wire::messages::reply::OfferListReply {
    let request = Request::ListOffers(ListOffers {
        after_offer_id: OfferId(after),
    });
    let Reply::ListOffers(page) = phone.call(&request).expect("list") else {
        panic!("reply type")
    };
    page
}

fn status(till: &mut Client, offer: u64) -> OfferState {
    let Reply::OfferStatus(reply) = till
        .call(&Request::OfferStatus(OfferStatus {
            offer_id: OfferId(offer),
        }))
        .expect("status")
    else {
        panic!("reply type")
    };
    reply.state
}

#[test]
fn an_offer_is_presented_at_once_accepted_with_the_pin_and_the_outcome_pushed() {
    let mut world = World::start_in(None);
    let (account, mut phone) = world.payer_with_phone(33_611_000_001);
    let mut till = world.till();
    let offer_id = offer(&mut till, 33_611_000_001, 1_000, 120);
    let Push::OfferPresented(shown) = next_push(&mut phone) else {
        panic!("offer presented")
    };
    assert_eq!(
        (shown.offer_id.0, shown.amount_minor, shown.merchant_id.0),
        (offer_id, 1_000, world.merchant)
    );
    assert_eq!(
        (shown.origin.as_str(), shown.reference.as_str()),
        ("CAFE42", "2 coffees")
    );
    assert_eq!(accept(&mut phone, offer_id, "1234"), (0, 0));
    let Push::OfferOutcome(outcome) = next_push(&mut till) else {
        panic!("offer outcome")
    };
    assert_eq!(
        (outcome.offer_id.0, outcome.state, outcome.amount_minor),
        (offer_id, OfferState::Accepted, 1_000)
    );
    assert_eq!(balances(&mut world.operator, account), (9_000, 0, 9_000));
    assert_eq!(balances(&mut world.operator, world.settlement).0, 980);
    assert_eq!(balances(&mut world.operator, FEE).0, 20);
    assert_eq!(
        accept(&mut phone, offer_id, "1234"),
        (0, 0),
        "a repeated accept agrees, with no second effect"
    );
    assert_eq!(balances(&mut world.operator, account).0, 9_000);
}

#[test]
fn reject_cancel_and_late_answers_keep_the_first_final_state() {
    let mut world = World::start_in(None);
    let (account, mut phone) = world.payer_with_phone(33_611_000_002);
    let mut till = world.till();
    let rejected = offer(&mut till, 33_611_000_002, 500, 120);
    let request = Request::RejectOffer(RejectOffer {
        offer_id: OfferId(rejected),
    });
    assert!(matches!(phone.call(&request), Ok(Reply::RejectOffer(reply)) if reply.code == 0));
    let Push::OfferOutcome(outcome) = next_push(&mut till) else {
        panic!("outcome")
    };
    assert_eq!(outcome.state, OfferState::Rejected);
    assert_eq!(
        accept(&mut phone, rejected, "1234"),
        (12, 25),
        "too late: OfferClosed"
    );

    let cancelled = offer(&mut till, 33_611_000_002, 500, 120);
    let request = Request::OfferCancel(OfferCancel {
        offer_id: OfferId(cancelled),
    });
    assert!(matches!(till.call(&request), Ok(Reply::OfferCancel(reply)) if reply.code == 0));
    assert_eq!(accept(&mut phone, cancelled, "1234"), (12, 25));
    assert_eq!(status(&mut till, cancelled), OfferState::Cancelled);
    assert_eq!(balances(&mut world.operator, account), (10_000, 0, 10_000));
}

#[test]
fn an_unanswered_offer_expires_and_releases_the_funds() {
    let mut world = World::start_in(None);
    let (account, _phone) = world.payer_with_phone(33_611_000_003);
    let mut till = world.till();
    let offer_id = offer(&mut till, 33_611_000_003, 700, 1);
    assert_eq!(
        balances(&mut world.operator, account).1,
        700,
        "held while offered"
    );
    let Push::OfferOutcome(outcome) = next_push(&mut till) else {
        panic!("outcome")
    };
    assert_eq!(
        (outcome.offer_id.0, outcome.state),
        (offer_id, OfferState::Expired),
        "the ticker expired it"
    );
    assert_eq!(balances(&mut world.operator, account), (10_000, 0, 10_000));
}

#[test]
fn wrong_pins_count_and_lock_then_the_right_pin_is_refused() {
    let mut world = World::start_in(None);
    let (_account, mut phone) = world.payer_with_phone(33_611_000_004);
    let mut till = world.till();
    let first = offer(&mut till, 33_611_000_004, 100, 120);
    assert_eq!(accept(&mut phone, first, "9999"), (55, 12), "wrong PIN");
    assert_eq!(
        accept(&mut phone, first, "1234"),
        (0, 0),
        "then right: accepted, the count resets"
    );
    let second = offer(&mut till, 33_611_000_004, 100, 120);
    assert_eq!(accept(&mut phone, second, "9999"), (55, 12));
    assert_eq!(accept(&mut phone, second, "9999"), (55, 12));
    assert_eq!(
        accept(&mut phone, second, "9999"),
        (75, 13),
        "the third wrong PIN locks"
    );
    assert_eq!(accept(&mut phone, second, "1234"), (75, 13));
    assert_eq!(status(&mut till, second), OfferState::Offered);
}

#[test]
fn accept_and_cancel_racing_have_exactly_one_winner() {
    let mut world = World::start_in(None);
    let (account, mut phone) = world.payer_with_phone(33_611_000_005);
    let mut till = world.till();
    for round in 0..10 {
        let offer_id = offer(&mut till, 33_611_000_005, 10, 120);
        let cancel = std::thread::scope(|scope| {
            let canceller = scope.spawn(|| {
                let request = Request::OfferCancel(OfferCancel {
                    offer_id: OfferId(offer_id),
                });
                matches!(till.call(&request), Ok(Reply::OfferCancel(reply)) if reply.code == 0)
            });
            let accepted = accept(&mut phone, offer_id, "1234").0 == 0;
            let cancelled = canceller.join().expect("canceller");
            (accepted, cancelled)
        });
        assert!(
            cancel.0 ^ cancel.1,
            "round {round}: exactly one of accept and cancel wins: {cancel:?}"
        );
    }
    let (balance, held, _) = balances(&mut world.operator, account);
    assert_eq!(held, 0);
    let accepted = (10_000 - balance) / 10;
    assert!(accepted <= 10, "at most one debit per round");
}

#[test]
fn an_offer_survives_a_crash_and_a_reconnecting_terminal_learns_the_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut world = World::start_in(Some(dir.path()));
    let (account, phone) = world.payer_with_phone(33_611_000_006);
    drop(phone);
    let mut till = world.till();
    let offer_id = offer(&mut till, 33_611_000_006, 300, 600);
    let terminal = world.terminal;
    let World { authd, operator, .. } = world;
    drop((till, operator));
    authd.kill();
    let authd = Authd::start_in(dir.path(), &[]);
    let mut operator = authd.operator();
    let (device_id, secret) = device(&mut operator, account);
    let mut phone = authd.client(Role::PayerDevice, device_id, secret);
    let pending = list_offers(&mut phone, 0);
    assert_eq!(
        pending
            .offers
            .as_slice()
            .iter()
            .map(|offer| offer.offer_id.0)
            .collect::<Vec<_>>(),
        vec![offer_id]
    );
    assert_eq!(accept(&mut phone, offer_id, "1234"), (0, 0));
    let mut till = authd.client(Role::Terminal, terminal.0, terminal.1);
    assert_eq!(
        status(&mut till, offer_id),
        OfferState::Accepted,
        "the reconnected terminal asks and learns"
    );
    assert_eq!(balances(&mut operator, account), (9_700, 0, 9_700));
}

#[test]
fn a_gateway_relays_offers_for_two_payers() {
    let mut world = World::start_in(None);
    let (first, _) = world.payer_with_phone(33_611_000_007);
    let (second, _) = world.payer_with_phone(33_611_000_008);
    let request = Request::RegisterDevice(RegisterDevice {
        account: AccountNumber(0),
    });
    let Reply::RegisterDevice(gateway) = world.operator.call(&request).expect("register gateway") else {
        panic!("reply")
    };
    assert_eq!(gateway.code, 0);
    let mut relay = world
        .authd
        .client(Role::PayerDevice, gateway.device_id.0, gateway.secret);
    let mut till = world.till();
    let one = offer(&mut till, 33_611_000_007, 100, 120);
    let two = offer(&mut till, 33_611_000_008, 200, 120);
    let mut presented = Vec::new();
    while presented.len() < 2 {
        if let Push::OfferPresented(shown) = next_push(&mut relay) {
            presented.push(shown.offer_id.0);
        }
    }
    presented.sort_unstable();
    assert_eq!(presented, vec![one, two]);
    assert_eq!(accept(&mut relay, one, "1234"), (0, 0));
    assert_eq!(accept(&mut relay, two, "1234"), (0, 0));
    assert_eq!(balances(&mut world.operator, first).0, 9_900);
    assert_eq!(balances(&mut world.operator, second).0, 9_800);
}

#[test]
fn disputes_refund_failed_goods_and_resolve_either_way() {
    let mut world = World::start_in(None);
    let account = payer(&mut world.operator, 33_611_000_009, 10_000);
    let mut till = world.till();
    let purchase = |till: &mut Client, amount| {
        let request = Request::Purchase(Purchase {
            payer: PayerRef::Account(AccountNumber(account)),
            amount_minor: amount,
            currency: 978,
            pin: None,
            loyalty_points: 0,
            product: None,
        });
        let Reply::Purchase(reply) = till.call(&request).expect("purchase") else {
            panic!("reply")
        };
        reply.hold_id
    };
    let game = purchase(&mut till, 1_000);
    let report = Request::ReportFailedProvisioning(ReportFailedProvisioning {
        hold_id: game,
        amount_minor: 1_000,
        cause: DisputeCause::NotDelivered,
    });
    assert!(matches!(till.call(&report), Ok(Reply::ReportFailedProvisioning(reply)) if reply.code == 0));
    assert_eq!(
        balances(&mut world.operator, account).0,
        10_000,
        "refunded at once"
    );

    let song = purchase(&mut till, 500);
    let open = |operator: &mut Client, hold: HoldId| {
        let request = Request::DisputeOpen(DisputeOpen {
            hold_id: hold,
            amount_minor: 500,
            cause: DisputeCause::Defective,
        });
        let Reply::DisputeOpen(reply) = operator.call(&request).expect("open") else {
            panic!("reply")
        };
        assert_eq!(reply.code, 0);
        reply.dispute_id
    };
    let resolve = |operator: &mut Client, dispute: DisputeId, outcome| {
        let request = Request::DisputeResolve(DisputeResolve {
            dispute_id: dispute,
            outcome,
        });
        matches!(operator.call(&request), Ok(Reply::DisputeResolve(reply)) if reply.code == 0)
    };
    let dispute = open(&mut world.operator, song);
    assert_eq!(
        balances(&mut world.operator, account),
        (10_000, 500, 9_500),
        "provisional credit, held"
    );
    assert!(resolve(&mut world.operator, dispute, DisputeOutcome::ForMerchant));
    assert_eq!(
        balances(&mut world.operator, account),
        (9_500, 0, 9_500),
        "moved back to the merchant"
    );
    let dispute = open(&mut world.operator, song);
    assert!(resolve(&mut world.operator, dispute, DisputeOutcome::ForPayer));
    assert_eq!(
        balances(&mut world.operator, account),
        (10_000, 0, 10_000),
        "final for the payer"
    );
    let Reply::DisputeList(list) = world
        .operator
        .call(&Request::DisputeList(DisputeList {
            after_dispute_id: DisputeId(0),
        }))
        .expect("list")
    else {
        panic!("reply")
    };
    let states: Vec<DisputeState> = list
        .disputes
        .as_slice()
        .iter()
        .map(|dispute| dispute.state)
        .collect();
    assert_eq!(states.len(), 3);
    assert_eq!(
        states
            .iter()
            .filter(|state| **state == DisputeState::ResolvedForPayer)
            .count(),
        2
    );
    let fees = (1_000 + 500) * 2 / 100;
    assert_eq!(
        balances(&mut world.operator, world.settlement).0,
        -fees,
        "the merchant refunded both in full; the fees it paid are not returned"
    );
    let _ = MerchantId(world.merchant);
}

#[test]
fn offers_wait_for_their_deadline_and_never_hang() {
    let started = Instant::now();
    let mut world = World::start_in(None);
    let (_account, mut phone) = world.payer_with_phone(33_611_000_010);
    let mut till = world.till();
    let offer_id = offer(&mut till, 33_611_000_010, 1, 120);
    let after = list_offers(&mut phone, offer_id);
    assert!(
        after.offers.as_slice().is_empty(),
        "paging: nothing after the last id"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_device_that_stops_reading_its_pushes_is_closed_and_lists_its_offers_on_return() {
    // The limit: 64 KiB plus 1 KiB per request in flight, 80 KiB here.
    let flags = [
        "--write-bytes-max",
        "65536",
        "--in-flight-max",
        "16",
        "--fsync",
        "never",
    ];
    let mut world = World::start_with(None, &flags);
    let mobile = 33_611_000_077;
    let account = payer(&mut world.operator, mobile, 1_000_000);
    let (device_id, secret) = device(&mut world.operator, account);
    // Logged on, then never read: its pushes fill the kernel's buffers, then authd's.
    let mut phone = world.authd.client(Role::PayerDevice, device_id, secret);
    let mut till = world.till();
    let mut offers = 0;
    while !world.authd.stderr().contains("event=push_overflow") {
        assert!(
            offers < 200_000,
            "{offers} offers and the silent device is still served"
        );
        for _ in 0..500 {
            offer(&mut till, mobile, 1, 600);
        }
        offers += 500;
    }
    // The till is unaffected, and the device's connection was closed: reading it now gives
    // the pushes that made it out, then the end of the stream (not a timeout).
    offer(&mut till, mobile, 1, 600);
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut presented = 0;
    let end = loop {
        match phone.recv() {
            Ok(Incoming::Push(Push::OfferPresented(_))) => presented += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => break error,
        }
    };
    assert!(matches!(end, wire::client::ClientError::Closed), "{end}");
    assert!(
        presented > 0 && presented < offers,
        "{presented} of {offers} presented"
    );
    // Back on line, the device lists what it missed.
    let mut phone = world.authd.client(Role::PayerDevice, device_id, secret);
    let pending = list_offers(&mut phone, 0);
    assert!(
        !pending.offers.as_slice().is_empty() && pending.more,
        "{pending:?}"
    );
}
