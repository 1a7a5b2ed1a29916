//! A small blocking client: log-on, pipelined requests, replies by request id, reconnect.
//!
//! ```no_run
//! # fn main() -> Result<(), wire::client::ClientError> {
//! use wire::{client::Client, messages::terminal::Echo, Request, Role};
//! let mut client = Client::connect("127.0.0.1:7878", Role::Terminal, 17, [0u8; 32])?;
//! let reply = client.call(&Request::Echo(Echo { value: 1 }))?; // one round trip
//! let first = client.send(&Request::Echo(Echo { value: 2 }))?;  // pipelined: send many...
//! let second = client.send(&Request::Echo(Echo { value: 3 }))?;
//! let answer = client.recv()?;                                  // ...then collect by id
//! # Ok(()) }
//! ```
//!
//! Pipelining is bounded by the server's `requests_in_flight_max` (see
//! [`Client::server_limits`]): send at most that many before collecting replies, or both sides
//! can block writing to each other.
//!
//! Request ids come from a counter that starts at the current Unix time in microseconds, so a
//! restarted client does not reuse ids still in the server's idempotency window, unless its
//! clock stepped back meanwhile: a reused id with the same content would get the old decision
//! and move no money. A client that cannot trust its clock keeps its last request id across
//! restarts and goes on above it ([`Client::set_next_request_id`]). Every request
//! sent and not yet answered is remembered; [`Client::reconnect`] logs on again and resends each
//! with its original id, so the server answers a retry with the original decision (or
//! `Reversed`, if a reversal undid it meanwhile).

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use thiserror::Error;

use crate::error::DecodeError;
use crate::frame::{Decoder, Frame};
use crate::header::{VERSION_MAX, VERSION_MIN};
use crate::logon::{logon_mac, random_nonce, Hello, LogonOk, Proof, Secret};
use crate::message::{Logon, Message, Push, Reply, Request};
use crate::types::Role;

/// Most unanswered requests the client remembers for resending.
pub const IN_FLIGHT_MAX: usize = 65_536;
/// Most frames `call` sets aside while it waits for its own reply.
pub const SET_ASIDE_MAX: usize = 65_536;

/// What went wrong talking to the server.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket failed (connect, read, write, timeout). The cause is told in the message,
    /// so it is not a `source` too (a chain printed whole would repeat it).
    #[error("connection to the authd server failed: {0}")]
    Io(std::io::Error),
    /// The server sent bytes that are not a valid frame (told in the message, as above).
    #[error("the server sent an invalid frame: {0}")]
    Decode(DecodeError),
    /// The server closed the connection; call `reconnect` to resend what is unanswered.
    #[error("the server closed the connection; reconnect to resend unanswered requests")]
    Closed,
    /// Log-on refused: check the role, id and secret; reason 27 (`LogonsLimited`): wait for
    /// the server's failure window; reason 22 (`CapacityExceeded`, a full server): retry later.
    #[error("log-on refused (ISO code {code}, reason {reason}); {}", logon_advice(*reason))]
    LogonRefused {
        /// ISO 8583 code.
        code: u8,
        /// authd reason.
        reason: u8,
    },
    /// The server sent a message that does not belong at this point.
    #[error("unexpected message type {message_type:#04x} from the server")]
    Unexpected {
        /// Its type byte.
        message_type: u8,
    },
    /// Too many unanswered requests or set-aside replies: collect replies with `recv`.
    #[error("{count} unanswered requests or set-aside frames; call recv before sending more")]
    Backlog {
        /// The count that hit the limit.
        count: usize,
    },
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> ClientError {
        ClientError::Io(error)
    }
}

impl From<DecodeError> for ClientError {
    fn from(error: DecodeError) -> ClientError {
        ClientError::Decode(error)
    }
}

/// A frame from the server after log-on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to the request with this id.
    Reply {
        /// The request id answered (0 for a connection-level ERROR).
        request_id: u64,
        /// The reply.
        reply: Reply,
    },
    /// A server-initiated message.
    Push(Push),
}

/// A logged-on connection to authd.
#[derive(Debug)]
pub struct Client {
    address: SocketAddr,
    role: Role,
    id: u32,
    secret: Secret,
    stream: TcpStream,
    decoder: Decoder,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    next_request_id: u64,
    in_flight: BTreeMap<u64, Request>,
    set_aside: VecDeque<Incoming>,
    server_limits: LogonOk,
}

