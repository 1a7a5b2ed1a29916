//! A payer account: the hot part every payment touches (one cache line and a bit) and the cold
//! part only operators and PIN checks read.

use sha2::{Digest, Sha256};

use crate::command::Limits;
use crate::ids::{AccountId, Currency, PinBlock, Status};
use crate::limits::{DAY_US, PIN_TRIES_MAX};
use crate::reason::Reason;

/// The hot part of a payer account: exactly one cache line, so a payment that picks a payer
/// at random misses the cache once for it.
#[repr(align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payer {
    /// Money on the account, minor units.
    pub balance: u64,
    /// Sum of the active holds' remaining amounts; `held <= balance` always.
    pub held: u64,
    /// Largest single payment or authorization (`Limits::payment_max`).
    pub payment_max: u64,
    /// Largest approved sum in one UTC day (`Limits::day_amount_max`).
    pub day_amount_max: u64,
    /// A PIN is required strictly above this amount (`Limits::pin_above`).
    pub pin_above: u64,
    /// Approved amount in `day`.
    pub day_amount: u64,
    /// Most approved payments in one UTC day (`Limits::day_count_max`).
    pub day_count_max: u32,
    /// Approved payments in `day`.
    pub day_count: u32,
    /// The UTC day (`timestamp_us / DAY_US`) the day counters are for.
    pub day: u32,
    /// The account's currency.
    pub currency: Currency,
    /// Active, frozen or closed.
    pub status: Status,
    /// Wrong PIN proofs in a row; the PIN is locked at `PIN_TRIES_MAX`.
    pub pin_failures: u8,
}

const _: () = assert!(std::mem::size_of::<Payer>() == 64);

impl Payer {
    /// A new empty account.
    pub fn new(currency: Currency, limits: Limits) -> Payer {
        let mut payer = Payer {
            balance: 0,
            held: 0,
            payment_max: 0,
            day_amount_max: 0,
            pin_above: 0,
            day_amount: 0,
            day_count_max: 0,
            day_count: 0,
            day: 0,
            currency,
            status: Status::Active,
            pin_failures: 0,
        };
        payer.set_limits(limits);
        payer
    }

    /// The payer's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            payment_max: self.payment_max,
            day_amount_max: self.day_amount_max,
            day_count_max: self.day_count_max,
            pin_above: self.pin_above,
        }
    }

    /// Replace the payer's limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.payment_max = limits.payment_max;
        self.day_amount_max = limits.day_amount_max;
        self.day_count_max = limits.day_count_max;
        self.pin_above = limits.pin_above;
    }

    /// Whether the payer may pay at all: declined while frozen or closed.
    pub fn may_pay(&self) -> Result<(), Reason> {
        match self.status {
            Status::Active => Ok(()),
            Status::Frozen => Err(Reason::AccountFrozen),
            Status::Closed => Err(Reason::AccountClosed),
        }
    }

    /// What the payer may still spend.
    pub fn available(&self) -> u64 {
        debug_assert!(self.held <= self.balance);
        self.balance - self.held
    }

    /// Day counters as of `now_us`: zero once a later UTC day began. A command stamped with
    /// an earlier day than the counters' (a clock stepped back, or two event loops stamping
    /// either side of midnight) counts into the counters' day: the day never goes back, or
    /// a step back would hand the payer a fresh daily limit.
    pub fn day_usage(&self, now_us: u64) -> (u64, u32) {
        if day_of(now_us) <= self.day {
            (self.day_amount, self.day_count)
        } else {
            (0, 0)
        }
    }

    /// Count an approved payment of `amount` at `now_us` toward the daily limits.
    pub fn count_payment(&mut self, now_us: u64, amount: u64) {
        self.count_usage(now_us, amount, 1);
    }

    /// Count `amount` and `count` payments at `now_us` toward the daily limits (an increment
    /// adds to the amount only).
    pub fn count_usage(&mut self, now_us: u64, amount: u64, count: u32) {
        let (day_amount, day_count) = self.day_usage(now_us);
        self.day = self.day.max(day_of(now_us));
        self.day_amount = day_amount.saturating_add(amount);
        self.day_count = day_count.saturating_add(count);
    }

    /// Give back a payment counted at `counted_us` (a reversal), if the counters are still
    /// those of its day. (A payment stamped before the counters' day was counted into it too,
    /// but is not given back: the payer keeps less of the day's limit, never more.)
    pub fn uncount_payment(&mut self, now_us: u64, counted_us: u64, amount: u64, count: u32) {
        if day_of(counted_us) == self.day && day_of(now_us) <= self.day {
            self.day_amount = self.day_amount.saturating_sub(amount);
            self.day_count = self.day_count.saturating_sub(count);
        }
    }

    /// True once too many wrong PINs were given.
    pub fn pin_locked(&self) -> bool {
        self.pin_failures >= PIN_TRIES_MAX
    }
}

