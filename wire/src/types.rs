//! Field types shared by many messages: ids, the payer reference, limits, bounded text and
//! lists, and the one-byte enums.

use bytes::{BufMut, BytesMut};

use crate::error::FieldError;
use crate::field::{Entropy, Field, Reader};
use crate::layout::{wire_enum, wire_id, wire_struct};

wire_id! {
    /// An account number, issued by authd.
    pub struct AccountNumber(u64);
}
wire_id! {
    /// A merchant id, issued by authd at registration.
    pub struct MerchantId(u32);
}
wire_id! {
    /// A terminal id, issued by authd at registration.
    pub struct TerminalId(u32);
}
wire_id! {
    /// A payer device id, issued by authd at registration.
    pub struct DeviceId(u32);
}
wire_id! {
    /// A hold (or, for a purchase, a transaction) id, issued by authd.
    pub struct HoldId(u64);
}
wire_id! {
    /// An offer id, issued by authd.
    pub struct OfferId(u64);
}
wire_id! {
    /// A dispute id, issued by authd.
    pub struct DisputeId(u64);
}

/// Who the payer is: an account number or a mobile number (E.164 digits as a number,
/// +33612345678 is 33612345678). Wire: tag u8 (1 = account, 2 = mobile) then u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayerRef {
    /// By account number (tag 1).
    Account(AccountNumber),
    /// By mobile number (tag 2).
    Mobile(u64),
}

impl Field for PayerRef {
    const BYTES: usize = 9;
    const WIRE_TYPE: &'static str = "PayerRef";
    fn wire_type() -> String {
        format!("{} ({})", Self::WIRE_TYPE, Self::BYTES)
    }
    #[inline]
    fn put(&self, out: &mut BytesMut) {
        let (tag, value) = match *self {
            PayerRef::Account(account) => (1, account.0),
            PayerRef::Mobile(mobile) => (2, mobile),
        };
        out.put_u8(tag);
        out.put_u64_le(value);
    }
    #[inline]
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        let [tag, value @ ..] = reader.array::<9>()?;
        let value = u64::from_le_bytes(value);
        match tag {
            1 => Ok(PayerRef::Account(AccountNumber(value))),
            2 => Ok(PayerRef::Mobile(value)),
            _ => Err(FieldError::invalid(name, tag)),
        }
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        match entropy.u8() & 1 {
            0 => PayerRef::Account(AccountNumber(entropy.u64())),
            _ => PayerRef::Mobile(entropy.u64()),
        }
    }
}

/// Bytes of text a [`ShortText`] holds at most.
pub const SHORT_TEXT_BYTES_MAX: usize = 32;

/// Up to 32 bytes of UTF-8 with no heap allocation. Wire: length u8 (0..=32) then 32 bytes,
/// the unused tail zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShortText {
    length: u8,
    bytes: [u8; SHORT_TEXT_BYTES_MAX],
}

impl ShortText {
    /// The text, or `None` if it is longer than 32 bytes.
    pub fn new(text: &str) -> Option<ShortText> {
        if text.len() > SHORT_TEXT_BYTES_MAX {
            return None;
        }
        let mut bytes = [0u8; SHORT_TEXT_BYTES_MAX];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(ShortText {
            length: text.len() as u8,
            bytes,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.length)).unwrap_or(&[]);
        std::str::from_utf8(bytes).unwrap_or("")
    }
}

impl std::fmt::Debug for ShortText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?}", self.as_str())
    }
}

