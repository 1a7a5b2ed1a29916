//! The authd server: event loops on mio serving the wire protocol over the [`Store`].
//!
//! - [`event_loop`]: one thread per loop, each with its own `Poll` and `Waker`; the first loop
//!   listens and deals accepted connections round robin to all loops. A loop reads every readable connection until it would block, handles each
//!   whole frame ([`connection`]: log-on in [`session`], requests in [`dispatch`]), then
//!   releases the replies whose log records are durable and writes each connection once.
//! - A loop handles everything it read as one batch of the log ([`crate::wal::Batch`]): if no
//!   commit is under way it writes (and syncs) the batch itself and replies at once, with no
//!   thread hand-off; otherwise the log's writer thread commits it with the others' (group
//!   commit). Whoever commits wakes the loops sleeping on a record now durable (announced in
//!   [`LoopHandle::sleeping_on`]), so replies leave as soon as their fdatasync is done, batched
//!   per connection.
//! - A ticker thread drives time: every second it expires due holds and offers (logged like
//!   any other command), pushes the offers' outcomes and refreshes the per-second statistics.
//! - A snapshot thread writes a snapshot `snapshot_interval` after the previous one ended,
//!   while the event loops and the ticker go on (each shard is locked only while it is copied):
//!   a background snapshot takes seconds to tens of seconds (22-24 s for full hold tables at
//!   64 MB/s), and expiries must not wait for it.
//! - Shutdown (SIGTERM, SIGINT or [`Server::shutdown`]): stop accepting and reading, release
//!   and write what is in flight (bounded by a deadline), stop the ticker and the snapshot
//!   thread (abandoning a snapshot under way), final log sync, then a snapshot of everything
//!   (unless snapshots are off).

pub mod clock;
pub mod connection;
pub mod declined;
pub mod dispatch;
pub mod event_loop;
pub mod lifecycle;
pub mod offers;
pub mod operator_key;
pub mod push;
pub mod session;
pub mod snapshot_schedule;
pub mod spin;
pub mod stats;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wire::logon::LogonOk;

use crate::store::Store;
use session::LogonLimiter;
use snapshot_schedule::SnapshotSchedule;
use stats::Stats;

/// Default of `--spin-us`: a loop busy-polls at most this long before sleeping.
pub const SPIN_US_MAX_DEFAULT: u64 = 100;
/// Largest `--spin-us`.
pub const SPIN_US_MAX_MAX: u64 = 10_000;

/// Limits and knobs of the server; each has a flag in `authd --help` except `shutdown_timeout`
/// (10 s) and `poll_timeout` (50 ms), which tests set.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Event loop threads.
    pub threads: usize,
    /// Connections open at once, all loops together.
    pub connections_max: usize,
    /// Unanswered requests per connection before reading it pauses.
    pub in_flight_max: u32,
    /// Largest frame accepted, length prefix included.
    pub frame_bytes_max: u32,
    /// Unwritten reply bytes per connection before reading it pauses.
    pub write_bytes_max: usize,
    /// Time to complete the log-on.
    pub logon_timeout: Duration,
    /// A logged-on connection with no frame and nothing in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Failed log-ons per peer (IPv4 address or IPv6 /64) per `logon_failure_window` before
    /// refusing it.
    pub logon_failures_max: u32,
    /// The window of `logon_failures_max`.
    pub logon_failure_window: Duration,
    /// Time between snapshots (none if zero).
    pub snapshot_interval: Duration,
    /// Most bytes a second a snapshot writes while serving (none: as fast as the disk goes,
    /// synced once); the one at a clean stop is not paced.
    pub snapshot_write_pace: Option<std::num::NonZeroU64>,
    /// How long a shutdown waits for in-flight replies.
    pub shutdown_timeout: Duration,
    /// Longest busy-poll of a loop before it sleeps ([`spin`]); zero: always sleep at once.
    pub spin_max: Duration,
    /// Largest step of the wall clock the server's clock follows ([`clock`]); a larger one is
    /// ignored and logged.
    pub clock_step_max: Duration,
    /// Longest sleep of a loop in `epoll_wait` (50 ms): the timeouts' sweep and a stop are
    /// noticed within it even with nothing to wake the loop. Nothing else waits for it: a
    /// reply waits for a wake-up from whoever made its record durable. Tests lengthen it so
    /// that a lost wake-up cannot hide behind a slow fdatasync.
    pub poll_timeout: Duration,
}