/// The UTC day number of a timestamp.
pub fn day_of(timestamp_us: u64) -> u32 {
    // u64::MAX / DAY_US fits in a u32 (about 213 million), so this never truncates.
    (timestamp_us / DAY_US) as u32
}

/// The cold part of a payer account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PayerCold {
    /// The E.164 mobile number alias as digits, if any.
    pub mobile: Option<u64>,
    /// The PIN verifier, if a PIN was set.
    pub pin_verifier: Option<[u8; 32]>,
    /// Loyalty points accrued from captures.
    pub loyalty_points: u64,
    /// The log position of the command that opened the account (0 without a log). Recovery
    /// uses it to see the alias map exactly as each replayed command saw it.
    pub opened_lsn: u64,
}

/// The verifier kept for a PIN: SHA-256 over a domain tag, the account id and the PIN block.
/// Binding the account id means one payer's verifier says nothing about another's PIN.
pub fn pin_verifier(account: AccountId, pin: &PinBlock) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"authd-pin-v1");
    hasher.update(account.0.to_le_bytes());
    hasher.update(pin.0);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counters_reset_on_the_next_utc_day() {
        let mut payer = Payer::new(Currency(978), Limits::NONE);
        payer.count_payment(DAY_US - 1, 500);
        assert_eq!(payer.day_usage(DAY_US - 1), (500, 1));
        assert_eq!(payer.day_usage(DAY_US), (0, 0));
        payer.count_payment(DAY_US, 7);
        assert_eq!(payer.day_usage(DAY_US), (7, 1));
    }

    #[test]
    fn the_day_never_goes_back() {
        let mut payer = Payer::new(Currency(978), Limits::NONE);
        payer.count_payment(DAY_US + 5, 500);
        // The clock steps back across midnight: still the counters of day 1.
        assert_eq!(payer.day_usage(DAY_US - 5), (500, 1));
        payer.count_payment(DAY_US - 5, 20);
        assert_eq!(payer.day_usage(DAY_US + 6), (520, 2));
        // Given back only what was stamped on the counters' day.
        payer.uncount_payment(DAY_US + 7, DAY_US - 5, 20, 1);
        assert_eq!(payer.day_usage(DAY_US + 7), (520, 2));
        payer.uncount_payment(DAY_US + 7, DAY_US + 5, 500, 1);
        assert_eq!(payer.day_usage(DAY_US + 7), (20, 1));
        assert_eq!(payer.day_usage(2 * DAY_US), (0, 0));
    }

    #[test]
    fn verifier_binds_the_account() {
        let pin = PinBlock([0x04, 0x12, 0x34, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_ne!(
            pin_verifier(AccountId(1_000_000), &pin),
            pin_verifier(AccountId(1_000_001), &pin)
        );
        assert_eq!(
            pin_verifier(AccountId(1_000_000), &pin),
            pin_verifier(AccountId(1_000_000), &pin)
        );
    }
}
