//! Reply bodies. Every reply starts with `code` (the ISO 8583 response code as its two-digit
//! number: 51 is byte 0x33, 0 = approved) and `reason` (authd's fine-grained reason, see
//! [`crate::reason`]); the fields after them are meaningful when approved and zero otherwise.

use crate::error::DecodeError;
use crate::layout::{wire_enum, wire_struct};
use crate::reason::{ISO_FORMAT_ERROR, REASON_INVALID_REQUEST, REASON_NOT_PERMITTED};
use crate::types::{
    AccountKind, AccountNumber, AccountStatus, DeviceId, DisputeCause, DisputeId, DisputeState, HoldId,
    Limits, List, MerchantId, OfferId, OfferState, ShortText, TerminalId,
};

/// Most offers one list reply carries (`more` says whether to ask again).
pub const OFFERS_PER_REPLY_MAX: usize = 8;
/// Most disputes one list reply carries.
pub const DISPUTES_PER_REPLY_MAX: usize = 16;
/// Most counters one stats reply carries.
pub const COUNTERS_PER_REPLY_MAX: usize = 64;

wire_struct! {
    /// Only the outcome.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct StatusReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
    }
}

wire_struct! {
    /// The common reply: outcome, hold (or transaction) id and the amount approved.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct HoldReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The hold or transaction the request created or acted on.
        hold_id: HoldId,
        /// Amount approved (held, captured, released or refunded), minor units.
        amount_minor: u64,
    }
}

wire_struct! {
    /// Reply to an offer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The offer's id; its outcome comes later as an OFFER_OUTCOME push.
        offer_id: OfferId,
    }
}

wire_struct! {
    /// Where an offer stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferStatusReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The offer.
        offer_id: OfferId,
        /// Its state (Unknown when declined).
        state: OfferState,
        /// The hold the accepted offer became (0 otherwise).
        hold_id: HoldId,
        /// The offer's amount, minor units.
        amount_minor: u64,
    }
}

wire_struct! {
    /// An offer as the payer sees it (list entries and the OFFER_PRESENTED push).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferSummary {
        /// The offer.
        offer_id: OfferId,
        /// Who asks.
        merchant_id: MerchantId,
        /// The merchant's origin address (short code or sender id booked by the operator).
        origin: ShortText,
        /// Amount, minor units.
        amount_minor: u64,
        /// ISO 4217 numeric currency code.
        currency: u16,
        /// Seconds left to answer.
        expires_in_s: u32,
        /// The merchant's reference text.
        reference: ShortText,
    }
}

wire_struct! {
    /// A page of pending offers.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct OfferListReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// 1 = more offers follow the last one: ask again after its id.
        more: bool,
        /// Up to 8 offers of 92 bytes each (OfferSummary).
        offers: List<OfferSummary, OFFERS_PER_REPLY_MAX>,
    }
}

wire_struct! {
    /// Reply to accept offer: the hold and the payer's new available balance.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AcceptOfferReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The hold the offer became.
        hold_id: HoldId,
        /// Amount, minor units.
        amount_minor: u64,
        /// The payer's available balance afterwards, minor units.
        available_minor: u64,
    }
}

wire_struct! {
    /// The payer's own balance.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BalanceReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// ISO 4217 numeric currency code.
        currency: u16,
        /// Balance, minor units.
        balance_minor: u64,
        /// Sum of active holds, minor units.
        held_minor: u64,
        /// balance - held, minor units.
        available_minor: u64,
        /// Loyalty points accrued.
        loyalty_points: u64,
    }
}

wire_struct! {
    /// Reply to open account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AccountReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The new account's number.
        account: AccountNumber,
    }
}

wire_struct! {
    /// Reply to load funds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct LoadFundsReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// Balance afterwards, minor units.
        balance_minor: u64,
        /// Available afterwards, minor units.
        available_minor: u64,
    }
}

wire_struct! {
    /// Reply to register merchant.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MerchantReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The new merchant's id.
        merchant_id: MerchantId,
        /// Its settlement account.
        settlement_account: AccountNumber,
    }
}

wire_struct! {
    /// Reply to register terminal: its id and log-on secret, sent this once only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct TerminalReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The new terminal's id.
        terminal_id: TerminalId,
        /// Its log-on secret (all zero when declined).
        secret: [u8; 32],
    }
}

wire_struct! {
    /// Reply to register device: its id and log-on secret, sent this once only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DeviceReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The new device's id.
        device_id: DeviceId,
        /// Its log-on secret (all zero when declined).
        secret: [u8; 32],
    }
}

wire_struct! {
    /// Everything about one account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AccountInfoReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The account.
        account: AccountNumber,
        /// Its kind (absent when declined).
        kind: Option<AccountKind>,
        /// Its status (absent when declined).
        status: Option<AccountStatus>,
        /// ISO 4217 numeric currency code.
        currency: u16,
        /// Mobile alias; 0 = none.
        mobile: u64,
        /// Balance, minor units.
        balance_minor: u64,
        /// Sum of active holds, minor units.
        held_minor: u64,
        /// balance - held, minor units.
        available_minor: u64,
        /// Loyalty points accrued.
        loyalty_points: u64,
        /// The account's limits.
        limits: Limits,
    }
}

wire_struct! {
    /// One server counter (ids in PROTOCOL.md).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Counter {
        /// Counter id.
        counter: u16,
        /// Its value.
        value: u64,
    }
}

wire_struct! {
    /// Server counters.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct StatsReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// Up to 64 counters of 10 bytes each (Counter).
        counters: List<Counter, COUNTERS_PER_REPLY_MAX>,
    }
}

wire_struct! {
    /// Reply to dispute open and report failed provisioning.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DisputeReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// The dispute opened.
        dispute_id: DisputeId,
    }
}

