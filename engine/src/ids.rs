//! Identifiers and small value types. Ids are newtypes so an account number is never passed
//! where a hold id is expected.
//!
//! Account ids encode where the account lives, so the hot path finds it by arithmetic:
//!
//! | id range | account |
//! |---|---|
//! | 1 | the issuer's funding account (loads come from it) |
//! | 2 | the issuer's fee account |
//! | 3 ..= 2 + `MERCHANTS_MAX` | merchant `id - 2`'s settlement account |
//! | `PAYER_ID_BASE` + (slot << shard_bits \| shard) | a payer in `shard` at `slot` |
//!
//! Hold ids are `(serial << shard_bits) | shard`, the serial following the hold's sequence
//! (from 1 in each shard) with a skip at every start of the server (`books::hold_ids`), so no
//! hold id is 0 and every hold id names its shard.

use crate::limits::PAYER_ID_BASE;

/// An account number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u64);

impl AccountId {
    /// Where a payer account lives with `shard_bits` shard bits: (shard, slot) by the id
    /// layout above; `None` below the payer range.
    pub fn payer_place(self, shard_bits: u32) -> Option<(u32, u64)> {
        let local = self.0.checked_sub(PAYER_ID_BASE)?;
        Some(((local & ((1u64 << shard_bits) - 1)) as u32, local >> shard_bits))
    }

    /// The issuer's funding account: every load debits it.
    pub const FUNDING: AccountId = AccountId(1);
    /// The issuer's fee account: every merchant fee is credited to it.
    pub const FEE: AccountId = AccountId(2);

    /// The settlement account of a merchant.
    pub const fn settlement(merchant: MerchantId) -> AccountId {
        AccountId(2 + merchant.0 as u64)
    }

    /// The merchant whose settlement account this is, if it is one.
    pub fn settlement_merchant(self) -> Option<MerchantId> {
        (self.0 > 2 && self.0 < PAYER_ID_BASE).then(|| MerchantId((self.0 - 2) as u32))
    }

    /// True if this id is in the payer range.
    pub const fn is_payer(self) -> bool {
        self.0 >= PAYER_ID_BASE
    }

    /// The index of this ledger account's stripe (funding 0, fee 1, merchant m at 1 + m).
    pub const fn ledger_index(self) -> Option<u32> {
        if self.0 >= 1 && self.0 < PAYER_ID_BASE {
            Some((self.0 - 1) as u32)
        } else {
            None
        }
    }
}

/// A merchant (payee) id, issued from 1 by registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MerchantId(pub u32);

/// A terminal id, issued from 1 by registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId(pub u32);

/// A payer device id (a phone app or a gateway relaying for payers), issued from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

/// A hold (reservation) id; also identifies a purchase for refunds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId(pub u64);

/// A dispute id: `(sequence << shard_bits) | shard`, the sequence from 1 in each shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DisputeId(pub u64);

/// Bytes of an offer's reference text at most.
pub const REFERENCE_BYTES_MAX: usize = 32;

/// The text a merchant attaches to an offer ("2 coffees, table 4"): UTF-8, at most
/// `REFERENCE_BYTES_MAX` bytes, zero-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Reference {
    /// The bytes, zero after `len`.
    pub bytes: [u8; REFERENCE_BYTES_MAX],
    /// How many bytes are used.
    pub len: u8,
}

impl Reference {
    /// The reference for a text, if it fits.
    pub fn new(text: &str) -> Option<Reference> {
        let mut bytes = [0; REFERENCE_BYTES_MAX];
        bytes.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
        Some(Reference {
            bytes,
            len: text.len() as u8,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let used = &self.bytes[..usize::from(self.len).min(REFERENCE_BYTES_MAX)];
        std::str::from_utf8(used).unwrap_or("")
    }
}

/// An ISO 4217 numeric currency code (978 is the euro).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(pub u16);

/// A PIN block as the wire carries it (ISO 9564 format-0 layout, no PAN mixing). The books
/// never keep it: they keep a verifier derived from it and the account id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinBlock(pub [u8; 8]);

/// Whether an account, merchant or terminal may act.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Normal operation.
    Active = 0,
    /// Temporarily blocked by the operator; may be unfrozen.
    Frozen = 1,
    /// Permanently closed.
    Closed = 2,
}

impl Status {
    /// The status for a stored byte.
    pub fn from_u8(value: u8) -> Option<Status> {
        match value {
            0 => Some(Status::Active),
            1 => Some(Status::Frozen),
            2 => Some(Status::Closed),
            _ => None,
        }
    }
}

/// What an account is for.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A payer: funds micro-payments and card payments.
    Payer = 0,
    /// A merchant's settlement account (striped across shards).
    MerchantSettlement = 1,
    /// The issuer's funding account (striped).
    IssuerFunding = 2,
    /// The issuer's fee account (striped).
    IssuerFee = 3,
}

impl AccountKind {
    /// The kind of an account id.
    pub fn of(account: AccountId) -> Option<AccountKind> {
        match account.0 {
            0 => None,
            1 => Some(AccountKind::IssuerFunding),
            2 => Some(AccountKind::IssuerFee),
            id if id < PAYER_ID_BASE => Some(AccountKind::MerchantSettlement),
            _ => Some(AccountKind::Payer),
        }
    }
}

/// The idempotency key of a terminal request: the terminal and the id it chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// The terminal that sent the request.
    pub terminal: TerminalId,
    /// The terminal's request id; a retry reuses it.
    pub request_id: u64,
}

/// A log sequence number; 0 means "not logged".
pub type Lsn = u64;
