//! Flows step by step, and the money loadgen saw move: what the books must show afterwards.
//!
//! Each reply moves a flow on: an approved AUTHORIZE is followed by its CAPTURE, a purchase in
//! a refund flow by its REFUND, and so on. Every approved step is booked in [`BooksTally`]
//! exactly as authd books it (payer balance and held, merchant settlement net of its fee, the
//! issuer's fee account), so that the books check can compare.

use crate::books::PayerSample;
use crate::connection::Completed;
use crate::template::{Fields, RequestKind};
use crate::workload::FlowKind;

/// A flow between two requests: small and `Copy`, carried in the in-flight ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// What kind of flow.
    pub flow: FlowKindCode,
    /// Which request of the flow is in flight (0 = first).
    pub step: u8,
    /// Whether the first step of a reversal flow (its purchase) was approved.
    pub purchase_approved: bool,
    /// Payer index.
    pub payer: u32,
    /// The payer's account number, for the flow's next requests.
    pub account: u64,
    /// The flow's amount, minor units.
    pub amount: u64,
    /// What the flow's hold holds now, minor units.
    pub held: u64,
}

/// `FlowKind` as a `Default` field of the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKindCode(pub u8);

impl FlowKindCode {
    fn kind(self) -> FlowKind {
        FlowKind::ALL
            .get(usize::from(self.0))
            .copied()
            .unwrap_or(FlowKind::Echo)
    }
}

/// The next request of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Request kind.
    pub kind: RequestKind,
    /// Its fields.
    pub fields: Fields,
    /// The flow's state while it is in flight.
    pub state: FlowState,
}

/// The first request of a flow of `kind` by payer `payer` (account `account`) for `amount`;
/// an offer flow's OFFER carries `offer_tag` (see `template::offer_tag`).
pub fn start(kind: FlowKind, payer: u32, account: u64, amount: u64, offer_tag: u32) -> Step {
    let state = FlowState {
        flow: FlowKindCode(kind as u8),
        step: 0,
        purchase_approved: false,
        payer,
        account,
        amount,
        held: 0,
    };
    let request = match kind {
        FlowKind::Purchase | FlowKind::Refund | FlowKind::Reversal | FlowKind::FailedProvisioning => {
            RequestKind::Purchase
        }
        FlowKind::AuthorizeCapture | FlowKind::AuthorizeVoid | FlowKind::AuthorizeIncrementCapture => {
            RequestKind::Authorize
        }
        FlowKind::BalanceCheck => RequestKind::BalanceCheck,
        FlowKind::Echo => RequestKind::Echo,
        FlowKind::OfferCancel | FlowKind::Offer | FlowKind::OfferStatus => RequestKind::Offer,
    };
    Step {
        kind: request,
        fields: Fields {
            account,
            amount,
            hold: if kind == FlowKind::Offer {
                u64::from(offer_tag)
            } else {
                0
            },
        },
        state,
    }
}

/// Money loadgen saw approved: by merchant index, and for the payers the books check reads.
/// Sums wrap (arithmetic modulo 2^64): the check compares differences, which stay exact, and
/// a misbehaving server's amounts must make it report a mismatch, not panic.
#[derive(Clone, Debug)]
pub struct BooksTally {
    /// The payers tallied.
    sample: PayerSample,
    /// Change of each sampled payer's balance, by place in the sample.
    pub(crate) payer_balance: Vec<i64>,
    /// Change of each sampled payer's held amount, by place in the sample.
    pub(crate) payer_held: Vec<i64>,
    /// Change of each merchant's settlement balance, if its fee is `fee_bps`.
    pub merchant_net: Vec<i64>,
    /// Amounts paid to each merchant before fees.
    pub merchant_gross: Vec<i64>,
    /// Change of the issuer's fee account, if every merchant's fee is `fee_bps`.
    pub fee: i64,
    /// Requests whose outcome loadgen never learnt (connection lost, drain timeout).
    pub unknown_outcomes: u64,
    /// Follow-up requests that could not be queued (the flow was cut short).
    pub follow_ups_dropped: u64,
    fee_bps: u64,
}

