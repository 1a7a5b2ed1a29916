//! Roles (issue 5, "Proof"): a terminal acts only for its merchant, a payer device only for its
//! payer, operator requests only from the operator; a wrong secret cannot log on, and failed
//! log-ons are rate limited per peer address.

mod support;

use authd_tests::{balances, device, payer, shop, Authd};
use support::{authorize, hello, hold_of, purchase, Raw};
use wire::client::{Client, ClientError};
use wire::logon::{logon_mac, Proof};
use wire::messages::device::OwnBalance;
use wire::messages::operator::{AccountInfo, LoadFunds, OpenAccount, RegisterTerminal, SetStatus};
use wire::messages::terminal::{Capture, Increment, Refund, Void};
use wire::types::{AccountKind, AccountNumber, AccountStatus, HoldId, Limits, MerchantId, Role};
use wire::{Logon, Message, Reply, Request};

const FUNDING: u64 = 1;

/// ISO 8583 code and authd reason of "the hold does not exist for this merchant".
const HOLD_UNKNOWN: (u8, u8) = (25, 15);
/// ISO 8583 code and authd reason of "the caller's role may not do this".
const NOT_PERMITTED: (u8, u8) = (57, 24);
const LOGONS_LIMITED: (u8, u8) = (75, 27);

fn load(account: u64, amount_minor: u64) -> Request {
    Request::LoadFunds(LoadFunds {
        account: AccountNumber(account),
        amount_minor,
    })
}

#[test]
fn a_terminal_of_merchant_a_cannot_touch_a_hold_of_merchant_b() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let (shop_a, shop_b) = (shop(&mut operator, 0, 0), shop(&mut operator, 0, 0));
    let alice = payer(&mut operator, 0, 10_000);
    let mut till_a = authd.client(Role::Terminal, shop_a.terminal, shop_a.secret);
    let mut till_b = authd.client(Role::Terminal, shop_b.terminal, shop_b.secret);
    let (code, hold, _) = hold_of(&till_b.call(&authorize(alice, 3_000)).expect("authorize"));
    assert_eq!(code, 0);
    let (code, sale, _) = hold_of(&till_b.call(&purchase(alice, 500)).expect("purchase"));
    assert_eq!(code, 0);
    let before =
        [alice, shop_a.settlement, shop_b.settlement].map(|account| balances(&mut operator, account));

    let foreign = [
        Request::Capture(Capture {
            hold_id: HoldId(hold),
            amount_minor: 1_000,
            final_capture: true,
            loyalty_points: 0,
            product: None,
        }),
        Request::Void(Void {
            hold_id: HoldId(hold),
        }),
        Request::Increment(Increment {
            hold_id: HoldId(hold),
            amount_minor: 100,
        }),
        Request::Refund(Refund {
            hold_id: HoldId(sale),
            amount_minor: 500,
        }),
    ];
    for request in &foreign {
        let reply = till_a.call(request).expect("foreign request");
        assert_eq!(
            reply.outcome(),
            HOLD_UNKNOWN,
            "merchant A's terminal on merchant B's hold: {request:?}"
        );
        assert_eq!(hold_of(&reply), (HOLD_UNKNOWN.0, 0, 0), "nothing else is told");
    }
    let after = [alice, shop_a.settlement, shop_b.settlement].map(|account| balances(&mut operator, account));
    assert_eq!(after, before, "nothing moved");

    // The hold is still B's to capture.
    let capture = Request::Capture(Capture {
        hold_id: HoldId(hold),
        amount_minor: 1_000,
        final_capture: true,
        loyalty_points: 0,
        product: None,
    });
    assert_eq!(
        hold_of(&till_b.call(&capture).expect("capture")),
        (0, hold, 1_000)
    );
    assert_eq!(balances(&mut operator, alice), (8_500, 0, 8_500));
}

#[test]
fn a_terminal_cannot_send_operator_or_device_requests() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let requests = [
        load(alice, 1_000_000),
        Request::OpenAccount(OpenAccount {
            kind: AccountKind::Payer,
            currency: 978,
            mobile: 0,
            limits: Limits::NONE,
        }),
        Request::RegisterTerminal(RegisterTerminal {
            merchant_id: MerchantId(shop.merchant),
        }),
        Request::AccountInfo(AccountInfo {
            account: AccountNumber(alice),
        }),
        Request::OwnBalance(OwnBalance {}),
    ];
    for request in &requests {
        let reply = till.call(request).expect("call");
        assert_eq!(reply.outcome(), NOT_PERMITTED, "a terminal sent {request:?}");
        assert_eq!(
            reply.message_type(),
            request.message_type() | 0x80,
            "the request's own reply type"
        );
    }
    assert_eq!(balances(&mut operator, alice), (10_000, 0, 10_000));
    assert_eq!(balances(&mut operator, FUNDING).0, -10_000);
}

