//! Frames: encoding into `BytesMut` and the incremental decoder.
//!
//! The decoder looks at whatever bytes have arrived and either waits (`Ok(None)`), yields one
//! whole frame and consumes it, consumes a well-delimited bad frame and reports it (the caller
//! answers with an ERROR reply and goes on), or reports a frame it cannot delimit or trust and
//! consumes nothing (the caller sends an ERROR and closes). It never allocates for fixed-size
//! bodies, never panics, and never asks for more than `frame_bytes_max` bytes of buffer.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::DecodeError;
use crate::header::{Header, BODY_OFFSET, FLAG_PUSH, HEADER_BYTES, LENGTH_BYTES, VERSION};
use crate::message::Message;

/// Default largest frame, length prefix included.
pub const FRAME_BYTES_MAX: u32 = 4096;
/// Smallest limit a decoder accepts: every message of this version fits in it.
pub const FRAME_BYTES_MAX_FLOOR: u32 = 1024;
/// Largest limit a decoder accepts.
pub const FRAME_BYTES_MAX_CEILING: u32 = 1 << 20;

const _: () = assert!(FRAME_BYTES_MAX_FLOOR <= FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= FRAME_BYTES_MAX_CEILING);
const _: () = assert!(BODY_OFFSET < FRAME_BYTES_MAX_FLOOR as usize);

/// One frame: the request id from the header and the typed message. Version and flags follow
/// from the session and the message type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The request id (0 for pushes and connection-level errors).
    pub request_id: u64,
    /// The message.
    pub message: Message,
}

impl Frame {
    /// Appends the whole frame (length prefix, header, body) to `out`.
    #[inline]
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.reserve(BODY_OFFSET + 64);
        out.put_u32_le(0);
        let message_type = self.message.message_type();
        let flags = if Message::is_push_type(message_type) {
            FLAG_PUSH
        } else {
            0
        };
        Header {
            version: VERSION,
            message_type,
            flags,
            reserved: 0,
            request_id: self.request_id,
        }
        .put(out);
        self.message.put_body(out);
        let length = (out.len() - start - LENGTH_BYTES) as u32;
        debug_assert!(length as usize + LENGTH_BYTES <= FRAME_BYTES_MAX_FLOOR as usize);
        out[start..start + LENGTH_BYTES].copy_from_slice(&length.to_le_bytes());
    }
}

/// Outcome of parsing the front of a buffer.
enum Parsed {
    Incomplete,
    Frame(Frame, usize),
    Rejected(DecodeError, usize),
    Fatal(DecodeError),
}

/// The incremental decoder of one connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    frame_bytes_max: u32,
    version: u8,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(FRAME_BYTES_MAX)
    }
}

impl Decoder {
    /// A decoder refusing frames above `frame_bytes_max` bytes (length prefix included),
    /// clamped to [`FRAME_BYTES_MAX_FLOOR`]..=[`FRAME_BYTES_MAX_CEILING`].
    pub fn new(frame_bytes_max: u32) -> Decoder {
        Decoder {
            frame_bytes_max: frame_bytes_max.clamp(FRAME_BYTES_MAX_FLOOR, FRAME_BYTES_MAX_CEILING),
            version: VERSION,
        }
    }

