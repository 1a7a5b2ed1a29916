//! Bad input (issue 5, "Proof"): random bytes, a huge length, a frame cut in the middle then
//! silence, a thousand connections that never log on, a client that never reads its replies,
//! unknown types and requests before log-on. authd answers or closes as PROTOCOL.md section 6
//! says, serves a well-behaved client at the same time, and never crashes.

mod support;

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use authd_tests::{balances, payer, refused_start, rss_kb, shop, Authd};
use support::{encoded, error_of, hello, purchase, raw_frame, Random, Raw, REPLY_TIMEOUT};
use wire::client::Client;
use wire::messages::reply::{EchoReply, ErrorReply, ProtocolError};
use wire::messages::terminal::Echo;
use wire::types::Role;
use wire::{Frame, Logon, Message, Reply, Request};

/// A well-behaved client's round trip while others misbehave, at most (debug build, 2 cores
/// shared with other builds: generous, but far below any timeout a stall would cause).
const ROUND_TRIP_MAX: Duration = Duration::from_millis(500);

fn echo(value: u64) -> Message {
    Message::Request(Request::Echo(Echo { value }))
}

/// One echo round trip of a well-behaved client, checked and timed.
fn served(client: &mut Client, value: u64) -> Duration {
    let start = Instant::now();
    let reply = client.call(&Request::Echo(Echo { value })).expect("echo");
    let elapsed = start.elapsed();
    assert_eq!(
        reply,
        Reply::Echo(EchoReply {
            code: 0,
            reason: 0,
            value
        })
    );
    assert!(
        elapsed < ROUND_TRIP_MAX,
        "a well-behaved client waited {elapsed:?}"
    );
    elapsed
}

