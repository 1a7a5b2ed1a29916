//! Requests a payer's device sends (role `PayerDevice`). The device acts for the one account it
//! was registered for.

use crate::layout::wire_struct;
use crate::pin::PinBlock;
use crate::types::OfferId;

wire_struct! {
    /// List offers waiting for this payer, oldest first, after `after_offer_id`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ListOffers {
        /// Page start: only offers with a larger id (0 = from the first).
        after_offer_id: OfferId,
    }
}

wire_struct! {
    /// Accept an offer; the PIN proves the payer's consent.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AcceptOffer {
        /// The offer.
        offer_id: OfferId,
        /// The payer's PIN block.
        pin: PinBlock,
    }
}

wire_struct! {
    /// Reject an offer; its funds are released.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RejectOffer {
        /// The offer.
        offer_id: OfferId,
    }
}

wire_struct! {
    /// The payer's own balance, held amount and loyalty points.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OwnBalance {}
}
