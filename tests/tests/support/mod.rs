//! What the end-to-end test files share beyond the harness: a raw connection that speaks
//! frames without client logic (for input no well-behaved client would send), hand-made
//! headers, a seeded random generator, request builders, and a pipelined load ([`load`]).
//!
//! Each test file (`mod support;`) uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod load;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use wire::logon::{logon_mac, Hello, Proof};
use wire::messages::reply::ErrorReply;
use wire::messages::terminal::{Authorize, Purchase};
use wire::types::{AccountNumber, PayerRef, Role};
use wire::{Decoder, Frame, Logon, Message, Reply, Request};

/// How long a reply or a close may take before a test fails.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw connection: bytes in, frames out, no client logic.
pub struct Raw {
    /// The socket, for what the helpers do not cover.
    pub stream: TcpStream,
    decoder: Decoder,
    buffer: BytesMut,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            decoder: Decoder::default(),
            buffer: BytesMut::new(),
        }
    }

    /// Send bytes; false if authd already closed the connection.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    pub fn send(&mut self, request_id: u64, message: Message) {
        let mut bytes = BytesMut::new();
        Frame { request_id, message }.encode(&mut bytes);
        assert!(self.send_bytes(&bytes), "authd closed the connection early");
    }

    /// The next frame, or None once authd closed the connection.
    pub fn read(&mut self) -> Option<Frame> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("authd sends valid frames")
            {
                return Some(frame);
            }
            match wire::client::read_some(&mut self.stream, &mut chunk) {
                Ok(0) => return None,
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("no frame and no close within {REPLY_TIMEOUT:?}: {error}"),
            }
        }
    }

    /// Every frame until authd closes the connection.
    pub fn read_until_closed(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.read()).collect()
    }

    /// Log on as a terminal (or any role) by hand.
    pub fn logon(&mut self, role: Role, id: u32, secret: [u8; 32]) {
        let client_nonce = [7u8; 16];
        let hello = Hello {
            role,
            version_min: 1,
            version_max: 1,
            id,
            client_nonce,
        };
        self.send(0, Message::Logon(Logon::Hello(hello)));
        let Some(Frame {
            message: Message::Logon(Logon::Challenge(challenge)),
            ..
        }) = self.read()
        else {
            panic!("no challenge");
        };
        let mac = logon_mac(&secret, role, id, &client_nonce, &challenge.server_nonce);
        self.send(0, Message::Logon(Logon::Proof(Proof { mac })));
        let Some(Frame {
            message: Message::Logon(Logon::LogonOk(_)),
            ..
        }) = self.read()
        else {
            panic!("no LOGON_OK");
        };
    }
}

/// A frame with a header of our choosing (the encoder only writes valid ones).
pub fn raw_frame(version: u8, message_type: u8, flags: u8, request_id: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + body.len());
    bytes.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&[version, message_type, flags, 0]);
    bytes.extend_from_slice(&request_id.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

pub fn encoded(request_id: u64, message: Message) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    Frame { request_id, message }.encode(&mut bytes);
    bytes.to_vec()
}

/// The ERROR body of `frame` with its request id.
pub fn error_of(frame: Option<Frame>) -> (u64, ErrorReply) {
    match frame {
        Some(Frame {
            request_id,
            message: Message::Reply(Reply::Error(error)),
        }) => (request_id, error),
        other => panic!("expected an ERROR reply, got {other:?}"),
    }
}

/// A small deterministic generator (xorshift64*); the seed is printed so a failure replays.
pub struct Random(u64);

impl Random {
    pub fn seeded() -> Random {
        let seed = std::env::var("AUTHD_TEST_SEED")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        eprintln!("seed {seed} (set AUTHD_TEST_SEED={seed} to replay)");
        Random::from_seed(seed)
    }

    /// The generator of `seed` (any value; zero is avoided).
    pub fn from_seed(seed: u64) -> Random {
        Random(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next() as u8).collect()
    }
}

/// A HELLO of `role` `id` offering versions `version_min..=version_max`.
pub fn hello(role: Role, id: u32, version_min: u8, version_max: u8) -> Message {
    Message::Logon(Logon::Hello(Hello {
        role,
        version_min,
        version_max,
        id,
        client_nonce: [0; 16],
    }))
}

/// An authorization of `amount_minor` EUR on `payer`'s account, default lifetime, no PIN.
pub fn authorize(payer: u64, amount_minor: u64) -> Request {
    authorize_lasting(payer, amount_minor, 0)
}

/// [`authorize`] with a hold that expires after `hold_lifetime_s` (0: the default).
pub fn authorize_lasting(payer: u64, amount_minor: u64, hold_lifetime_s: u32) -> Request {
    Request::Authorize(Authorize {
        payer: PayerRef::Account(AccountNumber(payer)),
        amount_minor,
        currency: 978,
        hold_lifetime_s,
        pin: None,
    })
}

/// A purchase of `amount_minor` EUR from `payer`'s account, no PIN, no extras.
pub fn purchase(payer: u64, amount_minor: u64) -> Request {
    Request::Purchase(Purchase {
        payer: PayerRef::Account(AccountNumber(payer)),
        amount_minor,
        currency: 978,
        pin: None,
        loyalty_points: 0,
        product: None,
    })
}

/// (code, hold or transaction id, amount) of a reply about a hold.
pub fn hold_of(reply: &Reply) -> (u8, u64, u64) {
    match reply {
        Reply::Authorize(body)
        | Reply::Increment(body)
        | Reply::Capture(body)
        | Reply::Void(body)
        | Reply::Purchase(body)
        | Reply::Refund(body) => (body.code, body.hold_id.0, body.amount_minor),
        other => panic!("not a hold reply: {other:?}"),
    }
}
