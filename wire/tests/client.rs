//! The client against a tiny fake server thread that speaks log-on and answers requests:
//! proves the HMAC exchange, pipelining by request id, pushes and reconnect-with-same-ids.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use wire::client::{Client, ClientError, Incoming};
use wire::logon::{verify_logon_mac, Challenge, LogonFailed, LogonOk, Secret};
use wire::messages::reply::{EchoReply, HoldReply, OfferSummary};
use wire::messages::terminal::{Echo, Purchase};
use wire::types::{AccountNumber, HoldId, MerchantId, OfferId, PayerRef, ShortText};
use wire::{Decoder, Frame, Logon, Message, Push, Reply, Request, Role};

const SECRET: Secret = [0x5A; 32];
const TERMINAL_ID: u32 = 17;
/// An echo of this value plus n is answered after n pushes.
const PUSHES_BEFORE_REPLY: u64 = 1_000_000;

/// How the fake server behaves.
#[derive(Clone, Copy)]
struct Script {
    /// Collect this many requests, then answer them in reverse order.
    batch: usize,
    /// On the first connection, close after this many requests without answering.
    drop_first_after: Option<usize>,
}

/// (connection number, request id) of every request the server received.
type Log = Arc<Mutex<Vec<(usize, u64)>>>;

/// A fake server answering in batches of `batch`, and a client logged on to it.
fn logged_on(batch: usize) -> (Client, Log) {
    let (address, log) = start_server(Script {
        batch,
        drop_first_after: None,
    });
    (connect(address, SECRET).expect("log-on"), log)
}

fn start_server(script: Script) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let log: Log = Arc::default();
    let server_log = log.clone();
    thread::spawn(move || {
        for (connection, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let log = server_log.clone();
            thread::spawn(move || serve(stream, connection, script, &log));
        }
    });
    (address, log)
}

fn read_frame(stream: &mut TcpStream, decoder: &mut Decoder, buffer: &mut BytesMut) -> Option<Frame> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.decode(buffer).expect("client sends valid frames") {
            return Some(frame);
        }
        let count = stream.read(&mut chunk).ok()?;
        if count == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..count]);
    }
}

fn write(stream: &mut TcpStream, request_id: u64, message: Message) {
    let mut out = BytesMut::new();
    Frame { request_id, message }.encode(&mut out);
    let _ = stream.write_all(&out);
}

fn logon(stream: &mut TcpStream, decoder: &mut Decoder, buffer: &mut BytesMut) -> bool {
    let Some(Frame {
        message: Message::Logon(Logon::Hello(hello)),
        ..
    }) = read_frame(stream, decoder, buffer)
    else {
        return false;
    };
    let server_nonce = [0x33; 16];
    write(
        stream,
        0,
        Message::Logon(Logon::Challenge(Challenge {
            version: 1,
            server_nonce,
        })),
    );
    let Some(Frame {
        message: Message::Logon(Logon::Proof(proof)),
        ..
    }) = read_frame(stream, decoder, buffer)
    else {
        return false;
    };
    let valid = hello.id == TERMINAL_ID
        && verify_logon_mac(
            &SECRET,
            hello.role,
            hello.id,
            &hello.client_nonce,
            &server_nonce,
            &proof.mac,
        );
    let answer = if valid {
        Logon::LogonOk(LogonOk {
            frame_bytes_max: 4096,
            requests_in_flight_max: 128,
        })
    } else {
        Logon::LogonFailed(LogonFailed { code: 57, reason: 24 })
    };
    write(stream, 0, Message::Logon(answer));
    valid
}

fn serve(mut stream: TcpStream, connection: usize, script: Script, log: &Log) {
    let mut decoder = Decoder::default();
    let mut buffer = BytesMut::new();
    if !logon(&mut stream, &mut decoder, &mut buffer) {
        return;
    }
    let mut pending = Vec::new();
    while let Some(frame) = read_frame(&mut stream, &mut decoder, &mut buffer) {
        log.lock().expect("log").push((connection, frame.request_id));
        if connection == 0 && Some(log.lock().expect("log").len()) == script.drop_first_after {
            return;
        }
        pending.push(frame);
        if pending.len() < script.batch {
            continue;
        }
        for frame in pending.drain(..).rev() {
            answer(&mut stream, frame);
        }
    }
}

