//! Fixed-layout fields: how each wire type is written, read, validated and sampled.
//!
//! Every body is a sequence of [`Field`]s in little-endian order with no padding. Reading goes
//! through [`Reader`], whose every access is bounds-checked and returns [`FieldError`] instead of
//! panicking. Decoding is canonical: a value has exactly one encoding (reserved bytes, padding
//! and unused text bytes must be zero), so `encode(decode(bytes)) == bytes` whenever decode
//! succeeds. [`Entropy`] turns arbitrary bytes into valid values for property tests and fuzzing.

use bytes::{BufMut, BytesMut};

use crate::error::FieldError;

/// A value with a fixed wire layout.
pub trait Field: Sized {
    /// Encoded size in bytes (for a list: the count byte only; entries follow).
    const BYTES: usize;
    /// Type name shown in PROTOCOL.md's byte tables.
    const WIRE_TYPE: &'static str;
    /// The type name with its parts (an option or list names what it holds).
    fn wire_type() -> String {
        Self::WIRE_TYPE.to_string()
    }
    /// Appends the encoding to `out`.
    fn put(&self, out: &mut BytesMut);
    /// Reads one value; `name` is the field's name, carried by errors.
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError>;
    /// A valid value built from arbitrary bytes (property tests and fuzzing).
    fn sample(entropy: &mut Entropy<'_>) -> Self;
}

/// A bounds-checked cursor over one frame's body.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    /// The next `N` bytes, or [`FieldError::Truncated`].
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FieldError> {
        let end = self.offset.saturating_add(N);
        let Some(slice) = self.bytes.get(self.offset..end) else {
            return Err(FieldError::Truncated {
                offset: self.offset as u32,
                needed: N as u32,
            });
        };
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        self.offset = end;
        Ok(array)
    }

    /// The next `count` bytes, or [`FieldError::Truncated`].
    #[inline]
    pub fn slice(&mut self, count: usize) -> Result<&'a [u8], FieldError> {
        let end = self.offset.saturating_add(count);
        let Some(slice) = self.bytes.get(self.offset..end) else {
            return Err(FieldError::Truncated {
                offset: self.offset as u32,
                needed: count as u32,
            });
        };
        self.offset = end;
        Ok(slice)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// Succeeds only if every byte was read: a body has exactly its documented size.
    pub fn finish(&self) -> Result<(), FieldError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(FieldError::Trailing {
                offset: self.offset as u32,
                trailing: trailing as u32,
            }),
        }
    }
}

/// Arbitrary bytes read as a stream of numbers; zeros once exhausted.
#[derive(Debug)]
pub struct Entropy<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Entropy<'a> {
    /// Entropy drawn from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Entropy<'a> {
        Entropy { bytes, offset: 0 }
    }

    /// The next byte, or 0 when exhausted.
    pub fn u8(&mut self) -> u8 {
        let byte = self.bytes.get(self.offset).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        byte
    }

    /// The next eight bytes as a little-endian number.
    pub fn u64(&mut self) -> u64 {
        let mut array = [0u8; 8];
        for byte in &mut array {
            *byte = self.u8();
        }
        u64::from_le_bytes(array)
    }

    /// A number below `bound` (which must be nonzero).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.u64() % bound.max(1)
    }
}

macro_rules! integer_field {
    ($type:ty, $name:literal, $put:ident) => {
        impl Field for $type {
            const BYTES: usize = std::mem::size_of::<$type>();
            const WIRE_TYPE: &'static str = $name;
            #[inline]
            fn put(&self, out: &mut BytesMut) {
                out.$put(*self);
            }
            #[inline]
            fn get(reader: &mut Reader<'_>, _name: &'static str) -> Result<Self, FieldError> {
                Ok(<$type>::from_le_bytes(reader.array()?))
            }
            fn sample(entropy: &mut Entropy<'_>) -> Self {
                // Favour the edges, where codecs break: 0, 1 and the maximum.
                match entropy.u8() % 8 {
                    0 => 0,
                    1 => 1,
                    2 => <$type>::MAX,
                    _ => entropy.u64() as $type,
                }
            }
        }
    };
}