impl Client {
    /// Connects to `address` and logs on as `role` `id` with `secret`.
    pub fn connect(
        address: impl ToSocketAddrs,
        role: Role,
        id: u32,
        secret: Secret,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(address)?;
        Client::log_on_over(stream, role, id, secret)
    }

    /// [`Client::connect`], giving up after `timeout` for the connection and for each read
    /// and write of the log-on (a stopped server that still accepts connections would
    /// otherwise hang the caller); the timeout stays set on the socket afterwards.
    pub fn connect_timeout(
        address: impl ToSocketAddrs,
        role: Role,
        id: u32,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let mut last_error = None;
        for candidate in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Client::log_on_over(stream, role, id, secret);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to")
            })
            .into())
    }

    fn log_on_over(stream: TcpStream, role: Role, id: u32, secret: Secret) -> Result<Client, ClientError> {
        let address = stream.peer_addr()?;
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_micros() as u64);
        let mut client = Client {
            address,
            role,
            id,
            secret,
            stream,
            decoder: Decoder::default(),
            read_buffer: BytesMut::with_capacity(8192),
            write_buffer: BytesMut::with_capacity(8192),
            next_request_id: now_us.max(1),
            in_flight: BTreeMap::new(),
            set_aside: VecDeque::new(),
            server_limits: LogonOk {
                frame_bytes_max: 0,
                requests_in_flight_max: 0,
            },
        };
        client.logon()?;
        Ok(client)
    }

    /// The limits the server announced at log-on.
    pub fn server_limits(&self) -> LogonOk {
        self.server_limits
    }

    /// The id the next `send` will use; set it to continue a sequence of your own.
    pub fn set_next_request_id(&mut self, request_id: u64) {
        self.next_request_id = request_id.max(1);
    }

    /// Sets the socket read timeout (`None` = wait forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(timeout)?)
    }

    /// The socket read timeout (`None` = wait forever).
    pub fn read_timeout(&self) -> Result<Option<Duration>, ClientError> {
        Ok(self.stream.read_timeout()?)
    }

    /// Sends `request` with a fresh request id and returns the id; does not wait.
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.send_with_id(request_id, request)?;
        Ok(request_id)
    }

    /// Sends `request` with a chosen request id (a retry reuses its original id).
    pub fn send_with_id(&mut self, request_id: u64, request: &Request) -> Result<(), ClientError> {
        if self.in_flight.len() >= IN_FLIGHT_MAX && !self.in_flight.contains_key(&request_id) {
            return Err(ClientError::Backlog {
                count: self.in_flight.len(),
            });
        }
        self.in_flight.insert(request_id, request.clone());
        self.write_frame(request_id, Message::Request(request.clone()))
    }

    /// The next reply or push, in arrival order.
    pub fn recv(&mut self) -> Result<Incoming, ClientError> {
        if let Some(incoming) = self.set_aside.pop_front() {
            return Ok(incoming);
        }
        self.read_incoming()
    }

    /// Sends `request` and waits for its reply; other replies and pushes that arrive meanwhile
    /// are kept for `recv`.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let request_id = self.send(request)?;
        self.wait_for(request_id)
    }

    /// Waits for the reply to `request_id`, setting other frames aside for `recv`.
    pub fn wait_for(&mut self, request_id: u64) -> Result<Reply, ClientError> {
        if let Some(position) = self.set_aside.iter().position(
            |incoming| matches!(incoming, Incoming::Reply { request_id: id, .. } if *id == request_id),
        ) {
            if let Some(Incoming::Reply { reply, .. }) = self.set_aside.remove(position) {
                return Ok(reply);
            }
        }
        loop {
            match self.read_incoming()? {
                Incoming::Reply {
                    request_id: id,
                    reply,
                } if id == request_id => return Ok(reply),
                other if self.set_aside.len() < SET_ASIDE_MAX => self.set_aside.push_back(other),
                _ => {
                    return Err(ClientError::Backlog {
                        count: self.set_aside.len(),
                    })
                }
            }
        }
    }

    /// Request ids sent and not yet answered.
    pub fn unanswered(&self) -> impl Iterator<Item = u64> + '_ {
        self.in_flight.keys().copied()
    }

    /// Opens a new connection, logs on, and resends every unanswered request with its original
    /// id (the server answers a retry with its first decision). Returns how many were resent.
    /// The old socket's read and write timeouts carry over, and a read timeout also bounds the
    /// connect, as [`Client::connect_timeout`] does.
    pub fn reconnect(&mut self) -> Result<usize, ClientError> {
        let read_timeout = self.stream.read_timeout()?;
        let write_timeout = self.stream.write_timeout()?;
        let stream = match read_timeout {
            Some(timeout) => TcpStream::connect_timeout(&self.address, timeout)?,
            None => TcpStream::connect(self.address)?,
        };
        stream.set_read_timeout(read_timeout)?;
        stream.set_write_timeout(write_timeout)?;
        self.stream = stream;
        self.decoder = Decoder::default();
        self.read_buffer.clear();
        self.write_buffer.clear();
        self.logon()?;
        // Resend in request id order. The requests stay remembered until answered, so a failure
        // here loses nothing: reconnect again.
        let unanswered: Vec<(u64, Request)> = self
            .in_flight
            .iter()
            .map(|(request_id, request)| (*request_id, request.clone()))
            .collect();
        for (request_id, request) in &unanswered {
            self.write_frame(*request_id, Message::Request(request.clone()))?;
        }
        Ok(unanswered.len())
    }

    fn logon(&mut self) -> Result<(), ClientError> {
        self.stream.set_nodelay(true)?;
        let client_nonce = random_nonce()?;
        let hello = Hello {
            role: self.role,
            version_min: VERSION_MIN,
            version_max: VERSION_MAX,
            id: self.id,
            client_nonce,
        };
        self.write_frame(0, Message::Logon(Logon::Hello(hello)))?;
        let challenge = match self.read_frame()?.message {
            Message::Logon(Logon::Challenge(challenge)) => challenge,
            other => return Err(refusal(&other)),
        };
        let mac = logon_mac(
            &self.secret,
            self.role,
            self.id,
            &client_nonce,
            &challenge.server_nonce,
        );
        self.write_frame(0, Message::Logon(Logon::Proof(Proof { mac })))?;
        match self.read_frame()?.message {
            Message::Logon(Logon::LogonOk(limits)) => {
                self.server_limits = limits;
                Ok(())
            }
            other => Err(refusal(&other)),
        }
    }

    fn read_incoming(&mut self) -> Result<Incoming, ClientError> {
        let frame = self.read_frame()?;
        match frame.message {
            Message::Reply(reply) => {
                self.in_flight.remove(&frame.request_id);
                Ok(Incoming::Reply {
                    request_id: frame.request_id,
                    reply,
                })
            }
            Message::Push(push) => Ok(Incoming::Push(push)),
            other => Err(ClientError::Unexpected {
                message_type: other.message_type(),
            }),
        }
    }

    fn read_frame(&mut self) -> Result<Frame, ClientError> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.read_buffer)? {
                return Ok(frame);
            }
            let count = read_some(&mut self.stream, &mut chunk)?;
            let bytes = chunk.get(..count).ok_or(ClientError::Closed)?;
            if bytes.is_empty() {
                return Err(ClientError::Closed);
            }
            self.read_buffer.extend_from_slice(bytes);
        }
    }

    fn write_frame(&mut self, request_id: u64, message: Message) -> Result<(), ClientError> {
        self.write_buffer.clear();
        Frame { request_id, message }.encode(&mut self.write_buffer);
        self.stream.write_all(&self.write_buffer)?;
        Ok(())
    }
}