impl ServerConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            threads: 1,
            connections_max: 10_000,
            in_flight_max: 1_024,
            frame_bytes_max: wire::FRAME_BYTES_MAX,
            write_bytes_max: 1 << 20,
            logon_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            logon_failures_max: 5,
            logon_failure_window: Duration::from_secs(10),
            snapshot_interval: Duration::from_secs(300),
            snapshot_write_pace: std::num::NonZeroU64::new(SNAPSHOT_WRITE_MB_S_DEFAULT * 1_000_000),
            shutdown_timeout: Duration::from_secs(10),
            spin_max: Duration::from_micros(SPIN_US_MAX_DEFAULT),
            clock_step_max: Duration::from_micros(clock::CLOCK_STEP_MAX_US_DEFAULT),
            poll_timeout: Duration::from_millis(50),
        }
    }
}

/// What every loop shares.
pub struct Shared {
    /// The books and their log.
    pub store: Arc<Store>,
    /// Counters.
    pub stats: Stats,
    /// The configuration.
    pub config: ServerConfig,
    /// The operator's log-on secret.
    pub operator_secret: [u8; 32],
    /// Failed log-ons per peer.
    pub limiter: LogonLimiter,
    /// Connections open, all loops.
    pub connections: AtomicUsize,
    /// Set to stop.
    pub stopping: AtomicBool,
    /// Who receives which pushes.
    pub pushes: push::PushHub,
    /// Each loop's hand-off inbox, waker and sleep, set once before the loops run.
    pub loops: std::sync::OnceLock<Arc<Vec<LoopHandle>>>,
    /// Numbers connections (slab keys are reused).
    pub next_connection: std::sync::atomic::AtomicU64,
    /// What commands are stamped with.
    pub clock: clock::Clock,
}

impl Shared {
    /// The LOGON_OK a connection gets.
    pub fn logon_ok(&self) -> LogonOk {
        LogonOk {
            frame_bytes_max: self.config.frame_bytes_max,
            requests_in_flight_max: self.config.in_flight_max,
        }
    }
}

/// What another thread needs to give a loop a connection or wake it for the log: its inbox,
/// its waker, and what it sleeps waiting for.
pub struct LoopHandle {
    /// Connections accepted for this loop by the listening loop (places already claimed).
    pub accepted: parking_lot::Mutex<Vec<(mio::net::TcpStream, SocketAddr)>>,
    /// Wakes the loop.
    pub waker: Arc<mio::Waker>,
    /// The lsn the loop's oldest waiting reply needs while it sleeps in poll; 0 while it is
    /// awake or waits for nothing. Whoever commits wakes only the loops its batch releases.
    pub sleeping_on: AtomicU64,
}

impl LoopHandle {
    /// Called after every published batch: wakes the loop if it sleeps waiting for a record
    /// now durable (or for a log that has failed), once.
    fn wake_for(&self, durable: crate::wal::Durable) {
        // Pairs with the loop's fence between announcing its sleep and reading the durable
        // position: either the loop sees this batch, or this sees the loop asleep.
        std::sync::atomic::fence(Ordering::SeqCst);
        let lsn = self.sleeping_on.load(Ordering::SeqCst);
        if lsn == 0 || (lsn > durable.lsn && !durable.failed) {
            return;
        }
        if self
            .sleeping_on
            .compare_exchange(lsn, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            // A failed wake means the loop is gone (shutting down): nothing to do.
            let _ = self.waker.wake();
        }
    }
}

/// The wall clock in microseconds since the Unix epoch, for log lines; commands are stamped
/// by [`Shared::clock`].
pub fn now_us() -> u64 {
    clock::wall_us()
}

