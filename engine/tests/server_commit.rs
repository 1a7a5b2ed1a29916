//! The server's commit path (issue 6): an event loop that finds the log idle writes, and with
//! fsync always syncs, its batch itself; still, no reply leaves before its record is durable.
//! Each test runs the server in this process, on a log whose writes or syncs can be made to
//! fail: a reply sent before its record reached the disk would then be an approval.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::books::BooksConfig;
use engine::server::{Server, ServerConfig};
use engine::store::{Store, StoreConfig};
use engine::wal::{FaultInjection, FsyncMode, ReadOptions, WalConfig};
use wire::client::Client;
use wire::messages::operator::OpenAccount;
use wire::types::{AccountKind, Limits, Role};
use wire::{Reply, Request};

const OPERATOR_SECRET: [u8; 32] = [7; 32];

fn start(dir: &std::path::Path, mode: FsyncMode, faults: &Arc<FaultInjection>) -> Server {
    start_configured(dir, mode, faults, |_| {})
}

/// One loop, on a log with `faults`, configured further by `configure`.
fn start_configured(
    dir: &std::path::Path,
    mode: FsyncMode,
    faults: &Arc<FaultInjection>,
    configure: impl FnOnce(&mut ServerConfig),
) -> Server {
    let mut wal = WalConfig::new(dir);
    wal.segment_bytes = 1 << 20;
    wal.fsync_mode = mode;
    wal.faults = Some(Arc::clone(faults));
    let config = StoreConfig {
        books: BooksConfig::default(),
        wal,
        read: ReadOptions::default(),
    };
    let (store, _) = Store::open(config).expect("open the store");
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().expect("address"));
    server_config.threads = 1;
    configure(&mut server_config);
    Server::start(Arc::new(store), server_config, OPERATOR_SECRET).expect("start the server")
}

/// Snapshot files (whole or half written) in `dir`.
fn snapshot_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("snapshot-"))
        .count()
}

fn open_account() -> Request {
    Request::OpenAccount(OpenAccount {
        kind: AccountKind::Payer,
        currency: 978,
        mobile: 0,
        limits: Limits::NONE,
    })
}

/// Approved (code 0), or the code of the refusal.
fn code_of(reply: &Reply) -> u8 {
    match reply {
        Reply::OpenAccount(opened) => opened.code,
        Reply::Error(error) => error.code,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// With the log to itself, the loop commits in place; once the disk fails, the request whose
/// record could not be written (or synced) is answered 96, never approved.
fn no_reply_before_its_record(mode: FsyncMode, break_disk: impl Fn(&FaultInjection)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let server = start(dir.path(), mode, &faults);
    let mut operator =
        Client::connect(server.local_addr(), Role::Operator, 1, OPERATOR_SECRET).expect("log on");
    for _ in 0..20 {
        assert_eq!(code_of(&operator.call(&open_account()).expect("reply")), 0);
    }
    let wal = server.shared().store.wal();
    let stats = wal.stats();
    assert!(
        stats.commits_in_place > 0,
        "one connection, one loop: the loop commits itself: {stats:?}"
    );
    let durable = wal.durable_lsn();
    break_disk(&faults);
    let reply = operator.call(&open_account()).expect("reply");
    assert_eq!(code_of(&reply), 96, "{reply:?}");
    assert_eq!(wal.durable_lsn(), durable);
    let reply = operator.call(&open_account()).expect("reply");
    assert_eq!(code_of(&reply), 96, "the log stays failed: {reply:?}");
    // A client still logs on (to be told 96 per request, or to read the stats).
    let mut late = Client::connect(server.local_addr(), Role::Operator, 1, OPERATOR_SECRET)
        .expect("log on after the failure");
    let reply = late.call(&open_account()).expect("reply");
    assert_eq!(code_of(&reply), 96, "{reply:?}");
    server.shutdown();
    assert!(server.join().is_err(), "the failure is reported at the end");
    assert_eq!(
        snapshot_files(dir.path()),
        0,
        "no snapshot at the stop of a failed log"
    );
}

#[test]
fn with_fsync_always_a_reply_never_leaves_before_its_sync() {
    no_reply_before_its_record(FsyncMode::Always, |faults| {
        faults.fail_syncs.store(true, Ordering::Relaxed)
    });
}

#[test]
fn with_fsync_never_a_reply_never_leaves_before_its_write() {
    no_reply_before_its_record(FsyncMode::Never, |faults| {
        faults.fail_writes.store(true, Ordering::Relaxed)
    });
}

/// Two loops, connections on both, slow syncs so that commits overlap: replies released by
/// the writer thread (and by commits in place when the log happens to be idle) all arrive,
/// and each loop is woken when its records are durable. The loops sleep up to 3 s, so a lost
/// wake-up shows as a 3 s round trip, far from any slow fdatasync (this disk has given 59 ms;
/// with the 50 ms default the two looked alike and the test once failed on the disk).
#[test]
fn loops_sharing_the_log_are_woken_for_every_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    faults.sync_delay_us.store(2_000, Ordering::Relaxed);
    let server = start_configured(dir.path(), FsyncMode::Always, &faults, |config| {
        config.threads = 2;
        config.poll_timeout = std::time::Duration::from_secs(3);
    });
    let address = server.local_addr();
    let rounds = 25;
    let slowest = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    let mut operator =
                        Client::connect(address, Role::Operator, 1, OPERATOR_SECRET).expect("log on");
                    let mut slowest = std::time::Duration::ZERO;
                    for _ in 0..rounds {
                        let started = std::time::Instant::now();
                        assert_eq!(code_of(&operator.call(&open_account()).expect("reply")), 0);
                        slowest = slowest.max(started.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().expect("client"))
            .max()
    });
    let stats = server.shared().store.wal().stats();
    assert!(
        stats.batches_written > stats.commits_in_place,
        "some commits were handed to the writer thread: {stats:?}"
    );
    // A round trip waits for at most the sync under way and its own: ~4 ms, more on a busy
    // machine or a slow disk; a lost wake-up costs the loop's 3 s poll timeout.
    let slowest = slowest.expect("clients");
    assert!(slowest < std::time::Duration::from_secs(1), "{slowest:?}");
    server.shutdown();
    server.join().expect("clean stop");
}

