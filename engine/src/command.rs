//! Commands the books execute and the outcome each gets.
//!
//! A command is exactly what the write-ahead log records: replaying the same commands with the
//! same timestamps in the same order rebuilds the same books. So every choice the books make
//! outside their own state is already made in the command: the shard of a new account, the
//! secret of a new terminal, the payer behind a mobile number.

use crate::ids::{
    AccountId, Currency, DisputeId, HoldId, MerchantId, PinBlock, Reference, RequestKey, Status, TerminalId,
};
use crate::reason::Reason;

/// A payer's limits. `u64::MAX` (or `u32::MAX` for the count) means "no limit".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest single payment or authorization, in minor units.
    pub payment_max: u64,
    /// Largest sum of approved payments and authorizations in one UTC day.
    pub day_amount_max: u64,
    /// Most approved payments and authorizations in one UTC day.
    pub day_count_max: u32,
    /// A PIN proof is required for amounts strictly above this.
    pub pin_above: u64,
}

impl Limits {
    /// No limits at all and no PIN required.
    pub const NONE: Limits = Limits {
        payment_max: u64::MAX,
        day_amount_max: u64::MAX,
        day_count_max: u32::MAX,
        pin_above: u64::MAX,
    };
}

/// Who a terminal command comes from: the idempotency key and the payee it acts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The merchant the terminal acts for.
    pub merchant: MerchantId,
    /// The terminal and its request id.
    pub key: RequestKey,
}

/// What a capture or purchase says beyond the amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Extras {
    /// The merchant sent product details: the lower fee applies.
    pub product_details: bool,
    /// Loyalty points the merchant grants the payer for this purchase.
    pub loyalty_points: u32,
}

/// A merchant terminal's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TerminalOp {
    /// Place a hold of `amount` on the payer.
    Authorize {
        payer: AccountId,
        amount: u64,
        currency: Currency,
        pin: Option<PinBlock>,
        /// 0 asks for the default lifetime.
        lifetime_us: u64,
    },
    /// Raise an active hold by `amount`.
    Increment { hold: HoldId, amount: u64 },
    /// Capture `amount` of a hold; `last` (or nothing left held) releases the rest.
    Capture {
        hold: HoldId,
        amount: u64,
        last: bool,
        extras: Extras,
    },
    /// Release an active hold.
    Void { hold: HoldId },
    /// Authorize and capture in one step: the micro-payment fast path.
    Purchase {
        payer: AccountId,
        amount: u64,
        currency: Currency,
        pin: Option<PinBlock>,
        extras: Extras,
    },
    /// Give back up to what was captured on a hold (or purchase), in one or more refunds.
    Refund { hold: HoldId, amount: u64 },
    /// Ask the payer (on their phone) to pay: checked and held like an authorization (the PIN
    /// comes with the payer's accept), pending until accepted, rejected, cancelled or expired.
    Offer {
        payer: AccountId,
        amount: u64,
        currency: Currency,
        lifetime_us: u64,
        reference: Reference,
    },
    /// The merchant withdraws a pending offer.
    OfferCancel { offer: HoldId },
    /// Digital goods bought with this capture could not be provisioned: refund `amount` to
    /// the payer at once and record a dispute resolved for the payer.
    ReportFailedProvisioning { hold: HoldId, amount: u64, cause: u8 },
    /// Undo the request `original_request_id` of the same terminal on `payer`'s books.
    Reversal {
        payer: AccountId,
        original_request_id: u64,
    },
}

impl TerminalOp {
    /// The payer of a payment (authorize, purchase, offer); `None` for operations on a hold
    /// and for reversals.
    pub const fn payment_payer(&self) -> Option<AccountId> {
        match *self {
            TerminalOp::Authorize { payer, .. }
            | TerminalOp::Purchase { payer, .. }
            | TerminalOp::Offer { payer, .. } => Some(payer),
            _ => None,
        }
    }

