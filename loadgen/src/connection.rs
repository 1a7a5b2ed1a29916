//! One terminal connection: log-on (blocking, before the load starts), then non-blocking I/O
//! under mio with fixed buffers and a fixed ring of requests in flight.
//!
//! * Request ids are `id_base + sequence`; a request's ring slot is `sequence & mask`, so a
//!   reply finds its request by arithmetic and is checked against the stored sequence (a reply
//!   naming an id we never sent, or sent twice, is an error, not a panic). The ring is four
//!   times the in-flight limit; a slot still busy with a very slow request is skipped.
//! * Replies are parsed in place from the read buffer by their fixed offsets (PROTOCOL.md
//!   section 5: every reply body starts with code and reason; hold replies then carry the hold
//!   id and the amount). Every length is checked before it is trusted.
//! * Writes go to a fixed buffer flushed once per event-loop turn: one syscall carries many
//!   requests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use bytes::BytesMut;
use mio::net::TcpStream;
use wire::header::{BODY_OFFSET, FLAG_PUSH, LENGTH_BYTES, VERSION, VERSION_MAX, VERSION_MIN};
use wire::logon::{logon_mac, random_nonce, Hello, Proof, Secret};
use wire::{Decoder, Frame, Logon, Message, Role};

use crate::flow::FlowState;
use crate::template::{Fields, RequestKind, Templates};

/// Bytes of the read buffer (a reply is at most `FRAME_BYTES_MAX`; hold replies are 34).
pub const READ_BYTES: usize = 64 * 1024;
/// Bytes of the write buffer.
pub const WRITE_BYTES: usize = 64 * 1024;
/// Largest in-flight limit per connection loadgen accepts.
pub const IN_FLIGHT_MAX: u32 = 16_384;
/// Largest frame loadgen accepts from the server, length prefix included.
const FRAME_BYTES_MAX: usize = wire::FRAME_BYTES_MAX as usize;
/// The ERROR reply's message type.
pub const ERROR_TYPE: u8 = 0xFF;
/// ProtocolError::Busy in an ERROR reply.
pub const ERROR_BUSY: u8 = 9;
/// Sequence numbers stay below this so ids of connections sharing a terminal never meet.
pub const SEQUENCE_SPAN: u64 = 1 << 40;

const _: () = assert!(FRAME_BYTES_MAX <= READ_BYTES);
const _: () = assert!((IN_FLIGHT_MAX as usize) * 4 <= 1 << 20);

/// A request sent and not yet answered.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Its sequence number; `FREE` when the slot is unused.
    sequence: u64,
    /// When it was due (open loop) or sent (closed loop): its latency counts from here.
    intended_ns: u64,
    /// When it was written to the socket buffer.
    sent_ns: u64,
    kind: RequestKind,
    state: FlowState,
}

const FREE: u64 = u64::MAX;

/// OFFER_PRESENTED's push type.
pub const PUSH_OFFER_PRESENTED: u8 = 0xE0;
/// OFFER_OUTCOME's push type.
pub const PUSH_OFFER_OUTCOME: u8 = 0xE1;
/// OfferState Accepted.
pub const OFFER_ACCEPTED: u8 = 2;
/// OfferSummary: the reference (ShortText, 33 bytes) at body offset 59.
const PRESENTED_REFERENCE: usize = 59;
const PRESENTED_BYTES: usize = 92;
/// OfferOutcome: state at 8, code at 9, amount at 19.
const OUTCOME_BYTES: usize = 27;

/// An offer push, read by offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// `PUSH_OFFER_PRESENTED` or `PUSH_OFFER_OUTCOME`.
    pub kind: u8,
    /// The offer.
    pub offer_id: u64,
    /// Presented: the tag of a loadgen offer (`template::offer_tag`), else `None`.
    pub tag: Option<u32>,
    /// Outcome: the offer's state (2 = accepted).
    pub state: u8,
    /// Outcome: the amount captured.
    pub amount: u64,
    /// When it was read.
    pub at_ns: u64,
}