#[test]
fn a_payer_device_cannot_load_funds_or_pay_like_a_terminal() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let alice = payer(&mut operator, 0, 10_000);
    let (device_id, secret) = device(&mut operator, alice);
    let mut phone = authd.client(Role::PayerDevice, device_id, secret);
    let requests = [
        load(alice, 1_000_000),
        purchase(alice, 100),
        authorize(alice, 100),
        Request::AccountInfo(AccountInfo {
            account: AccountNumber(alice),
        }),
    ];
    for request in &requests {
        let reply = phone.call(request).expect("call");
        assert_eq!(reply.outcome(), NOT_PERMITTED, "a device sent {request:?}");
    }
    assert_eq!(balances(&mut operator, alice), (10_000, 0, 10_000));
}

#[test]
fn a_payer_device_sees_only_its_own_balance() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let bob = payer(&mut operator, 0, 777);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    assert_eq!(
        hold_of(&till.call(&authorize(alice, 2_500)).expect("authorize")).0,
        0
    );
    let mut own = |account| {
        let (device_id, secret) = device(&mut operator, account);
        let mut phone = authd.client(Role::PayerDevice, device_id, secret);
        let Reply::OwnBalance(own) = phone.call(&Request::OwnBalance(OwnBalance {})).expect("call") else {
            panic!("an OWN_BALANCE is answered with its reply");
        };
        (
            own.code,
            own.currency,
            own.balance_minor,
            own.held_minor,
            own.available_minor,
        )
    };
    assert_eq!(own(alice), (0, 978, 10_000, 2_500, 7_500));
    assert_eq!(own(bob), (0, 978, 777, 0, 777));
}

#[test]
fn a_wrong_secret_cannot_log_on_and_the_connection_is_closed() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let mut wrong = shop.secret;
    wrong[0] ^= 1;
    match Client::connect(authd.addr, Role::Terminal, shop.terminal, wrong) {
        Err(ClientError::LogonRefused { code, reason }) => assert_eq!((code, reason), NOT_PERMITTED),
        other => panic!("a wrong secret logged on: {other:?}"),
    }
    // By hand, to see the close after LOGON_FAILED.
    let frames = logon_by_hand(&authd, Role::Terminal, shop.terminal, &wrong);
    assert_eq!(
        frames.len(),
        2,
        "CHALLENGE, LOGON_FAILED, then the close: {frames:?}"
    );
    assert!(matches!(frames[1], Message::Logon(Logon::LogonFailed(_))));
    // The terminal's secret does not make its holder the operator, nor another terminal.
    assert!(Client::connect(authd.addr, Role::Operator, 1, shop.secret).is_err());
    assert!(Client::connect(authd.addr, Role::Terminal, shop.terminal + 1, shop.secret).is_err());
    authd.client(Role::Terminal, shop.terminal, shop.secret);
}