integer_field!(u8, "u8", put_u8);
integer_field!(u16, "u16", put_u16_le);
integer_field!(u32, "u32", put_u32_le);
integer_field!(u64, "u64", put_u64_le);

/// A flag: one byte, 0 = false, 1 = true; anything else is invalid.
impl Field for bool {
    const BYTES: usize = 1;
    const WIRE_TYPE: &'static str = "bool (u8 0/1)";
    #[inline]
    fn put(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(*self));
    }
    #[inline]
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        match reader.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(FieldError::invalid(name, value)),
        }
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        entropy.u8() & 1 == 1
    }
}

/// A 32-byte secret (terminal and payer-device log-on keys, HMAC outputs).
impl Field for [u8; 32] {
    const BYTES: usize = 32;
    const WIRE_TYPE: &'static str = "32 bytes";
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self);
    }
    fn get(reader: &mut Reader<'_>, _name: &'static str) -> Result<Self, FieldError> {
        reader.array()
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        std::array::from_fn(|_| entropy.u8())
    }
}

/// A 16-byte log-on nonce.
impl Field for [u8; 16] {
    const BYTES: usize = 16;
    const WIRE_TYPE: &'static str = "16 bytes";
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self);
    }
    fn get(reader: &mut Reader<'_>, _name: &'static str) -> Result<Self, FieldError> {
        reader.array()
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        std::array::from_fn(|_| entropy.u8())
    }
}

/// An optional fixed-size value: a presence byte (0/1) then the value's bytes, all zero when
/// absent, so the field has the same size either way.
impl<T: Field> Field for Option<T> {
    const BYTES: usize = 1 + T::BYTES;
    const WIRE_TYPE: &'static str = "optional";
    fn wire_type() -> String {
        format!("optional {} (1 + {})", T::WIRE_TYPE, T::BYTES)
    }
    #[inline(always)]
    fn put(&self, out: &mut BytesMut) {
        match self {
            Some(value) => {
                out.put_u8(1);
                value.put(out);
            }
            None => out.put_bytes(0, Self::BYTES),
        }
    }
    #[inline(always)]
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        if bool::get(reader, name)? {
            return Ok(Some(T::get(reader, name)?));
        }
        let offset = reader.offset;
        let padding = reader.slice(T::BYTES)?;
        match padding.iter().position(|&byte| byte != 0) {
            None => Ok(None),
            Some(position) => Err(FieldError::NotZero {
                field: name,
                offset: (offset + position) as u32,
                value: padding[position],
            }),
        }
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        match entropy.u8() & 1 {
            1 => Some(T::sample(entropy)),
            _ => None,
        }
    }
}

/// Reads `count` reserved zero bytes; a nonzero byte is an error (room for later versions).
pub fn get_reserved(reader: &mut Reader<'_>, count: usize) -> Result<(), FieldError> {
    for _ in 0..count {
        let offset = reader.offset;
        let byte = reader.array::<1>()?[0];
        if byte != 0 {
            return Err(FieldError::NotZero {
                field: "reserved",
                offset: offset as u32,
                value: byte,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_with_offset() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(u16::get(&mut reader, "a"), Ok(0x0201));
        assert_eq!(
            u16::get(&mut reader, "b"),
            Err(FieldError::Truncated { offset: 2, needed: 2 })
        );
    }

    #[test]
    fn bool_other_than_zero_or_one_is_invalid() {
        let mut reader = Reader::new(&[2]);
        assert_eq!(
            bool::get(&mut reader, "final"),
            Err(FieldError::invalid("final", 2u8))
        );
    }

    #[test]
    fn absent_option_must_be_all_zero() {
        let mut reader = Reader::new(&[0, 0, 5, 0, 0]);
        let result = Option::<u32>::get(&mut reader, "x");
        assert!(matches!(result, Err(FieldError::NotZero { value: 5, .. })));
    }
}
