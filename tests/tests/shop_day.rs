//! A whole day of a shop over TCP against the real authd (issue 5): provision, authorize,
//! capture partially, void, purchase, refund, reversal of a timed-out purchase, balance
//! checks; every reply checked, the books checked at the end.

use authd_tests::{balances, payer, shop, Authd};
use wire::messages::terminal::{Authorize, BalanceCheck, Capture, Purchase, Refund, Reversal, Void};
use wire::types::{AccountNumber, HoldId, PayerRef, ProductDetails, Role};
use wire::{Reply, Request};

const FUNDING: u64 = 1;
const FEE: u64 = 2;

fn hold_of(reply: &Reply) -> (u8, u64, u64) {
    match reply {
        Reply::Authorize(body)
        | Reply::Capture(body)
        | Reply::Void(body)
        | Reply::Purchase(body)
        | Reply::Refund(body) => (body.code, body.hold_id.0, body.amount_minor),
        other => panic!("not a hold reply: {other:?}"),
    }
}

#[test]
fn a_whole_day_of_a_shop() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 200, 100);
    let alice = payer(&mut operator, 33_612_345_678, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let alice_ref = PayerRef::Account(AccountNumber(alice));

    // Morning: a fuel pump reserves 30.00, takes 10.00, then 5.00 finally.
    let authorize = Authorize {
        payer: alice_ref,
        amount_minor: 3_000,
        currency: 978,
        hold_lifetime_s: 0,
        pin: None,
    };
    let (code, pump, amount) = hold_of(&till.call(&Request::Authorize(authorize)).expect("authorize"));
    assert_eq!((code, amount), (0, 3_000));
    let capture = |amount, last| Capture {
        hold_id: HoldId(pump),
        amount_minor: amount,
        final_capture: last,
        loyalty_points: 3,
        product: Some(ProductDetails {
            product_code: 42,
            quantity: 1,
        }),
    };
    assert_eq!(
        hold_of(
            &till
                .call(&Request::Capture(capture(1_000, false)))
                .expect("capture")
        ),
        (0, pump, 1_000)
    );
    assert_eq!(
        hold_of(&till.call(&Request::Capture(capture(500, true))).expect("capture")),
        (0, pump, 500)
    );
    let (code, _, _) = hold_of(
        &till
            .call(&Request::Capture(capture(1, false)))
            .expect("capture after final"),
    );
    assert_eq!(code, 12, "the final capture released the rest");

    // A reservation the customer walks away from.
    let authorize = Authorize {
        payer: alice_ref,
        amount_minor: 700,
        currency: 978,
        hold_lifetime_s: 60,
        pin: None,
    };
    let (_, abandoned, _) = hold_of(&till.call(&Request::Authorize(authorize)).expect("authorize"));
    let (code, _, released) = hold_of(
        &till
            .call(&Request::Void(Void {
                hold_id: HoldId(abandoned),
            }))
            .expect("void"),
    );
    assert_eq!((code, released), (0, 700));

    // Noon: a coffee by mobile number, then half of it refunded.
    let coffee = Purchase {
        payer: PayerRef::Mobile(33_612_345_678),
        amount_minor: 250,
        currency: 978,
        pin: None,
        loyalty_points: 0,
        product: None,
    };
    let (code, sale, _) = hold_of(&till.call(&Request::Purchase(coffee)).expect("purchase"));
    assert_eq!(code, 0);
    let refund = Refund {
        hold_id: HoldId(sale),
        amount_minor: 125,
    };
    assert_eq!(
        hold_of(&till.call(&Request::Refund(refund)).expect("refund")).0,
        0
    );
    let too_much = Refund {
        hold_id: HoldId(sale),
        amount_minor: 126,
    };
    assert_eq!(
        hold_of(&till.call(&Request::Refund(too_much)).expect("refund")).0,
        64
    );

    // Afternoon: a purchase times out at the terminal; it reverses, then the original arrives late.
    let late_id = 9_000_000;
    let reversal = Reversal {
        payer: alice_ref,
        original_request_id: late_id,
    };
    let Reply::Reversal(reversed) = till.call(&Request::Reversal(reversal)).expect("reversal") else {
        panic!("reply type")
    };
    assert_eq!(reversed.code, 0);
    let late = Purchase {
        payer: alice_ref,
        amount_minor: 999,
        currency: 978,
        pin: None,
        loyalty_points: 0,
        product: None,
    };
    till.send_with_id(late_id, &Request::Purchase(late))
        .expect("send late original");
    let (code, _, _) = hold_of(&till.wait_for(late_id).expect("late original"));
    assert_eq!(code, 5, "the late original is declined after its reversal");

    // Evening: balance checks never reveal the balance.
    let check = |amount| {
        Request::BalanceCheck(BalanceCheck {
            payer: alice_ref,
            amount_minor: amount,
            currency: 978,
        })
    };
    let Reply::BalanceCheck(enough) = till.call(&check(8_000)).expect("check") else {
        panic!("reply type")
    };
    assert_eq!(enough.code, 0);
    let Reply::BalanceCheck(short) = till.call(&check(9_000)).expect("check") else {
        panic!("reply type")
    };
    assert_eq!(short.code, 51);

    // The books: alice paid 15.00 + 2.50 - 1.25; the shop got that less its fees.
    assert_eq!(
        balances(&mut operator, alice),
        (10_000 - 1_500 - 250 + 125, 0, 8_375)
    );
    let fees = 1_000 / 100 + 500 / 100 + 250 * 2 / 100;
    assert_eq!(
        balances(&mut operator, shop.settlement).0,
        1_500 + 250 - 125 - fees as i64
    );
    assert_eq!(balances(&mut operator, FEE).0, fees as i64);
    assert_eq!(balances(&mut operator, FUNDING).0, -10_000);
    drop(till);
    drop(operator);
    assert!(authd.terminate().success(), "SIGTERM stops authd with status 0");
}