#[test]
fn after_too_many_failed_logons_even_the_right_secret_is_refused() {
    // The default 10 s window (--logon-failure-window-s) outlasts the test: no waiting for it.
    let authd = Authd::start(&["--logon-failures-max", "3"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let mut wrong = shop.secret;
    wrong[31] ^= 0x80;
    for attempt in 0..3 {
        match Client::connect(authd.addr, Role::Terminal, shop.terminal, wrong) {
            Err(ClientError::LogonRefused { code, reason }) => {
                assert_eq!((code, reason), NOT_PERMITTED, "attempt {attempt}: a wrong secret")
            }
            other => panic!("attempt {attempt}: a wrong secret got {other:?}"),
        }
    }
    // Past the limit the answer says so (75/27 `LogonsLimited`), not "wrong secret": a client
    // must wait, not look for another key.
    match Client::connect(authd.addr, Role::Terminal, shop.terminal, shop.secret) {
        Err(error @ ClientError::LogonRefused { code, reason }) => {
            assert_eq!((code, reason), LOGONS_LIMITED, "{error:?}");
            assert!(
                error.to_string().contains("--logon-failure-window-s"),
                "the error says what to wait for: {error}"
            );
        }
        other => panic!("the right secret logged on past the limit: {other:?}"),
    }
    assert!(
        Client::connect(authd.addr, Role::Operator, 1, authd.operator_secret()).is_err(),
        "the limit is per peer address, whatever the role"
    );
    // Connections logged on before keep working.
    let Reply::Echo(echo) = operator
        .call(&Request::Echo(wire::messages::terminal::Echo { value: 5 }))
        .expect("echo")
    else {
        panic!("echo reply");
    };
    assert_eq!(echo.value, 5);
}

/// HELLO and PROOF with `secret` on a raw socket; every frame received until the close.
fn logon_by_hand(authd: &Authd, role: Role, id: u32, secret: &[u8; 32]) -> Vec<Message> {
    let mut raw = Raw::connect(authd.addr);
    raw.send(0, hello(role, id, 1, 1));
    let challenge = match raw.read().map(|frame| frame.message) {
        Some(Message::Logon(Logon::Challenge(challenge))) => challenge,
        other => panic!("expected a CHALLENGE, got {other:?}"),
    };
    // support::hello sends a client nonce of zeros.
    let mac = logon_mac(secret, role, id, &[0; 16], &challenge.server_nonce);
    raw.send(0, Message::Logon(Logon::Proof(Proof { mac })));
    let mut frames = vec![Message::Logon(Logon::Challenge(challenge))];
    frames.extend(raw.read_until_closed().into_iter().map(|frame| frame.message));
    frames
}

#[test]
fn a_hello_with_no_common_version_gets_logon_failed_and_a_close() {
    let authd = Authd::start(&[]);
    let mut raw = Raw::connect(authd.addr);
    raw.send(0, hello(Role::Operator, 1, 2, 9));
    let frames: Vec<Message> = raw
        .read_until_closed()
        .into_iter()
        .map(|frame| frame.message)
        .collect();
    let [Message::Logon(Logon::LogonFailed(failed))] = frames.as_slice() else {
        panic!("expected LOGON_FAILED then the close, got {frames:?}");
    };
    assert_eq!((failed.code, failed.reason), (12, 21));
}

fn set_status(operator: &mut Client, account: u64, status: AccountStatus) {
    let request = Request::SetStatus(SetStatus {
        account: AccountNumber(account),
        status,
    });
    assert_eq!(operator.call(&request).expect("set status").outcome(), (0, 0));
}

#[test]
fn a_frozen_merchant_s_terminal_can_neither_pay_nor_log_on_again() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    let (code, hold, _) = hold_of(&till.call(&authorize(alice, 1_000)).expect("authorize"));
    assert_eq!(code, 0);
    set_status(&mut operator, shop.settlement, AccountStatus::Frozen);
    assert_eq!(
        till.call(&purchase(alice, 100)).expect("purchase").outcome(),
        (3, 1),
        "a terminal logged on before the freeze is declined MerchantInvalid"
    );
    assert!(
        Client::connect(authd.addr, Role::Terminal, shop.terminal, shop.secret).is_err(),
        "a frozen merchant's terminal cannot log on"
    );
    set_status(&mut operator, shop.settlement, AccountStatus::Active);
    let captured = till
        .call(&Request::Capture(Capture {
            hold_id: HoldId(hold),
            amount_minor: 1_000,
            final_capture: true,
            loyalty_points: 0,
            product: None,
        }))
        .expect("capture");
    assert_eq!(
        captured.outcome(),
        (0, 0),
        "unfrozen, the merchant captures its hold"
    );
    assert_eq!(balances(&mut operator, alice), (9_000, 0, 9_000));
}

#[test]
fn a_frozen_payer_is_declined_and_its_device_still_sees_its_balance() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let (device_id, secret) = device(&mut operator, alice);
    set_status(&mut operator, alice, AccountStatus::Frozen);
    let mut till = authd.client(Role::Terminal, shop.terminal, shop.secret);
    assert_eq!(
        till.call(&purchase(alice, 100)).expect("purchase").outcome(),
        (62, 4)
    );
    let mut phone = authd.client(Role::PayerDevice, device_id, secret);
    let Reply::OwnBalance(own) = phone.call(&Request::OwnBalance(OwnBalance {})).expect("call") else {
        panic!("an OWN_BALANCE is answered with its reply");
    };
    assert_eq!((own.code, own.balance_minor), (0, 10_000));
}
