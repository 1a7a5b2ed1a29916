//! One meaningful example frame per message type: the golden vectors and PROTOCOL.md's hex
//! examples are these frames encoded.

use wire::logon::{Challenge, Hello, LogonFailed, LogonOk, Proof};
use wire::messages::device::*;
use wire::messages::operator::*;
use wire::messages::push::OfferOutcome;
use wire::messages::reply::*;
use wire::messages::terminal::*;
use wire::types::*;
use wire::{Frame, Logon, Message, PinBlock, Push, Reply, Request};

/// (file stem, description, frame).
pub type Example = (&'static str, &'static str, Frame);

const PAYER: PayerRef = PayerRef::Account(AccountNumber(1001));
const MOBILE: PayerRef = PayerRef::Mobile(33_612_345_678);
const EUR: u16 = 978;

fn pin() -> PinBlock {
    PinBlock::from_digits("1234").expect("valid PIN")
}

fn text(value: &str) -> ShortText {
    ShortText::new(value).expect("short text")
}

fn frame(request_id: u64, message: Message) -> Frame {
    Frame { request_id, message }
}

fn request(request_id: u64, request: Request) -> Frame {
    frame(request_id, Message::Request(request))
}

fn reply(request_id: u64, reply: Reply) -> Frame {
    frame(request_id, Message::Reply(reply))
}

fn hold(hold_id: u64, amount_minor: u64) -> HoldReply {
    HoldReply {
        code: 0,
        reason: 0,
        hold_id: HoldId(hold_id),
        amount_minor,
    }
}

const APPROVED: StatusReply = StatusReply { code: 0, reason: 0 };

fn limits() -> Limits {
    Limits {
        per_payment_minor: 5_000,
        per_day_minor: 20_000,
        per_day_count: 50,
        pin_above_minor: 2_500,
    }
}

fn offer_summary() -> OfferSummary {
    OfferSummary {
        offer_id: OfferId(501),
        merchant_id: MerchantId(7),
        origin: text("CAFE42"),
        amount_minor: 1_250,
        currency: EUR,
        expires_in_s: 120,
        reference: text("order 8812"),
    }
}

pub fn logon_examples() -> Vec<Example> {
    vec![
        ("logon_hello", "LOGON_HELLO 0x01, request id 0: role terminal (1), versions 1..1, terminal id 17, client nonce 00..0f",
            frame(0, Message::Logon(Logon::Hello(Hello { role: Role::Terminal, version_min: 1, version_max: 1, id: 17, client_nonce: std::array::from_fn(|i| i as u8) })))),
        ("logon_challenge", "LOGON_CHALLENGE 0x02: version 1, server nonce f0..ff",
            frame(0, Message::Logon(Logon::Challenge(Challenge { version: 1, server_nonce: std::array::from_fn(|i| 0xF0 + i as u8) })))),
        ("logon_proof", "LOGON_PROOF 0x03: HMAC-SHA256 with secret 00..1f over the hello and challenge above",
            frame(0, Message::Logon(Logon::Proof(Proof { mac: wire::logon::logon_mac(&std::array::from_fn(|i| i as u8), Role::Terminal, 17, &std::array::from_fn(|i| i as u8), &std::array::from_fn(|i| 0xF0 + i as u8)) })))),
        ("logon_ok", "LOGON_OK 0x04: frame limit 4096 bytes, 128 requests in flight",
            frame(0, Message::Logon(Logon::LogonOk(LogonOk { frame_bytes_max: 4096, requests_in_flight_max: 128 })))),
        ("logon_failed", "LOGON_FAILED 0x05: ISO 57, reason 24 not permitted (bad proof)",
            frame(0, Message::Logon(Logon::LogonFailed(LogonFailed { code: 57, reason: 24 })))),
    ]
}