fn answer(stream: &mut TcpStream, frame: Frame) {
    let reply = match frame.message {
        Message::Request(Request::Echo(echo)) => {
            if echo.value == 999 {
                write(stream, 0, Message::Push(Push::OfferPresented(offer())));
            }
            // Echo 1,000,000 + n: n pushes before the reply.
            for _ in 0..echo.value.saturating_sub(PUSHES_BEFORE_REPLY) {
                write(stream, 0, Message::Push(Push::OfferPresented(offer())));
            }
            Reply::Echo(EchoReply {
                code: 0,
                reason: 0,
                value: echo.value,
            })
        }
        Message::Request(Request::Purchase(purchase)) => Reply::Purchase(HoldReply {
            code: 0,
            reason: 0,
            hold_id: HoldId(frame.request_id),
            amount_minor: purchase.amount_minor,
        }),
        _ => return,
    };
    write(stream, frame.request_id, Message::Reply(reply));
}

fn offer() -> OfferSummary {
    OfferSummary {
        offer_id: OfferId(1),
        merchant_id: MerchantId(7),
        origin: ShortText::new("CAFE").expect("short"),
        amount_minor: 100,
        currency: 978,
        expires_in_s: 60,
        reference: ShortText::new("x").expect("short"),
    }
}

fn purchase(amount_minor: u64) -> Request {
    Request::Purchase(Purchase {
        payer: PayerRef::Account(AccountNumber(1001)),
        amount_minor,
        currency: 978,
        pin: None,
        loyalty_points: 0,
        product: None,
    })
}

fn connect(address: SocketAddr, secret: Secret) -> Result<Client, ClientError> {
    let mut client = Client::connect(address, Role::Terminal, TERMINAL_ID, secret)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(client)
}

#[test]
fn logon_with_the_right_secret_then_echo_round_trips() {
    let (mut client, _) = logged_on(1);
    assert_eq!(client.server_limits().requests_in_flight_max, 128);
    let reply = client.call(&Request::Echo(Echo { value: 77 })).expect("reply");
    assert_eq!(
        reply,
        Reply::Echo(EchoReply {
            code: 0,
            reason: 0,
            value: 77
        })
    );
}

#[test]
fn logon_with_a_wrong_secret_is_refused() {
    let (address, _) = start_server(Script {
        batch: 1,
        drop_first_after: None,
    });
    let result = connect(address, [0x00; 32]);
    assert!(
        matches!(result, Err(ClientError::LogonRefused { code: 57, reason: 24 })),
        "{result:?}"
    );
}

#[test]
fn pipelined_replies_in_any_order_are_matched_by_request_id() {
    let (mut client, _) = logged_on(50);
    let sent: Vec<(u64, u64)> = (1..=100)
        .map(|amount| (client.send(&purchase(amount)).expect("send"), amount))
        .collect();
    for _ in 0..100 {
        let Incoming::Reply {
            request_id,
            reply: Reply::Purchase(hold),
        } = client.recv().expect("recv")
        else {
            panic!("expected a purchase reply");
        };
        let amount = sent
            .iter()
            .find(|(id, _)| *id == request_id)
            .map(|(_, amount)| *amount);
        assert_eq!(Some(hold.amount_minor), amount);
        assert_eq!(hold.hold_id, HoldId(request_id));
    }
    assert_eq!(client.unanswered().count(), 0);
}

#[test]
fn call_sets_aside_pushes_for_recv() {
    let (mut client, _) = logged_on(1);
    let reply = client.call(&Request::Echo(Echo { value: 999 })).expect("reply");
    assert!(matches!(reply, Reply::Echo(EchoReply { value: 999, .. })));
    assert_eq!(
        client.recv().expect("push"),
        Incoming::Push(Push::OfferPresented(offer()))
    );
}

