//! Pre-encoded request frames: each request kind is encoded once with `wire::Frame::encode`, and
//! the hot path copies its bytes and patches the request id and two or three fields in place.
//! No allocation, no encoder per request. The offsets come from PROTOCOL.md's tables; the tests
//! decode patched frames with `wire::Decoder` to prove them.

use bytes::BytesMut;
use wire::messages::device::AcceptOffer;
use wire::messages::terminal::{
    Authorize, BalanceCheck, Capture, Echo, Increment, Offer, OfferCancel, OfferStatus, Purchase, Refund,
    ReportFailedProvisioning, Reversal, Void,
};
use wire::types::{AccountNumber, DisputeCause, HoldId, OfferId, PayerRef, ShortText};
use wire::{Frame, Message, PinBlock, Request};

/// Currency of every amount loadgen sends (EUR; authd's default books currency).
pub const CURRENCY: u16 = 978;
/// Largest template, bytes (Offer: 16 + 56).
pub const TEMPLATE_BYTES_MAX: usize = 96;

const REQUEST_ID: usize = 8;
const BODY: usize = 16;
/// PayerRef's account number sits after its tag byte.
const PAYER_ACCOUNT: usize = BODY + 1;
/// The amount that follows a PayerRef (Authorize, Purchase, BalanceCheck, Offer).
const AMOUNT_AFTER_PAYER: usize = BODY + 9;
/// A hold or offer id at the start of the body (Increment, Capture, Void, Refund,
/// OfferCancel, OfferStatus, ReportFailedProvisioning).
const HOLD: usize = BODY;
/// The amount that follows a leading hold id.
const AMOUNT_AFTER_HOLD: usize = BODY + 8;
/// Reversal's original request id follows the payer.
const ORIGINAL_REQUEST_ID: usize = BODY + 9;
/// Echo's value.
const ECHO_VALUE: usize = BODY;
/// Offer's reference text (after its length byte): `OFFER_REFERENCE_PREFIX` and 8 hex digits.
const OFFER_REFERENCE_TEXT: usize = BODY + 24;
/// The offer id at the start of ACCEPT_OFFER's body.
const ACCEPT_OFFER_ID: usize = BODY;

/// The PIN loadgen sets on its payers when the mix has offers, and accepts offers with.
pub const OFFER_PIN: &str = "1234";
/// Seconds an offer stays open.
pub const OFFER_EXPIRY_S: u32 = 120;
/// Every offer's reference is this then the offer's tag as 8 lowercase hex digits: the tag
/// tells a gateway which load thread's offer it is (0: an offer nobody accepts).
pub const OFFER_REFERENCE_PREFIX: &[u8; 8] = b"loadgen:";
const OFFER_REFERENCE_BYTES: usize = 16;

/// Which request a template encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// AUTHORIZE (payer, amount).
    Authorize,
    /// INCREMENT (hold, amount).
    Increment,
    /// CAPTURE final (hold, amount).
    Capture,
    /// VOID (hold).
    Void,
    /// PURCHASE (payer, amount).
    Purchase,
    /// REFUND (hold, amount).
    Refund,
    /// REVERSAL (payer, original request id).
    Reversal,
    /// BALANCE_CHECK (payer, amount).
    BalanceCheck,
    /// OFFER (payer, amount).
    Offer,
    /// OFFER_CANCEL (offer).
    OfferCancel,
    /// ECHO (value).
    Echo,
    /// ACCEPT_OFFER (offer) with `OFFER_PIN`, sent by a payer device.
    AcceptOffer,
    /// OFFER_STATUS (offer).
    OfferStatus,
    /// REPORT_FAILED_PROVISIONING (hold, amount), cause "not delivered".
    ReportFailedProvisioning,
}

impl RequestKind {
    /// Every kind, in `repr` order.
    pub const ALL: [RequestKind; 14] = [
        RequestKind::Authorize,
        RequestKind::Increment,
        RequestKind::Capture,
        RequestKind::Void,
        RequestKind::Purchase,
        RequestKind::Refund,
        RequestKind::Reversal,
        RequestKind::BalanceCheck,
        RequestKind::Offer,
        RequestKind::OfferCancel,
        RequestKind::Echo,
        RequestKind::AcceptOffer,
        RequestKind::OfferStatus,
        RequestKind::ReportFailedProvisioning,
    ];

