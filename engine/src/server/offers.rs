//! Offer and dispute requests, from wire to books and back (the flows of the seeds):
//! terminals offer, cancel, ask an offer's status and report failed provisioning; payer
//! devices (or a gateway, a device registered for account 0) list, accept and reject offers;
//! the operator opens, resolves and lists disputes.

use wire::messages::reply::{
    AcceptOfferReply, DisputeListReply, DisputeReply, DisputeSummary, OfferListReply, OfferReply,
    OfferStatusReply, OfferSummary, DISPUTES_PER_REPLY_MAX, OFFERS_PER_REPLY_MAX,
};
use wire::types::{self as w, ShortText};
use wire::{Reply, Request};

use crate::books::dispute::{DisputeState, DisputeView};
use crate::books::offer::{OfferState, OfferView};
use crate::books::Books;
use crate::command::{Command, Origin, TerminalOp};
use crate::ids::Lsn;
use crate::ids::{AccountId, Currency, DisputeId, HoldId, PinBlock, Reference};
use crate::reason::Reason;
use crate::server::dispatch::{payer, read_position as reads, status_reply as status, Context};

type Dispatched = Result<(Reply, Lsn), Reason>;

/// The wire's offer state.
pub fn wire_state(state: OfferState) -> w::OfferState {
    match state {
        OfferState::Offered => w::OfferState::Offered,
        OfferState::Accepted => w::OfferState::Accepted,
        OfferState::Rejected => w::OfferState::Rejected,
        OfferState::Expired => w::OfferState::Expired,
        OfferState::Cancelled => w::OfferState::Cancelled,
    }
}

fn short_text(text: &str) -> ShortText {
    ShortText::new(text)
        .unwrap_or_else(|| ShortText::new("").unwrap_or_else(|| unreachable!("empty text fits")))
}

/// An offer as a payer device sees it.
pub fn summary(books: &Books, now_us: u64, view: &OfferView) -> OfferSummary {
    let origin = books.merchant_origin(view.merchant).unwrap_or_default();
    OfferSummary {
        offer_id: w::OfferId(view.offer.0),
        merchant_id: w::MerchantId(view.merchant.0),
        origin: short_text(origin.as_str()),
        amount_minor: view.amount,
        currency: books.config().currency.0,
        expires_in_s: (view.expires_us.saturating_sub(now_us) / 1_000_000) as u32,
        reference: short_text(view.reference.as_str()),
    }
}

/// Terminal requests of the offer and dispute flows; `None` if `request` is none of them.
pub fn terminal(context: &Context<'_>, origin: Origin, request: &Request) -> Option<Dispatched> {
    let execute = |op| {
        let executed = context
            .store
            .execute(&Command::Terminal { origin, op }, context.now_us);
        (executed.outcome, executed.lsn)
    };
    let dispatched = match request {
        Request::Offer(body) => (|| {
            let reference = Reference::new(body.reference.as_str()).ok_or(Reason::InvalidRequest)?;
            let op = TerminalOp::Offer {
                payer: payer(context, body.payer)?,
                amount: body.amount_minor,
                currency: Currency(body.currency),
                lifetime_us: u64::from(body.expires_in_s) * 1_000_000,
                reference,
            };
            let (outcome, lsn) = execute(op);
            let reply = OfferReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                offer_id: w::OfferId(outcome.id),
            };
            Ok((Reply::Offer(reply), lsn))
        })(),
        Request::OfferCancel(body) => {
            let (outcome, lsn) = execute(TerminalOp::OfferCancel {
                offer: HoldId(body.offer_id.0),
            });
            Ok((Reply::OfferCancel(status(outcome.reason)), lsn))
        }
        Request::OfferStatus(body) => {
            let view = context
                .store
                .books()
                .offer(HoldId(body.offer_id.0))
                .filter(|view| view.merchant == origin.merchant);
            let reply = match view {
                Some(view) => OfferStatusReply {
                    code: 0,
                    reason: 0,
                    offer_id: body.offer_id,
                    state: wire_state(view.state),
                    hold_id: w::HoldId(view.offer.0),
                    amount_minor: view.amount,
                },
                None => return Some(Err(Reason::HoldUnknown)),
            };
            Ok((Reply::OfferStatus(reply), reads(context)))
        }
        Request::ReportFailedProvisioning(body) => {
            let op = TerminalOp::ReportFailedProvisioning {
                hold: HoldId(body.hold_id.0),
                amount: body.amount_minor,
                cause: body.cause as u8,
            };
            let (outcome, lsn) = execute(op);
            let reply = DisputeReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                dispute_id: w::DisputeId(outcome.id),
            };
            Ok((Reply::ReportFailedProvisioning(reply), lsn))
        }
        _ => return None,
    };
    Some(dispatched)
}

