//! Typed messages: which message type byte means which body.
//!
//! Type ranges: 0x01-0x0F log-on, 0x10-0x7F requests (0x10 terminal, 0x30 payer device, 0x40
//! operator), 0x80-0xDF replies (a reply's type is its request's type | 0x80), 0xE0-0xEF pushes,
//! 0xFF the ERROR reply.

use bytes::BytesMut;

use crate::error::FieldError;
use crate::field::{Entropy, Field, Reader};
use crate::layout::FieldLayout;
use crate::logon::{Challenge, Hello, LogonFailed, LogonOk, Proof};
use crate::messages::device::{AcceptOffer, ListOffers, OwnBalance, RejectOffer};
use crate::messages::operator::{
    AccountInfo, DisputeList, DisputeOpen, DisputeResolve, LoadFunds, OpenAccount, RegisterDevice,
    RegisterMerchant, RegisterTerminal, SetLimits, SetPin, SetStatus, Stats,
};
use crate::messages::push::OfferOutcome;
use crate::messages::reply::{
    AcceptOfferReply, AccountInfoReply, AccountReply, BalanceReply, DeviceReply, DisputeListReply,
    DisputeReply, EchoReply, ErrorReply, HoldReply, LoadFundsReply, MerchantReply, OfferListReply,
    OfferReply, OfferStatusReply, OfferSummary, StatsReply, StatusReply, TerminalReply,
};
use crate::messages::terminal::{
    Authorize, BalanceCheck, Capture, Echo, Increment, Offer, OfferCancel, OfferStatus, Purchase, Refund,
    ReportFailedProvisioning, Reversal, Void,
};

/// One message type, for the docs and the tests.
#[derive(Clone, Copy, Debug)]
pub struct MessageSpec {
    /// The type byte.
    pub message_type: u8,
    /// The variant name.
    pub name: &'static str,
    /// The body struct's name.
    pub body: &'static str,
    /// The body's byte table.
    pub layout: &'static [FieldLayout],
}

macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident($body:ty) = $value:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[doc = $doc])* $variant($body), )*
        }

        impl $name {
            /// Every message type of this kind.
            pub const SPECS: &'static [MessageSpec] = &[$(
                MessageSpec {
                    message_type: $value,
                    name: stringify!($variant),
                    body: stringify!($body),
                    layout: <$body>::LAYOUT,
                },
            )*];

            /// The type byte of this message.
            pub fn message_type(&self) -> u8 {
                match self {
                    $( $name::$variant(_) => $value, )*
                }
            }

            /// Appends the body (no header).
            #[inline]
            pub fn put_body(&self, out: &mut BytesMut) {
                match self {
                    $( $name::$variant(body) => body.put(out), )*
                }
            }

            /// Reads a whole body of type `message_type`; `None` if the type is not of this kind.
            #[inline(always)]
            pub fn get_body(
                message_type: u8,
                body: &[u8],
            ) -> Option<Result<$name, FieldError>> {
                let mut reader = Reader::new(body);
                let message = match message_type {
                    $( $value => <$body as Field>::get(&mut reader, stringify!($variant))
                        .map($name::$variant), )*
                    _ => return None,
                };
                Some(message.and_then(|message| reader.finish().map(|()| message)))
            }

            /// A valid message of type `message_type` built from arbitrary bytes.
            pub fn sample(message_type: u8, entropy: &mut Entropy<'_>) -> Option<$name> {
                match message_type {
                    $( $value => Some($name::$variant(<$body as Field>::sample(entropy))), )*
                    _ => None,
                }
            }
        }
    };
}

message_enum! {
    /// The log-on exchange (before any request).
    pub enum Logon {
        /// Client: role, id, versions, nonce.
        Hello(Hello) = 0x01,
        /// Server: chosen version and nonce.
        Challenge(Challenge) = 0x02,
        /// Client: the HMAC.
        Proof(Proof) = 0x03,
        /// Server: logged on.
        LogonOk(LogonOk) = 0x04,
        /// Server: refused; the connection closes.
        LogonFailed(LogonFailed) = 0x05,
    }
}