impl BooksTally {
    /// An empty tally of the payers in `sample` and of `merchants` merchants with fee `fee_bps`.
    pub fn new(sample: PayerSample, merchants: usize, fee_bps: u16) -> BooksTally {
        BooksTally {
            sample,
            payer_balance: vec![0; sample.len()],
            payer_held: vec![0; sample.len()],
            merchant_net: vec![0; merchants],
            merchant_gross: vec![0; merchants],
            fee: 0,
            unknown_outcomes: 0,
            follow_ups_dropped: 0,
            fee_bps: u64::from(fee_bps),
        }
    }

    /// Adds another thread's tally.
    pub fn merge(&mut self, other: &BooksTally) {
        add_all(&mut self.payer_balance, &other.payer_balance);
        add_all(&mut self.payer_held, &other.payer_held);
        add_all(&mut self.merchant_net, &other.merchant_net);
        add_all(&mut self.merchant_gross, &other.merchant_gross);
        self.fee = self.fee.wrapping_add(other.fee);
        self.unknown_outcomes += other.unknown_outcomes;
        self.follow_ups_dropped += other.follow_ups_dropped;
    }

    /// How much loadgen saw `payer`'s balance and held amount move (zero for a payer not in
    /// the sample).
    pub fn payer_moved(&self, payer: usize) -> (i64, i64) {
        match self.sample.place(payer) {
            Some(place) => (self.payer_balance[place], self.payer_held[place]),
            None => (0, 0),
        }
    }

    /// `payer`'s balance moved by `amount`.
    #[inline]
    fn move_balance(&mut self, payer: u32, amount: i64) {
        if let Some(place) = self.sample.place(payer as usize) {
            self.payer_balance[place] = self.payer_balance[place].wrapping_add(amount);
        }
    }

    fn fee_on(&self, amount: u64) -> u64 {
        (u128::from(amount) * u128::from(self.fee_bps) / 10_000) as u64
    }

    /// The payer paid `amount` to the merchant (purchase or capture).
    fn pay(&mut self, payer: u32, merchant: u32, amount: u64) {
        let fee = self.fee_on(amount);
        self.move_money(payer, merchant, amount as i64, fee as i64);
    }

    /// The payer paid `paid` to the merchant, `fee` of it to the issuer's fee account
    /// (both negative to give money back).
    fn move_money(&mut self, payer: u32, merchant: u32, paid: i64, fee: i64) {
        self.move_balance(payer, paid.wrapping_neg());
        let merchant = merchant as usize;
        self.merchant_net[merchant] = self.merchant_net[merchant].wrapping_add(paid.wrapping_sub(fee));
        self.merchant_gross[merchant] = self.merchant_gross[merchant].wrapping_add(paid);
        self.fee = self.fee.wrapping_add(fee);
    }

    fn hold(&mut self, payer: u32, amount: i64) {
        if let Some(place) = self.sample.place(payer as usize) {
            self.payer_held[place] = self.payer_held[place].wrapping_add(amount);
        }
    }
}

fn add_all(into: &mut [i64], from: &[i64]) {
    for (total, part) in into.iter_mut().zip(from) {
        *total = total.wrapping_add(*part);
    }
}

