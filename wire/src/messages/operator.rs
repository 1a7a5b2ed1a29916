//! Requests the issuer's operator sends (role `Operator`).

use crate::layout::wire_struct;
use crate::pin::PinBlock;
use crate::types::{
    AccountKind, AccountNumber, AccountStatus, DisputeCause, DisputeId, DisputeOutcome, HoldId, Limits,
    MerchantId, ShortText,
};

wire_struct! {
    /// Open an account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OpenAccount {
        /// What the account is for.
        kind: AccountKind,
        /// ISO 4217 numeric currency code of the account.
        currency: u16,
        /// Mobile number alias (E.164 digits); 0 = none.
        mobile: u64,
        /// The payer's limits.
        limits: Limits,
    }
}

wire_struct! {
    /// Credit a payer from the issuer's funding account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct LoadFunds {
        /// The account to credit.
        account: AccountNumber,
        /// Amount, minor units.
        amount_minor: u64,
    }
}

wire_struct! {
    /// Replace an account's limits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SetLimits {
        /// The account.
        account: AccountNumber,
        /// The new limits.
        limits: Limits,
    }
}

wire_struct! {
    /// Set (or reset, which unlocks) an account's PIN. The server keeps a verifier only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SetPin {
        /// The account.
        account: AccountNumber,
        /// The new PIN block.
        pin: PinBlock,
    }
}

wire_struct! {
    /// Freeze, unfreeze or close an account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SetStatus {
        /// The account.
        account: AccountNumber,
        /// The new status.
        status: AccountStatus,
    }
}

wire_struct! {
    /// Register a merchant; the server opens its settlement account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RegisterMerchant {
        /// Fee in basis points (1/100 %) of each capture.
        fee_bps: u16,
        /// Fee in basis points when the capture carries product details.
        fee_bps_with_product: u16,
        /// Where the merchant's terminals connect from (address or host name).
        origin: ShortText,
    }
}

wire_struct! {
    /// Register a terminal of a merchant; the reply carries its secret, once.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RegisterTerminal {
        /// The merchant that owns the terminal.
        merchant_id: MerchantId,
    }
}

wire_struct! {
    /// Register a payer device for an account; the reply carries its secret, once.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RegisterDevice {
        /// The payer's account.
        account: AccountNumber,
    }
}

wire_struct! {
    /// Everything about one account.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AccountInfo {
        /// The account.
        account: AccountNumber,
    }
}

wire_struct! {
    /// Server counters.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Stats {}
}

wire_struct! {
    /// Open a dispute on a captured hold or purchase.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DisputeOpen {
        /// The captured hold or purchase.
        hold_id: HoldId,
        /// Amount disputed, minor units.
        amount_minor: u64,
        /// Why.
        cause: DisputeCause,
    }
}

wire_struct! {
    /// Decide an open dispute.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DisputeResolve {
        /// The dispute.
        dispute_id: DisputeId,
        /// The decision.
        outcome: DisputeOutcome,
    }
}

wire_struct! {
    /// List disputes, oldest first, after `after_dispute_id`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DisputeList {
        /// Page start: only disputes with a larger id (0 = from the first).
        after_dispute_id: DisputeId,
    }
}
