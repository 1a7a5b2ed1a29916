//! Every bound of the books in one place, with the relations between them checked at compile
//! time. A limit a user may want to change is a default here and a field of [`crate::BooksConfig`].

/// Largest amount a single command may carry, in minor units (10^15: ten trillion euros).
/// Sums of many such amounts still fit an `i64` stripe with room to spare.
pub const AMOUNT_MINOR_MAX: u64 = 1_000_000_000_000_000;

/// Largest number of shards; a shard index must fit the low bits of an account id.
pub const SHARDS_MAX: u32 = 1 << 12;

/// Default number of shards (a power of two).
pub const SHARDS_DEFAULT: u32 = 64;

/// Payer accounts per shard at most (the slot must fit a `u32`).
pub const ACCOUNTS_PER_SHARD_MAX: u32 = 1 << 30;

/// Holds (live and retained for refunds) per shard at most, by default: 262,144, so the 64
/// default shards keep 16.7 M holds (88 bytes each, about 1.5 GB). At capacity the oldest
/// finished hold is forgotten first (its refund window ends early); only live holds can fill
/// a shard.
pub const HOLDS_PER_SHARD_DEFAULT: u32 = 1 << 18;

/// Unused hold slots per shard whose pages the ticker keeps written ahead of the newest hold
/// (about 0.5 MB a shard, resident from the start: 34 MB for 64 shards), so that payments
/// find them in memory. At 1,500,000 purchases a second over 64 shards this is a quarter of a
/// second of holds.
pub const HOLDS_WARM_AHEAD: usize = 6_000;

/// Pages per shard the ticker writes ahead at most each time it looks (a 100 ms nap, then a
/// pass over the shards, 8 pages a lock). 64 pages are 2,944 holds; at 1,500,000 purchases a
/// second over 64 shards a shard takes 2,344 in 100 ms, and 3,400 if a slow pass (64 x 64
/// pages at 11 us) stretches the period to 145 ms: the 6,000 ahead then drain in about 13
/// passes, and payments fault the rest in themselves.
pub const HOLDS_WARM_PAGES_MAX: usize = 64;

/// Entries of the idempotency window per shard, by default: a retry is recognised while its
/// key is among the last this many keyed requests that reached its shard.
pub const IDEMPOTENCY_WINDOW_DEFAULT: u32 = 1 << 15;

/// Entries of the idempotency window per shard, at most (88 bytes each for a power of two, up
/// to 120 otherwise: at the most, 92 MB per shard).
pub const IDEMPOTENCY_WINDOW_MAX: u32 = 1 << 20;

/// Merchants at most; a merchant's settlement account id must stay below the payer id base.
pub const MERCHANTS_MAX: u32 = 900_000;

/// Payer devices (phones, gateways) at most.
pub const DEVICES_MAX: u32 = 1 << 26;

/// Terminals at most.
pub const TERMINALS_MAX: u32 = 1 << 26;

/// Hold lifetime when the authorization asks for none: 7 days.
pub const HOLD_LIFETIME_DEFAULT_US: u64 = 7 * DAY_US;

/// Longest hold lifetime an authorization may ask for: 30 days.
pub const HOLD_LIFETIME_MAX_US: u64 = 30 * DAY_US;

/// Offer lifetime when the merchant asks for none: 5 minutes.
pub const OFFER_LIFETIME_DEFAULT_US: u64 = 5 * 60 * 1_000_000;

/// Longest offer lifetime a merchant may ask for: 1 hour.
pub const OFFER_LIFETIME_MAX_US: u64 = 60 * 60 * 1_000_000;

/// Disputes per shard at most (kept for the record, never pruned).
pub const DISPUTES_PER_SHARD_MAX: usize = 1 << 20;

/// How long a finished hold (captured, voided, expired) stays refundable before it is pruned.
pub const HOLD_RETENTION_DEFAULT_US: u64 = 180 * DAY_US;

/// Wrong PIN proofs in a row after which the PIN locks.
pub const PIN_TRIES_MAX: u8 = 3;

/// Fees are in basis points of the amount; 10,000 bps is the whole amount.
pub const FEE_BPS_MAX: u16 = 10_000;

/// Loyalty points one capture may carry.
pub const LOYALTY_POINTS_MAX: u32 = 1_000_000;

/// One UTC day in microseconds: daily limits reset when `timestamp_us / DAY_US` changes.
pub const DAY_US: u64 = 86_400_000_000;

/// Payer account ids start here; ids below it are ledger accounts (funding, fee, merchants).
pub const PAYER_ID_BASE: u64 = 1_000_000;

const _: () = assert!(SHARDS_DEFAULT.is_power_of_two());
const _: () = assert!(SHARDS_MAX.is_power_of_two());
const _: () = assert!(SHARDS_DEFAULT <= SHARDS_MAX);
const _: () = assert!(HOLD_LIFETIME_DEFAULT_US <= HOLD_LIFETIME_MAX_US);
const _: () = assert!(HOLD_LIFETIME_MAX_US < HOLD_RETENTION_DEFAULT_US);
// Funding (1), fee (2) and every merchant's settlement account (2 + merchant id) stay below the
// payer id base, so an account id alone says which kind of account it is.
const _: () = assert!(2 + (MERCHANTS_MAX as u64) < PAYER_ID_BASE);
// A million maximal amounts still fit an i64 stripe.
const _: () = assert!(AMOUNT_MINOR_MAX.checked_mul(1_000).is_some());
const _: () = assert!(AMOUNT_MINOR_MAX < i64::MAX as u64 / 1_000);
