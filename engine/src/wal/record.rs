//! One log record: a fixed little-endian header and an opaque payload.
//!
//! | offset | size | field          | notes                                             |
//! |-------:|-----:|----------------|---------------------------------------------------|
//! |      0 |    4 | `crc32c`       | CRC-32C (Castagnoli) of bytes `4 .. 24 + length`  |
//! |      4 |    4 | `length`       | payload bytes, `0..=RECORD_PAYLOAD_BYTES_MAX`     |
//! |      8 |    8 | `lsn`          | log sequence number, >= 1                         |
//! |     16 |    8 | `timestamp_us` | the command's timestamp, opaque to the log        |
//! |     24 |  len | payload        | opaque                                            |
//!
//! The checksum comes first so that it covers one contiguous range: length, lsn, timestamp
//! and payload. Records are packed back to back without padding. A header of 24 zero bytes
//! never validates (its checksum would be crc32c of 20 zeros, not 0, and lsn 0 is invalid),
//! so zeroed preallocated space reads as "no record".

use super::Lsn;

/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Largest payload of one record (4 KiB).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 4096;
/// Largest encoded record.
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX;

const CRC_OFFSET: usize = 0;
const LENGTH_OFFSET: usize = CRC_OFFSET + 4;
const LSN_OFFSET: usize = LENGTH_OFFSET + 4;
const TIMESTAMP_OFFSET: usize = LSN_OFFSET + 8;
const _: () = assert!(TIMESTAMP_OFFSET + 8 == RECORD_HEADER_BYTES);
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX <= u32::MAX as usize);

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    #[error("only {available} bytes left, a record header needs {RECORD_HEADER_BYTES}")]
    ShortHeader { available: usize },
    #[error("payload length {length} exceeds {RECORD_PAYLOAD_BYTES_MAX}")]
    LengthTooLarge { length: u32 },
    #[error("payload of {length} bytes runs past the end ({available} bytes left)")]
    ShortPayload { length: u32, available: usize },
    #[error("checksum {stored:#010x} does not match computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("lsn {found} where lsn {expected} was expected")]
    UnexpectedLsn { expected: Lsn, found: Lsn },
    #[error("segment header is invalid: {reason}")]
    SegmentHeader { reason: &'static str },
    #[error("zeroed space followed by data")]
    ZeroesBeforeData,
}

/// A record decoded from bytes; the payload borrows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub lsn: Lsn,
    pub timestamp_us: u64,
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Encoded size of this record.
    pub fn bytes_total(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Encoded size of a record with `payload_bytes` of payload.
pub fn record_bytes(payload_bytes: usize) -> usize {
    RECORD_HEADER_BYTES + payload_bytes
}

/// Appends the encoded record to `buffer`. The caller checked the payload size and reserved
/// capacity (the writer's buffers never grow).
pub fn encode_into(buffer: &mut Vec<u8>, lsn: Lsn, timestamp_us: u64, payload: &[u8]) {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX);
    assert!(lsn >= 1);
    let start = buffer.len();
    let length = payload.len() as u32;
    buffer.extend_from_slice(&[0; LENGTH_OFFSET]);
    buffer.extend_from_slice(&length.to_le_bytes());
    buffer.extend_from_slice(&lsn.to_le_bytes());
    buffer.extend_from_slice(&timestamp_us.to_le_bytes());
    buffer.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buffer[start + LENGTH_OFFSET..]);
    buffer[start..start + LENGTH_OFFSET].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(
        decode(&buffer[start..]).map(|record| record.lsn),
        Ok(lsn),
        "a record must validate right after encoding"
    );
}

/// Encodes one record into a new vector (tests and tools).
pub fn encode(lsn: Lsn, timestamp_us: u64, payload: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(record_bytes(payload.len()));
    encode_into(&mut buffer, lsn, timestamp_us, payload);
    buffer
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// The payload length of the record at the start of `bytes`, unvalidated; `None` if the
/// header is incomplete.
pub fn peek_length(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= RECORD_HEADER_BYTES).then(|| read_u32(bytes, LENGTH_OFFSET))
}

/// The lsn of the record at the start of `bytes`, unvalidated; `None` if the header is
/// incomplete.
pub fn peek_lsn(bytes: &[u8]) -> Option<Lsn> {
    (bytes.len() >= RECORD_HEADER_BYTES).then(|| read_u64(bytes, LSN_OFFSET))
}

/// Validates and decodes the record at the start of `bytes` (bytes after it are ignored).
/// Checks the length bound before touching the payload and the checksum over everything.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, RecordFault> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordFault::ShortHeader {
            available: bytes.len(),
        });
    }
    let length = read_u32(bytes, LENGTH_OFFSET);
    if length as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordFault::LengthTooLarge { length });
    }
    let end = RECORD_HEADER_BYTES + length as usize;
    if bytes.len() < end {
        return Err(RecordFault::ShortPayload {
            length,
            available: bytes.len() - RECORD_HEADER_BYTES,
        });
    }
    let stored = read_u32(bytes, CRC_OFFSET);
    let computed = crc32c::crc32c(&bytes[LENGTH_OFFSET..end]);
    if stored != computed {
        return Err(RecordFault::ChecksumMismatch { stored, computed });
    }
    let lsn = read_u64(bytes, LSN_OFFSET);
    if lsn == 0 {
        // A checksum-valid lsn 0 is never written; treat it like a mismatch.
        return Err(RecordFault::UnexpectedLsn {
            expected: 1,
            found: lsn,
        });
    }
    Ok(Record {
        lsn,
        timestamp_us: read_u64(bytes, TIMESTAMP_OFFSET),
        payload: &bytes[RECORD_HEADER_BYTES..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let bytes = encode(7, 1_700_000_000_000_000, b"hold 42");
        let record = decode(&bytes).expect("valid");
        assert_eq!(record.lsn, 7);
        assert_eq!(record.timestamp_us, 1_700_000_000_000_000);
        assert_eq!(record.payload, b"hold 42");
        assert_eq!(record.bytes_total(), bytes.len());
    }

    #[test]
    fn documented_layout_decodes() {
        // lsn 1, timestamp 2, payload "ab": the byte table in the module doc.
        let mut bytes = vec![0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        let crc = crc32c::crc32c(&bytes[4..]);
        bytes[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, encode(1, 2, b"ab"));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let bytes = encode(99, 123_456, b"a payload of some bytes");
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&flipped).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn zeroes_are_not_a_record() {
        assert!(decode(&[0; 64]).is_err());
    }

    #[test]
    fn oversized_length_is_refused_before_reading_payload() {
        let mut bytes = encode(1, 0, b"x");
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(RecordFault::LengthTooLarge { length: u32::MAX })
        );
    }

    #[test]
    fn largest_payload_round_trips() {
        let payload = vec![0xA5; RECORD_PAYLOAD_BYTES_MAX];
        let bytes = encode(3, 9, &payload);
        assert_eq!(bytes.len(), RECORD_BYTES_MAX);
        assert_eq!(decode(&bytes).expect("valid").payload, &payload[..]);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_record_round_trips(lsn in 1u64.., timestamp_us: u64, payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let bytes = encode(lsn, timestamp_us, &payload);
            let record = decode(&bytes).expect("valid");
            proptest::prop_assert_eq!(record.lsn, lsn);
            proptest::prop_assert_eq!(record.timestamp_us, timestamp_us);
            proptest::prop_assert_eq!(record.payload, &payload[..]);
        }
    }
}
