//! Decode errors, split by what the server must do about them.
//!
//! * [`DecodeError::closes_connection`] true: the frame cannot be delimited or its header cannot
//!   be trusted (bad length, oversized, unknown protocol version). The server sends one ERROR
//!   frame with request id 0 and closes: nothing after it can be parsed safely.
//! * false: the frame was delimited and consumed; the server answers it with an ERROR reply
//!   carrying the frame's request id and keeps reading the next frame.

use thiserror::Error;

/// Why a well-delimited body could not be read.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    /// The body ended before a field did.
    #[error("body ends early: {needed} more bytes needed at body offset {offset}")]
    Truncated {
        /// Body offset of the field that did not fit.
        offset: u32,
        /// Bytes that field needs.
        needed: u32,
    },
    /// The body is longer than its message's layout.
    #[error("{trailing} bytes after the end of the body at body offset {offset}")]
    Trailing {
        /// Where the layout ends.
        offset: u32,
        /// How many bytes follow it.
        trailing: u32,
    },
    /// A field holds a value outside its domain (unknown tag, enum value, bad PIN block...).
    #[error("field `{field}` holds invalid value {value:#x}")]
    Invalid {
        /// The field's name as in PROTOCOL.md.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A reserved or padding byte is not zero (decoding is canonical).
    #[error("field `{field}` has nonzero padding byte {value:#04x} at body offset {offset}")]
    NotZero {
        /// The field the padding belongs to.
        field: &'static str,
        /// Body offset of the byte.
        offset: u32,
        /// The byte found.
        value: u8,
    },
}

impl FieldError {
    /// A [`FieldError::Invalid`] for `field` holding `value`.
    pub fn invalid(field: &'static str, value: impl Into<u64>) -> FieldError {
        FieldError::Invalid {
            field,
            value: value.into(),
        }
    }

    /// The number an ERROR reply carries for this error.
    pub fn value(&self) -> u64 {
        match *self {
            FieldError::Truncated { offset, .. } => u64::from(offset),
            FieldError::Trailing { offset, .. } => u64::from(offset),
            FieldError::Invalid { value, .. } => value,
            FieldError::NotZero { value, .. } => u64::from(value),
        }
    }
}

/// Why the decoder could not produce a frame.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix is smaller than the fixed header: the frame cannot be parsed.
    #[error("frame length {length} is below the {header_bytes}-byte header; closing")]
    LengthBelowHeader {
        /// The length prefix received.
        length: u32,
        /// The header size it must at least cover.
        header_bytes: u32,
    },
    /// The frame is larger than the decoder's limit: the peer is broken or hostile.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {frame_bytes_max}; closing")]
    Oversized {
        /// Whole frame size claimed (length prefix included).
        frame_bytes: u64,
        /// The decoder's limit.
        frame_bytes_max: u32,
    },
    /// The header's version is not the session's: the header layout cannot be trusted.
    #[error("protocol version {found} received, {expected} expected; closing")]
    Version {
        /// Version byte received.
        found: u8,
        /// The version this session uses.
        expected: u8,
    },
    /// The message type is not one this protocol version defines.
    #[error("unknown message type {message_type:#04x} (request {request_id})")]
    UnknownType {
        /// The type byte received.
        message_type: u8,
        /// The frame's request id.
        request_id: u64,
    },
    /// The flags or the header's reserved byte are wrong for this message type.
    #[error("flags {flags:#04x} invalid for message type {message_type:#04x} (request {request_id})")]
    Flags {
        /// The flags byte (or the reserved byte, if that one is nonzero).
        flags: u8,
        /// The frame's message type.
        message_type: u8,
        /// The frame's request id.
        request_id: u64,
    },
    /// The body does not match its message type's layout.
    #[error("message type {message_type:#04x} (request {request_id}): {source}")]
    Body {
        /// The frame's message type.
        message_type: u8,
        /// The frame's request id.
        request_id: u64,
        /// What is wrong.
        source: FieldError,
    },
}

impl DecodeError {
    /// True if the connection must be closed after this error (the frame could not be
    /// delimited or trusted); false if the frame was consumed and only needs an error reply.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            DecodeError::LengthBelowHeader { .. }
                | DecodeError::Oversized { .. }
                | DecodeError::Version { .. }
        )
    }

    /// The request id an ERROR reply should carry: the frame's, or 0 when it is unknown.
    pub fn request_id(&self) -> u64 {
        match *self {
            DecodeError::UnknownType { request_id, .. }
            | DecodeError::Flags { request_id, .. }
            | DecodeError::Body { request_id, .. } => request_id,
            _ => 0,
        }
    }
}
