//! The reply's `reason` byte: a copy of the engine's reason table (`engine/src/reason.rs`),
//! kept here because `wire` must not depend on `engine`. Values and ISO codes are identical;
//! the engine's tests and ours both pin them, and PROTOCOL.md prints this table.

/// authd's fine-grained reason: name, wire value, ISO 8583 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonInfo {
    /// The wire value.
    pub value: u8,
    /// The engine's name for it.
    pub name: &'static str,
    /// The ISO 8583 response code it maps to (two-digit number).
    pub iso_code: u8,
    /// What it means.
    pub meaning: &'static str,
}

macro_rules! reasons {
    ($( $value:literal $name:ident $iso:literal $meaning:literal ),* $(,)?) => {
        /// Every reason, indexed by its value.
        pub const REASONS: &[ReasonInfo] = &[$(
            ReasonInfo { value: $value, name: stringify!($name), iso_code: $iso, meaning: $meaning },
        )*];
    };
}

reasons! {
    0 Approved 0 "The command did what it asked.",
    1 MerchantInvalid 3 "The merchant is unknown or not active.",
    2 TerminalInvalid 58 "The terminal is unknown, not active, or not one of the merchant's.",
    3 AccountUnknown 14 "The payer account (or mobile alias) is unknown.",
    4 AccountFrozen 62 "The payer account is frozen.",
    5 AccountClosed 62 "The payer account is closed.",
    6 CurrencyMismatch 57 "The command's currency differs from the account's.",
    7 AmountInvalid 13 "The amount is zero or above the engine's maximum, or a credit (load, refund, reversal, dispute) would take the payer's balance past its ceiling (section 10).",
    8 PaymentLimitExceeded 61 "The amount is above the payer's per-payment limit.",
    9 DailyAmountExceeded 61 "The amount would take the payer above the per-day amount limit.",
    10 DailyCountExceeded 65 "One more payment would take the payer above the per-day count limit.",
    11 PinRequired 55 "A PIN is required for this amount and none was given (an increment past the threshold: void and authorize again with the PIN).",
    12 PinIncorrect 55 "The PIN proof is wrong (counts toward the lockout).",
    13 PinLocked 75 "Too many wrong PINs: locked until the operator sets a new one.",
    14 InsufficientFunds 51 "The payer's available balance is below the amount.",
    15 HoldUnknown 25 "The hold (or original transaction) does not exist for this merchant.",
    16 HoldNotActive 12 "The hold is no longer active (captured, voided or expired).",
    17 HoldExpired 54 "The hold's expiry has passed: it can no longer be captured or incremented.",
    18 AmountAboveOriginal 64 "A capture above what is held, or a refund above what was captured and not refunded.",
    19 DuplicateConflict 94 "The request key was already used with different content.",
    20 Reversed 5 "The original request was reversed: before it arrived (the late original is declined), or after it was approved (its retries are declined).",
    21 InvalidRequest 12 "A command that cannot apply (alias taken, wrong account kind, bad limit, malformed frame).",
    22 CapacityExceeded 96 "A configured capacity is full.",
    23 SystemMalfunction 96 "The log cannot make the decision durable; nothing was acknowledged.",
    24 NotPermitted 57 "The caller's role may not do this.",
    25 OfferClosed 12 "The offer already reached another final state (accepted, rejected, expired, cancelled).",
    26 DisputeUnknown 25 "The dispute does not exist, or is not open.",
    27 LogonsLimited 75 "Too many failed log-ons from this peer (IPv4 address or IPv6 /64) lately: log-ons from it are refused, even with the right secret, until the failure window ends (section 3).",
}

/// The reason for a wire byte, if defined.
pub fn reason_info(value: u8) -> Option<&'static ReasonInfo> {
    REASONS.get(usize::from(value))
}

/// ISO 8583 code of an ERROR reply for a malformed frame ("format error").
pub const ISO_FORMAT_ERROR: u8 = 30;
/// Reason value for a malformed frame.
pub const REASON_INVALID_REQUEST: u8 = 21;
/// Reason value for a request before log-on or from the wrong role.
pub const REASON_NOT_PERMITTED: u8 = 24;
/// Reason 22, `CapacityExceeded`: also what a connection over the server's limit is told.
pub const REASON_CAPACITY_EXCEEDED: u8 = 22;
/// Reason 27, `LogonsLimited`: a log-on refused because its peer failed too many lately.
pub const REASON_LOGONS_LIMITED: u8 = 27;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_dense_indices() {
        for (index, reason) in REASONS.iter().enumerate() {
            assert_eq!(usize::from(reason.value), index);
        }
        assert!(reason_info(REASONS.len() as u8).is_none());
        assert_eq!(reason_info(14).map(|reason| reason.iso_code), Some(51));
    }

    #[test]
    fn the_named_constants_name_their_reasons() {
        for (value, name) in [
            (REASON_INVALID_REQUEST, "InvalidRequest"),
            (REASON_NOT_PERMITTED, "NotPermitted"),
            (REASON_CAPACITY_EXCEEDED, "CapacityExceeded"),
            (REASON_LOGONS_LIMITED, "LogonsLimited"),
        ] {
            assert_eq!(reason_info(value).map(|reason| reason.name), Some(name));
        }
    }
}