impl Field for ShortText {
    const BYTES: usize = 1 + SHORT_TEXT_BYTES_MAX;
    const WIRE_TYPE: &'static str = "ShortText";
    fn wire_type() -> String {
        format!("{} ({})", Self::WIRE_TYPE, Self::BYTES)
    }
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(self.length);
        out.put_slice(&self.bytes);
    }
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        let length = reader.array::<1>()?[0];
        let bytes = reader.array::<SHORT_TEXT_BYTES_MAX>()?;
        let Some((text, tail)) = bytes.split_at_checked(usize::from(length)) else {
            return Err(FieldError::invalid(name, length));
        };
        if std::str::from_utf8(text).is_err() {
            return Err(FieldError::invalid(name, length));
        }
        if let Some(position) = tail.iter().position(|&byte| byte != 0) {
            return Err(FieldError::NotZero {
                field: name,
                offset: (1 + usize::from(length) + position) as u32,
                value: tail[position],
            });
        }
        Ok(ShortText { length, bytes })
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        let length = entropy.below(SHORT_TEXT_BYTES_MAX as u64 + 1) as usize;
        let text: String = (0..length)
            .map(|_| char::from(b' ' + entropy.below(95) as u8))
            .collect();
        ShortText::new(&text).unwrap_or_default()
    }
}

/// At most `MAX` entries (`MAX` <= 255). Wire: count u8 then `count` entries back to back.
/// Lists are always a body's last field.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct List<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> List<T, MAX> {
    /// The entries, or `None` if there are more than `MAX`.
    pub fn new(entries: Vec<T>) -> Option<List<T, MAX>> {
        (entries.len() <= MAX).then_some(List(entries))
    }

    /// The entries.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

impl<T: Field, const MAX: usize> Field for List<T, MAX> {
    const BYTES: usize = 1;
    const WIRE_TYPE: &'static str = "list";
    fn wire_type() -> String {
        format!("u8 count, then up to {MAX} x {} ({})", T::WIRE_TYPE, T::BYTES)
    }
    fn put(&self, out: &mut BytesMut) {
        debug_assert!(self.0.len() <= MAX);
        out.put_u8(self.0.len() as u8);
        for entry in &self.0 {
            entry.put(out);
        }
    }
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        let count = usize::from(reader.array::<1>()?[0]);
        // Check the count before allocating: a hostile count must not reserve memory.
        if count > MAX || count.saturating_mul(T::BYTES) > reader.remaining() {
            return Err(FieldError::invalid(name, count as u64));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(T::get(reader, name)?);
        }
        Ok(List(entries))
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        let count = entropy.below(MAX as u64 + 1);
        List((0..count).map(|_| T::sample(entropy)).collect())
    }
}

wire_struct! {
    /// Product details carried by a capture or purchase (they earn the merchant a lower fee).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ProductDetails {
        /// The merchant's product code.
        product_code: u32,
        /// Units sold.
        quantity: u16,
    }
}

wire_struct! {
    /// A payer's limits. For every field the type's maximum means "no limit"; 0 is a real
    /// limit (nothing allowed; for `pin_above_minor`, a PIN is always required).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Limits {
        /// Largest single payment, minor units (u64::MAX = none).
        per_payment_minor: u64,
        /// Largest total per UTC day, minor units (u64::MAX = none).
        per_day_minor: u64,
        /// Most payments per UTC day (u32::MAX = none).
        per_day_count: u32,
        /// Payments above this amount need a PIN (u64::MAX = never).
        pin_above_minor: u64,
    }
}

impl Limits {
    /// No limits at all.
    pub const NONE: Limits = Limits {
        per_payment_minor: u64::MAX,
        per_day_minor: u64::MAX,
        per_day_count: u32::MAX,
        pin_above_minor: u64::MAX,
    };
}

wire_enum! {
    /// Who is logging on.
    pub enum Role {
        /// A merchant's terminal or payment server (id = terminal id).
        Terminal = 1,
        /// A payer's device (id = device id).
        PayerDevice = 2,
        /// The issuer's operator (id = operator id).
        Operator = 3,
    }
}

wire_enum! {
    /// What an account is for.
    pub enum AccountKind {
        /// A payer's account.
        Payer = 1,
        /// A merchant's settlement account.
        Merchant = 2,
        /// The issuer's funding account (loads come from it).
        IssuerFunding = 3,
        /// The issuer's fee account.
        IssuerFee = 4,
    }
}