/// `reader.read(buffer)`, again whenever a signal interrupts it before anything arrived: a
/// socket with a read timeout (a client's has one when it connected with a timeout) returns
/// `EINTR` for any signal the process handles, even one installed to restart system calls,
/// and after the process was stopped and continued (SIGSTOP/SIGCONT, or a cgroup freezer's
/// freeze and thaw) even with no handler at all (signal(7)).
pub fn read_some(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// What to do about a refused log-on.
fn logon_advice(reason: u8) -> &'static str {
    match reason {
        crate::reason::REASON_LOGONS_LIMITED => {
            "this address (or its IPv6 /64) failed too many log-ons lately: wait for the server's failure window \
             (authd --logon-failure-window-s), then check role, id and secret"
        }
        crate::reason::REASON_CAPACITY_EXCEEDED => "the server is at its connection limit: retry later",
        _ => "check role, id and secret",
    }
}

/// The error for a log-on answer other than the expected one.
fn refusal(message: &Message) -> ClientError {
    match message {
        Message::Logon(Logon::LogonFailed(failed)) => ClientError::LogonRefused {
            code: failed.code,
            reason: failed.reason,
        },
        Message::Reply(Reply::Error(error)) => ClientError::LogonRefused {
            code: error.code,
            reason: error.reason,
        },
        other => ClientError::Unexpected {
            message_type: other.message_type(),
        },
    }
}