/// Payer device requests of the offer flow; `account` 0 is a gateway relaying for every payer.
pub fn device(context: &Context<'_>, account: AccountId, request: &Request) -> Option<Dispatched> {
    let payer = (account.0 != 0).then_some(account);
    let dispatched = match request {
        Request::ListOffers(body) => {
            let books = context.store.books();
            let mut views = books.pending_offers(
                payer,
                HoldId(body.after_offer_id.0),
                context.now_us,
                OFFERS_PER_REPLY_MAX + 1,
            );
            let more = views.len() > OFFERS_PER_REPLY_MAX;
            views.truncate(OFFERS_PER_REPLY_MAX);
            let offers = views
                .iter()
                .map(|view| summary(books, context.now_us, view))
                .collect();
            let offers = w::List::new(offers).unwrap_or_else(|| unreachable!("truncated to the maximum"));
            Ok((
                Reply::ListOffers(OfferListReply {
                    code: 0,
                    reason: 0,
                    more,
                    offers,
                }),
                reads(context),
            ))
        }
        Request::AcceptOffer(body) => {
            let pin = Some(PinBlock(*body.pin.as_bytes()));
            let command = Command::OfferAnswer {
                offer: HoldId(body.offer_id.0),
                payer,
                accept: true,
                pin,
            };
            let executed = context.store.execute(&command, context.now_us);
            let outcome = executed.outcome;
            let offer_payer = context
                .store
                .books()
                .offer(HoldId(body.offer_id.0))
                .map(|view| view.payer);
            let available = offer_payer
                .filter(|_| outcome.reason.is_approved())
                .and_then(|account| context.store.books().account_info(account))
                .map_or(0, |info| info.available);
            let reply = AcceptOfferReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                hold_id: w::HoldId(outcome.id),
                amount_minor: outcome.amount,
                available_minor: available,
            };
            // The balance is read after the answer: wait for what it may show, too.
            Ok((Reply::AcceptOffer(reply), executed.lsn.max(reads(context))))
        }
        Request::RejectOffer(body) => {
            let command = Command::OfferAnswer {
                offer: HoldId(body.offer_id.0),
                payer,
                accept: false,
                pin: None,
            };
            let executed = context.store.execute(&command, context.now_us);
            Ok((Reply::RejectOffer(status(executed.outcome.reason)), executed.lsn))
        }
        _ => return None,
    };
    Some(dispatched)
}

fn dispute_summary(view: &DisputeView) -> DisputeSummary {
    DisputeSummary {
        dispute_id: w::DisputeId(view.dispute.0),
        hold_id: w::HoldId(view.hold.0),
        amount_minor: view.amount,
        cause: w::DisputeCause::from_u8(view.cause).unwrap_or(w::DisputeCause::Other),
        state: match view.state {
            DisputeState::Open => w::DisputeState::Open,
            DisputeState::ResolvedForPayer => w::DisputeState::ResolvedForPayer,
            DisputeState::ResolvedForMerchant => w::DisputeState::ResolvedForMerchant,
        },
    }
}

/// Operator requests of the dispute flow; `None` if `request` is none of them.
pub fn operator(context: &Context<'_>, request: &Request) -> Option<Dispatched> {
    let dispatched = match request {
        Request::DisputeOpen(body) => {
            let command = Command::DisputeOpen {
                hold: HoldId(body.hold_id.0),
                amount: body.amount_minor,
                cause: body.cause as u8,
            };
            let executed = context.store.execute(&command, context.now_us);
            let outcome = executed.outcome;
            let reply = DisputeReply {
                code: outcome.reason.iso_code(),
                reason: outcome.reason as u8,
                dispute_id: w::DisputeId(outcome.id),
            };
            Ok((Reply::DisputeOpen(reply), executed.lsn))
        }
        Request::DisputeResolve(body) => {
            let for_payer = body.outcome == w::DisputeOutcome::ForPayer;
            let command = Command::DisputeResolve {
                dispute: DisputeId(body.dispute_id.0),
                for_payer,
            };
            let executed = context.store.execute(&command, context.now_us);
            Ok((
                Reply::DisputeResolve(status(executed.outcome.reason)),
                executed.lsn,
            ))
        }
        Request::DisputeList(body) => {
            let mut views = context
                .store
                .books()
                .disputes(DisputeId(body.after_dispute_id.0), DISPUTES_PER_REPLY_MAX + 1);
            let more = views.len() > DISPUTES_PER_REPLY_MAX;
            views.truncate(DISPUTES_PER_REPLY_MAX);
            let disputes = w::List::new(views.iter().map(dispute_summary).collect())
                .unwrap_or_else(|| unreachable!("truncated"));
            Ok((
                Reply::DisputeList(DisputeListReply {
                    code: 0,
                    reason: 0,
                    more,
                    disputes,
                }),
                reads(context),
            ))
        }
        _ => return None,
    };
    Some(dispatched)
}