message_enum! {
    /// Requests, client to server.
    pub enum Request {
        Authorize(Authorize) = 0x10,
        Increment(Increment) = 0x11,
        Capture(Capture) = 0x12,
        Void(Void) = 0x13,
        Purchase(Purchase) = 0x14,
        Refund(Refund) = 0x15,
        Reversal(Reversal) = 0x16,
        BalanceCheck(BalanceCheck) = 0x17,
        Offer(Offer) = 0x18,
        OfferCancel(OfferCancel) = 0x19,
        OfferStatus(OfferStatus) = 0x1A,
        ReportFailedProvisioning(ReportFailedProvisioning) = 0x1B,
        Echo(Echo) = 0x1F,
        ListOffers(ListOffers) = 0x30,
        AcceptOffer(AcceptOffer) = 0x31,
        RejectOffer(RejectOffer) = 0x32,
        OwnBalance(OwnBalance) = 0x33,
        OpenAccount(OpenAccount) = 0x40,
        LoadFunds(LoadFunds) = 0x41,
        SetLimits(SetLimits) = 0x42,
        SetPin(SetPin) = 0x43,
        SetStatus(SetStatus) = 0x44,
        RegisterMerchant(RegisterMerchant) = 0x45,
        RegisterTerminal(RegisterTerminal) = 0x46,
        RegisterDevice(RegisterDevice) = 0x47,
        AccountInfo(AccountInfo) = 0x48,
        Stats(Stats) = 0x49,
        DisputeOpen(DisputeOpen) = 0x4A,
        DisputeResolve(DisputeResolve) = 0x4B,
        DisputeList(DisputeList) = 0x4C,
    }
}

message_enum! {
    /// Replies, server to client; each carries its request's request id. The variant names the
    /// request answered (type = request type | 0x80), except `Error`.
    pub enum Reply {
        Authorize(HoldReply) = 0x90,
        Increment(HoldReply) = 0x91,
        Capture(HoldReply) = 0x92,
        Void(HoldReply) = 0x93,
        Purchase(HoldReply) = 0x94,
        Refund(HoldReply) = 0x95,
        Reversal(StatusReply) = 0x96,
        BalanceCheck(StatusReply) = 0x97,
        Offer(OfferReply) = 0x98,
        OfferCancel(StatusReply) = 0x99,
        OfferStatus(OfferStatusReply) = 0x9A,
        ReportFailedProvisioning(DisputeReply) = 0x9B,
        Echo(EchoReply) = 0x9F,
        ListOffers(OfferListReply) = 0xB0,
        AcceptOffer(AcceptOfferReply) = 0xB1,
        RejectOffer(StatusReply) = 0xB2,
        OwnBalance(BalanceReply) = 0xB3,
        OpenAccount(AccountReply) = 0xC0,
        LoadFunds(LoadFundsReply) = 0xC1,
        SetLimits(StatusReply) = 0xC2,
        SetPin(StatusReply) = 0xC3,
        SetStatus(StatusReply) = 0xC4,
        RegisterMerchant(MerchantReply) = 0xC5,
        RegisterTerminal(TerminalReply) = 0xC6,
        RegisterDevice(DeviceReply) = 0xC7,
        AccountInfo(AccountInfoReply) = 0xC8,
        Stats(StatsReply) = 0xC9,
        DisputeOpen(DisputeReply) = 0xCA,
        DisputeResolve(StatusReply) = 0xCB,
        DisputeList(DisputeListReply) = 0xCC,
        /// The frame with this request id was not executed (see the error).
        Error(ErrorReply) = 0xFF,
    }
}

message_enum! {
    /// Pushes, server to client unasked: flag PUSH set, request id 0.
    pub enum Push {
        /// To a payer device: a merchant asks the payer to pay.
        OfferPresented(OfferSummary) = 0xE0,
        /// To the offering terminal: how its offer ended.
        OfferOutcome(OfferOutcome) = 0xE1,
    }
}

impl Reply {
    /// The (ISO 8583 code, reason) pair every reply starts with.
    pub fn outcome(&self) -> (u8, u8) {
        match self {
            Reply::Authorize(body)
            | Reply::Increment(body)
            | Reply::Capture(body)
            | Reply::Void(body)
            | Reply::Purchase(body)
            | Reply::Refund(body) => (body.code, body.reason),
            Reply::Reversal(body)
            | Reply::BalanceCheck(body)
            | Reply::OfferCancel(body)
            | Reply::RejectOffer(body)
            | Reply::SetLimits(body)
            | Reply::SetPin(body)
            | Reply::SetStatus(body)
            | Reply::DisputeResolve(body) => (body.code, body.reason),
            Reply::ReportFailedProvisioning(body) | Reply::DisputeOpen(body) => (body.code, body.reason),
            Reply::Offer(body) => (body.code, body.reason),
            Reply::OfferStatus(body) => (body.code, body.reason),
            Reply::Echo(body) => (body.code, body.reason),
            Reply::ListOffers(body) => (body.code, body.reason),
            Reply::AcceptOffer(body) => (body.code, body.reason),
            Reply::OwnBalance(body) => (body.code, body.reason),
            Reply::OpenAccount(body) => (body.code, body.reason),
            Reply::LoadFunds(body) => (body.code, body.reason),
            Reply::RegisterMerchant(body) => (body.code, body.reason),
            Reply::RegisterTerminal(body) => (body.code, body.reason),
            Reply::RegisterDevice(body) => (body.code, body.reason),
            Reply::AccountInfo(body) => (body.code, body.reason),
            Reply::Stats(body) => (body.code, body.reason),
            Reply::DisputeList(body) => (body.code, body.reason),
            Reply::Error(body) => (body.code, body.reason),
        }
    }
}