pub fn terminal_examples() -> Vec<Example> {
    vec![
        ("authorize", "AUTHORIZE 0x10, request id 41: payer account 1001, 25.00 EUR (2500), 978, lifetime 0 (server default), PIN 1234",
            request(41, Request::Authorize(Authorize { payer: PAYER, amount_minor: 2_500, currency: EUR, hold_lifetime_s: 0, pin: Some(pin()) }))),
        ("increment", "INCREMENT 0x11, request id 43: hold 9001 plus 500",
            request(43, Request::Increment(Increment { hold_id: HoldId(9001), amount_minor: 500 }))),
        ("capture", "CAPTURE 0x12, request id 44: hold 9001, 2800, final, 28 loyalty points, product 4711 x 2",
            request(44, Request::Capture(Capture { hold_id: HoldId(9001), amount_minor: 2_800, final_capture: true, loyalty_points: 28, product: Some(ProductDetails { product_code: 4711, quantity: 2 }) }))),
        ("void", "VOID 0x13, request id 45: hold 9001",
            request(45, Request::Void(Void { hold_id: HoldId(9001) }))),
        ("purchase", "PURCHASE 0x14, request id 42: payer account 1001, 2.50 EUR (250), 978, no PIN, 3 loyalty points, no product details",
            request(42, Request::Purchase(Purchase { payer: PAYER, amount_minor: 250, currency: EUR, pin: None, loyalty_points: 3, product: None }))),
        ("refund", "REFUND 0x15, request id 46: transaction 9002, 100",
            request(46, Request::Refund(Refund { hold_id: HoldId(9002), amount_minor: 100 }))),
        ("reversal", "REVERSAL 0x16, request id 47: payer account 1001, original request id 42",
            request(47, Request::Reversal(Reversal { payer: PAYER, original_request_id: 42 }))),
        ("balance_check", "BALANCE_CHECK 0x17, request id 48: payer mobile +33612345678, 1000, 978",
            request(48, Request::BalanceCheck(BalanceCheck { payer: MOBILE, amount_minor: 1_000, currency: EUR }))),
        ("offer", "OFFER 0x18, request id 49: payer mobile +33612345678, 1250, 978, 120 s, reference \"order 8812\"",
            request(49, Request::Offer(Offer { payer: MOBILE, amount_minor: 1_250, currency: EUR, expires_in_s: 120, reference: text("order 8812") }))),
        ("offer_cancel", "OFFER_CANCEL 0x19, request id 50: offer 501",
            request(50, Request::OfferCancel(OfferCancel { offer_id: OfferId(501) }))),
        ("offer_status", "OFFER_STATUS 0x1A, request id 51: offer 501",
            request(51, Request::OfferStatus(OfferStatus { offer_id: OfferId(501) }))),
        ("report_failed_provisioning", "REPORT_FAILED_PROVISIONING 0x1B, request id 52: transaction 9002, 250, cause not delivered (1)",
            request(52, Request::ReportFailedProvisioning(ReportFailedProvisioning { hold_id: HoldId(9002), amount_minor: 250, cause: DisputeCause::NotDelivered }))),
        ("echo", "ECHO 0x1F, request id 53: value 0x0123456789abcdef",
            request(53, Request::Echo(Echo { value: 0x0123_4567_89AB_CDEF }))),
    ]
}