/// Books the reply `done` (on a connection of merchant `merchant`) and returns the flow's next
/// request, if any.
pub fn advance(done: &Completed, merchant: u32, books: &mut BooksTally) -> Option<Step> {
    let approved = done.error.is_none() && done.code == 0;
    let mut state = done.state;
    let payer = state.payer;
    let next = |kind: RequestKind, hold: u64, amount: u64, mut state: FlowState| {
        state.step += 1;
        Some(Step {
            kind,
            fields: Fields {
                account: state.account,
                amount,
                hold,
            },
            state,
        })
    };
    match (state.flow.kind(), state.step) {
        (FlowKind::Purchase, _) => {
            if approved {
                books.pay(payer, merchant, state.amount);
            }
            None
        }
        (FlowKind::AuthorizeCapture | FlowKind::AuthorizeVoid | FlowKind::AuthorizeIncrementCapture, 0) => {
            if !approved {
                return None;
            }
            books.hold(payer, state.amount as i64);
            state.held = state.amount;
            match state.flow.kind() {
                FlowKind::AuthorizeCapture => next(RequestKind::Capture, done.id, state.held, state),
                FlowKind::AuthorizeVoid => next(RequestKind::Void, done.id, 0, state),
                _ => {
                    // Raise the hold by a tenth of the authorization.
                    let increment = (state.amount / 10).max(1);
                    next(RequestKind::Increment, done.id, increment, state)
                }
            }
        }
        (FlowKind::AuthorizeIncrementCapture, 1) => {
            if approved {
                books.hold(payer, done.amount as i64);
                state.held = state.held.wrapping_add(done.amount);
            }
            // The reply names the hold; capture all that is held.
            next(RequestKind::Capture, done.id, state.held, state)
        }
        (FlowKind::AuthorizeCapture, 1) | (FlowKind::AuthorizeIncrementCapture, 2) => {
            if approved {
                books.hold(payer, (state.held as i64).wrapping_neg());
                books.pay(payer, merchant, state.held);
            }
            None
        }
        (FlowKind::AuthorizeVoid, 1) => {
            if approved {
                books.hold(payer, (state.held as i64).wrapping_neg());
            }
            None
        }
        (FlowKind::Refund | FlowKind::FailedProvisioning, 0) => {
            if !approved {
                return None;
            }
            books.pay(payer, merchant, state.amount);
            // Half of it is refunded, or half the goods could not be delivered; the report's
            // reply carries no amount, so the flow keeps what it asked for.
            state.held = (state.amount / 2).max(1);
            let follow_up = if state.flow.kind() == FlowKind::Refund {
                RequestKind::Refund
            } else {
                RequestKind::ReportFailedProvisioning
            };
            next(follow_up, done.id, state.held, state)
        }
        (FlowKind::Refund, _) => {
            if approved {
                // The merchant bears a refund in full; the fee it paid is not returned.
                books.move_money(payer, merchant, (done.amount as i64).wrapping_neg(), 0);
            }
            None
        }
        (FlowKind::Reversal, 0) => {
            if approved {
                books.pay(payer, merchant, state.amount);
                state.purchase_approved = true;
            }
            // The reversal names the purchase by its request id (carried in `amount`).
            next(RequestKind::Reversal, 0, done.request_id, state)
        }
        (FlowKind::Reversal, _) => {
            if approved && state.purchase_approved {
                // A reversed purchase is undone exactly: payer, merchant and fee.
                let fee = books.fee_on(state.amount);
                let (paid, fee) = (state.amount as i64, fee as i64);
                books.move_money(payer, merchant, paid.wrapping_neg(), fee.wrapping_neg());
            }
            None
        }
        (FlowKind::OfferCancel | FlowKind::OfferStatus, 0) => {
            if !approved {
                return None;
            }
            books.hold(payer, state.amount as i64);
            state.held = state.amount;
            let ask = if state.flow.kind() == FlowKind::OfferStatus {
                RequestKind::OfferStatus
            } else {
                RequestKind::OfferCancel
            };
            next(ask, done.id, 0, state)
        }
        (FlowKind::OfferStatus, 1) => {
            // Moves nothing; the reply names the offer (pending), which is then cancelled.
            next(RequestKind::OfferCancel, done.id, 0, state)
        }
        (FlowKind::OfferCancel, _) | (FlowKind::OfferStatus, _) => {
            if approved {
                books.hold(payer, (state.held as i64).wrapping_neg());
            }
            None
        }
        (FlowKind::Offer, _) => {
            // The flow goes on with the OFFER_OUTCOME push (see `awaits_outcome`, `outcome`).
            if approved {
                books.hold(payer, state.amount as i64);
            }
            None
        }
        (FlowKind::FailedProvisioning, _) => {
            if approved {
                // Like a refund: the merchant bears it in full, the fee stays paid.
                books.move_money(payer, merchant, (state.held as i64).wrapping_neg(), 0);
            }
            None
        }
        (FlowKind::BalanceCheck | FlowKind::Echo, _) => None,
        (FlowKind::AuthorizeCapture | FlowKind::AuthorizeVoid | FlowKind::AuthorizeIncrementCapture, _) => {
            None
        }
    }
}

/// True if the flow of reply `done` is not over: an approved OFFER of an offer flow waits for
/// its OFFER_OUTCOME push (its offer id is `done.id`).
pub fn awaits_outcome(done: &Completed) -> bool {
    done.error.is_none() && done.code == 0 && done.state.flow.kind() == FlowKind::Offer
}