/// A reply matched to its request.
#[derive(Clone, Copy, Debug)]
pub struct Completed {
    /// The request's kind.
    pub kind: RequestKind,
    /// The flow it belongs to.
    pub state: FlowState,
    /// The request id it was sent with.
    pub request_id: u64,
    /// Due (or send) time of the request.
    pub intended_ns: u64,
    /// When it was sent.
    pub sent_ns: u64,
    /// When the reply was read.
    pub reply_ns: u64,
    /// ISO 8583 code (0 = approved); for an ERROR reply its code.
    pub code: u8,
    /// authd reason.
    pub reason: u8,
    /// True for an ERROR reply (the request was not executed).
    pub error: Option<u8>,
    /// Hold, transaction or offer id of the reply, 0 if none.
    pub id: u64,
    /// Amount of a hold reply, 0 if none.
    pub amount: u64,
}

/// Problems a connection reports without stopping the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anomalies {
    /// Replies naming a request id that is not in flight.
    pub unknown_request_id: u64,
    /// Replies whose type does not answer the request, or whose body is too short.
    pub malformed_reply: u64,
}

/// A logged-on terminal connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Index of the terminal's merchant in the merchant list.
    pub merchant: u32,
    /// Requests the server lets this connection have unanswered.
    pub in_flight_max: u32,
    /// Requests unanswered now.
    pub in_flight: u32,
    /// Flows in progress (closed loop keeps `--pipeline` of them).
    pub flows: u32,
    /// False once the server closed it or it failed.
    pub open: bool,
    /// Anomalies seen so far.
    pub anomalies: Anomalies,
    read: Box<[u8]>,
    read_length: usize,
    write: Box<[u8]>,
    write_start: usize,
    write_end: usize,
    ring: Box<[Pending]>,
    mask: u64,
    id_base: u64,
    next_sequence: u64,
}

/// What a terminal logs on with.
#[derive(Clone, Copy, Debug)]
pub struct TerminalLogon {
    /// Terminal id.
    pub terminal: u32,
    /// Its secret.
    pub secret: Secret,
    /// Its merchant's index in the merchant list.
    pub merchant: u32,
}

impl Connection {
    /// Connects, logs on (blocking, with a timeout) and returns the connection, non-blocking.
    /// `id_base` must differ by at least `SEQUENCE_SPAN` between connections of one terminal.
    pub fn open(
        address: SocketAddr,
        logon: TerminalLogon,
        id_base: u64,
        in_flight_wanted: u32,
    ) -> io::Result<Connection> {
        let mut connection = Connection::open_as(
            address,
            Role::Terminal,
            logon.terminal,
            &logon.secret,
            id_base,
            in_flight_wanted,
        )?;
        connection.merchant = logon.merchant;
        Ok(connection)
    }