    /// The stable number of this operation, as recorded in the idempotency window and the log.
    pub const fn kind(&self) -> u8 {
        match self {
            TerminalOp::Authorize { .. } => 1,
            TerminalOp::Increment { .. } => 2,
            TerminalOp::Capture { .. } => 3,
            TerminalOp::Void { .. } => 4,
            TerminalOp::Purchase { .. } => 5,
            TerminalOp::Refund { .. } => 6,
            TerminalOp::Reversal { .. } => 7,
            TerminalOp::Offer { .. } => 8,
            TerminalOp::OfferCancel { .. } => 9,
            TerminalOp::ReportFailedProvisioning { .. } => 10,
        }
    }
}

/// Everything the books can be asked to change. Each touches exactly one shard, except the
/// merchant and terminal registrations, which briefly hold every shard so that the log orders
/// them against all payments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// A terminal request, keyed for idempotency.
    Terminal { origin: Origin, op: TerminalOp },
    /// Open a payer account in `shard` (the caller spreads accounts over shards).
    OpenAccount {
        shard: u32,
        currency: Currency,
        mobile: Option<u64>,
        limits: Limits,
    },
    /// Move `amount` from the issuer's funding account to a payer.
    Load { account: AccountId, amount: u64 },
    /// Replace a payer's limits.
    SetLimits { account: AccountId, limits: Limits },
    /// Set a payer's PIN (and unlock it).
    SetPin { account: AccountId, pin: PinBlock },
    /// Freeze, unfreeze or close a payer account.
    SetAccountStatus { account: AccountId, status: Status },
    /// Register a merchant with its fees (basis points; the second with product details).
    /// `origin` is the merchant's origin address shown on its offers (unique; empty for none).
    RegisterMerchant {
        fee_bps: u16,
        fee_bps_with_details: u16,
        origin: Reference,
    },
    /// Freeze, unfreeze or close a merchant.
    SetMerchantStatus { merchant: MerchantId, status: Status },
    /// Register a terminal of a merchant with the secret it will log on with.
    RegisterTerminal { merchant: MerchantId, secret: [u8; 32] },
    /// Register a payer device (phone app or gateway) of a payer account with its secret.
    RegisterDevice { account: AccountId, secret: [u8; 32] },
    /// Freeze, unfreeze or close a terminal.
    SetTerminalStatus { terminal: TerminalId, status: Status },
    /// A payer device (or, with `payer: None`, a gateway relaying for every payer) answers an
    /// offer; accepting needs the payer's PIN.
    OfferAnswer {
        offer: HoldId,
        payer: Option<AccountId>,
        accept: bool,
        pin: Option<PinBlock>,
    },
    /// The operator opens a dispute on a payer's behalf: `amount` of a capture moves back to
    /// the payer provisionally (held until resolved).
    DisputeOpen { hold: HoldId, amount: u64, cause: u8 },
    /// The operator resolves an open dispute, for the payer (final) or the merchant (moved back).
    DisputeResolve { dispute: DisputeId, for_payer: bool },
    /// Time has reached `now_us` in `shard`: expire its holds and prune finished ones.
    AdvanceTime { shard: u32 },
    /// A start of the server: the shard's next hold gets id serial `serial`, past every id the
    /// run before may have shown ahead of its log (`books::hold_ids`).
    StartHoldIds { shard: u32, serial: u64 },
}

impl Command {
    /// True for the commands that change merchants or terminals: they hold every shard lock.
    pub const fn is_registry_change(&self) -> bool {
        matches!(
            self,
            Command::RegisterMerchant { .. }
                | Command::SetMerchantStatus { .. }
                | Command::RegisterTerminal { .. }
                | Command::SetTerminalStatus { .. }
                | Command::RegisterDevice { .. }
        )
    }
}

/// What a command got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// Approved, or why not.
    pub reason: Reason,
    /// The id the command produced or acted on: hold, account, merchant or terminal; 0 if none.
    pub id: u64,
    /// The amount approved (held, captured, refunded, loaded); 0 on decline.
    pub amount: u64,
}

impl Outcome {
    /// A decline with nothing else to say.
    pub const fn declined(reason: Reason) -> Outcome {
        Outcome {
            reason,
            id: 0,
            amount: 0,
        }
    }

    /// An approval naming an id and an amount.
    pub const fn approved(id: u64, amount: u64) -> Outcome {
        Outcome {
            reason: Reason::Approved,
            id,
            amount,
        }
    }
}