/// Books the OFFER_OUTCOME of an offer flow in `state` (on a connection of merchant `merchant`):
/// the hold goes; accepted, authd captured the whole `amount` with the merchant's fee (no
/// product details).
pub fn outcome(state: &FlowState, merchant: u32, accepted: bool, amount: u64, books: &mut BooksTally) {
    books.hold(state.payer, (state.amount as i64).wrapping_neg());
    if accepted {
        books.pay(state.payer, merchant, amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(step: &Step, code: u8, id: u64, amount: u64, request_id: u64) -> Completed {
        Completed {
            kind: step.kind,
            state: step.state,
            request_id,
            intended_ns: 0,
            sent_ns: 0,
            reply_ns: 0,
            code,
            reason: 0,
            error: None,
            id,
            amount,
        }
    }

    #[test]
    fn authorize_capture_books_a_payment_and_leaves_nothing_held() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 100);
        let first = start(FlowKind::AuthorizeCapture, 0, 1_000_000, 1_000, 0);
        assert_eq!(first.kind, RequestKind::Authorize);
        let capture = advance(&reply(&first, 0, 77, 1_000, 5), 0, &mut books).expect("capture");
        assert_eq!(capture.kind, RequestKind::Capture);
        assert_eq!(capture.fields.hold, 77);
        assert_eq!(
            capture.fields.account, 1_000_000,
            "a follow-up goes to the flow's payer"
        );
        assert_eq!(capture.fields.amount, 1_000);
        assert_eq!(books.payer_held[0], 1_000);
        assert!(advance(&reply(&capture, 0, 77, 1_000, 6), 0, &mut books).is_none());
        assert_eq!(books.payer_held[0], 0);
        assert_eq!(books.payer_balance[0], -1_000);
        assert_eq!(books.merchant_net[0], 990);
        assert_eq!(books.fee, 10);
    }

    #[test]
    fn a_payer_outside_the_sample_moves_only_the_merchant_and_fee_figures() {
        // Payers 0..5, then every 7th from 5: payer 6 is out, payer 12 in (place 6).
        let sample = PayerSample::new(40, 10);
        assert_eq!((sample.place(6), sample.place(12)), (None, Some(6)));
        let mut books = BooksTally::new(sample, 1, 100);
        for payer in [6, 12] {
            let purchase = start(FlowKind::Purchase, payer, 1_000_000, 1_000, 0);
            assert!(advance(&reply(&purchase, 0, 0, 1_000, 5), 0, &mut books).is_none());
        }
        assert_eq!(
            (books.payer_moved(6), books.payer_moved(12)),
            ((0, 0), (-1_000, 0))
        );
        assert_eq!((books.merchant_net[0], books.fee), (1_980, 20));
    }

    #[test]
    fn a_declined_first_step_ends_the_flow_and_books_nothing() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 0);
        let first = start(FlowKind::Refund, 0, 1_000_000, 500, 0);
        assert!(advance(&reply(&first, 51, 0, 0, 5), 0, &mut books).is_none());
        assert_eq!(books.payer_balance[0], 0);
    }

    #[test]
    fn reversal_of_an_approved_purchase_undoes_it_exactly() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 30);
        let first = start(FlowKind::Reversal, 0, 1_000_000, 1_000, 0);
        let reversal = advance(&reply(&first, 0, 9, 1_000, 41), 0, &mut books).expect("reversal");
        assert_eq!(reversal.kind, RequestKind::Reversal);
        assert_eq!(reversal.fields.amount, 41, "names the purchase's request id");
        assert!(advance(&reply(&reversal, 0, 0, 0, 42), 0, &mut books).is_none());
        assert_eq!(
            (books.payer_balance[0], books.merchant_net[0], books.fee),
            (0, 0, 0)
        );
    }

    #[test]
    fn an_accepted_offer_is_a_capture_of_the_whole_amount() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 100);
        let first = start(FlowKind::Offer, 0, 1_000_000, 1_000, 7);
        assert_eq!((first.kind, first.fields.hold), (RequestKind::Offer, 7));
        let done = reply(&first, 0, 501, 0, 1);
        assert!(advance(&done, 0, &mut books).is_none());
        assert!(awaits_outcome(&done));
        assert_eq!(books.payer_held[0], 1_000);
        outcome(&first.state, 0, true, 1_000, &mut books);
        assert_eq!((books.payer_balance[0], books.payer_held[0]), (-1_000, 0));
        assert_eq!((books.merchant_net[0], books.fee), (990, 10));
        let declined = reply(&first, 51, 0, 0, 2);
        assert!(!awaits_outcome(&declined));
    }

    #[test]
    fn offer_status_asks_then_cancels_and_leaves_nothing_held() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 100);
        let first = start(FlowKind::OfferStatus, 0, 1_000_000, 1_000, 0);
        assert_eq!(first.kind, RequestKind::Offer);
        let status = advance(&reply(&first, 0, 501, 0, 1), 0, &mut books).expect("status");
        assert_eq!((status.kind, status.fields.hold), (RequestKind::OfferStatus, 501));
        assert_eq!(books.payer_held[0], 1_000);
        let cancel = advance(&reply(&status, 0, 501, 0, 2), 0, &mut books).expect("cancel");
        assert_eq!((cancel.kind, cancel.fields.hold), (RequestKind::OfferCancel, 501));
        assert_eq!(books.payer_held[0], 1_000, "asking moves nothing");
        assert!(advance(&reply(&cancel, 0, 0, 0, 3), 0, &mut books).is_none());
        assert_eq!(
            (books.payer_balance[0], books.payer_held[0], books.fee),
            (0, 0, 0)
        );
    }

    #[test]
    fn failed_provisioning_refunds_half_and_keeps_the_fee() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 100);
        let first = start(FlowKind::FailedProvisioning, 0, 1_000_000, 1_000, 0);
        assert_eq!(first.kind, RequestKind::Purchase);
        let report = advance(&reply(&first, 0, 9002, 0, 1), 0, &mut books).expect("report");
        assert_eq!(
            (report.kind, report.fields.hold, report.fields.amount),
            (RequestKind::ReportFailedProvisioning, 9002, 500)
        );
        // The reply carries the dispute's id, not an amount: the tally books what was asked.
        assert!(advance(&reply(&report, 0, 31, 0, 2), 0, &mut books).is_none());
        assert_eq!(
            (books.payer_balance[0], books.merchant_net[0], books.fee),
            (-500, 990 - 500, 10)
        );
        let declined = start(FlowKind::FailedProvisioning, 0, 1_000_000, 1_000, 0);
        let report = advance(&reply(&declined, 0, 9003, 0, 3), 0, &mut books).expect("report");
        assert!(advance(&reply(&report, 12, 0, 0, 4), 0, &mut books).is_none());
        assert_eq!(
            books.payer_balance[0],
            -500 - 1_000,
            "a declined report refunds nothing"
        );
    }

    #[test]
    fn increment_then_capture_captures_all_that_is_held() {
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 0);
        let first = start(FlowKind::AuthorizeIncrementCapture, 0, 1_000_000, 1_000, 0);
        let increment = advance(&reply(&first, 0, 3, 1_000, 1), 0, &mut books).expect("inc");
        assert_eq!(
            (increment.kind, increment.fields.amount),
            (RequestKind::Increment, 100)
        );
        let capture = advance(&reply(&increment, 0, 3, 100, 2), 0, &mut books).expect("cap");
        assert_eq!(
            (capture.kind, capture.fields.amount),
            (RequestKind::Capture, 1_100)
        );
        assert!(advance(&reply(&capture, 0, 3, 1_100, 3), 0, &mut books).is_none());
        assert_eq!((books.payer_balance[0], books.payer_held[0]), (-1_100, 0));
    }

    #[test]
    fn absurd_amounts_from_the_server_are_tallied_without_a_panic() {
        // A misbehaving server: the books check must report it, so the tally must not panic.
        let mut books = BooksTally::new(PayerSample::new(1, 1), 1, 0);
        let first = start(FlowKind::AuthorizeIncrementCapture, 0, 1_000_000, 1_000, 0);
        let increment = advance(&reply(&first, 0, 3, 1_000, 1), 0, &mut books).expect("inc");
        let capture = advance(&reply(&increment, 0, 3, u64::MAX, 2), 0, &mut books).expect("cap");
        assert!(advance(&reply(&capture, 0, 3, u64::MAX, 3), 0, &mut books).is_none());
        let refund = start(FlowKind::Refund, 0, 1_000_000, 1_000, 0);
        let second = advance(&reply(&refund, 0, 4, 1_000, 4), 0, &mut books).expect("refund");
        assert!(advance(&reply(&second, 0, 4, u64::MAX, 5), 0, &mut books).is_none());
        assert_ne!(books.payer_moved(0), (0, 0));
    }
}