    /// Like `open`, for any role (a payer device or gateway: `Role::PayerDevice`, device id).
    pub fn open_as(
        address: SocketAddr,
        role: Role,
        id: u32,
        secret: &Secret,
        id_base: u64,
        in_flight_wanted: u32,
    ) -> io::Result<Connection> {
        let mut stream = StdTcpStream::connect_timeout(&address, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let server_in_flight_max = log_on(&mut stream, role, id, secret)?;
        let in_flight_max = in_flight_wanted.min(server_in_flight_max).clamp(1, IN_FLIGHT_MAX);
        stream.set_nonblocking(true)?;
        let ring_slots = (u64::from(in_flight_max) * 4).next_power_of_two();
        let free = Pending {
            sequence: FREE,
            intended_ns: 0,
            sent_ns: 0,
            kind: RequestKind::Echo,
            state: FlowState::default(),
        };
        Ok(Connection {
            stream: TcpStream::from_std(stream),
            merchant: 0,
            in_flight_max,
            in_flight: 0,
            flows: 0,
            open: true,
            anomalies: Anomalies::default(),
            read: vec![0u8; READ_BYTES].into_boxed_slice(),
            read_length: 0,
            write: vec![0u8; WRITE_BYTES].into_boxed_slice(),
            write_start: 0,
            write_end: 0,
            ring: vec![free; ring_slots as usize].into_boxed_slice(),
            mask: ring_slots - 1,
            id_base,
            next_sequence: 0,
        })
    }

    /// True if one more request of `length` bytes may be queued now.
    #[inline]
    pub fn has_room(&self, length: usize) -> bool {
        self.open && self.in_flight < self.in_flight_max && self.write_room() >= length
    }

    fn write_room(&self) -> usize {
        WRITE_BYTES - (self.write_end - self.write_start)
    }

    /// Queues a request; returns its request id, or `None` if there is no room (see `has_room`).
    #[inline]
    pub fn queue(
        &mut self,
        templates: &Templates,
        kind: RequestKind,
        fields: Fields,
        state: FlowState,
        intended_ns: u64,
        now_ns: u64,
    ) -> Option<u64> {
        let length = templates.length(kind);
        if !self.has_room(length) {
            return None;
        }
        if WRITE_BYTES - self.write_end < length {
            self.write.copy_within(self.write_start..self.write_end, 0);
            self.write_end -= self.write_start;
            self.write_start = 0;
        }
        // Find a free slot: in-flight < ring / 4, so at most a few probes.
        let mut sequence = self.next_sequence;
        while self.ring[(sequence & self.mask) as usize].sequence != FREE {
            sequence += 1;
        }
        debug_assert!(sequence < SEQUENCE_SPAN);
        self.next_sequence = sequence + 1;
        let request_id = self.id_base + sequence;
        let written = templates.write(kind, request_id, fields, &mut self.write[self.write_end..]);
        self.write_end += written;
        self.ring[(sequence & self.mask) as usize] = Pending {
            sequence,
            intended_ns,
            sent_ns: now_ns,
            kind,
            state,
        };
        self.in_flight += 1;
        Some(request_id)
    }

    /// Writes what is queued until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.write_start < self.write_end {
            match self.stream.write(&self.write[self.write_start..self.write_end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    let wanted = self.write_end - self.write_start;
                    self.write_start += written;
                    if written < wanted {
                        // The socket buffer is full; a writable event will say when to go on.
                        return Ok(());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.write_start = 0;
        self.write_end = 0;
        Ok(())
    }

    /// True if bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.write_start < self.write_end
    }

    /// Reads until the socket would block, appending each answered request to `completed` and
    /// each offer push to `pushes` (stamped with `clock()` at each read). Returns an error when
    /// the connection must close.
    pub fn receive(
        &mut self,
        completed: &mut Vec<Completed>,
        pushes: &mut Vec<Pushed>,
        clock: impl Fn() -> u64,
    ) -> io::Result<()> {
        loop {
            match self.stream.read(&mut self.read[self.read_length..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(count) => {
                    let space = READ_BYTES - self.read_length;
                    self.read_length += count;
                    let now_ns = clock();
                    self.parse(completed, pushes, now_ns)?;
                    // A short read drained the socket: epoll (edge-triggered) reports the next
                    // bytes as a new event, so the read that would say WouldBlock is skipped.
                    if count < space {
                        return Ok(());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    fn parse(
        &mut self,
        completed: &mut Vec<Completed>,
        pushes: &mut Vec<Pushed>,
        now_ns: u64,
    ) -> io::Result<()> {
        let mut start = 0;
        while let Some(frame) = self.read.get(start..self.read_length) {
            let Some(length) = frame.get(..LENGTH_BYTES) else {
                break;
            };
            let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
            if length < BODY_OFFSET - LENGTH_BYTES || length + LENGTH_BYTES > FRAME_BYTES_MAX {
                return Err(invalid(format!("the server sent a frame of length {length}")));
            }
            let Some(frame) = frame.get(..LENGTH_BYTES + length) else {
                break;
            };
            start += frame.len();
            if frame[4] != VERSION {
                return Err(invalid(format!("the server sent protocol version {}", frame[4])));
            }
            if frame[6] & FLAG_PUSH != 0 {
                if let Some(pushed) = parse_push(frame, now_ns) {
                    pushes.push(pushed);
                }
                continue;
            }
            let reply = parse_reply(frame);
            if reply.request_id == 0 && reply.message_type == ERROR_TYPE {
                return Err(invalid(format!(
                    "the server closed the connection with ERROR {} (code {}, reason {})",
                    reply.error, reply.code, reply.reason
                )));
            }
            self.complete(reply, completed, now_ns);
        }
        self.read.copy_within(start..self.read_length, 0);
        self.read_length -= start;
        Ok(())
    }

    fn complete(&mut self, reply: ParsedReply, completed: &mut Vec<Completed>, now_ns: u64) {
        let sequence = reply.request_id.wrapping_sub(self.id_base);
        let slot = (sequence & self.mask) as usize;
        if sequence >= self.next_sequence || self.ring[slot].sequence != sequence {
            self.anomalies.unknown_request_id += 1;
            return;
        }
        let pending = self.ring[slot];
        self.ring[slot].sequence = FREE;
        self.in_flight -= 1;
        let is_error = reply.message_type == ERROR_TYPE;
        if !is_error && (reply.message_type != pending.kind.reply_type() || !reply.well_formed) {
            self.anomalies.malformed_reply += 1;
        }
        completed.push(Completed {
            kind: pending.kind,
            state: pending.state,
            request_id: reply.request_id,
            intended_ns: pending.intended_ns,
            sent_ns: pending.sent_ns,
            reply_ns: now_ns,
            code: reply.code,
            reason: reply.reason,
            error: is_error.then_some(reply.error),
            id: reply.id,
            amount: reply.amount,
        });
    }

    /// The intended send times of every request still unanswered: the connection is being
    /// abandoned.
    pub fn take_unanswered(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.in_flight = 0;
        self.ring
            .iter_mut()
            .filter(|pending| pending.sequence != FREE)
            .map(|pending| {
                pending.sequence = FREE;
                pending.intended_ns
            })
    }

    /// Replies that were not understood so far (unknown ids, malformed).
    pub fn bad_replies(&self) -> u64 {
        self.anomalies.unknown_request_id + self.anomalies.malformed_reply
    }
}

/// The fields loadgen reads from a reply.
#[derive(Clone, Copy, Debug)]
struct ParsedReply {
    message_type: u8,
    request_id: u64,
    code: u8,
    reason: u8,
    error: u8,
    id: u64,
    amount: u64,
    well_formed: bool,
}

/// Reads a reply's fields by offset; `frame` is one whole frame of at least the header.
fn parse_reply(frame: &[u8]) -> ParsedReply {
    let body = frame.get(BODY_OFFSET..).unwrap_or_default();
    let u64_at = |offset: usize| {
        body.get(offset..offset + 8)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let request_id = frame
        .get(8..16)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_le_bytes);
    let message_type = frame.get(5).copied().unwrap_or(0);
    ParsedReply {
        message_type,
        request_id,
        code: body.first().copied().unwrap_or(0xFF),
        reason: body.get(1).copied().unwrap_or(0xFF),
        error: if message_type == ERROR_TYPE {
            body.get(2).copied().unwrap_or(0)
        } else {
            0
        },
        // Hold, offer and echo replies carry an id or value at body offset 2; hold replies
        // then the amount at 10.
        id: u64_at(2),
        amount: u64_at(10),
        well_formed: body.len() >= 2,
    }
}

/// Reads an offer push by offset; `None` for other pushes or a short body.
fn parse_push(frame: &[u8], now_ns: u64) -> Option<Pushed> {
    let body = frame.get(BODY_OFFSET..)?;
    let u64_at = |offset: usize| {
        body.get(offset..offset + 8)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let kind = *frame.get(5)?;
    let (tag, state, amount) = match kind {
        PUSH_OFFER_PRESENTED if body.len() >= PRESENTED_BYTES => (
            crate::template::offer_tag(&body[PRESENTED_REFERENCE..PRESENTED_BYTES]),
            0,
            u64_at(45),
        ),
        PUSH_OFFER_OUTCOME if body.len() >= OUTCOME_BYTES => (None, body[8], u64_at(19)),
        _ => return None,
    };
    Some(Pushed {
        kind,
        offer_id: u64_at(0),
        tag,
        state,
        amount,
        at_ns: now_ns,
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Logs on over a blocking stream; returns the server's in-flight limit.
pub fn log_on(stream: &mut StdTcpStream, role: Role, id: u32, secret: &Secret) -> io::Result<u32> {
    let client_nonce = random_nonce()?;
    let hello = Hello {
        role,
        version_min: VERSION_MIN,
        version_max: VERSION_MAX,
        id,
        client_nonce,
    };
    write_frame(stream, Message::Logon(Logon::Hello(hello)))?;
    let mut decoder = Decoder::default();
    let mut buffer = BytesMut::with_capacity(4096);
    let challenge = match read_frame(stream, &mut decoder, &mut buffer)?.message {
        Message::Logon(Logon::Challenge(challenge)) => challenge,
        other => return Err(refused(role, id, &other)),
    };
    let mac = logon_mac(secret, role, id, &client_nonce, &challenge.server_nonce);
    write_frame(stream, Message::Logon(Logon::Proof(Proof { mac })))?;
    match read_frame(stream, &mut decoder, &mut buffer)?.message {
        Message::Logon(Logon::LogonOk(limits)) => Ok(limits.requests_in_flight_max),
        other => Err(refused(role, id, &other)),
    }
}

fn refused(role: Role, id: u32, message: &Message) -> io::Error {
    let detail = match message {
        Message::Logon(Logon::LogonFailed(failed)) => {
            format!("code {} reason {}", failed.code, failed.reason)
        }
        other => format!("message type {:#04x}", other.message_type()),
    };
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("log-on as {role:?} {id} refused ({detail}); check the credentials or the operator key"),
    )
}

fn write_frame(stream: &mut StdTcpStream, message: Message) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(128);
    Frame {
        request_id: 0,
        message,
    }
    .encode(&mut out);
    stream.write_all(&out)
}

fn read_frame(stream: &mut StdTcpStream, decoder: &mut Decoder, buffer: &mut BytesMut) -> io::Result<Frame> {
    let mut chunk = [0u8; 4096];
    loop {
        match decoder.decode(buffer) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => {
                return Err(invalid(format!(
                    "the server sent an invalid log-on frame: {error}"
                )))
            }
        }
        let count = wire::client::read_some(stream, &mut chunk)?;
        let bytes = chunk.get(..count).unwrap_or_default();
        if bytes.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_reply_fields_are_read_by_offset() {
        // PURCHASE reply 0x94, request id 42: approved, transaction 9002, 250.
        let mut frame = vec![0x22, 0, 0, 0, 1, 0x94, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&9002u64.to_le_bytes());
        frame.extend_from_slice(&250u64.to_le_bytes());
        let reply = parse_reply(&frame);
        assert_eq!(reply.message_type, 0x94);
        assert_eq!(reply.request_id, 42);
        assert_eq!((reply.code, reply.reason), (0, 0));
        assert_eq!(reply.id, 9002);
        assert_eq!(reply.amount, 250);
        assert!(reply.well_formed);
    }

    #[test]
    fn offer_pushes_are_read_by_offset() {
        // PROTOCOL.md's OFFER_OUTCOME vector: offer 501 accepted, hold 9003, 1250.
        let outcome = [
            0x27, 0, 0, 0, 1, 0xe1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf5, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0x2b,
            0x23, 0, 0, 0, 0, 0, 0, 0xe2, 4, 0, 0, 0, 0, 0, 0,
        ];
        let pushed = parse_push(&outcome, 9).expect("outcome");
        assert_eq!(
            (
                pushed.kind,
                pushed.offer_id,
                pushed.state,
                pushed.amount,
                pushed.at_ns
            ),
            (PUSH_OFFER_OUTCOME, 501, OFFER_ACCEPTED, 1250, 9)
        );
        let mut presented = vec![0x68, 0, 0, 0, 1, 0xe0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        presented.extend_from_slice(&501u64.to_le_bytes());
        presented.resize(16 + 45, 0);
        presented.extend_from_slice(&1250u64.to_le_bytes());
        presented.resize(16 + 59, 0);
        presented.push(16);
        presented.extend_from_slice(b"loadgen:0000002a");
        presented.resize(16 + 92, 0);
        let pushed = parse_push(&presented, 1).expect("presented");
        assert_eq!(
            (pushed.kind, pushed.offer_id, pushed.tag, pushed.amount),
            (PUSH_OFFER_PRESENTED, 501, Some(42), 1250)
        );
        assert_eq!(parse_push(&presented[..100], 1), None);
    }

    #[test]
    fn a_short_body_is_not_well_formed_and_does_not_panic() {
        let frame = vec![0x0c, 0, 0, 0, 1, 0x94, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0];
        let reply = parse_reply(&frame);
        assert!(!reply.well_formed);
        assert_eq!(reply.id, 0);
    }
}