/// Any message, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Log-on exchange.
    Logon(Logon),
    /// Client request.
    Request(Request),
    /// Server reply.
    Reply(Reply),
    /// Server push.
    Push(Push),
}

impl Message {
    /// The type byte.
    #[inline]
    pub fn message_type(&self) -> u8 {
        match self {
            Message::Logon(message) => message.message_type(),
            Message::Request(message) => message.message_type(),
            Message::Reply(message) => message.message_type(),
            Message::Push(message) => message.message_type(),
        }
    }

    /// Appends the body.
    #[inline]
    pub fn put_body(&self, out: &mut BytesMut) {
        match self {
            Message::Logon(message) => message.put_body(out),
            Message::Request(message) => message.put_body(out),
            Message::Reply(message) => message.put_body(out),
            Message::Push(message) => message.put_body(out),
        }
    }

    /// Reads a body; `None` for an undefined type.
    #[inline(always)]
    pub fn get_body(message_type: u8, body: &[u8]) -> Option<Result<Message, FieldError>> {
        match message_type {
            0x10..=0x7F => Request::get_body(message_type, body).map(|r| r.map(Message::Request)),
            0x80..=0xDF | 0xFF => Reply::get_body(message_type, body).map(|r| r.map(Message::Reply)),
            0xE0..=0xEF => Push::get_body(message_type, body).map(|r| r.map(Message::Push)),
            _ => Logon::get_body(message_type, body).map(|r| r.map(Message::Logon)),
        }
    }

    /// True for the push types (0xE0-0xEF), which need the PUSH flag and request id 0.
    pub fn is_push_type(message_type: u8) -> bool {
        (0xE0..=0xEF).contains(&message_type)
    }

    /// Every defined message type.
    pub fn specs() -> impl Iterator<Item = &'static MessageSpec> {
        Logon::SPECS
            .iter()
            .chain(Request::SPECS)
            .chain(Reply::SPECS)
            .chain(Push::SPECS)
    }

    /// A valid message of any type, built from arbitrary bytes.
    pub fn sample(entropy: &mut Entropy<'_>) -> Message {
        let specs: Vec<&MessageSpec> = Message::specs().collect();
        let index = entropy.below(specs.len() as u64) as usize;
        let message_type = specs.get(index).map_or(0x1F, |spec| spec.message_type);
        Message::sample_of(message_type, entropy)
            .unwrap_or(Message::Request(Request::Echo(Echo { value: 0 })))
    }

    /// A valid message of type `message_type`, if defined.
    pub fn sample_of(message_type: u8, entropy: &mut Entropy<'_>) -> Option<Message> {
        Logon::sample(message_type, entropy)
            .map(Message::Logon)
            .or_else(|| Request::sample(message_type, entropy).map(Message::Request))
            .or_else(|| Reply::sample(message_type, entropy).map(Message::Reply))
            .or_else(|| Push::sample(message_type, entropy).map(Message::Push))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bytes_are_unique_and_replies_mirror_requests() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in Message::specs() {
            assert!(
                seen.insert(spec.message_type),
                "duplicate {:#04x}",
                spec.message_type
            );
        }
        for request in Request::SPECS {
            let reply = Reply::SPECS
                .iter()
                .find(|reply| reply.message_type == request.message_type | 0x80);
            assert_eq!(reply.map(|reply| reply.name), Some(request.name));
        }
    }

    #[test]
    fn every_body_fits_the_smallest_frame_limit() {
        for spec in Message::specs() {
            let fixed: usize = spec.layout.iter().map(|field| field.bytes).sum();
            assert!(fixed + crate::header::BODY_OFFSET < 1024, "{}", spec.name);
        }
    }
}