/// 32 random bytes for a new terminal or device secret, by the `getrandom` system call (no
/// file descriptor: a server out of them still registers terminals, or declines cleanly).
pub fn random_secret() -> std::io::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    Ok(secret)
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The start of hold ids could not be logged (the log failed, or the ids are used up).
    #[error("cannot log the start of hold ids: {0}")]
    HoldIds(crate::store::StoreError),
    /// The listening address could not be bound.
    #[error("cannot listen: {0}")]
    Listen(io::Error),
    /// A thread, a poll or a socket option could not be set up.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    loops: Vec<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<()>>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl Server {
    /// Log the start of hold ids, bind, start the loops, the ticker and the snapshot thread.
    pub fn start(
        store: Arc<Store>,
        mut config: ServerConfig,
        operator_secret: [u8; 32],
    ) -> Result<Server, StartError> {
        // Every connection's decoder holds the frame limit to the range the protocol allows;
        // LOGON_OK must announce the limit enforced, not the one asked for.
        config.frame_bytes_max = wire::Decoder::new(config.frame_bytes_max).frame_bytes_max();
        let clock = clock::Clock::new(u64::try_from(config.clock_step_max.as_micros()).unwrap_or(u64::MAX));
        // Offers are shown to devices ahead of their records (push.rs): before any can be,
        // new hold ids skip past those a crashed run may have shown, durably.
        store
            .start_hold_ids(clock.now_us())
            .map_err(StartError::HoldIds)?;
        let listener = TcpListener::bind(config.listen).map_err(StartError::Listen)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let limiter = LogonLimiter::new(config.logon_failures_max, config.logon_failure_window);
        let threads = config.threads.max(1);
        let shared = Arc::new(Shared {
            store,
            stats: Stats::default(),
            config,
            operator_secret,
            limiter,
            connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            pushes: push::PushHub::default(),
            next_connection: std::sync::atomic::AtomicU64::new(1),
            clock,
            loops: std::sync::OnceLock::new(),
        });
        let mut loops = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        let mut event_loops = Vec::with_capacity(threads);
        for index in 0..threads {
            let listener = if index == 0 {
                Some(listener.try_clone()?)
            } else {
                None
            };
            let event_loop = event_loop::EventLoop::new(index, Arc::clone(&shared), listener)?;
            wakers.push(event_loop.waker());
            event_loops.push(event_loop);
        }
        shared.pushes.set_loops(wakers.clone());
        let handles: Arc<Vec<LoopHandle>> = Arc::new(
            wakers
                .iter()
                .map(|waker| LoopHandle {
                    accepted: parking_lot::Mutex::new(Vec::new()),
                    waker: Arc::clone(waker),
                    sleeping_on: AtomicU64::new(0),
                })
                .collect(),
        );
        let _ = shared.loops.set(Arc::clone(&handles));
        // Registered before the loops run, so that none can sleep unnoticed.
        shared.store.wal().add_notifier(Box::new(move |durable| {
            for handle in handles.iter() {
                handle.wake_for(durable);
            }
        }));
        for (index, event_loop) in event_loops.into_iter().enumerate() {
            let thread = std::thread::Builder::new()
                .name(format!("authd-loop-{index}"))
                .spawn(move || event_loop.run())?;
            loops.push(thread);
        }
        let ticker_shared = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name("authd-ticker".into())
            .spawn(move || tick(&ticker_shared))?;
        let snapshotter = if shared.config.snapshot_interval.is_zero() {
            None
        } else {
            let snapshot_shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name("authd-snapshot".into())
                .spawn(move || snapshot_on_schedule(&snapshot_shared))?;
            Some(thread)
        };
        Ok(Server {
            shared,
            local_addr,
            loops,
            ticker: Some(ticker),
            snapshotter,
            wakers,
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (statistics, store).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Ask the server to stop; [`Server::join`] waits for it.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }

    /// Wait for the loops, the ticker and the snapshot thread to finish (a snapshot under way
    /// is abandoned between parts), sync the log a last time, then snapshot what is new
    /// (unless snapshots are off).
    pub fn join(mut self) -> Result<(), crate::wal::WalError> {
        let mut panicked = false;
        for handle in self.loops.drain(..) {
            panicked |= handle.join().is_err();
        }
        for thread in [self.ticker.take(), self.snapshotter.take()]
            .into_iter()
            .flatten()
        {
            panicked |= thread.join().is_err();
        }
        let store = &self.shared.store;
        // The last sync first: it also surfaces a failed or panicked log writer (a wait for
        // durability could hang on one).
        let closed = store.close();
        // Nothing is appended any more, and all of it is synced: a snapshot now covers the
        // whole log, so the next start replays nothing (fast, and what lets a build with
        // other rules, or other settings, start: see the BOOKS file). Not with snapshots off,
        // on a failed log, or after a thread panicked (its books may be half changed).
        let snapshots_on = !self.shared.config.snapshot_interval.is_zero();
        if snapshots_on && closed.is_ok() && panicked {
            lifecycle::log(
                lifecycle::Level::Error,
                "snapshot_skipped",
                &[("at", &"stop"), ("reason", &"a server thread panicked")],
            );
        } else if snapshots_on && closed.is_ok() && store.has_records_after_snapshot() {
            let started = Instant::now();
            match store.snapshot_paced(None, || true) {
                Ok(path) => {
                    log_snapshot_written(&path, started, Some("stop"));
                    remove_redundant(store, None, || true);
                }
                // The log stays whole and durable: the next start replays its tail, and a
                // build with other rules or settings will refuse to.
                Err(error) => lifecycle::log(
                    lifecycle::Level::Error,
                    "snapshot_failed",
                    &[
                        ("error", &error),
                        ("at", &"stop"),
                        ("msg", &"the next start replays the log's tail; an authd with other rules or settings will refuse it"),
                    ],
                ),
            }
        }
        closed
    }
}

/// Old segments and snapshots are taken apart this many times faster than a background
/// snapshot is written (256 MB/s at the default 64): the 12 GB of segments that 300 s at
/// 500,000/s leave go in under a minute, a 4 MiB step every 16 ms.
pub const REMOVAL_PACE_FACTOR: std::num::NonZeroU64 = std::num::NonZeroU64::MIN.saturating_add(3);

/// Removes what the newest snapshot made redundant ([`Store::remove_redundant`]), after its
/// `snapshot_written`: logs `snapshot_cleanup` with what it removed, how long it took and how
/// many segments it kept for the log to write over ([`engine::wal::reuse`]), and
/// `snapshot_cleanup_failed` for each file it could not remove (tried again after the next
/// snapshot). The snapshot itself is written either way.
fn remove_redundant(store: &Store, pace: Option<std::num::NonZeroU64>, keep_going: impl Fn() -> bool) {
    let started = Instant::now();
    let swept = store.remove_redundant(pace, keep_going);
    if swept.removed > 0 || swept.left > 0 || swept.kept_for_reuse > 0 {
        lifecycle::log(
            lifecycle::Level::Info,
            "snapshot_cleanup",
            &[
                ("files", &swept.removed),
                ("bytes", &swept.bytes),
                ("ms", &started.elapsed().as_millis()),
                ("left", &swept.left),
                ("kept_for_reuse", &swept.kept_for_reuse),
            ],
        );
    }
    for error in swept.failed {
        lifecycle::log(
            lifecycle::Level::Warn,
            "snapshot_cleanup_failed",
            &[("error", &error)],
        );
    }
}

/// Logs `snapshot_written` with the file's size and how long it took (`at=stop` for the one
/// at a clean stop): what an operator sizes `--snapshot-write-mb-s` and the interval by.
fn log_snapshot_written(path: &std::path::Path, started: Instant, at: Option<&str>) {
    let bytes = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    let ms = started.elapsed().as_millis();
    let path = path.display();
    let mut fields: Vec<(&str, &dyn std::fmt::Display)> =
        vec![("path", &path), ("bytes", &bytes), ("ms", &ms)];
    if let Some(at) = &at {
        fields.push(("at", at));
    }
    lifecycle::log(lifecycle::Level::Info, "snapshot_written", &fields);
}

/// How often the ticker repeats `clock_step_ignored` while a step lasts.
const STEP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Default of `--snapshot-write-mb-s`: a snapshot of full hold tables (1.4-1.5 GB) takes
/// 22-24 s, well inside the default 300 s interval.
pub const SNAPSHOT_WRITE_MB_S_DEFAULT: u64 = 64;
/// Largest `--snapshot-write-mb-s`.
pub const SNAPSHOT_WRITE_MB_S_MAX: u64 = 100_000;

/// The nice value of the snapshot thread (the lowest priority).
const SNAPSHOT_NICE: i32 = 19;

/// How often the ticker and the snapshot thread look at the time (and at `stopping`).
const TICKER_NAP: Duration = Duration::from_millis(100);

/// The ticker: time-driven work, once a second, and the hold rings' next pages every nap.
fn tick(shared: &Shared) {
    let mut last_second = Instant::now();
    // When an ignored wall-clock step was last logged (at once, then once a minute).
    let mut step_logged: Option<Instant> = None;
    while !shared.stopping.load(Ordering::SeqCst) {
        // The hold rings' next pages, before payments reach them.
        shared.store.books().warm_holds(
            crate::limits::HOLDS_WARM_AHEAD,
            crate::limits::HOLDS_WARM_PAGES_MAX,
        );
        std::thread::sleep(TICKER_NAP);
        let now = Instant::now();
        if now.duration_since(last_second) < Duration::from_secs(1) {
            continue;
        }
        last_second = now;
        shared.stats.tick_second();
        let now_us = shared.clock.now_us();
        let ignored = shared.clock.ignored_us();
        if ignored.is_none() {
            step_logged = None;
        }
        let log_step = step_logged.is_none_or(|at: Instant| now.duration_since(at) >= STEP_LOG_EVERY);
        if let Some(ignored_us) = ignored.filter(|_| log_step) {
            step_logged = Some(now);
            lifecycle::log(
                lifecycle::Level::Warn,
                "clock_step_ignored",
                &[
                    ("wall_minus_clock_us", &ignored_us),
                    ("clock_us", &now_us),
                    (
                        "msg",
                        &"the wall clock stepped further than --clock-step-max-s: stamping with the clock's own estimate; restart authd to adopt the wall clock",
                    ),
                ],
            );
        }
        shared.store.advance_time(now_us);
        shared.pushes.route(shared.store.books(), &shared.clock, None);
    }
}

/// The snapshot thread (not started with a zero interval): a snapshot `snapshot_interval`
/// after the previous one ended, once the log moved.
fn snapshot_on_schedule(shared: &Shared) {
    // Below the event loops: encoding and writing a snapshot is seconds of CPU, which the loops
    // take back at once at this nice value. It holds a shard's lock while it copies the shard
    // (4-8 ms), and a thread this low could be kept from finishing by busier ones while loops
    // wait for that lock; measured, it did better all the same (BENCHMARKS.md, "Snapshots
    // under load"). Best effort: the nice value only goes up without privileges, and stays up,
    // as this thread only snapshots.
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SNAPSHOT_NICE) {
        lifecycle::log(
            lifecycle::Level::Warn,
            "snapshot_priority_unchanged",
            &[
                ("error", &error),
                ("msg", &"snapshots compete with requests for the CPU"),
            ],
        );
    }
    let mut snapshots = SnapshotSchedule::new(
        shared.config.snapshot_interval,
        Instant::now(),
        shared.store.wal().last_lsn(),
    );
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(TICKER_NAP);
        let now = Instant::now();
        // The log's position, not a count of records written: a record appended before a
        // snapshot but written after it is covered by it, and must not make the next one due.
        let records = shared.store.wal().last_lsn();
        if snapshots.due(now, records) {
            let keep_going = || !shared.stopping.load(Ordering::SeqCst);
            let started = Instant::now();
            let written = match shared
                .store
                .snapshot_paced(shared.config.snapshot_write_pace, keep_going)
            {
                Ok(path) => {
                    log_snapshot_written(&path, started, None);
                    let pace = shared
                        .config
                        .snapshot_write_pace
                        .map(|pace| pace.saturating_mul(REMOVAL_PACE_FACTOR));
                    remove_redundant(&shared.store, pace, keep_going);
                    true
                }
                Err(error @ crate::store::StoreError::SnapshotAbandoned) => {
                    lifecycle::log(
                        lifecycle::Level::Info,
                        "snapshot_abandoned",
                        &[("reason", &error)],
                    );
                    false
                }
                Err(error) => {
                    lifecycle::log(lifecycle::Level::Error, "snapshot_failed", &[("error", &error)]);
                    false
                }
            };
            // The interval runs from the end of this one: a paced snapshot of full hold tables
            // (~22 s) must not be followed at once by the next when the interval is shorter.
            snapshots.attempted(Instant::now(), records, written);
        }
    }
}