pub fn device_and_operator_examples() -> Vec<Example> {
    vec![
        ("list_offers", "LIST_OFFERS 0x30, request id 60: from the first offer",
            request(60, Request::ListOffers(ListOffers { after_offer_id: OfferId(0) }))),
        ("accept_offer", "ACCEPT_OFFER 0x31, request id 61: offer 501, PIN 1234",
            request(61, Request::AcceptOffer(AcceptOffer { offer_id: OfferId(501), pin: pin() }))),
        ("reject_offer", "REJECT_OFFER 0x32, request id 62: offer 501",
            request(62, Request::RejectOffer(RejectOffer { offer_id: OfferId(501) }))),
        ("own_balance", "OWN_BALANCE 0x33, request id 63: empty body",
            request(63, Request::OwnBalance(OwnBalance {}))),
        ("open_account", "OPEN_ACCOUNT 0x40, request id 70: payer (1), 978, mobile 33612345678, limits 5000/20000/50/PIN above 2500",
            request(70, Request::OpenAccount(OpenAccount { kind: AccountKind::Payer, currency: EUR, mobile: 33_612_345_678, limits: limits() }))),
        ("load_funds", "LOAD_FUNDS 0x41, request id 71: account 1001, 10000",
            request(71, Request::LoadFunds(LoadFunds { account: AccountNumber(1001), amount_minor: 10_000 }))),
        ("set_limits", "SET_LIMITS 0x42, request id 72: account 1001, no limits (all maxima)",
            request(72, Request::SetLimits(SetLimits { account: AccountNumber(1001), limits: Limits::NONE }))),
        ("set_pin", "SET_PIN 0x43, request id 73: account 1001, PIN 1234",
            request(73, Request::SetPin(SetPin { account: AccountNumber(1001), pin: pin() }))),
        ("set_status", "SET_STATUS 0x44, request id 74: account 1001, frozen (2)",
            request(74, Request::SetStatus(SetStatus { account: AccountNumber(1001), status: AccountStatus::Frozen }))),
        ("register_merchant", "REGISTER_MERCHANT 0x45, request id 75: fee 150 bps, 100 bps with product details, origin \"10.0.0.0/8\"",
            request(75, Request::RegisterMerchant(RegisterMerchant { fee_bps: 150, fee_bps_with_product: 100, origin: text("10.0.0.0/8") }))),
        ("register_terminal", "REGISTER_TERMINAL 0x46, request id 76: merchant 7",
            request(76, Request::RegisterTerminal(RegisterTerminal { merchant_id: MerchantId(7) }))),
        ("register_device", "REGISTER_DEVICE 0x47, request id 77: account 1001",
            request(77, Request::RegisterDevice(RegisterDevice { account: AccountNumber(1001) }))),
        ("account_info", "ACCOUNT_INFO 0x48, request id 78: account 1001",
            request(78, Request::AccountInfo(AccountInfo { account: AccountNumber(1001) }))),
        ("stats", "STATS 0x49, request id 79: empty body",
            request(79, Request::Stats(Stats {}))),
        ("dispute_open", "DISPUTE_OPEN 0x4A, request id 80: transaction 9002, 250, defective (2)",
            request(80, Request::DisputeOpen(DisputeOpen { hold_id: HoldId(9002), amount_minor: 250, cause: DisputeCause::Defective }))),
        ("dispute_resolve", "DISPUTE_RESOLVE 0x4B, request id 81: dispute 3, for the payer (1)",
            request(81, Request::DisputeResolve(DisputeResolve { dispute_id: DisputeId(3), outcome: DisputeOutcome::ForPayer }))),
        ("dispute_list", "DISPUTE_LIST 0x4C, request id 82: from the first dispute",
            request(82, Request::DisputeList(DisputeList { after_dispute_id: DisputeId(0) }))),
    ]
}

pub fn terminal_reply_examples() -> Vec<Example> {
    vec![
        (
            "authorize_reply",
            "AUTHORIZE reply 0x90, request id 41: approved, hold 9001, 2500 held",
            reply(41, Reply::Authorize(hold(9001, 2_500))),
        ),
        (
            "increment_reply",
            "INCREMENT reply 0x91, request id 43: approved, hold 9001, 500 added",
            reply(43, Reply::Increment(hold(9001, 500))),
        ),
        (
            "capture_reply",
            "CAPTURE reply 0x92, request id 44: approved, hold 9001, 2800 captured",
            reply(44, Reply::Capture(hold(9001, 2_800))),
        ),
        (
            "void_reply",
            "VOID reply 0x93, request id 45: declined ISO 12 reason 16 (hold not active)",
            reply(
                45,
                Reply::Void(HoldReply {
                    code: 12,
                    reason: 16,
                    hold_id: HoldId(9001),
                    amount_minor: 0,
                }),
            ),
        ),
        (
            "purchase_reply",
            "PURCHASE reply 0x94, request id 42: approved, transaction 9002, 250",
            reply(42, Reply::Purchase(hold(9002, 250))),
        ),
        (
            "purchase_declined",
            "PURCHASE reply 0x94, request id 42: declined ISO 51 (0x33) reason 14 insufficient funds",
            reply(
                42,
                Reply::Purchase(HoldReply {
                    code: 51,
                    reason: 14,
                    hold_id: HoldId(0),
                    amount_minor: 0,
                }),
            ),
        ),
        (
            "refund_reply",
            "REFUND reply 0x95, request id 46: approved, transaction 9002, 100 refunded",
            reply(46, Reply::Refund(hold(9002, 100))),
        ),
    ]
}

