//! The length prefix and the fixed 12-byte header that start every frame.
//!
//! ```text
//! offset size type  field
//!      0    4 u32   length: bytes after this field (header + body)
//!      4    1 u8    version (1)
//!      5    1 u8    message type
//!      6    1 u8    flags (bit 0 = PUSH; other bits 0)
//!      7    1 u8    reserved (0)
//!      8    8 u64   request id (0 on pushes and on connection-level errors)
//!     16    -       body
//! ```

use bytes::{BufMut, BytesMut};

/// Size of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Size of the header that follows the length prefix.
pub const HEADER_BYTES: usize = 12;
/// Offset of the body from the start of the frame.
pub const BODY_OFFSET: usize = LENGTH_BYTES + HEADER_BYTES;
/// The only protocol version so far.
pub const VERSION: u8 = 1;
/// Lowest and highest version this crate speaks (negotiated at log-on).
pub const VERSION_MIN: u8 = 1;
/// See [`VERSION_MIN`].
pub const VERSION_MAX: u8 = 1;
/// Flag bit set on server-initiated frames (pushes), which carry request id 0.
pub const FLAG_PUSH: u8 = 0x01;

const _: () = assert!(VERSION_MIN <= VERSION && VERSION <= VERSION_MAX);
const _: () = assert!(BODY_OFFSET == 16);

/// The decoded fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Protocol version.
    pub version: u8,
    /// Message type.
    pub message_type: u8,
    /// Flags ([`FLAG_PUSH`]).
    pub flags: u8,
    /// Reserved byte: must be 0.
    pub reserved: u8,
    /// Request id chosen by the client; 0 on pushes.
    pub request_id: u64,
}

impl Header {
    /// Reads the header from the 12 bytes after the length prefix.
    #[inline]
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> Header {
        let [version, message_type, flags, reserved, id @ ..] = *bytes;
        Header {
            version,
            message_type,
            flags,
            reserved,
            request_id: u64::from_le_bytes(id),
        }
    }

    /// Appends the header's 12 bytes.
    #[inline]
    pub fn put(&self, out: &mut BytesMut) {
        out.put_u8(self.version);
        out.put_u8(self.message_type);
        out.put_u8(self.flags);
        out.put_u8(self.reserved);
        out.put_u64_le(self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            version: 1,
            message_type: 0x14,
            flags: 0,
            reserved: 0,
            request_id: 0x0102_0304_0506_0708,
        };
        let mut out = BytesMut::new();
        header.put(&mut out);
        let bytes: [u8; HEADER_BYTES] = out[..].try_into().expect("12 bytes");
        assert_eq!(Header::parse(&bytes), header);
    }
}
