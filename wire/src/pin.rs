//! The PIN block: 8 bytes in an ISO 9564 format-0-like cleartext layout (no PAN XOR).
//!
//! ```text
//! nibble 0    : 0 (format)
//! nibble 1    : L, the PIN length, 4..=12
//! nibbles 2.. : the L digits, one per nibble (0..=9)
//! the rest    : 0xF padding
//! ```
//! "1234" is `04 12 34 FF FF FF FF FF`. The block travels in clear inside the frame: on open
//! networks the connection needs TLS (a later issue). The server keeps only a verifier derived
//! from the block, never the block or the PIN.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use crate::error::FieldError;
use crate::field::{Entropy, Field, Reader};

/// Shortest PIN accepted.
pub const PIN_DIGITS_MIN: usize = 4;
/// Longest PIN that fits the block.
pub const PIN_DIGITS_MAX: usize = 12;
/// Size of a PIN block on the wire.
pub const PIN_BLOCK_BYTES: usize = 8;

const _: () = assert!(2 + PIN_DIGITS_MAX <= PIN_BLOCK_BYTES * 2);

/// Why a PIN could not be turned into a block.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum PinError {
    /// Too short or too long.
    #[error("a PIN has {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits, not {length}")]
    Length {
        /// Digits given.
        length: usize,
    },
    /// A character that is not a decimal digit.
    #[error("a PIN is decimal digits only; found {character:?}")]
    NotDigit {
        /// The offending character.
        character: char,
    },
}

/// A validated PIN block. `Debug` never shows the digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PinBlock([u8; PIN_BLOCK_BYTES]);

impl PinBlock {
    /// The block for a PIN given as 4 to 12 decimal digits.
    pub fn from_digits(pin: &str) -> Result<PinBlock, PinError> {
        let length = pin.chars().count();
        if !(PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&length) {
            return Err(PinError::Length { length });
        }
        let mut nibbles = [0xFu8; PIN_BLOCK_BYTES * 2];
        nibbles[0] = 0;
        nibbles[1] = length as u8;
        for (index, character) in pin.chars().enumerate() {
            let digit = character.to_digit(10).ok_or(PinError::NotDigit { character })?;
            nibbles[2 + index] = digit as u8;
        }
        Ok(PinBlock(std::array::from_fn(|index| {
            nibbles[2 * index] << 4 | nibbles[2 * index + 1]
        })))
    }

    /// Validates 8 bytes received from the network.
    #[inline]
    pub fn from_bytes(bytes: [u8; PIN_BLOCK_BYTES]) -> Result<PinBlock, FieldError> {
        // Branch-light check on the block as one number (nibble 0 is the top nibble). The first
        // byte 0x0L holds format and length; below it, L digit nibbles then 0xF padding.
        let block = u64::from_be_bytes(bytes);
        let length = u32::from(bytes[0]);
        if !(PIN_DIGITS_MIN as u32..=PIN_DIGITS_MAX as u32).contains(&length) {
            return Err(FieldError::invalid("pin_block", block));
        }
        let pad_mask = (1u64 << (4 * (14 - length))) - 1;
        let digit_mask = ((1u64 << 56) - 1) & !pad_mask;
        // A nibble is above 9 when its bit 3 is set together with bit 2 or bit 1.
        let above_nine = block & ((block << 1) | (block << 2)) & 0x8888_8888_8888_8888;
        if block & pad_mask != pad_mask || above_nine & digit_mask != 0 {
            return Err(FieldError::invalid("pin_block", block));
        }
        Ok(PinBlock(bytes))
    }

    /// The 8 bytes, for the server's verifier.
    pub fn as_bytes(&self) -> &[u8; PIN_BLOCK_BYTES] {
        &self.0
    }

    /// Number of digits in the PIN.
    pub fn digit_count(&self) -> usize {
        usize::from(self.0[0] & 0xF)
    }
}