    /// The message type of its reply.
    pub fn reply_type(self) -> u8 {
        self.prototype().message_type() | 0x80
    }

    /// A representative request; the fields a flow sets are patched in later.
    fn prototype(self) -> Request {
        let payer = PayerRef::Account(AccountNumber(0));
        match self {
            RequestKind::Authorize => Request::Authorize(Authorize {
                payer,
                amount_minor: 0,
                currency: CURRENCY,
                hold_lifetime_s: 0,
                pin: None,
            }),
            RequestKind::Increment => Request::Increment(Increment {
                hold_id: HoldId(0),
                amount_minor: 0,
            }),
            RequestKind::Capture => Request::Capture(Capture {
                hold_id: HoldId(0),
                amount_minor: 0,
                final_capture: true,
                loyalty_points: 0,
                product: None,
            }),
            RequestKind::Void => Request::Void(Void { hold_id: HoldId(0) }),
            RequestKind::Purchase => Request::Purchase(Purchase {
                payer,
                amount_minor: 0,
                currency: CURRENCY,
                pin: None,
                loyalty_points: 0,
                product: None,
            }),
            RequestKind::Refund => Request::Refund(Refund {
                hold_id: HoldId(0),
                amount_minor: 0,
            }),
            RequestKind::Reversal => Request::Reversal(Reversal {
                payer,
                original_request_id: 0,
            }),
            RequestKind::BalanceCheck => Request::BalanceCheck(BalanceCheck {
                payer,
                amount_minor: 0,
                currency: CURRENCY,
            }),
            RequestKind::Offer => Request::Offer(Offer {
                payer,
                amount_minor: 0,
                currency: CURRENCY,
                expires_in_s: OFFER_EXPIRY_S,
                reference: ShortText::new("loadgen:00000000").unwrap_or_default(),
            }),
            RequestKind::OfferCancel => Request::OfferCancel(OfferCancel { offer_id: OfferId(0) }),
            RequestKind::OfferStatus => Request::OfferStatus(OfferStatus { offer_id: OfferId(0) }),
            RequestKind::ReportFailedProvisioning => {
                Request::ReportFailedProvisioning(ReportFailedProvisioning {
                    hold_id: HoldId(0),
                    amount_minor: 0,
                    cause: DisputeCause::NotDelivered,
                })
            }
            RequestKind::Echo => Request::Echo(Echo { value: 0 }),
            RequestKind::AcceptOffer => Request::AcceptOffer(AcceptOffer {
                offer_id: OfferId(0),
                pin: PinBlock::from_digits(OFFER_PIN)
                    .unwrap_or_else(|error| unreachable!("the constant PIN is valid: {error:?}")),
            }),
        }
    }
}

/// The fields a request carries besides its id; which ones apply depends on the kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Payer account number (payer kinds).
    pub account: u64,
    /// Amount, minor units; or the original request id (Reversal); or the echo value.
    pub amount: u64,
    /// Hold or offer id (hold kinds, ACCEPT_OFFER); the offer's tag (OFFER).
    pub hold: u64,
}

/// One kind's encoded frame.
#[derive(Clone, Copy, Debug)]
struct Template {
    bytes: [u8; TEMPLATE_BYTES_MAX],
    length: usize,
}

/// All templates, built once per thread.
#[derive(Clone, Debug)]
pub struct Templates {
    templates: [Template; RequestKind::ALL.len()],
}

impl Default for Templates {
    fn default() -> Templates {
        Templates::new()
    }
}

impl Templates {
    /// Encodes every kind once.
    pub fn new() -> Templates {
        let templates = RequestKind::ALL.map(|kind| {
            let mut encoded = BytesMut::with_capacity(TEMPLATE_BYTES_MAX);
            Frame {
                request_id: 0,
                message: Message::Request(kind.prototype()),
            }
            .encode(&mut encoded);
            assert!(encoded.len() <= TEMPLATE_BYTES_MAX, "{kind:?} fits its template");
            let mut bytes = [0u8; TEMPLATE_BYTES_MAX];
            bytes[..encoded.len()].copy_from_slice(&encoded);
            Template {
                bytes,
                length: encoded.len(),
            }
        });
        Templates { templates }
    }

