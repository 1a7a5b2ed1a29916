//! authd's wire protocol: frames, typed messages, the codec and a blocking client.
//!
//! Terminals, payer devices and the operator talk to authd over raw TCP with length-prefixed
//! binary frames, specified byte by byte in `PROTOCOL.md` at the repository root. This crate is
//! that document in code; it does not depend on the engine.
//!
//! # Design
//!
//! * A frame is a `u32` LE length, a fixed 12-byte [`header`] (version, message type, flags,
//!   request id) and a fixed-layout little-endian body. Bodies are declared once with the
//!   `wire_struct!` macro ([`layout`]), which generates the struct, its codec and its byte
//!   table; PROTOCOL.md's tables are those generated tables, checked by a test.
//! * [`frame::Decoder`] is incremental: give it whatever bytes arrived, it yields whole
//!   [`frame::Frame`]s. It never panics and never allocates for fixed-size bodies (every hot
//!   message); only list replies (offers, disputes, stats) allocate, bounded by a count checked
//!   before allocating. Errors ([`error::DecodeError`]) say whether the frame was consumed
//!   (answer with an ERROR reply, keep going) or could not be delimited (close).
//! * Decoding is canonical: reserved bytes, padding and absent optional fields must be zero,
//!   so a decoded frame re-encodes to the same bytes. Golden vectors in `tests/vectors/` pin it.
//! * [`logon`] holds the log-on messages and the HMAC-SHA256 challenge-response both sides use.
//! * [`client::Client`] is a small blocking client: log-on, pipelined send/recv by request id,
//!   reconnect and resend with the same ids (the idempotency key is terminal id + request id).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`header`] | length prefix, header, version, flags |
//! | [`frame`] | `Frame`, encoding, the `Decoder`, frame-size limits |
//! | [`message`] | message type numbers and the `Request` / `Reply` / `Push` / `Logon` enums |
//! | [`messages`] | body structs by sender |
//! | [`types`] | ids, `PayerRef`, `Limits`, `ShortText`, `List`, one-byte enums |
//! | [`pin`] | `PinBlock` |
//! | [`logon`] | log-on bodies, HMAC, version choice |
//! | [`reason`] | the reason table (mirror of the engine's) |
//! | [`field`], [`layout`] | the codec machinery |
//! | [`error`] | `DecodeError`, `FieldError` |
//! | [`client`] | blocking client |
//! | [`counter`] | counter ids of the STATS reply |

pub mod client;
pub mod counter;
pub mod error;
pub mod field;
pub mod frame;
pub mod header;
pub mod layout;
pub mod logon;
pub mod message;
pub mod messages;
pub mod pin;
pub mod reason;
pub mod types;

pub use error::{DecodeError, FieldError};
pub use frame::{Decoder, Frame, FRAME_BYTES_MAX};
pub use message::{Logon, Message, Push, Reply, Request};
pub use pin::PinBlock;
pub use types::{PayerRef, Role};