wire_enum! {
    /// An account's status.
    pub enum AccountStatus {
        /// Payments allowed.
        Active = 1,
        /// Payments declined until unfrozen.
        Frozen = 2,
        /// Closed for good.
        Closed = 3,
    }
}

wire_enum! {
    /// Where an offer stands.
    pub enum OfferState {
        /// No such offer for this caller (see the reason).
        Unknown = 0,
        /// Presented; funds held; waiting for the payer.
        Offered = 1,
        /// Accepted with the PIN; the hold is the offer's.
        Accepted = 2,
        /// Rejected by the payer.
        Rejected = 3,
        /// Not answered in time.
        Expired = 4,
        /// Cancelled by the merchant.
        Cancelled = 5,
    }
}

wire_enum! {
    /// Why provisioning of digital goods failed, or why a dispute was opened.
    pub enum DisputeCause {
        /// Nothing was delivered.
        NotDelivered = 1,
        /// Delivered but unusable.
        Defective = 2,
        /// Only part was delivered.
        Partial = 3,
        /// Anything else.
        Other = 4,
    }
}

wire_enum! {
    /// Where a dispute stands.
    pub enum DisputeState {
        /// Open, waiting for the operator.
        Open = 1,
        /// Resolved: the payer was made whole.
        ResolvedForPayer = 2,
        /// Resolved: the merchant keeps the funds.
        ResolvedForMerchant = 3,
    }
}

wire_enum! {
    /// The operator's decision on a dispute.
    pub enum DisputeOutcome {
        /// The payer keeps what the dispute moved from the merchant when it opened (final).
        ForPayer = 1,
        /// What the dispute moved to the payer goes back to the merchant.
        ForMerchant = 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payer_ref_unknown_tag_is_invalid() {
        let mut reader = Reader::new(&[3, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            PayerRef::get(&mut reader, "payer"),
            Err(FieldError::invalid("payer", 3u8))
        );
    }

    #[test]
    fn short_text_rejects_overlong_length_and_dirty_tail() {
        let mut bytes = [0u8; 33];
        bytes[0] = 33;
        assert!(ShortText::get(&mut Reader::new(&bytes), "t").is_err());
        bytes[0] = 1;
        bytes[1] = b'a';
        bytes[5] = b'x';
        assert!(matches!(
            ShortText::get(&mut Reader::new(&bytes), "t"),
            Err(FieldError::NotZero { offset: 5, .. })
        ));
        assert!(ShortText::new(&"x".repeat(33)).is_none());
    }

    #[test]
    fn list_count_above_max_is_refused_before_allocating() {
        let bytes = [200u8, 0, 0];
        let result = List::<u8, 16>::get(&mut Reader::new(&bytes), "entries");
        assert_eq!(result, Err(FieldError::invalid("entries", 200u8)));
    }

    #[test]
    fn a_list_of_exactly_max_entries_is_read_and_one_more_is_not() {
        let mut bytes = vec![16u8];
        bytes.extend(1..=17u8);
        let full = List::<u8, 16>::get(&mut Reader::new(&bytes), "entries").expect("16 of 16");
        assert_eq!(full.as_slice(), &(1..=16).collect::<Vec<u8>>()[..]);
        bytes[0] = 17;
        let result = List::<u8, 16>::get(&mut Reader::new(&bytes), "entries");
        assert_eq!(result, Err(FieldError::invalid("entries", 17u8)));
        assert!(List::<u8, 16>::new(vec![0; 16]).is_some() && List::<u8, 16>::new(vec![0; 17]).is_none());
    }

    #[test]
    fn a_short_text_of_exactly_32_bytes_round_trips() {
        let text = ShortText::new(&"é".repeat(16)).expect("32 bytes of UTF-8 fit");
        let mut out = BytesMut::new();
        text.put(&mut out);
        let read = ShortText::get(&mut Reader::new(&out), "t").expect("read back");
        assert_eq!(read.as_str(), "é".repeat(16));
        assert!(
            ShortText::new(&("a".to_string() + &"é".repeat(16))).is_none(),
            "33 bytes"
        );
    }
}
