//! The reply of each request type that declines it with a reason: every field zero but the
//! code and reason, so a client decodes a decline like any reply of that type.

use wire::messages::reply::{
    AcceptOfferReply, AccountInfoReply, AccountReply, BalanceReply, DeviceReply, DisputeListReply,
    DisputeReply, EchoReply, HoldReply, LoadFundsReply, MerchantReply, OfferListReply, OfferReply,
    OfferStatusReply, StatsReply, StatusReply, TerminalReply,
};
use wire::types::{self as w, AccountNumber};
use wire::{Reply, Request};

use crate::reason::Reason;

/// The reply of `request`'s type that declines it with `reason` (every other field zero).
pub fn declined(request: &Request, reason: Reason) -> Reply {
    let (code, reason) = (reason.iso_code(), reason as u8);
    let status = StatusReply { code, reason };
    let hold = HoldReply {
        code,
        reason,
        hold_id: w::HoldId(0),
        amount_minor: 0,
    };
    match request {
        Request::Authorize(_) => Reply::Authorize(hold),
        Request::Increment(_) => Reply::Increment(hold),
        Request::Capture(_) => Reply::Capture(hold),
        Request::Void(_) => Reply::Void(hold),
        Request::Purchase(_) => Reply::Purchase(hold),
        Request::Refund(_) => Reply::Refund(hold),
        Request::Reversal(_) => Reply::Reversal(status),
        Request::BalanceCheck(_) => Reply::BalanceCheck(status),
        Request::OfferCancel(_) => Reply::OfferCancel(status),
        Request::RejectOffer(_) => Reply::RejectOffer(status),
        Request::SetLimits(_) => Reply::SetLimits(status),
        Request::SetPin(_) => Reply::SetPin(status),
        Request::SetStatus(_) => Reply::SetStatus(status),
        Request::DisputeResolve(_) => Reply::DisputeResolve(status),
        other => declined_other(other, code, reason),
    }
}

fn declined_other(request: &Request, code: u8, reason: u8) -> Reply {
    let dispute = DisputeReply {
        code,
        reason,
        dispute_id: w::DisputeId(0),
    };
    match request {
        Request::Offer(_) => Reply::Offer(OfferReply {
            code,
            reason,
            offer_id: w::OfferId(0),
        }),
        Request::OfferStatus(_) => Reply::OfferStatus(OfferStatusReply {
            code,
            reason,
            offer_id: w::OfferId(0),
            state: w::OfferState::Unknown,
            hold_id: w::HoldId(0),
            amount_minor: 0,
        }),
        Request::ReportFailedProvisioning(_) => Reply::ReportFailedProvisioning(dispute),
        Request::DisputeOpen(_) => Reply::DisputeOpen(dispute),
        Request::ListOffers(_) => Reply::ListOffers(OfferListReply {
            code,
            reason,
            more: false,
            offers: w::List::new(Vec::new()).unwrap_or_else(|| unreachable!("an empty list fits")),
        }),
        Request::DisputeList(_) => Reply::DisputeList(DisputeListReply {
            code,
            reason,
            more: false,
            disputes: w::List::new(Vec::new()).unwrap_or_else(|| unreachable!("an empty list fits")),
        }),
        Request::AcceptOffer(_) => Reply::AcceptOffer(AcceptOfferReply {
            code,
            reason,
            hold_id: w::HoldId(0),
            amount_minor: 0,
            available_minor: 0,
        }),
        Request::OwnBalance(_) => Reply::OwnBalance(BalanceReply {
            code,
            reason,
            currency: 0,
            balance_minor: 0,
            held_minor: 0,
            available_minor: 0,
            loyalty_points: 0,
        }),
        Request::OpenAccount(_) => Reply::OpenAccount(AccountReply {
            code,
            reason,
            account: AccountNumber(0),
        }),
        Request::LoadFunds(_) => Reply::LoadFunds(LoadFundsReply {
            code,
            reason,
            balance_minor: 0,
            available_minor: 0,
        }),
        Request::RegisterMerchant(_) => Reply::RegisterMerchant(MerchantReply {
            code,
            reason,
            merchant_id: w::MerchantId(0),
            settlement_account: AccountNumber(0),
        }),
        Request::RegisterTerminal(_) => Reply::RegisterTerminal(TerminalReply {
            code,
            reason,
            terminal_id: w::TerminalId(0),
            secret: [0; 32],
        }),
        Request::RegisterDevice(_) => Reply::RegisterDevice(DeviceReply {
            code,
            reason,
            device_id: w::DeviceId(0),
            secret: [0; 32],
        }),
        Request::AccountInfo(_) => Reply::AccountInfo(AccountInfoReply {
            code,
            reason,
            account: AccountNumber(0),
            kind: None,
            status: None,
            currency: 0,
            mobile: 0,
            balance_minor: 0,
            held_minor: 0,
            available_minor: 0,
            loyalty_points: 0,
            limits: w::Limits {
                per_payment_minor: 0,
                per_day_minor: 0,
                per_day_count: 0,
                pin_above_minor: 0,
            },
        }),
        Request::Stats(_) => Reply::Stats(StatsReply {
            code,
            reason,
            counters: w::List::new(Vec::new()).unwrap_or_else(|| unreachable!("an empty list fits")),
        }),
        Request::Echo(body) => Reply::Echo(EchoReply {
            code,
            reason,
            value: body.value,
        }),
        _ => unreachable!("the other requests are declined by `declined`"),
    }
}
