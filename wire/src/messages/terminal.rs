//! Requests a merchant's terminal sends (role `Terminal`). Echo is open to every role.

use crate::layout::wire_struct;
use crate::pin::PinBlock;
use crate::types::{DisputeCause, HoldId, OfferId, PayerRef, ProductDetails, ShortText};

wire_struct! {
    /// Reserve funds on the payer's account (a hold) for later capture.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Authorize {
        /// Who pays.
        payer: PayerRef,
        /// Amount to hold, minor units.
        amount_minor: u64,
        /// ISO 4217 numeric currency code (978 = EUR).
        currency: u16,
        /// Hold lifetime in seconds; 0 = the server's default.
        hold_lifetime_s: u32,
        /// PIN block, if the payer entered one.
        pin: Option<PinBlock>,
    }
}

wire_struct! {
    /// Raise an active hold by `amount_minor`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Increment {
        /// The hold, as returned by authorize.
        hold_id: HoldId,
        /// Amount to add, minor units.
        amount_minor: u64,
    }
}

wire_struct! {
    /// Take `amount_minor` of a hold; a final capture releases the rest.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Capture {
        /// The hold.
        hold_id: HoldId,
        /// Amount to capture, minor units (at most what is held).
        amount_minor: u64,
        /// 1 = last capture: release what remains of the hold.
        final_capture: bool,
        /// Loyalty points to credit the payer.
        loyalty_points: u32,
        /// Product details (lower fee), if any.
        product: Option<ProductDetails>,
    }
}

wire_struct! {
    /// Release a hold without capturing.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Void {
        /// The hold.
        hold_id: HoldId,
    }
}

wire_struct! {
    /// Authorize and capture in one step (the hot message).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Purchase {
        /// Who pays.
        payer: PayerRef,
        /// Amount, minor units.
        amount_minor: u64,
        /// ISO 4217 numeric currency code.
        currency: u16,
        /// PIN block, if the payer entered one.
        pin: Option<PinBlock>,
        /// Loyalty points to credit the payer.
        loyalty_points: u32,
        /// Product details (lower fee), if any.
        product: Option<ProductDetails>,
    }
}

wire_struct! {
    /// Give back up to what was captured on a hold or purchase.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Refund {
        /// The hold or purchase's transaction id.
        hold_id: HoldId,
        /// Amount to refund, minor units.
        amount_minor: u64,
    }
}

wire_struct! {
    /// Undo a request whose answer the terminal never got (same terminal, original request
    /// id). If the original has not arrived yet, it will be declined when it does.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Reversal {
        /// The original request's payer (the server finds the account's shard by it).
        payer: PayerRef,
        /// The original request's request id.
        original_request_id: u64,
    }
}

wire_struct! {
    /// Would the payer's available balance cover `amount_minor`? The answer is approved or
    /// insufficient funds, never the figure.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BalanceCheck {
        /// Whose balance.
        payer: PayerRef,
        /// Amount to check, minor units.
        amount_minor: u64,
        /// ISO 4217 numeric currency code.
        currency: u16,
    }
}

wire_struct! {
    /// Present an offer to the payer's device; funds are held until the payer answers or the
    /// offer expires.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Offer {
        /// Who is asked to pay (normally by mobile number).
        payer: PayerRef,
        /// Amount, minor units.
        amount_minor: u64,
        /// ISO 4217 numeric currency code.
        currency: u16,
        /// Seconds the payer has to answer; 0 = the server's default.
        expires_in_s: u32,
        /// Text shown to the payer (order number, description).
        reference: ShortText,
    }
}

wire_struct! {
    /// Withdraw an offer not yet answered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferCancel {
        /// The offer.
        offer_id: OfferId,
    }
}

wire_struct! {
    /// Ask where an offer stands (if its outcome push was missed).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OfferStatus {
        /// The offer.
        offer_id: OfferId,
    }
}

wire_struct! {
    /// Digital goods paid for could not be provisioned: make the payer whole.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ReportFailedProvisioning {
        /// The captured hold or purchase.
        hold_id: HoldId,
        /// Amount not provisioned, minor units.
        amount_minor: u64,
        /// What went wrong.
        cause: DisputeCause,
    }
}

wire_struct! {
    /// Liveness and round-trip probe; any role. The reply carries `value` back.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Echo {
        /// Any number.
        value: u64,
    }
}