wire_struct! {
    /// A dispute in a list.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DisputeSummary {
        /// The dispute.
        dispute_id: DisputeId,
        /// The disputed hold or purchase.
        hold_id: HoldId,
        /// Amount disputed, minor units.
        amount_minor: u64,
        /// Why.
        cause: DisputeCause,
        /// Where it stands.
        state: DisputeState,
    }
}

wire_struct! {
    /// A page of disputes.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct DisputeListReply {
        /// ISO 8583 response code (0 = approved).
        code: u8,
        /// authd reason.
        reason: u8,
        /// 1 = more disputes follow the last one.
        more: bool,
        /// Up to 16 disputes of 26 bytes each (DisputeSummary).
        disputes: List<DisputeSummary, DISPUTES_PER_REPLY_MAX>,
    }
}

wire_struct! {
    /// Reply to echo.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct EchoReply {
        /// ISO 8583 response code (always 0).
        code: u8,
        /// authd reason (always 0).
        reason: u8,
        /// The request's value.
        value: u64,
    }
}

wire_enum! {
    /// What was wrong with a frame (ERROR reply).
    pub enum ProtocolError {
        /// The message type is not defined (value = the type). Connection kept.
        UnknownType = 1,
        /// Flags, reserved header byte or a push's request id are wrong (value = the byte).
        /// Connection kept.
        Flags = 2,
        /// The body does not match the layout (value = offending field value or body offset).
        /// Connection kept.
        Body = 3,
        /// Length prefix below 12 (value = the length). Connection closed.
        LengthBelowHeader = 4,
        /// Frame above the server's limit (value = claimed frame size). Connection closed.
        Oversized = 5,
        /// Header version is not the session's (value = the version). Connection closed.
        Version = 6,
        /// A request before log-on completed (value = the type). Connection closed.
        NotLoggedOn = 7,
        /// A message this side or role may not send, such as a reply type or a second
        /// LOGON_HELLO (value = the type). Connection kept.
        Unexpected = 8,
        /// The server cannot serve this: over its connection limit (code 96, reason 22, value =
        /// the limit, request id 0; the connection closes), or its log failed (code 96, reason
        /// 23, for each request whose decision is not durable: retry with the same request id
        /// after the operator restarts authd).
        Busy = 9,
    }
}

impl ProtocolError {
    /// True if the server closes the connection after sending this error.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ProtocolError::LengthBelowHeader
                | ProtocolError::Oversized
                | ProtocolError::Version
                | ProtocolError::NotLoggedOn
        )
    }
}

wire_struct! {
    /// The ERROR reply (type 0xFF): the frame was not executed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ErrorReply {
        /// ISO 8583 response code: 30 (format error), or 96 when busy.
        code: u8,
        /// authd reason: 21 (invalid request), 24 (not permitted) or 22 (capacity exceeded).
        reason: u8,
        /// What was wrong.
        error: ProtocolError,
        /// The offending frame's message type (0 if unknown).
        message_type: u8,
        /// The offending value (see the error).
        value: u64,
    }
}

impl ErrorReply {
    /// The ERROR reply a server sends for a decode error (with `error.request_id()`).
    pub fn for_decode_error(error: &DecodeError) -> ErrorReply {
        let (kind, message_type, value) = match *error {
            DecodeError::LengthBelowHeader { length, .. } => {
                (ProtocolError::LengthBelowHeader, 0, u64::from(length))
            }
            DecodeError::Oversized { frame_bytes, .. } => (ProtocolError::Oversized, 0, frame_bytes),
            DecodeError::Version { found, .. } => (ProtocolError::Version, 0, u64::from(found)),
            DecodeError::UnknownType { message_type, .. } => {
                (ProtocolError::UnknownType, message_type, u64::from(message_type))
            }
            DecodeError::Flags {
                flags, message_type, ..
            } => (ProtocolError::Flags, message_type, u64::from(flags)),
            DecodeError::Body {
                message_type, source, ..
            } => (ProtocolError::Body, message_type, source.value()),
        };
        ErrorReply::new(kind, message_type, value)
    }

    /// An ERROR reply of `kind` about a frame of `message_type`, with the usual code and reason.
    pub fn new(kind: ProtocolError, message_type: u8, value: u64) -> ErrorReply {
        let (code, reason) = match kind {
            ProtocolError::NotLoggedOn => (ISO_FORMAT_ERROR, REASON_NOT_PERMITTED),
            ProtocolError::Busy => (96, 22),
            _ => (ISO_FORMAT_ERROR, REASON_INVALID_REQUEST),
        };
        ErrorReply {
            code,
            reason,
            error: kind,
            message_type,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    #[test]
    fn error_reply_closes_exactly_when_the_decode_error_does() {
        let errors = [
            DecodeError::LengthBelowHeader {
                length: 3,
                header_bytes: 12,
            },
            DecodeError::Oversized {
                frame_bytes: 9000,
                frame_bytes_max: 4096,
            },
            DecodeError::Version {
                found: 9,
                expected: 1,
            },
            DecodeError::UnknownType {
                message_type: 0x7E,
                request_id: 5,
            },
            DecodeError::Flags {
                flags: 2,
                message_type: 0x14,
                request_id: 5,
            },
            DecodeError::Body {
                message_type: 0x14,
                request_id: 5,
                source: FieldError::invalid("payer", 9u8),
            },
        ];
        for error in errors {
            let reply = ErrorReply::for_decode_error(&error);
            assert_eq!(
                reply.error.closes_connection(),
                error.closes_connection(),
                "{error}"
            );
            assert_eq!((reply.code, reply.reason), (30, 21));
        }
        let body = ErrorReply::for_decode_error(&errors[5]);
        assert_eq!((body.message_type, body.value), (0x14, 9));
    }
}