    /// The limit in force.
    pub fn frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
    }

    /// Takes the front frame of `buffer`, if whole.
    ///
    /// * `Ok(Some(frame))`: consumed; call again for the next.
    /// * `Ok(None)`: wait for more bytes (the frame is within the limit).
    /// * `Err(e)` with `!e.closes_connection()`: the bad frame was consumed; answer it with an
    ///   ERROR reply for `e.request_id()` and call again.
    /// * `Err(e)` with `e.closes_connection()`: nothing consumed; send an ERROR and close.
    #[inline]
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.parse(buffer) {
            Parsed::Incomplete => Ok(None),
            Parsed::Frame(frame, consumed) => {
                buffer.advance(consumed);
                Ok(Some(frame))
            }
            Parsed::Rejected(error, consumed) => {
                buffer.advance(consumed);
                Err(error)
            }
            Parsed::Fatal(error) => Err(error),
        }
    }

    #[inline(always)]
    fn parse(&self, bytes: &[u8]) -> Parsed {
        let Some(prefix) = bytes.first_chunk::<LENGTH_BYTES>() else {
            return Parsed::Incomplete;
        };
        let length = u32::from_le_bytes(*prefix);
        if length < HEADER_BYTES as u32 {
            return Parsed::Fatal(DecodeError::LengthBelowHeader {
                length,
                header_bytes: HEADER_BYTES as u32,
            });
        }
        let frame_bytes = u64::from(length) + LENGTH_BYTES as u64;
        if frame_bytes > u64::from(self.frame_bytes_max) {
            return Parsed::Fatal(DecodeError::Oversized {
                frame_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        let Some(header) = bytes
            .get(LENGTH_BYTES..BODY_OFFSET)
            .and_then(|header| <&[u8; HEADER_BYTES]>::try_from(header).ok())
        else {
            return Parsed::Incomplete;
        };
        let header = Header::parse(header);
        if header.version != self.version {
            return Parsed::Fatal(DecodeError::Version {
                found: header.version,
                expected: self.version,
            });
        }
        // frame_bytes <= frame_bytes_max <= FRAME_BYTES_MAX_CEILING, so it fits a usize.
        let Ok(consumed) = usize::try_from(frame_bytes) else {
            return Parsed::Fatal(DecodeError::Oversized {
                frame_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        };
        let Some(body) = bytes.get(BODY_OFFSET..consumed) else {
            return Parsed::Incomplete;
        };
        match decode_message(&header, body) {
            Ok(message) => Parsed::Frame(
                Frame {
                    request_id: header.request_id,
                    message,
                },
                consumed,
            ),
            Err(error) => Parsed::Rejected(error, consumed),
        }
    }
}

/// Checks the header's flags against the type, then reads the body.
#[inline(always)]
fn decode_message(header: &Header, body: &[u8]) -> Result<Message, DecodeError> {
    let push = Message::is_push_type(header.message_type);
    let flags_expected = if push { FLAG_PUSH } else { 0 };
    let bad_byte = if header.flags != flags_expected {
        Some(header.flags)
    } else if header.reserved != 0 {
        Some(header.reserved)
    } else {
        None
    };
    // A push answers no request: its request id must be 0.
    if let Some(flags) = bad_byte.or((push && header.request_id != 0).then_some(header.flags)) {
        return Err(DecodeError::Flags {
            flags,
            message_type: header.message_type,
            request_id: header.request_id,
        });
    }
    match Message::get_body(header.message_type, body) {
        Some(Ok(message)) => Ok(message),
        Some(Err(source)) => Err(DecodeError::Body {
            message_type: header.message_type,
            request_id: header.request_id,
            source,
        }),
        None => Err(DecodeError::UnknownType {
            message_type: header.message_type,
            request_id: header.request_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Request;
    use crate::messages::terminal::Echo;

    fn echo_frame() -> BytesMut {
        let mut out = BytesMut::new();
        Frame {
            request_id: 9,
            message: Message::Request(Request::Echo(Echo { value: 5 })),
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn decoder_waits_for_a_whole_frame_byte_by_byte() {
        let whole = echo_frame();
        let mut decoder = Decoder::default();
        let mut buffer = BytesMut::new();
        for (index, byte) in whole.iter().enumerate() {
            buffer.put_u8(*byte);
            let result = decoder.decode(&mut buffer);
            if index + 1 < whole.len() {
                assert_eq!(result, Ok(None), "at byte {index}");
            } else {
                assert!(matches!(result, Ok(Some(Frame { request_id: 9, .. }))));
            }
        }
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_frame_is_fatal_before_its_body_arrives() {
        let mut buffer = BytesMut::from(&4093u32.to_le_bytes()[..]);
        let error = Decoder::default().decode(&mut buffer);
        assert_eq!(
            error,
            Err(DecodeError::Oversized {
                frame_bytes: 4097,
                frame_bytes_max: 4096
            })
        );
        assert_eq!(buffer.len(), 4, "a fatal error consumes nothing");
    }

    #[test]
    fn frame_of_exactly_the_limit_is_accepted_as_incomplete() {
        let mut buffer = BytesMut::from(&4092u32.to_le_bytes()[..]);
        assert_eq!(Decoder::default().decode(&mut buffer), Ok(None));
    }

    #[test]
    fn whole_frame_of_exactly_the_limit_is_delimited_and_one_byte_more_is_not() {
        // No message is this large, so the body is wrong, but the frame is delimited: the
        // error is answerable and the connection survives.
        let mut frame = echo_frame()[..BODY_OFFSET].to_vec();
        frame[..LENGTH_BYTES].copy_from_slice(&(4096 - LENGTH_BYTES as u32).to_le_bytes());
        frame.resize(4096, 0);
        let mut buffer = BytesMut::from(&frame[..]);
        let error = Decoder::default().decode(&mut buffer);
        assert!(
            matches!(error, Err(DecodeError::Body { request_id: 9, .. })),
            "{error:?}"
        );
        assert!(buffer.is_empty(), "the whole frame was consumed");
        frame[..LENGTH_BYTES].copy_from_slice(&(4097 - LENGTH_BYTES as u32).to_le_bytes());
        let error = Decoder::default().decode(&mut BytesMut::from(&frame[..]));
        assert!(error.is_err_and(|error| error.closes_connection()));
    }

    #[test]
    fn configured_limit_is_clamped_to_floor_and_ceiling() {
        assert_eq!(Decoder::new(10).frame_bytes_max(), FRAME_BYTES_MAX_FLOOR);
        assert_eq!(Decoder::new(u32::MAX).frame_bytes_max(), FRAME_BYTES_MAX_CEILING);
        assert_eq!(Decoder::new(2048).frame_bytes_max(), 2048);
    }

    #[test]
    fn unknown_type_is_consumed_and_the_next_frame_decodes() {
        let mut buffer = echo_frame();
        buffer[5] = 0x7E;
        buffer.extend_from_slice(&echo_frame());
        let mut decoder = Decoder::default();
        let error = decoder.decode(&mut buffer);
        assert_eq!(
            error,
            Err(DecodeError::UnknownType {
                message_type: 0x7E,
                request_id: 9
            })
        );
        assert!(decoder.decode(&mut buffer).is_ok_and(|frame| frame.is_some()));
    }

    #[test]
    fn wrong_version_and_short_length_close() {
        let mut buffer = echo_frame();
        buffer[4] = 2;
        let error = Decoder::default().decode(&mut buffer);
        assert!(error.is_err_and(|error| error.closes_connection()));
        let mut buffer = BytesMut::from(&11u32.to_le_bytes()[..]);
        let error = Decoder::default().decode(&mut buffer);
        assert!(error.is_err_and(|error| error.closes_connection()));
    }

    #[test]
    fn push_flag_on_a_request_is_refused() {
        let mut buffer = echo_frame();
        buffer[6] = FLAG_PUSH;
        let error = Decoder::default().decode(&mut buffer);
        assert!(matches!(error, Err(DecodeError::Flags { flags: 1, .. })));
    }
}