#[test]
fn reconnect_resends_unanswered_requests_with_their_original_ids() {
    let (address, log) = start_server(Script {
        batch: 3,
        drop_first_after: Some(3),
    });
    let mut client = connect(address, SECRET).expect("log-on");
    let ids: Vec<u64> = (1..=3)
        .map(|amount| client.send(&purchase(amount)).expect("send"))
        .collect();
    assert!(matches!(
        client.recv(),
        Err(ClientError::Closed) | Err(ClientError::Io(_))
    ));
    assert_eq!(client.reconnect().expect("reconnect"), 3);
    assert_eq!(
        client.read_timeout().expect("read timeout"),
        Some(Duration::from_secs(10)),
        "the read timeout survives a reconnect"
    );
    let mut answered: Vec<u64> = (0..3)
        .map(|_| match client.recv().expect("reply") {
            Incoming::Reply { request_id, .. } => request_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, ids);
    let second_connection: Vec<u64> = log
        .lock()
        .expect("log")
        .iter()
        .filter(|(connection, _)| *connection == 1)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(second_connection, ids, "resent with the same ids, in order");
}

#[test]
fn unanswered_requests_stop_at_the_in_flight_limit_but_a_retry_is_sent() {
    let (mut client, log) = logged_on(usize::MAX);
    let limit = wire::client::IN_FLIGHT_MAX;
    for _ in 0..limit {
        client.send(&purchase(1)).expect("below the limit");
    }
    match client.send(&purchase(1)) {
        Err(error @ ClientError::Backlog { count }) => {
            assert_eq!(count, limit);
            assert!(error.to_string().contains("call recv"), "{error}");
        }
        other => panic!("expected a backlog error, got {other:?}"),
    }
    let first = client.unanswered().min().expect("unanswered");
    client
        .send_with_id(first, &purchase(1))
        .expect("a retry adds nothing to the backlog");
    assert_eq!(client.unanswered().count(), limit);
    // Everything sent reached the server; the refused request did not.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while log.lock().expect("log").len() < limit + 1 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log.lock().expect("log").len(), limit + 1);
}

#[test]
fn frames_set_aside_while_waiting_stop_at_their_limit() {
    let (mut client, _) = logged_on(1);
    let limit = wire::client::SET_ASIDE_MAX;
    let echo = |pushes: usize| {
        Request::Echo(Echo {
            value: PUSHES_BEFORE_REPLY + pushes as u64,
        })
    };
    let reply = client.call(&echo(limit)).expect("exactly the limit set aside");
    assert!(
        matches!(reply, Reply::Echo(EchoReply { value, .. }) if value == PUSHES_BEFORE_REPLY + limit as u64)
    );
    for _ in 0..limit {
        assert!(matches!(client.recv().expect("push"), Incoming::Push(_)));
    }
    match client.call(&echo(limit + 1)) {
        Err(ClientError::Backlog { count }) => assert_eq!(count, limit),
        other => panic!("expected a backlog error, got {other:?}"),
    }
}

/// Returns `EINTR` `interruptions` times, then its bytes.
struct Interrupted {
    interruptions: usize,
    bytes: &'static [u8],
}

impl Read for Interrupted {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.interruptions > 0 {
            self.interruptions -= 1;
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let count = self.bytes.len().min(buffer.len());
        buffer[..count].copy_from_slice(&self.bytes[..count]);
        self.bytes = &self.bytes[count..];
        Ok(count)
    }
}

#[test]
fn a_read_interrupted_by_a_signal_is_tried_again_and_other_outcomes_pass_through() {
    // A signal handled by the process interrupts a read on a socket with a read timeout, the
    // client's, even with SA_RESTART; the client must read again rather than fail the call.
    let mut reader = Interrupted {
        interruptions: 3,
        bytes: b"reply",
    };
    let mut buffer = [0u8; 8];
    assert_eq!(
        wire::client::read_some(&mut reader, &mut buffer).expect("read"),
        5
    );
    assert_eq!(&buffer[..5], b"reply");
    assert_eq!(
        wire::client::read_some(&mut reader, &mut buffer).expect("end"),
        0,
        "the end of the stream is passed on"
    );
    let error = wire::client::read_some(&mut Reset, &mut buffer).expect_err("a reset");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
}

/// Fails every read with a reset.
struct Reset;

impl Read for Reset {
    fn read(&mut self, _buffer: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::ConnectionReset.into())
    }
}