/// `--in-flight-max` is exact: requests that wait in the socket while the loop syncs (here a
/// first request's sync, made to take a second) are read together after it, and of one more
/// than the limit exactly the limit is executed until replies drain; LOGON_OK announces it.
#[test]
fn a_connection_has_exactly_in_flight_max_requests_executed_at_once() {
    const IN_FLIGHT_MAX: u32 = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let server = start_configured(dir.path(), FsyncMode::Always, &faults, |config| {
        config.in_flight_max = IN_FLIGHT_MAX
    });
    let mut operator =
        Client::connect(server.local_addr(), Role::Operator, 1, OPERATOR_SECRET).expect("log on");
    assert_eq!(operator.server_limits().requests_in_flight_max, IN_FLIGHT_MAX);
    let wal = server.shared().store.wal();
    let before = wal.last_lsn();
    let wait_for = |lsn: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while wal.last_lsn() < lsn {
            assert!(
                std::time::Instant::now() < deadline,
                "lsn {lsn} never appended (at {})",
                wal.last_lsn()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    faults.sync_delay_us.store(1_000_000, Ordering::Relaxed);
    // The first request: the one loop commits it in place and sleeps in its sync.
    operator.send(&open_account()).expect("send");
    wait_for(before + 1);
    for _ in 0..=IN_FLIGHT_MAX {
        operator.send(&open_account()).expect("send");
    }
    // After that sync the loop reads the five together and executes four, then syncs those
    // for a second: meanwhile the fifth waits behind the limit.
    let four = before + 1 + u64::from(IN_FLIGHT_MAX);
    wait_for(four);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(wal.last_lsn(), four, "exactly the limit executed");
    faults.sync_delay_us.store(0, Ordering::Relaxed);
    for _ in 0..IN_FLIGHT_MAX + 2 {
        match operator.recv().expect("reply") {
            wire::client::Incoming::Reply { reply, .. } => assert_eq!(code_of(&reply), 0),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wal.last_lsn(), four + 1);
    server.shutdown();
    server.join().expect("clean stop");
    assert_eq!(
        snapshot_files(dir.path()),
        1,
        "a clean stop snapshots what is new"
    );
}

/// A stop snapshot that cannot be written leaves the log whole: the stop still succeeds (the
/// log is synced) and the next start replays the tail.
#[test]
fn a_failed_stop_snapshot_leaves_the_tail_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let server = start(dir.path(), FsyncMode::Always, &faults);
    let mut operator =
        Client::connect(server.local_addr(), Role::Operator, 1, OPERATOR_SECRET).expect("log on");
    for _ in 0..3 {
        assert_eq!(code_of(&operator.call(&open_account()).expect("reply")), 0);
    }
    let last = server.shared().store.wal().last_lsn();
    // A directory where the snapshot's temporary file must go: creating the file fails.
    let blocker = dir.path().join(format!(
        "{}.tmp",
        engine::wal::snapshot_file::snapshot_file_name(last)
    ));
    std::fs::create_dir(&blocker).expect("block the snapshot");
    server.shutdown();
    server.join().expect("the log itself stopped cleanly");
    std::fs::remove_dir(&blocker).expect("unblock");
    assert_eq!(snapshot_files(dir.path()), 0, "no snapshot was written");
    let config = StoreConfig {
        books: BooksConfig::default(),
        wal: WalConfig::new(dir.path()),
        read: ReadOptions::default(),
    };
    let (store, recovered) = Store::open(config).expect("reopen");
    assert_eq!(recovered.records_applied, last, "the whole log is replayed");
    assert_eq!(store.wal().last_lsn(), last);
}

const MOBILE: u64 = 33_612_345_678;

/// A terminal and a payer device (with 100.00 loaded) registered through `server`: their
/// (id, secret) pairs.
fn offer_parties(server: &Server) -> ((u32, [u8; 32]), (u32, [u8; 32])) {
    use wire::messages::operator::{LoadFunds, RegisterDevice, RegisterMerchant, RegisterTerminal};
    use wire::types::{AccountNumber, MerchantId, ShortText};
    let mut operator =
        Client::connect(server.local_addr(), Role::Operator, 1, OPERATOR_SECRET).expect("log on");
    let mut call = |request: Request| operator.call(&request).expect("reply");
    let Reply::RegisterMerchant(merchant) = call(Request::RegisterMerchant(RegisterMerchant {
        fee_bps: 0,
        fee_bps_with_product: 0,
        origin: ShortText::new("CAFE").expect("text"),
    })) else {
        panic!("register merchant")
    };
    let Reply::RegisterTerminal(terminal) = call(Request::RegisterTerminal(RegisterTerminal {
        merchant_id: MerchantId(merchant.merchant_id.0),
    })) else {
        panic!("register terminal")
    };
    let Reply::OpenAccount(payer) = call(Request::OpenAccount(OpenAccount {
        kind: AccountKind::Payer,
        currency: 978,
        mobile: MOBILE,
        limits: Limits::NONE,
    })) else {
        panic!("open account")
    };
    let load = LoadFunds {
        account: payer.account,
        amount_minor: 10_000,
    };
    assert!(matches!(call(Request::LoadFunds(load)), Reply::LoadFunds(loaded) if loaded.code == 0));
    let Reply::RegisterDevice(device) = call(Request::RegisterDevice(RegisterDevice {
        account: AccountNumber(payer.account.0),
    })) else {
        panic!("register device")
    };
    (
        (terminal.terminal_id.0, terminal.secret),
        (device.device_id.0, device.secret),
    )
}

/// Log on to `server` as `role`, with a read timeout.
fn log_on(server: &Server, role: Role, (id, secret): (u32, [u8; 32])) -> Client {
    let mut client = Client::connect(server.local_addr(), role, id, secret).expect("log on");
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    client
}

/// An offer of 5.00 to the payer of [`offer_parties`].
fn offer() -> Request {
    use wire::types::{PayerRef, ShortText};
    Request::Offer(wire::messages::terminal::Offer {
        payer: PayerRef::Mobile(MOBILE),
        amount_minor: 500,
        currency: 978,
        expires_in_s: 60,
        reference: ShortText::new("2 coffees").expect("text"),
    })
}

/// An offer is presented to the payer's device at once, before its record is durable. A
/// crash (here a log that fails) may lose it while the device holds it: after the restart its
/// id names no offer, and the next offer gets another id, which the stale answer cannot touch.
#[test]
fn an_offer_shown_before_its_record_was_lost_cannot_be_answered_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let server = start(dir.path(), FsyncMode::Always, &faults);
    let (terminal, device) = offer_parties(&server);
    let mut phone = log_on(&server, Role::PayerDevice, device);
    let mut till = log_on(&server, Role::Terminal, terminal);
    // A healthy log: the device is shown the offer.
    assert!(matches!(till.call(&offer()).expect("reply"), Reply::Offer(reply) if reply.code == 0));
    assert!(matches!(
        phone.recv().expect("the offer is presented"),
        wire::client::Incoming::Push(wire::Push::OfferPresented(_))
    ));
    // Its record is never written: the terminal is answered 96, but the device was shown it.
    faults.fail_writes.store(true, Ordering::SeqCst);
    match till.call(&offer()).expect("reply") {
        Reply::Error(error) => assert_eq!(error.code, 96),
        other => panic!("a refused offer must not be approved: {other:?}"),
    }
    let lost = match phone.recv().expect("shown at once") {
        wire::client::Incoming::Push(wire::Push::OfferPresented(shown)) => shown.offer_id,
        other => panic!("expected the offer: {other:?}"),
    };
    server.shutdown();
    assert!(server.join().is_err(), "the log failed");

    let server = start(
        dir.path(),
        FsyncMode::Always,
        &Arc::new(FaultInjection::default()),
    );
    let mut phone = log_on(&server, Role::PayerDevice, device);
    let mut till = log_on(&server, Role::Terminal, terminal);
    let Reply::Offer(next) = till.call(&offer()).expect("reply") else {
        panic!("an offer reply")
    };
    assert_eq!(next.code, 0);
    assert_ne!(next.offer_id, lost, "the lost offer's id is not given again");
    let reject = |offer_id| Request::RejectOffer(wire::messages::device::RejectOffer { offer_id });
    match phone.call(&reject(lost)).expect("reply") {
        Reply::RejectOffer(reply) => {
            assert_eq!(reply.reason, engine::Reason::HoldUnknown as u8, "{reply:?}")
        }
        other => panic!("unexpected reply {other:?}"),
    }
    // The stale answer touched nothing: the new offer is still there to reject.
    match phone.call(&reject(next.offer_id)).expect("reply") {
        Reply::RejectOffer(reply) => assert_eq!(reply.code, 0, "{reply:?}"),
        other => panic!("unexpected reply {other:?}"),
    }
    server.shutdown();
    server.join().expect("a clean stop");
}

/// With one loop, which commits its batch in place (the fdatasync on its own thread), an offer
/// reaches the device before that sync, not after it: here a sync made to take 600 ms. (Up to
/// three offers: the ticker, once a second, may route one offer's push itself, and that push
/// then waits for the loop's sync; an offer shown after the sync three times is the fault.)
#[test]
fn an_offer_reaches_the_device_before_its_loop_syncs_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjection::default());
    let server = start(dir.path(), FsyncMode::Always, &faults);
    let (terminal, device) = offer_parties(&server);
    let mut phone = log_on(&server, Role::PayerDevice, device);
    let mut till = log_on(&server, Role::Terminal, terminal);
    const SYNC: std::time::Duration = std::time::Duration::from_millis(600);
    faults
        .sync_delay_us
        .store(SYNC.as_micros() as u64, Ordering::SeqCst);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let sent = std::time::Instant::now();
        till.send(&offer()).expect("send the offer");
        assert!(matches!(
            phone.recv().expect("the offer is presented"),
            wire::client::Incoming::Push(wire::Push::OfferPresented(_))
        ));
        let shown = sent.elapsed();
        assert!(matches!(
            till.recv().expect("reply"),
            wire::client::Incoming::Reply { reply: Reply::Offer(reply), .. } if reply.code == 0
        ));
        let answered = sent.elapsed();
        assert!(answered >= SYNC, "the reply waits for the sync: {answered:?}");
        seen.push((shown, answered));
        if shown < SYNC / 2 {
            break;
        }
    }
    assert!(
        seen.iter().any(|(shown, _)| *shown < SYNC / 2),
        "(shown, answered) after: {seen:?}"
    );
    faults.sync_delay_us.store(0, Ordering::SeqCst);
    server.shutdown();
    server.join().expect("a clean stop");
}