impl std::fmt::Debug for PinBlock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "PinBlock({} digits)", self.digit_count())
    }
}

impl Field for PinBlock {
    const BYTES: usize = PIN_BLOCK_BYTES;
    const WIRE_TYPE: &'static str = "PinBlock";
    fn wire_type() -> String {
        format!("{} ({})", Self::WIRE_TYPE, Self::BYTES)
    }
    #[inline]
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(&self.0);
    }
    #[inline]
    fn get(reader: &mut Reader<'_>, name: &'static str) -> Result<Self, FieldError> {
        let bytes = reader.array()?;
        PinBlock::from_bytes(bytes).map_err(|_| FieldError::invalid(name, u64::from_be_bytes(bytes)))
    }
    fn sample(entropy: &mut Entropy<'_>) -> Self {
        let length = PIN_DIGITS_MIN + entropy.below(9) as usize;
        let digits: String = (0..length)
            .map(|_| char::from(b'0' + entropy.below(10) as u8))
            .collect();
        PinBlock::from_digits(&digits).unwrap_or(PinBlock([0x04, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_1234_has_the_documented_layout() {
        let block = PinBlock::from_digits("1234").expect("valid");
        assert_eq!(
            block.as_bytes(),
            &[0x04, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
    }

    #[test]
    fn twelve_digit_pin_fills_the_block() {
        let block = PinBlock::from_digits("123456789012").expect("valid");
        assert_eq!(
            block.as_bytes(),
            &[0x0C, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0xFF]
        );
        assert_eq!(PinBlock::from_bytes(*block.as_bytes()), Ok(block));
    }

    #[test]
    fn short_long_and_non_digit_pins_are_refused() {
        assert_eq!(PinBlock::from_digits("123"), Err(PinError::Length { length: 3 }));
        assert_eq!(
            PinBlock::from_digits("1234567890123"),
            Err(PinError::Length { length: 13 })
        );
        assert_eq!(
            PinBlock::from_digits("12a4"),
            Err(PinError::NotDigit { character: 'a' })
        );
    }

    #[test]
    fn malformed_blocks_are_refused() {
        // Digit nibble above 9, missing padding, bad length, format nibble set.
        for bytes in [
            [0x04, 0x1A, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x04, 0x12, 0x34, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x03, 0x12, 0x3F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            [0x14, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert!(PinBlock::from_bytes(bytes).is_err(), "{bytes:02x?}");
        }
    }

    /// The layout rule read literally, nibble by nibble: the reference for the fast check.
    fn valid_by_nibbles(bytes: [u8; 8]) -> bool {
        let nibble = |index: usize| (bytes[index / 2] >> (4 * (1 - index % 2))) & 0xF;
        let length = usize::from(bytes[0]);
        (4..=12).contains(&length)
            && (2..16).all(|index| match index < 2 + length {
                true => nibble(index) <= 9,
                false => nibble(index) == 0xF,
            })
    }

    proptest::proptest! {
        #[test]
        fn fast_check_agrees_with_the_nibble_rule(
            digits in "[0-9]{4,12}",
            position in 0usize..16,
            value in 0u8..16,
            noise in proptest::prelude::any::<[u8; 8]>(),
        ) {
            let mut bytes = *PinBlock::from_digits(&digits).expect("valid").as_bytes();
            let shift = 4 * (1 - position % 2);
            bytes[position / 2] = (bytes[position / 2] & !(0xF << shift)) | (value << shift);
            for candidate in [bytes, noise] {
                proptest::prop_assert_eq!(
                    PinBlock::from_bytes(candidate).is_ok(),
                    valid_by_nibbles(candidate),
                    "{:02x?}", candidate
                );
            }
        }
    }

    #[test]
    fn debug_hides_the_digits() {
        let block = PinBlock::from_digits("9876").expect("valid");
        assert_eq!(format!("{block:?}"), "PinBlock(4 digits)");
    }
}
