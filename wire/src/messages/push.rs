//! Push bodies: frames the server sends unasked (flag PUSH, request id 0).

use crate::layout::wire_struct;
use crate::types::{HoldId, OfferId, OfferState};

wire_struct! {
    /// To the merchant's terminal: how its offer ended.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferOutcome {
        /// The offer.
        offer_id: OfferId,
        /// Accepted, Rejected, Expired or Cancelled.
        state: OfferState,
        /// ISO 8583 response code of the outcome (0 = accepted).
        code: u8,
        /// authd reason (for example PIN incorrect on a failed accept).
        reason: u8,
        /// The captured hold the accepted offer became (refund it like any purchase); 0 otherwise.
        hold_id: HoldId,
        /// Amount, minor units.
        amount_minor: u64,
    }
}