    /// The encoded length of a kind's frame.
    #[inline]
    pub fn length(&self, kind: RequestKind) -> usize {
        self.templates[kind as usize].length
    }

    /// Writes `kind`'s frame with `request_id` and `fields` into `out`, which must hold
    /// `length(kind)` bytes; returns the bytes written.
    #[inline]
    pub fn write(&self, kind: RequestKind, request_id: u64, fields: Fields, out: &mut [u8]) -> usize {
        let template = &self.templates[kind as usize];
        let frame = &mut out[..template.length];
        frame.copy_from_slice(&template.bytes[..template.length]);
        put_u64(frame, REQUEST_ID, request_id);
        match kind {
            RequestKind::Authorize | RequestKind::Purchase | RequestKind::BalanceCheck => {
                put_u64(frame, PAYER_ACCOUNT, fields.account);
                put_u64(frame, AMOUNT_AFTER_PAYER, fields.amount);
            }
            RequestKind::Offer => {
                put_u64(frame, PAYER_ACCOUNT, fields.account);
                put_u64(frame, AMOUNT_AFTER_PAYER, fields.amount);
                put_tag(frame, fields.hold as u32);
            }
            RequestKind::AcceptOffer => put_u64(frame, ACCEPT_OFFER_ID, fields.hold),
            RequestKind::Increment
            | RequestKind::Capture
            | RequestKind::Refund
            | RequestKind::ReportFailedProvisioning => {
                put_u64(frame, HOLD, fields.hold);
                put_u64(frame, AMOUNT_AFTER_HOLD, fields.amount);
            }
            RequestKind::Void | RequestKind::OfferCancel | RequestKind::OfferStatus => {
                put_u64(frame, HOLD, fields.hold)
            }
            RequestKind::Reversal => {
                put_u64(frame, PAYER_ACCOUNT, fields.account);
                put_u64(frame, ORIGINAL_REQUEST_ID, fields.amount);
            }
            RequestKind::Echo => put_u64(frame, ECHO_VALUE, fields.amount),
        }
        template.length
    }
}

/// Writes `tag` as the 8 hex digits after the reference prefix.
#[inline]
fn put_tag(frame: &mut [u8], tag: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = &mut frame[OFFER_REFERENCE_TEXT + OFFER_REFERENCE_PREFIX.len()..][..8];
    for (position, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((tag >> (28 - 4 * position)) & 0xF) as usize];
    }
}

/// The tag of an offer reference (ShortText: length byte, then 32 bytes); `None` if it is not
/// one of loadgen's.
pub fn offer_tag(reference: &[u8]) -> Option<u32> {
    let (&length, text) = reference.split_first()?;
    let text = text.get(..usize::from(length))?;
    if text.len() != OFFER_REFERENCE_BYTES || !text.starts_with(OFFER_REFERENCE_PREFIX) {
        return None;
    }
    let mut tag = 0u32;
    for &digit in &text[OFFER_REFERENCE_PREFIX.len()..] {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        tag = tag << 4 | u32::from(value);
    }
    Some(tag)
}