pub fn status_reply_examples() -> Vec<Example> {
    vec![
        (
            "reversal_reply",
            "REVERSAL reply 0x96, request id 47: approved",
            reply(47, Reply::Reversal(APPROVED)),
        ),
        (
            "balance_check_reply",
            "BALANCE_CHECK reply 0x97, request id 48: sufficient (approved)",
            reply(48, Reply::BalanceCheck(APPROVED)),
        ),
        (
            "offer_reply",
            "OFFER reply 0x98, request id 49: approved, offer 501",
            reply(
                49,
                Reply::Offer(OfferReply {
                    code: 0,
                    reason: 0,
                    offer_id: OfferId(501),
                }),
            ),
        ),
        (
            "offer_cancel_reply",
            "OFFER_CANCEL reply 0x99, request id 50: approved",
            reply(50, Reply::OfferCancel(APPROVED)),
        ),
        (
            "offer_status_reply",
            "OFFER_STATUS reply 0x9A, request id 51: offer 501 accepted (2), hold 9003, 1250",
            reply(
                51,
                Reply::OfferStatus(OfferStatusReply {
                    code: 0,
                    reason: 0,
                    offer_id: OfferId(501),
                    state: OfferState::Accepted,
                    hold_id: HoldId(9003),
                    amount_minor: 1_250,
                }),
            ),
        ),
        (
            "report_failed_provisioning_reply",
            "REPORT_FAILED_PROVISIONING reply 0x9B, request id 52: approved, dispute 3",
            reply(
                52,
                Reply::ReportFailedProvisioning(DisputeReply {
                    code: 0,
                    reason: 0,
                    dispute_id: DisputeId(3),
                }),
            ),
        ),
        (
            "echo_reply",
            "ECHO reply 0x9F, request id 53: value 0x0123456789abcdef",
            reply(
                53,
                Reply::Echo(EchoReply {
                    code: 0,
                    reason: 0,
                    value: 0x0123_4567_89AB_CDEF,
                }),
            ),
        ),
        (
            "error_reply",
            "ERROR 0xFF, request id 54: ISO 30, reason 21, unknown type (1), type 0x7e",
            reply(
                54,
                Reply::Error(ErrorReply {
                    code: 30,
                    reason: 21,
                    error: ProtocolError::UnknownType,
                    message_type: 0x7E,
                    value: 0x7E,
                }),
            ),
        ),
    ]
}

