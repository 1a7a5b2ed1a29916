//! One client connection: bounded read and write buffers, the incremental decoder, the log-on
//! session, and the replies waiting for their log records to be durable.
//!
//! Reading stops (and the connection is left readable in the kernel) while the connection has
//! `in_flight_max` replies unreleased or `write_bytes_max` bytes unwritten: a client that
//! pipelines without reading slows only itself. Replies and outcome pushes leave in order once
//! the log's durable position passes the record each one reflects. An offer shown at once is
//! written ahead of them, except of a log-on answer or an offer list (`queue_push`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use wire::messages::reply::{ErrorReply, ProtocolError};
use wire::{Decoder, Frame, Logon, Message, Reply};

use crate::ids::Lsn;
use crate::reason::Reason;
use crate::server::dispatch::prefetch;
use crate::server::dispatch::{dispatch, Context};
use crate::server::session::{failed, LogonContext, Session, Step};
use crate::server::Shared;

/// Bytes read from the socket per read call at most: the size of each loop's scratch buffer.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A reply waiting for the log.
struct Waiting {
    lsn: Lsn,
    frame: Frame,
    /// An offer shown at once may not overtake it (`Connection::waiting_barriers`).
    barrier: bool,
}

/// What became of the connection after some work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Keep serving.
    Open,
    /// Close it now (peer gone, error, or finished closing).
    Closed,
}

/// One connection.
pub struct Connection {
    /// The socket.
    pub socket: TcpStream,
    /// The peer.
    pub peer: SocketAddr,
    read: BytesMut,
    /// The next frame, decoded one ahead of the one being handled (`handle_frames`).
    ahead: Option<Frame>,
    write: BytesMut,
    decoder: Decoder,
    session: Session,
    waiting: VecDeque<Waiting>,
    /// How many of `waiting` are pushes: they do not count against `--in-flight-max`, which
    /// bounds the client's own requests (a gateway gets a push per offer for every payer).
    waiting_pushes: usize,
    /// How many of `waiting` an offer shown at once must not overtake: a log-on answer (a
    /// client reads nothing before it), a LIST_OFFERS reply (a client may take the list as
    /// its pending offers, and would lose one shown before a list without it), and an offer
    /// queued behind those (offers are shown in order).
    waiting_barriers: usize,
    /// When the connection was accepted.
    pub opened: Instant,
    /// When the last frame arrived.
    pub last_frame: Instant,
    /// Close once everything queued is written.
    pub closing: bool,
    /// Reading stopped at a limit; read again once under it.
    pub read_stalled: bool,
    /// The peer closed its side.
    pub peer_closed: bool,
    /// This connection's number (slab keys are reused; this is not).
    pub id: u64,
    /// Subscribed to pushes (set by the loop after log-on).
    pub subscribed: bool,
}

