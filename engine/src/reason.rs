//! Every outcome of a command, as an enumerated reason with its ISO 8583 response code.
//!
//! The engine decides with [`Reason`]; the wire carries both the reason (authd's own detail,
//! one byte) and its ISO 8583 response code (the two-digit value as a number: `51` is sent as
//! `0x33`), so a terminal that only knows ISO 8583 understands the answer and an operator sees
//! the precise cause. Several reasons may share one ISO code; the table is in DESIGN.md.

/// Why a command was approved or declined. The discriminant is the wire value; never reuse one.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The command did what it asked.
    Approved = 0,
    /// The merchant is unknown or not active.
    MerchantInvalid = 1,
    /// The terminal is unknown, not active, or not one of the merchant's.
    TerminalInvalid = 2,
    /// The payer account (or mobile alias) is unknown.
    AccountUnknown = 3,
    /// The payer account is frozen.
    AccountFrozen = 4,
    /// The payer account is closed.
    AccountClosed = 5,
    /// The command's currency differs from the account's.
    CurrencyMismatch = 6,
    /// The amount is zero or above `AMOUNT_MINOR_MAX`, or a credit would take a balance past
    /// `BALANCE_MINOR_MAX`.
    AmountInvalid = 7,
    /// The amount is above the payer's per-payment limit.
    PaymentLimitExceeded = 8,
    /// The amount would take the payer above the per-day amount limit.
    DailyAmountExceeded = 9,
    /// One more payment would take the payer above the per-day count limit.
    DailyCountExceeded = 10,
    /// A PIN is required for this amount and none was given (an increment past the threshold:
    /// void and authorize again with the PIN).
    PinRequired = 11,
    /// The PIN proof is wrong (counts toward the lockout).
    PinIncorrect = 12,
    /// Too many wrong PINs: the PIN is locked until the operator sets a new one.
    PinLocked = 13,
    /// The payer's available balance is below the amount.
    InsufficientFunds = 14,
    /// The hold (or original transaction) does not exist for this merchant.
    HoldUnknown = 15,
    /// The hold is no longer active (captured, voided or expired before this command).
    HoldNotActive = 16,
    /// The hold's expiry has passed: it can no longer be captured or incremented.
    HoldExpired = 17,
    /// A capture above what is held, or a refund above what was captured and not yet refunded.
    AmountAboveOriginal = 18,
    /// The request key was already used with different content.
    DuplicateConflict = 19,
    /// The original request was reversed: before it arrived (the late original is declined),
    /// or after it was approved (its retries are declined).
    Reversed = 20,
    /// An operator command that cannot apply (alias taken, wrong account kind, bad limit).
    InvalidRequest = 21,
    /// A configured capacity is full (accounts per shard, holds, merchants, terminals).
    CapacityExceeded = 22,
    /// The write-ahead log cannot make the decision durable; nothing was acknowledged.
    SystemMalfunction = 23,
    /// The caller's role may not do this (for example a terminal acting for another merchant).
    NotPermitted = 24,
    /// The offer already reached another final state (accepted, rejected, expired, cancelled).
    OfferClosed = 25,
    /// The dispute does not exist, or is not open.
    DisputeUnknown = 26,
    /// A log-on from a peer that failed too many log-ons lately: refused, even with the right
    /// secret, until the failure window (`--logon-failure-window-s`) ends.
    LogonsLimited = 27,
}

impl Reason {
    /// Every reason, in wire order; tests and docs iterate it.
    pub const ALL: [Reason; 28] = [
        Reason::Approved,
        Reason::MerchantInvalid,
        Reason::TerminalInvalid,
        Reason::AccountUnknown,
        Reason::AccountFrozen,
        Reason::AccountClosed,
        Reason::CurrencyMismatch,
        Reason::AmountInvalid,
        Reason::PaymentLimitExceeded,
        Reason::DailyAmountExceeded,
        Reason::DailyCountExceeded,
        Reason::PinRequired,
        Reason::PinIncorrect,
        Reason::PinLocked,
        Reason::InsufficientFunds,
        Reason::HoldUnknown,
        Reason::HoldNotActive,
        Reason::HoldExpired,
        Reason::AmountAboveOriginal,
        Reason::DuplicateConflict,
        Reason::Reversed,
        Reason::InvalidRequest,
        Reason::CapacityExceeded,
        Reason::SystemMalfunction,
        Reason::NotPermitted,
        Reason::OfferClosed,
        Reason::DisputeUnknown,
        Reason::LogonsLimited,
    ];

    /// The ISO 8583 response code (field 39) for this reason, as its two-digit number.
    pub const fn iso_code(self) -> u8 {
        match self {
            Reason::Approved => 0,
            Reason::MerchantInvalid => 3,
            Reason::TerminalInvalid => 58,
            Reason::AccountUnknown => 14,
            Reason::AccountFrozen => 62,
            Reason::AccountClosed => 62,
            Reason::CurrencyMismatch => 57,
            Reason::AmountInvalid => 13,
            Reason::PaymentLimitExceeded => 61,
            Reason::DailyAmountExceeded => 61,
            Reason::DailyCountExceeded => 65,
            Reason::PinRequired => 55,
            Reason::PinIncorrect => 55,
            Reason::PinLocked => 75,
            Reason::InsufficientFunds => 51,
            Reason::HoldUnknown => 25,
            Reason::HoldNotActive => 12,
            Reason::HoldExpired => 54,
            Reason::AmountAboveOriginal => 64,
            Reason::DuplicateConflict => 94,
            Reason::Reversed => 5,
            Reason::InvalidRequest => 12,
            Reason::CapacityExceeded => 96,
            Reason::SystemMalfunction => 96,
            Reason::NotPermitted => 57,
            Reason::OfferClosed => 12,
            Reason::DisputeUnknown => 25,
            Reason::LogonsLimited => 75,
        }
    }

    /// The reason for a wire byte, if it is one.
    pub fn from_u8(value: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(value)).copied()
    }

    /// True only for [`Reason::Approved`].
    pub const fn is_approved(self) -> bool {
        matches!(self, Reason::Approved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_are_dense_and_round_trip() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as u8 as usize, index);
            assert_eq!(Reason::from_u8(*reason as u8), Some(*reason));
        }
        assert_eq!(Reason::from_u8(Reason::ALL.len() as u8), None);
    }

    #[test]
    fn only_approved_maps_to_iso_00() {
        for reason in Reason::ALL {
            assert_eq!(reason.iso_code() == 0, reason.is_approved(), "{reason:?}");
        }
    }
}