pub fn other_reply_examples() -> Vec<Example> {
    vec![
        ("list_offers_reply", "LIST_OFFERS reply 0xB0, request id 60: approved, no more, one offer (501 from merchant 7, 1250 EUR, 120 s, \"order 8812\")",
            reply(60, Reply::ListOffers(OfferListReply { code: 0, reason: 0, more: false, offers: List::new(vec![offer_summary()]).expect("one") }))),
        ("accept_offer_reply", "ACCEPT_OFFER reply 0xB1, request id 61: approved, hold 9003, 1250, available 7500",
            reply(61, Reply::AcceptOffer(AcceptOfferReply { code: 0, reason: 0, hold_id: HoldId(9003), amount_minor: 1_250, available_minor: 7_500 }))),
        ("reject_offer_reply", "REJECT_OFFER reply 0xB2, request id 62: approved", reply(62, Reply::RejectOffer(APPROVED))),
        ("own_balance_reply", "OWN_BALANCE reply 0xB3, request id 63: 978, balance 10000, held 2500, available 7500, 31 points",
            reply(63, Reply::OwnBalance(BalanceReply { code: 0, reason: 0, currency: EUR, balance_minor: 10_000, held_minor: 2_500, available_minor: 7_500, loyalty_points: 31 }))),
        ("open_account_reply", "OPEN_ACCOUNT reply 0xC0, request id 70: approved, account 1001",
            reply(70, Reply::OpenAccount(AccountReply { code: 0, reason: 0, account: AccountNumber(1001) }))),
        ("load_funds_reply", "LOAD_FUNDS reply 0xC1, request id 71: balance 10000, available 10000",
            reply(71, Reply::LoadFunds(LoadFundsReply { code: 0, reason: 0, balance_minor: 10_000, available_minor: 10_000 }))),
        ("set_limits_reply", "SET_LIMITS reply 0xC2, request id 72: approved", reply(72, Reply::SetLimits(APPROVED))),
        ("set_pin_reply", "SET_PIN reply 0xC3, request id 73: approved", reply(73, Reply::SetPin(APPROVED))),
        ("set_status_reply", "SET_STATUS reply 0xC4, request id 74: approved", reply(74, Reply::SetStatus(APPROVED))),
        ("register_merchant_reply", "REGISTER_MERCHANT reply 0xC5, request id 75: merchant 7, settlement account 1002",
            reply(75, Reply::RegisterMerchant(MerchantReply { code: 0, reason: 0, merchant_id: MerchantId(7), settlement_account: AccountNumber(1002) }))),
        ("register_terminal_reply", "REGISTER_TERMINAL reply 0xC6, request id 76: terminal 17, secret 00..1f",
            reply(76, Reply::RegisterTerminal(TerminalReply { code: 0, reason: 0, terminal_id: TerminalId(17), secret: std::array::from_fn(|i| i as u8) }))),
        ("register_device_reply", "REGISTER_DEVICE reply 0xC7, request id 77: device 5, secret 20..3f",
            reply(77, Reply::RegisterDevice(DeviceReply { code: 0, reason: 0, device_id: DeviceId(5), secret: std::array::from_fn(|i| 0x20 + i as u8) }))),
        ("account_info_reply", "ACCOUNT_INFO reply 0xC8, request id 78: account 1001, payer, active, 978, mobile 33612345678, 10000/2500/7500, 31 points, limits 5000/20000/50/2500",
            reply(78, Reply::AccountInfo(AccountInfoReply { code: 0, reason: 0, account: AccountNumber(1001), kind: Some(AccountKind::Payer), status: Some(AccountStatus::Active), currency: EUR, mobile: 33_612_345_678, balance_minor: 10_000, held_minor: 2_500, available_minor: 7_500, loyalty_points: 31, limits: limits() }))),
        ("stats_reply", "STATS reply 0xC9, request id 79: two counters: 1 (replies) = 3, 3 (connections open) = 1000000",
            reply(79, Reply::Stats(StatsReply { code: 0, reason: 0, counters: List::new(vec![Counter { counter: 1, value: 3 }, Counter { counter: 3, value: 1_000_000 }]).expect("two") }))),
        ("dispute_open_reply", "DISPUTE_OPEN reply 0xCA, request id 80: dispute 3",
            reply(80, Reply::DisputeOpen(DisputeReply { code: 0, reason: 0, dispute_id: DisputeId(3) }))),
        ("dispute_resolve_reply", "DISPUTE_RESOLVE reply 0xCB, request id 81: approved", reply(81, Reply::DisputeResolve(APPROVED))),
        ("dispute_list_reply", "DISPUTE_LIST reply 0xCC, request id 82: one dispute (3 on 9002, 250, defective, open)",
            reply(82, Reply::DisputeList(DisputeListReply { code: 0, reason: 0, more: false, disputes: List::new(vec![DisputeSummary { dispute_id: DisputeId(3), hold_id: HoldId(9002), amount_minor: 250, cause: DisputeCause::Defective, state: DisputeState::Open }]).expect("one") }))),
        ("offer_presented", "OFFER_PRESENTED push 0xE0, flag PUSH, request id 0: offer 501 from merchant 7, 1250, 978, 120 s, \"order 8812\"",
            frame(0, Message::Push(Push::OfferPresented(offer_summary())))),
        ("offer_outcome", "OFFER_OUTCOME push 0xE1, flag PUSH, request id 0: offer 501 accepted, approved, hold 9003, 1250",
            frame(0, Message::Push(Push::OfferOutcome(OfferOutcome { offer_id: OfferId(501), state: OfferState::Accepted, code: 0, reason: 0, hold_id: HoldId(9003), amount_minor: 1_250 })))),
    ]
}

/// Every example, in document order.
pub fn examples() -> Vec<Example> {
    let mut all = logon_examples();
    all.extend(terminal_examples());
    all.extend(device_and_operator_examples());
    all.extend(terminal_reply_examples());
    all.extend(status_reply_examples());
    all.extend(other_reply_examples());
    all
}

/// The hex dump of a frame as the vector files and PROTOCOL.md show it: the 16 bytes of length
/// prefix and header on the first line, then the body 16 bytes per line.
pub fn hex_dump(bytes: &[u8]) -> String {
    let (head, body) = bytes.split_at(bytes.len().min(16));
    let mut lines = vec![hex_line(head)];
    lines.extend(body.chunks(16).map(hex_line));
    lines.join("\n")
}

fn hex_line(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes from hex text, ignoring whitespace and `#` comment lines.
pub fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).expect("hex digits")
}