impl Connection {
    /// A new connection, waiting for HELLO.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        frame_bytes_max: u32,
        now: Instant,
        id: u64,
    ) -> Connection {
        Connection {
            socket,
            peer,
            read: BytesMut::with_capacity(READ_CHUNK_BYTES),
            ahead: None,
            write: BytesMut::with_capacity(READ_CHUNK_BYTES),
            decoder: Decoder::new(frame_bytes_max),
            session: Session::AwaitingHello,
            waiting: VecDeque::new(),
            waiting_pushes: 0,
            waiting_barriers: 0,
            opened: now,
            last_frame: now,
            closing: false,
            read_stalled: false,
            peer_closed: false,
            id,
            subscribed: false,
        }
    }

    /// True once logged on.
    pub fn logged_on(&self) -> bool {
        matches!(self.session, Session::LoggedOn(_))
    }

    /// Who is logged on, if anyone.
    pub fn principal(&self) -> Option<crate::server::dispatch::Principal> {
        match self.session {
            Session::LoggedOn(principal) => Some(principal),
            _ => None,
        }
    }

    /// Queue a push: behind the replies if it waits for `lsn` to be durable (an outcome); to
    /// be written at once, ahead of them, with `lsn` 0 (an offer shown at once: no reply
    /// waits for it, nor it for a reply), unless a barrier waits (`waiting_barriers`).
    pub fn queue_push(&mut self, lsn: Lsn, push: wire::Push) {
        let frame = Frame {
            request_id: 0,
            message: Message::Push(push),
        };
        let shown_at_once = lsn == 0;
        if shown_at_once && self.waiting_barriers == 0 {
            frame.encode(&mut self.write);
            return;
        }
        self.waiting_pushes += 1;
        self.wait(lsn, frame, shown_at_once);
    }

    /// The lsn the oldest waiting reply (or push) needs before it can leave, if any: they
    /// leave in order, so none of them leaves before it.
    pub fn waiting_lsn(&self) -> Option<Lsn> {
        self.waiting.front().map(|waiting| waiting.lsn)
    }

    /// True if replies wait for the log.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Bytes queued for the socket and not yet taken by it.
    pub fn unwritten_bytes(&self) -> usize {
        self.write.len()
    }

    /// True if nothing is queued to write or release.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.write.is_empty()
    }

    fn under_limits(&self, shared: &Shared) -> bool {
        self.waiting.len() - self.waiting_pushes < shared.config.in_flight_max as usize
            && self.write.len() < shared.config.write_bytes_max
    }

    /// Read what the socket has (up to the limits) and handle every whole frame. `scratch`
    /// is the loop's read buffer, zeroed once: reading straight into `read` would zero a
    /// whole chunk per call, for requests of a hundred bytes. `may_have_closed` is false
    /// when a readiness event said the peer has not shut down its side: then a short read
    /// took everything the kernel held, and any byte (or FIN) that arrives later raises a
    /// new event, so asking again would only return WouldBlock: one syscall per connection
    /// per iteration for nothing. Else (the peer closed, or no event to go by) read until
    /// WouldBlock, so that a FIN queued behind the data is seen now. (A read also stops short
    /// at TCP urgent data, with bytes left and no new event: only a client that sends
    /// MSG_OOB, which the protocol has no use for, stalls itself until its next bytes.)
    pub fn read_ready(&mut self, shared: &Shared, scratch: &mut [u8], may_have_closed: bool) -> State {
        self.read_stalled = false;
        if !self.read.is_empty() || self.ahead.is_some() {
            // Frames left from a stall go before anything read now: read first, a FIN
            // could mark the peer closed while they still wait, and the connection would be
            // closed once the replies in flight left, without handling them.
            self.handle_frames(shared);
        }
        while !self.closing && !self.peer_closed {
            if !self.under_limits(shared) {
                self.read_stalled = true;
                break;
            }
            match self.socket.read(scratch) {
                Ok(0) => self.peer_closed = true,
                Ok(count) => {
                    self.read.extend_from_slice(&scratch[..count]);
                    self.handle_frames(shared);
                    if count < scratch.len() && !may_have_closed {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return State::Closed,
            }
        }
        if self.peer_closed && self.is_idle() && !self.read_stalled {
            return State::Closed;
        }
        State::Open
    }

    /// Decode and handle whole frames while under the limits.
    pub fn handle_frames(&mut self, shared: &Shared) {
        // One clock read per batch: the frames of one read arrived together, and a
        // clock_gettime per request was 3% of authd's CPU at full load.
        let now_us = shared.clock.now_us();
        let now = Instant::now();
        while !self.closing && self.under_limits(shared) {
            let frame = match self.ahead.take() {
                Some(frame) => frame,
                None => match self.decoder.decode(&mut self.read) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        self.malformed(shared, &error);
                        continue;
                    }
                },
            };
            self.last_frame = now;
            // Decode the next frame before handling this one and ask the books to start
            // loading what it will touch: on a large book that memory (the payer's line, the
            // request key's window slot) is not in cache, and it arrives while this one runs.
            // The frame waits in `ahead` (handled first next time if a limit stops us here).
            let next_error = match self.decoder.decode(&mut self.read) {
                Ok(Some(next)) => {
                    if let (Message::Request(request), Session::LoggedOn(principal)) =
                        (&next.message, &self.session)
                    {
                        prefetch(&shared.store, *principal, next.request_id, request);
                    }
                    self.ahead = Some(next);
                    None
                }
                Ok(None) => None,
                Err(error) => Some(error),
            };
            self.handle_frame(shared, frame, now_us);
            if let Some(error) = next_error.filter(|_| !self.closing) {
                self.malformed(shared, &error);
            }
        }
        if self.closing {
            // Frames after the one that closed the connection are not handled (as those still
            // in `read` are not).
            self.ahead = None;
        }
        if (!self.read.is_empty() || self.ahead.is_some()) && !self.under_limits(shared) {
            self.read_stalled = true;
        }
    }

    /// Answer a frame that did not decode; some errors end the connection.
    fn malformed(&mut self, shared: &Shared, error: &wire::DecodeError) {
        shared
            .stats
            .frames_malformed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reply = Reply::Error(ErrorReply::for_decode_error(error));
        self.queue(0, error.request_id(), Message::Reply(reply));
        if error.closes_connection() {
            self.closing = true;
        }
    }

    fn queue(&mut self, lsn: Lsn, request_id: u64, message: Message) {
        // A log-on answer and an offer list: an offer shown at once may not overtake them.
        let barrier = matches!(message, Message::Logon(_) | Message::Reply(Reply::ListOffers(_)));
        self.wait(lsn, Frame { request_id, message }, barrier);
    }

    fn wait(&mut self, lsn: Lsn, frame: Frame, barrier: bool) {
        self.waiting_barriers += usize::from(barrier);
        self.waiting.push_back(Waiting { lsn, frame, barrier });
    }

    fn handle_frame(&mut self, shared: &Shared, frame: Frame, now_us: u64) {
        match (frame.message, &self.session) {
            (Message::Request(request), Session::LoggedOn(principal)) => {
                let principal = *principal;
                let secret = super::random_secret;
                let context = Context {
                    store: &shared.store,
                    stats: &shared.stats,
                    now_us,
                    secret: &secret,
                };
                let (reply, lsn) = dispatch(&context, principal, frame.request_id, &request);
                self.queue(lsn, frame.request_id, Message::Reply(reply));
            }
            (Message::Logon(logon), Session::AwaitingHello | Session::AwaitingProof { .. }) => {
                self.logon(shared, frame.request_id, &logon);
            }
            (other, Session::LoggedOn(_)) => {
                let error = ErrorReply::new(ProtocolError::Unexpected, other.message_type(), 0);
                self.queue(0, frame.request_id, Message::Reply(Reply::Error(error)));
            }
            (other, _) => {
                // Before log-on only LOGON_HELLO and LOGON_PROOF are accepted; a request, a
                // reply or a push from a stranger ends the connection (PROTOCOL.md section 6).
                let error = ErrorReply::new(ProtocolError::NotLoggedOn, other.message_type(), 0);
                self.queue(0, frame.request_id, Message::Reply(Reply::Error(error)));
                self.closing = true;
            }
        }
    }

    fn logon(&mut self, shared: &Shared, request_id: u64, logon: &Logon) {
        let now = Instant::now();
        if !shared.limiter.allows(self.peer.ip(), now) {
            shared
                .stats
                .logons_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Told apart from a wrong secret: a client locked out by its own retries (a
            // terminal with a stale secret, say) should wait, not hunt for another key.
            self.queue(0, request_id, Message::Logon(failed(Reason::LogonsLimited)));
            self.closing = true;
            return;
        }
        let Ok(server_nonce) = wire::logon::random_nonce() else {
            self.queue(0, request_id, Message::Logon(failed(Reason::SystemMalfunction)));
            self.closing = true;
            return;
        };
        let context = LogonContext {
            store: &shared.store,
            operator_secret: &shared.operator_secret,
            ok: shared.logon_ok(),
        };
        let step = self.session.step(&context, logon, server_nonce);
        // A log-on's answer reads the registry (statuses, secrets), which logged commands
        // change: it waits for everything it may have seen, like any read (the position read
        // after the registry was). Not on a failed log, where nothing becomes durable again:
        // a client must still log on, to be told 96 per request (and the operator, to read
        // the stats).
        let wal = shared.store.wal();
        let seen = if wal.has_failed() { 0 } else { wal.last_lsn() };
        match step {
            Step::Reply(reply) => self.queue(seen, request_id, Message::Logon(reply)),
            Step::Refuse(reply) => {
                shared.limiter.failed(self.peer.ip(), now);
                shared
                    .stats
                    .logons_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.queue(seen, request_id, Message::Logon(reply));
                self.closing = true;
            }
        }
    }

    /// Encode every reply and push whose record is durable (`durable` lsn), in order; once the
    /// log has failed, answer the rest with an error (code 96) instead of pretending, and drop
    /// the outcome pushes (what they announce is not in the log; request id 0 must not carry
    /// an error). Offers shown at once (lsn 0) that waited behind a barrier leave either way.
    pub fn release(&mut self, durable: Lsn, log_failed: bool) {
        while let Some(front) = self.waiting.front() {
            if front.lsn > durable && !log_failed {
                break;
            }
            let Some(waiting) = self.waiting.pop_front() else {
                break;
            };
            let push = matches!(waiting.frame.message, Message::Push(_));
            if push {
                self.waiting_pushes -= 1;
            }
            self.waiting_barriers -= usize::from(waiting.barrier);
            if waiting.lsn > durable && push {
                continue;
            }
            if waiting.lsn > durable {
                let message_type = waiting.frame.message.message_type() & 0x7F;
                let error = ErrorReply {
                    code: Reason::SystemMalfunction.iso_code(),
                    reason: Reason::SystemMalfunction as u8,
                    error: ProtocolError::Busy,
                    message_type,
                    value: 0,
                };
                Frame {
                    request_id: waiting.frame.request_id,
                    message: Message::Reply(Reply::Error(error)),
                }
                .encode(&mut self.write);
            } else {
                waiting.frame.encode(&mut self.write);
            }
        }
    }

    /// Write what is queued until done or the socket would block.
    pub fn flush(&mut self) -> State {
        while !self.write.is_empty() {
            match self.socket.write(&self.write) {
                Ok(0) => return State::Closed,
                Ok(count) => self.write.advance(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return State::Open,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return State::Closed,
            }
        }
        // A half-closed peer still gets a reply to every whole frame it sent: not while
        // some wait behind a limit (`read_stalled`).
        if (self.closing || (self.peer_closed && !self.read_stalled)) && self.waiting.is_empty() {
            return State::Closed;
        }
        State::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::messages::reply::{OfferListReply, OfferSummary, StatusReply};
    use wire::types as w;

    /// A connection over loopback; the client's end is returned to keep it open.
    fn connection() -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let socket = TcpStream::from_std(server);
        (Connection::new(socket, peer, 1 << 16, Instant::now(), 1), client)
    }

    /// The offer `offer` shown to a device.
    fn an_offer(offer: u64) -> wire::Push {
        wire::Push::OfferPresented(OfferSummary {
            offer_id: w::OfferId(offer),
            merchant_id: w::MerchantId(1),
            origin: w::ShortText::new("CAFE").expect("text"),
            amount_minor: 500,
            currency: 978,
            expires_in_s: 60,
            reference: w::ShortText::new("2 coffees").expect("text"),
        })
    }

    fn shown(offer: u64) -> Vec<u8> {
        encoded(0, Message::Push(an_offer(offer)))
    }

    fn encoded(request_id: u64, message: Message) -> Vec<u8> {
        let mut out = BytesMut::new();
        Frame { request_id, message }.encode(&mut out);
        out.to_vec()
    }

    /// `first` is waiting for lsn 5; an offer shown at once comes; then lsn 5 is durable.
    /// Returns what was written before lsn 5 and after.
    fn shown_while_waiting(first: Message) -> (Vec<u8>, Vec<u8>) {
        let (mut connection, _client) = connection();
        connection.queue(5, 3, first);
        connection.queue_push(0, an_offer(7));
        let before = connection.write.to_vec();
        connection.release(5, false);
        (before, connection.write.to_vec())
    }

    #[test]
    fn an_offer_shown_at_once_overtakes_replies_waiting_for_the_log() {
        let reply = Message::Reply(Reply::RejectOffer(StatusReply { code: 0, reason: 0 }));
        let (before, after) = shown_while_waiting(reply.clone());
        assert_eq!(before, shown(7));
        assert_eq!(after, [shown(7), encoded(3, reply)].concat());
    }

    fn an_empty_list() -> Message {
        Message::Reply(Reply::ListOffers(OfferListReply {
            code: 0,
            reason: 0,
            more: false,
            offers: w::List::new(Vec::new()).expect("empty"),
        }))
    }

    #[test]
    fn an_offer_shown_at_once_waits_behind_a_log_on_answer_or_an_offer_list() {
        let logon_ok = Message::Logon(Logon::LogonOk(wire::logon::LogonOk {
            frame_bytes_max: 1 << 16,
            requests_in_flight_max: 64,
        }));
        for barrier in [logon_ok, an_empty_list()] {
            let (before, after) = shown_while_waiting(barrier.clone());
            assert!(before.is_empty(), "{barrier:?}");
            assert_eq!(after, [encoded(3, barrier), shown(7)].concat());
        }
    }

    #[test]
    fn once_the_barrier_leaves_offers_go_out_at_once_again() {
        let (mut connection, _client) = connection();
        connection.queue(5, 3, an_empty_list());
        connection.release(5, false);
        connection.write.clear();
        connection.queue(
            9,
            4,
            Message::Reply(Reply::RejectOffer(StatusReply { code: 0, reason: 0 })),
        );
        connection.queue_push(0, an_offer(7));
        assert_eq!(connection.write.to_vec(), shown(7));
    }

    #[test]
    fn offers_shown_at_once_keep_their_order_behind_a_barrier() {
        let (mut connection, _client) = connection();
        let reply = Message::Reply(Reply::RejectOffer(StatusReply { code: 0, reason: 0 }));
        connection.queue(5, 3, an_empty_list());
        connection.queue(9, 4, reply.clone());
        connection.queue_push(0, an_offer(7));
        connection.release(5, false);
        // The list left; offer 7 still waits behind the reply, and offer 8 behind it.
        connection.queue_push(0, an_offer(8));
        assert_eq!(connection.write.to_vec(), encoded(3, an_empty_list()));
        connection.release(9, false);
        let expected = [encoded(3, an_empty_list()), encoded(4, reply), shown(7), shown(8)];
        assert_eq!(connection.write.to_vec(), expected.concat());
        assert_eq!(connection.waiting_barriers, 0);
    }
}