#[test]
fn random_bytes_get_an_error_or_a_close_while_a_good_client_is_served() {
    let mut random = Random::seeded();
    let authd = Authd::start(&["--logon-timeout-ms", "1000"]);
    let mut operator = authd.operator();
    // Pure noise, then noise behind a plausible length and version: some frames are
    // delimited (errors, connection kept until the log-on timeout), most are not (closed).
    let mut strangers = Vec::new();
    for index in 0..60u64 {
        let mut raw = Raw::connect(authd.addr);
        let bytes = if index % 2 == 0 {
            let count = 1 + random.below(2_000) as usize;
            random.bytes(count)
        } else {
            let count = random.below(300) as usize;
            let body = random.bytes(count);
            let (message_type, flags) = (random.next() as u8, random.below(2) as u8);
            raw_frame(1, message_type, flags, random.next(), &body)
        };
        raw.send_bytes(&bytes);
        strangers.push(raw);
        served(&mut operator, index);
    }
    for raw in &mut strangers {
        for frame in raw.read_until_closed() {
            assert!(
                matches!(
                    frame.message,
                    Message::Reply(Reply::Error(_))
                        | Message::Logon(Logon::Challenge(_) | Logon::LogonFailed(_))
                ),
                "a stranger gets errors or log-on frames only: {frame:?}"
            );
        }
    }

    served(&mut operator, 60);
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn noise_in_well_delimited_frames_after_logon_gets_errors_and_the_connection_stays() {
    let mut random = Random::seeded();
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    for round in 0..20u64 {
        let mut raw = Raw::connect(authd.addr);
        raw.logon(Role::Terminal, shop.terminal, shop.secret);
        for _ in 0..10 {
            let count = random.below(100) as usize;
            let body = random.bytes(count);
            let message_type = random.next() as u8;
            // Any type: a well-formed request of another role is answered "not permitted".
            raw.send_bytes(&raw_frame(1, message_type, 0, 500 + round, &body));
        }
        raw.send(round + 1, echo(round));
        loop {
            let frame = raw.read().expect("the connection stays open");
            if frame.request_id == round + 1 {
                assert_eq!(
                    frame.message,
                    Message::Reply(Reply::Echo(EchoReply {
                        code: 0,
                        reason: 0,
                        value: round
                    }))
                );
                break;
            }
            assert_eq!(
                frame.request_id,
                500 + round,
                "only the noise's request id is answered"
            );
        }
        served(&mut operator, round);
    }
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn a_huge_length_prefix_gets_oversized_and_a_close_before_and_after_logon() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);

    let mut stranger = Raw::connect(authd.addr);
    stranger.send_bytes(&0xffff_fff0u32.to_le_bytes());
    let (request_id, error) = error_of(stranger.read());
    assert_eq!(request_id, 0);
    assert_eq!(
        error,
        ErrorReply::new(ProtocolError::Oversized, 0, 0xffff_fff0 + 4)
    );
    assert_eq!((error.code, error.reason), (30, 21));
    assert!(stranger.read().is_none(), "the connection is closed");
    served(&mut operator, 1);

    let mut terminal = Raw::connect(authd.addr);
    terminal.logon(Role::Terminal, shop.terminal, shop.secret);
    // The edge: a 4096-byte frame is allowed (authd waits for its body), 4097 is not.
    terminal.send_bytes(&4_093u32.to_le_bytes());
    let (_, error) = error_of(terminal.read());
    assert_eq!(error, ErrorReply::new(ProtocolError::Oversized, 0, 4_097));
    assert!(terminal.read().is_none(), "the connection is closed");

    let mut patient = Raw::connect(authd.addr);
    patient.logon(Role::Terminal, shop.terminal, shop.secret);
    patient.send_bytes(&raw_frame(1, 0x1F, 0, 9, &[0; 4_080]));
    let (request_id, error) = error_of(patient.read());
    assert_eq!(
        (request_id, error.error),
        (9, ProtocolError::Body),
        "a frame of exactly 4096 bytes is read whole and its body judged"
    );
    patient.send(10, echo(10));
    assert_eq!(patient.read().map(|frame| frame.request_id), Some(10));

    let mut short = Raw::connect(authd.addr);
    short.send_bytes(&11u32.to_le_bytes());
    let (_, error) = error_of(short.read());
    assert_eq!(error, ErrorReply::new(ProtocolError::LengthBelowHeader, 0, 11));
    assert!(short.read().is_none(), "the connection is closed");
    served(&mut operator, 2);
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn a_frame_cut_in_the_middle_then_silence_is_closed_at_the_logon_timeout() {
    let authd = Authd::start(&["--logon-timeout-ms", "500"]);
    let mut operator = authd.operator();
    let whole = encoded(0, hello(Role::Terminal, 1, 1, 1));
    let mut cut = Raw::connect(authd.addr);
    let start = Instant::now();
    cut.send_bytes(&whole[..whole.len() / 2]);
    // The well-behaved operator keeps being served while the cut frame waits.
    let mut round = 0;
    while start.elapsed() < Duration::from_millis(400) {
        served(&mut operator, round);
        round += 1;
    }
    assert!(cut.read_until_closed().is_empty(), "closed without a reply");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "closed after {waited:?}, expected the 500 ms log-on timeout (swept every 500 ms)"
    );
    served(&mut operator, round);
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn a_thousand_connections_that_never_log_on_leave_authd_serving() {
    let authd = Authd::start(&["--logon-timeout-ms", "2000"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let start = Instant::now();
    let mut idle: Vec<Raw> = (0..1_000).map(|_| Raw::connect(authd.addr)).collect();
    for round in 0..20 {
        served(&mut operator, round);
    }
    let mut terminal = authd.client(Role::Terminal, shop.terminal, shop.secret);
    served(&mut terminal, 1);
    for raw in &mut idle {
        assert!(raw.read_until_closed().is_empty(), "closed without a reply");
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "closed after {waited:?}, before the log-on timeout"
    );
    served(&mut operator, 99);
    served(&mut terminal, 2);
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn the_first_connection_over_the_limit_gets_busy_and_is_closed() {
    let authd = Authd::start(&["--connections-max", "4"]);
    let mut operator = authd.operator();
    // Three more connections, each surely accepted (it got its challenge): four in all.
    let mut open: Vec<Raw> = (0..3)
        .map(|index| {
            let mut raw = Raw::connect(authd.addr);
            raw.send(0, hello(Role::Terminal, index, 1, 1));
            assert!(matches!(
                raw.read().map(|frame| frame.message),
                Some(Message::Logon(Logon::Challenge(_)))
            ));
            raw
        })
        .collect();
    let mut refused = Raw::connect(authd.addr);
    let (request_id, error) = error_of(refused.read());
    assert_eq!(request_id, 0);
    assert_eq!(error, ErrorReply::new(ProtocolError::Busy, 0, 4));
    assert_eq!((error.code, error.reason), (96, 22));
    assert!(refused.read().is_none(), "the refused connection is closed");
    served(&mut operator, 1);

    // One leaves; a newcomer gets in once authd has noticed.
    drop(open.pop());
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut newcomer = loop {
        assert!(Instant::now() < deadline, "no room made by a closed connection");
        match Client::connect(authd.addr, Role::Operator, 1, authd.operator_secret()) {
            Ok(client) => break client,
            Err(_) => std::thread::yield_now(),
        }
    };
    served(&mut newcomer, 2);
    served(&mut operator, 3);
    let mut authd = authd;
    assert!(authd.is_running());
}

/// Pipeline echoes and purchases on a logged-on terminal without ever reading, until authd
/// stops reading (a write blocks for a while) or `bytes_max` are sent. Returns bytes sent.
fn flood(mut raw: Raw, payer: u64, bytes_max: usize) -> (Raw, usize) {
    raw.stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut batch = Vec::new();
    for request_id in 1..=1_000u64 {
        let message = if request_id % 4 == 0 {
            Message::Request(purchase(payer, 1))
        } else {
            echo(request_id)
        };
        batch.extend_from_slice(&encoded(request_id, message));
    }
    let mut sent = 0;
    let mut blocked_since: Option<Instant> = None;
    while sent < bytes_max {
        let offset = sent % batch.len();
        match raw.stream.write(&batch[offset..]) {
            Ok(count) => {
                sent += count;
                blocked_since = None;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            Err(error) => panic!("authd dropped a slow reader: {error}"),
        }
    }
    (raw, sent)
}

#[test]
fn clients_that_never_read_their_replies_slow_only_themselves() {
    let authd = Authd::start(&["--write-bytes-max", "65536", "--in-flight-max", "256"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let rich = payer(&mut operator, 0, 100_000_000);
    let mut terminal = authd.client(Role::Terminal, shop.terminal, shop.secret);
    served(&mut terminal, 0);
    let rss_before_kb = rss_kb(authd.pid());
    const FLOODERS: usize = 8;
    const FLOOD_BYTES_MAX: usize = 64 << 20;
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let mut raw = Raw::connect(authd.addr);
            raw.logon(Role::Terminal, shop.terminal, shop.secret);
            std::thread::spawn(move || flood(raw, rich, FLOOD_BYTES_MAX))
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut rss_max_kb = rss_before_kb;
    let mut round = 0;
    while !flooders.iter().all(|thread| thread.is_finished()) {
        slowest = slowest.max(served(&mut terminal, round));
        rss_max_kb = rss_max_kb.max(rss_kb(authd.pid()));
        round += 1;
        assert!(round < 1_000_000, "the flooders never stalled");
    }
    let floods: Vec<(Raw, usize)> = flooders
        .into_iter()
        .map(|thread| thread.join().expect("flooder"))
        .collect();
    for (_, sent) in &floods {
        assert!(
            *sent < FLOOD_BYTES_MAX,
            "authd stopped reading a client that does not read"
        );
    }
    let grown_kb = rss_max_kb.saturating_sub(rss_before_kb);
    eprintln!(
        "{round} round trips, slowest {slowest:?}; authd RSS {rss_before_kb} kB, at most +{grown_kb} kB; sent {:?}",
        floods.iter().map(|(_, sent)| sent).collect::<Vec<_>>()
    );
    assert!(
        grown_kb < 32 * 1024,
        "authd grew by {grown_kb} kB for {FLOODERS} slow readers"
    );

    // A slow reader that finally reads gets its replies in order, nothing lost.
    let (mut raw, _) = floods.into_iter().next().expect("a flooder");
    for request_id in 1..=300u64 {
        let frame = raw.read().expect("replies wait for the slow reader");
        assert_eq!(frame.request_id, request_id);
    }
    served(&mut terminal, 1);
    let spent = 100_000_000 - balances(&mut operator, rich).0;
    assert!(spent > 0, "the flooders' purchases were executed");
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn an_unknown_message_type_after_logon_gets_an_error_and_the_connection_stays_usable() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let mut raw = Raw::connect(authd.addr);
    raw.logon(Role::Terminal, shop.terminal, shop.secret);

    raw.send_bytes(&raw_frame(1, 0x7e, 0, 54, &[]));
    let (request_id, error) = error_of(raw.read());
    assert_eq!(request_id, 54);
    assert_eq!(error, ErrorReply::new(ProtocolError::UnknownType, 0x7e, 0x7e));
    assert_eq!((error.code, error.reason), (30, 21));

    // Other frames PROTOCOL.md says are skipped with the connection kept.
    raw.send_bytes(&raw_frame(1, 0x1F, 1, 55, &[0; 8]));
    assert_eq!(
        error_of(raw.read()),
        (55, ErrorReply::new(ProtocolError::Flags, 0x1F, 1))
    );
    raw.send_bytes(&raw_frame(1, 0x1F, 0, 56, &[0; 7]));
    let (request_id, error) = error_of(raw.read());
    assert_eq!(
        (request_id, error.error, error.message_type),
        (56, ProtocolError::Body, 0x1F)
    );
    let reply = Message::Reply(Reply::Echo(EchoReply {
        code: 0,
        reason: 0,
        value: 1,
    }));
    raw.send(57, reply);
    assert_eq!(
        error_of(raw.read()),
        (57, ErrorReply::new(ProtocolError::Unexpected, 0x9F, 0))
    );
    raw.send(0, hello(Role::Terminal, shop.terminal, 1, 1));
    assert_eq!(
        error_of(raw.read()),
        (0, ErrorReply::new(ProtocolError::Unexpected, 0x01, 0)),
        "a second HELLO"
    );
    served(&mut operator, 1);

    raw.send(58, echo(58));
    assert_eq!(
        raw.read(),
        Some(Frame {
            request_id: 58,
            message: Message::Reply(Reply::Echo(EchoReply {
                code: 0,
                reason: 0,
                value: 58
            }))
        }),
        "the connection is still usable"
    );
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn a_request_before_logon_gets_not_logged_on_and_a_close() {
    let authd = Authd::start(&[]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let purchase_100 = Message::Request(purchase(alice, 100));

    let mut stranger = Raw::connect(authd.addr);
    stranger.send(7, purchase_100.clone());
    let (request_id, error) = error_of(stranger.read());
    assert_eq!(request_id, 7);
    assert_eq!(error, ErrorReply::new(ProtocolError::NotLoggedOn, 0x14, 0));
    assert_eq!((error.code, error.reason), (30, 24));
    assert!(stranger.read().is_none(), "the connection is closed");

    // Half-way through the log-on (HELLO sent, no PROOF) is still not logged on.
    let mut halfway = Raw::connect(authd.addr);
    halfway.send(0, hello(Role::Terminal, shop.terminal, 1, 1));
    assert!(matches!(
        halfway.read().map(|frame| frame.message),
        Some(Message::Logon(Logon::Challenge(_)))
    ));
    halfway.send(8, purchase_100);
    assert_eq!(error_of(halfway.read()).0, 8);
    assert!(halfway.read().is_none(), "the connection is closed");

    // A reply frame is not a log-on frame either.
    let mut confused = Raw::connect(authd.addr);
    confused.send(
        9,
        Message::Reply(Reply::Echo(EchoReply {
            code: 0,
            reason: 0,
            value: 9,
        })),
    );
    let (request_id, error) = error_of(confused.read());
    assert_eq!((request_id, error.error), (9, ProtocolError::NotLoggedOn));
    assert!(confused.read().is_none(), "the connection is closed");

    served(&mut operator, 1);
    assert_eq!(
        balances(&mut operator, alice),
        (10_000, 0, 10_000),
        "nothing was executed"
    );
    let mut authd = authd;
    assert!(authd.is_running());
}

#[test]
fn a_client_that_pipelines_past_the_limit_then_half_closes_gets_every_reply() {
    let authd = Authd::start(&["--in-flight-max", "4"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let alice = payer(&mut operator, 0, 10_000);
    let mut raw = Raw::connect(authd.addr);
    raw.logon(Role::Terminal, shop.terminal, shop.secret);
    let mut batch = Vec::new();
    for request_id in 1..=200u64 {
        let message = if request_id % 2 == 0 {
            Message::Request(purchase(alice, 10))
        } else {
            echo(request_id)
        };
        batch.extend_from_slice(&encoded(request_id, message));
    }
    assert!(raw.send_bytes(&batch));
    raw.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let replies = raw.read_until_closed();
    let ids: Vec<u64> = replies.iter().map(|frame| frame.request_id).collect();
    assert_eq!(
        ids,
        (1..=200).collect::<Vec<u64>>(),
        "every request answered, in order, then the close"
    );
    for frame in &replies {
        let Message::Reply(reply) = &frame.message else {
            panic!("a reply expected: {frame:?}");
        };
        assert_eq!(reply.outcome(), (0, 0), "{frame:?}");
    }
    assert_eq!(balances(&mut operator, alice), (9_000, 0, 9_000));
}

/// authd stops reading a socket after a short read (the kernel had no more), unless the event
/// said the peer closed: requests and the FIN that arrive together, in one read or more
/// than a read buffer (64 KiB) holds, still get every reply and then the close.
#[test]
fn requests_and_the_fin_arriving_together_get_every_reply_then_the_close() {
    let authd = Authd::start(&["--in-flight-max", "4096"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let echo_bytes = encoded(1, echo(1)).len();
    // One frame; a few; just under, at and past one read buffer.
    let read_buffer_frames = 64 * 1024 / echo_bytes;
    for count in [
        1,
        3,
        read_buffer_frames - 1,
        read_buffer_frames,
        read_buffer_frames + 200,
    ] {
        let mut raw = Raw::connect(authd.addr);
        raw.logon(Role::Terminal, shop.terminal, shop.secret);
        let batch: Vec<u8> = (1..=count as u64)
            .flat_map(|request_id| encoded(request_id, echo(request_id)))
            .collect();
        assert!(raw.send_bytes(&batch));
        raw.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let ids: Vec<u64> = raw
            .read_until_closed()
            .iter()
            .map(|frame| frame.request_id)
            .collect();
        assert_eq!(ids, (1..=count as u64).collect::<Vec<u64>>(), "{count} echoes");
    }
}

#[test]
fn a_logged_on_connection_silent_past_the_idle_timeout_is_closed() {
    let authd = Authd::start(&["--idle-timeout-s", "1"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let start = Instant::now();
    let mut silent = Raw::connect(authd.addr);
    silent.logon(Role::Terminal, shop.terminal, shop.secret);
    let mut cut = Raw::connect(authd.addr);
    cut.logon(Role::Terminal, shop.terminal, shop.secret);
    let whole = encoded(1, echo(1));
    cut.send_bytes(&whole[..whole.len() - 1]);
    // The operator keeps talking and is never idle.
    let mut round = 0;
    while start.elapsed() < Duration::from_millis(1_800) {
        served(&mut operator, round);
        round += 1;
    }
    assert!(silent.read_until_closed().is_empty(), "closed without a reply");
    assert!(
        cut.read_until_closed().is_empty(),
        "a partial frame does not keep it open"
    );
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
    served(&mut operator, round);
}

#[test]
fn a_silent_connection_stays_open_until_its_idle_timeout() {
    let authd = Authd::start(&["--idle-timeout-s", "2"]);
    let mut operator = authd.operator();
    let shop = shop(&mut operator, 0, 0);
    let mut silent = Raw::connect(authd.addr);
    silent.logon(Role::Terminal, shop.terminal, shop.secret);
    let logged_on = Instant::now();
    std::thread::sleep(Duration::from_millis(1_400));
    silent.stream.set_nonblocking(true).expect("nonblocking");
    let peeked = silent.stream.peek(&mut [0u8; 1]);
    assert!(
        matches!(&peeked, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "closed before its idle timeout: {peeked:?}"
    );
    silent.stream.set_nonblocking(false).expect("blocking");
    assert!(silent.read_until_closed().is_empty());
    let waited = logged_on.elapsed();
    assert!(
        // Counted from its last frame, the PROOF, a round trip before `logged_on`.
        waited >= Duration::from_millis(1_900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

/// The frame limit a terminal is told at log-on, and what a frame one byte above it gets.
fn announced_and_enforced(authd: &Authd, terminal: u32, secret: [u8; 32]) -> (u32, ErrorReply) {
    let client = authd.client(Role::Terminal, terminal, secret);
    let announced = client.server_limits().frame_bytes_max;
    let mut raw = Raw::connect(authd.addr);
    raw.logon(Role::Terminal, terminal, secret);
    raw.send_bytes(&raw_frame(1, 0x1F, 0, 1, &vec![0; announced as usize - 16]));
    let (request_id, error) = error_of(raw.read());
    assert_eq!(
        (request_id, error.error),
        (1, ProtocolError::Body),
        "a frame of exactly the announced limit is read whole"
    );
    raw.send_bytes(&(announced + 1 - 4).to_le_bytes());
    let (_, error) = error_of(raw.read());
    assert!(raw.read().is_none(), "the connection is closed");
    (announced, error)
}

#[test]
fn the_frame_limit_announced_at_logon_is_the_one_enforced() {
    for (flag, effective) in [("1024", 1_024u32), ("2048", 2_048), ("1048576", 1 << 20)] {
        let authd = Authd::start(&["--frame-bytes-max", flag]);
        let mut operator = authd.operator();
        let shop = shop(&mut operator, 0, 0);
        let (announced, error) = announced_and_enforced(&authd, shop.terminal, shop.secret);
        assert_eq!(announced, effective, "--frame-bytes-max {flag}");
        assert_eq!(
            error,
            ErrorReply::new(ProtocolError::Oversized, 0, u64::from(effective) + 1),
            "--frame-bytes-max {flag}: one byte over the announced limit"
        );
    }
}

#[test]
fn limits_outside_their_range_are_refused_at_start_with_the_range() {
    for (flag, value) in [
        ("--frame-bytes-max", "1023"),
        ("--frame-bytes-max", "1048577"),
        ("--write-bytes-max", "0"),
        ("--write-bytes-max", "65535"),
        ("--write-bytes-max", "1073741825"),
        ("--connections-max", "0"),
        ("--connections-max", "1000001"),
        ("--in-flight-max", "0"),
        ("--in-flight-max", "1000001"),
        ("--threads", "0"),
        ("--threads", "257"),
        ("--currency", "0"),
        ("--currency", "1000"),
        ("--logon-timeout-ms", "0"),
        ("--logon-timeout-ms", "3600001"),
        ("--idle-timeout-s", "0"),
        ("--idle-timeout-s", "604801"),
        ("--clock-step-max-s", "0"),
        ("--clock-step-max-s", "86401"),
        ("--spin-us", "10001"),
        ("--logon-failures-max", "0"),
        ("--logon-failure-window-s", "0"),
        ("--logon-failure-window-s", "86401"),
        ("--idempotency-window", "0"),
        ("--idempotency-window", "1048577"),
        ("--holds-per-shard-max", "0"),
        ("--segment-bytes", "4151"),
        ("--segment-bytes", "1073741825"),
        ("--wal-reuse-mb", "1048577"),
        ("--wal-preallocate-mb", "1048577"),
        ("--commit-delay-us", "10001"),
        ("--commit-delay-min-records", "0"),
        ("--snapshot-write-mb-s", "100001"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (code, stderr) = refused_start("127.0.0.1:0", dir.path(), &[flag, value]);
        assert!(code != Some(0), "{flag} {value} must be refused");
        assert!(stderr.contains("is not in"), "{flag} {value}: {stderr}");
    }
}

#[test]
fn a_data_dir_authd_cannot_use_is_refused_saying_why_once_and_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a dir").expect("write");
    let refused = |data_dir: &Path| {
        let (code, stderr) = refused_start("127.0.0.1:0", data_dir, &[]);
        assert_eq!(code, Some(1), "{data_dir:?}");
        stderr
    };
    let stderr = refused(&file);
    assert!(
        stderr.contains("is not a directory; pass --data-dir with a directory"),
        "{stderr}"
    );
    // Below a file: the system's cause, told once, and the advice.
    let stderr = refused(&file.join("below"));
    assert_eq!(stderr.matches("os error 20").count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create data dir"), "{stderr}");
    assert!(std::fs::read(&file).expect("read") == b"not a dir");
}

#[test]
fn an_address_in_use_is_refused_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (code, stderr) = refused_start(&address, &data_dir, &["--wal-preallocate-mb", "1024"]);
    assert_eq!(code, Some(1));
    let said = format!("cannot listen on {address}: ");
    assert!(
        stderr.contains(&said) && stderr.contains("pass --listen with a free address"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "{stderr}");
}

#[test]
fn shards_the_books_refuse_leave_no_data_dir_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &["--shards", "100"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("shards must be a power of two"), "{stderr}");
    assert!(!data_dir.exists(), "{stderr}");
}

#[test]
fn hold_rings_too_big_to_reserve_are_refused_at_start_naming_the_flag() {
    // authd reserves every shard's hold ring when it starts, so a payment never waits for one
    // to grow. 4,096 rings of u32::MAX holds cannot be reserved on any machine: 378 GB each,
    // 1.5 PB in all, past a process's address space whatever the overcommit policy. (In its
    // own process: where the kernel grants the first few hundred, the address space is full
    // until the books are dropped.)
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let flags = [
        "--shards",
        "4096",
        "--idempotency-window",
        "1",
        "--holds-per-shard-max",
        "4294967295",
    ];
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &flags);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reserve room for 4294967295 holds"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pass a smaller --holds-per-shard-max"),
        "{stderr}"
    );
    assert!(stderr.contains("ulimit -v, vm.overcommit_memory"), "{stderr}");
    // The dir and its lock were made before the books were built, but nothing was recorded:
    // the same data dir starts with rings that fit, and other shards.
    let mut authd = Authd::start_in(&data_dir, &["--holds-per-shard-max", "1000"]);
    assert!(authd.is_running(), "{}", authd.stderr());
}

#[test]
fn prefaulting_more_hold_rings_than_memory_holds_is_refused_before_the_data_dir_is_made() {
    // 4,096 rings of u32::MAX holds: far more than any machine's memory, so the check refuses
    // it whatever is available, and before the rings are reserved.
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let flags = [
        "--shards",
        "4096",
        "--holds-per-shard-max",
        "4294967295",
        "--prefault-holds",
    ];
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &flags);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--prefault-holds would make the hold rings resident at once"),
        "{stderr}"
    );
    assert!(stderr.contains("(4096 shards x 4294967295 holds)"), "{stderr}");
    assert!(
        stderr.contains("pass a smaller --holds-per-shard-max"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "nothing was made");
    // Flags the books refuse anyway get their own error, not a memory figure (2^20 shards
    // would need petabytes).
    let flags = ["--shards", "1048576", "--prefault-holds"];
    let (code, stderr) = refused_start("127.0.0.1:0", &data_dir, &flags);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("shards must be a power of two"), "{stderr}");
    assert!(!data_dir.exists(), "nothing was made");
}

#[test]
fn a_second_authd_on_the_same_address_and_data_dir_is_told_of_the_lock() {
    let first = Authd::start(&[]);
    let (code, stderr) = refused_start(&first.addr.to_string(), &first.dir, &[]);
    assert_eq!(code, Some(1));
    let said = format!("is locked by pid {}; stop it or pass --data-dir", first.pid());
    assert!(stderr.contains(&said), "{stderr}");
}

#[test]
fn the_binaries_name_themselves_in_their_version() {
    for (binary, name) in [
        (authd_tests::authd_binary(), "authd "),
        (authd_tests::authctl_binary(), "authctl "),
    ] {
        let output = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .expect("run --version");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && stdout.starts_with(name), "{stdout}");
    }
}

#[test]
fn authd_raises_its_open_files_limit_and_warns_when_the_hard_one_is_too_low() {
    // --shards 3 makes authd stop right after the check, before it opens anything.
    let run = |limits: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = format!(
            "{limits}; exec \"$0\" --listen 127.0.0.1:0 --data-dir \"$1\" --connections-max 1000 --shards 3"
        );
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(authd_tests::authd_binary())
            .arg(dir.path())
            .output()
            .expect("run authd under sh");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run("ulimit -n 256");
    assert!(
        stderr.contains("open_files_limit") && stderr.contains("--connections-max 1000 needs about 1064"),
        "{stderr}"
    );
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("ulimit -Hn");
    let hard: u64 = String::from_utf8_lossy(&hard.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX);
    if hard >= 1064 {
        let stderr = run("ulimit -Sn 256");
        assert!(
            !stderr.contains("open_files_limit"),
            "the soft limit was not raised: {stderr}"
        );
    }
}