#[inline]
fn put_u64(frame: &mut [u8], offset: usize, value: u64) {
    frame[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Decoder;

    fn decode(bytes: &[u8]) -> Frame {
        let mut buffer = BytesMut::from(bytes);
        let frame = Decoder::default()
            .decode(&mut buffer)
            .expect("valid frame")
            .expect("whole frame");
        assert!(buffer.is_empty());
        frame
    }

    #[test]
    fn patched_templates_decode_to_the_requests_they_stand_for() {
        let templates = Templates::new();
        let fields = Fields {
            account: 1_000_123,
            amount: 2_500,
            hold: 77,
        };
        let payer = PayerRef::Account(AccountNumber(fields.account));
        for kind in RequestKind::ALL {
            let mut out = [0u8; TEMPLATE_BYTES_MAX];
            let written = templates.write(kind, 0xdead_beef, fields, &mut out);
            assert_eq!(written, templates.length(kind));
            let frame = decode(&out[..written]);
            assert_eq!(frame.request_id, 0xdead_beef);
            let Message::Request(request) = frame.message else {
                panic!("{kind:?} is a request");
            };
            assert_eq!(request.message_type() | 0x80, kind.reply_type());
            let expected = match kind.prototype() {
                Request::Authorize(body) => Request::Authorize(Authorize {
                    payer,
                    amount_minor: fields.amount,
                    ..body
                }),
                Request::Purchase(body) => Request::Purchase(Purchase {
                    payer,
                    amount_minor: fields.amount,
                    ..body
                }),
                Request::BalanceCheck(body) => Request::BalanceCheck(BalanceCheck {
                    payer,
                    amount_minor: fields.amount,
                    ..body
                }),
                Request::Offer(body) => Request::Offer(Offer {
                    payer,
                    amount_minor: fields.amount,
                    reference: ShortText::new("loadgen:0000004d").expect("fits"),
                    ..body
                }),
                Request::AcceptOffer(body) => Request::AcceptOffer(AcceptOffer {
                    offer_id: OfferId(77),
                    ..body
                }),
                Request::Increment(_) => Request::Increment(Increment {
                    hold_id: HoldId(77),
                    amount_minor: fields.amount,
                }),
                Request::Capture(body) => Request::Capture(Capture {
                    hold_id: HoldId(77),
                    amount_minor: fields.amount,
                    ..body
                }),
                Request::Refund(_) => Request::Refund(Refund {
                    hold_id: HoldId(77),
                    amount_minor: fields.amount,
                }),
                Request::Void(_) => Request::Void(Void { hold_id: HoldId(77) }),
                Request::OfferCancel(_) => Request::OfferCancel(OfferCancel {
                    offer_id: OfferId(77),
                }),
                Request::OfferStatus(_) => Request::OfferStatus(OfferStatus {
                    offer_id: OfferId(77),
                }),
                Request::ReportFailedProvisioning(body) => {
                    Request::ReportFailedProvisioning(ReportFailedProvisioning {
                        hold_id: HoldId(77),
                        amount_minor: fields.amount,
                        ..body
                    })
                }
                Request::Reversal(_) => Request::Reversal(Reversal {
                    payer,
                    original_request_id: fields.amount,
                }),
                Request::Echo(_) => Request::Echo(Echo { value: fields.amount }),
                other => panic!("no template for {other:?}"),
            };
            assert_eq!(request, expected, "{kind:?}");
        }
    }

    #[test]
    fn offer_tags_round_trip_through_the_reference() {
        let templates = Templates::new();
        let mut out = [0u8; TEMPLATE_BYTES_MAX];
        let fields = Fields {
            account: 1,
            amount: 2,
            hold: 0x8000_00a7,
        };
        let written = templates.write(RequestKind::Offer, 1, fields, &mut out);
        let reference = &out[OFFER_REFERENCE_TEXT - 1..written];
        assert_eq!(offer_tag(reference), Some(0x8000_00a7));
        let Message::Request(Request::Offer(offer)) = decode(&out[..written]).message else {
            panic!("offer");
        };
        assert_eq!(offer.expires_in_s, 120);
        assert_eq!(offer.reference.as_str(), "loadgen:800000a7");
        let other = ShortText::new("order 8812").expect("fits");
        let mut bytes = vec![other.as_str().len() as u8];
        bytes.extend_from_slice(other.as_str().as_bytes());
        bytes.resize(33, 0);
        assert_eq!(offer_tag(&bytes), None);
        let accept = templates.write(RequestKind::AcceptOffer, 2, fields, &mut out);
        let Message::Request(Request::AcceptOffer(accept)) = decode(&out[..accept]).message else {
            panic!("accept");
        };
        assert_eq!(accept.offer_id, OfferId(0x8000_00a7));
        assert_eq!(accept.pin, PinBlock::from_digits(OFFER_PIN).expect("pin"));
    }

    #[test]
    fn capture_template_is_final() {
        let templates = Templates::new();
        let mut out = [0u8; TEMPLATE_BYTES_MAX];
        let written = templates.write(RequestKind::Capture, 1, Fields::default(), &mut out);
        let Message::Request(Request::Capture(capture)) = decode(&out[..written]).message else {
            panic!("capture");
        };
        assert!(capture.final_capture);
    }
}
