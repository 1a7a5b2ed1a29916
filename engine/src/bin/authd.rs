//! `authd`: the authorization server. Parses flags, opens the data dir, recovers the books,
//! serves until SIGTERM or SIGINT. The work is in the `engine` library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use engine::books::BooksConfig;
use engine::cpus::CpuRange;
use engine::server::lifecycle::{log, Level};
use engine::server::{operator_key, random_secret, Server, ServerConfig, StartError};
use engine::store::{Store, StoreConfig};
use engine::wal::{FsyncMode, ReadOptions, WalConfig};
use engine::Currency;

/// When a decision counts as durable.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Fsync {
    /// fdatasync before every reply leaves (group commit: many replies per sync). Default.
    Always,
    /// Never sync: a machine crash loses acknowledged decisions. Benchmarks only.
    Never,
}

/// authd: the issuer's authorization engine for direct micro-payments.
#[derive(Parser, Debug)]
#[command(name = "authd", version, about, long_about = None)]
struct Flags {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Data directory: write-ahead log, snapshots, lock and operator key.
    #[arg(long, default_value = "./authd-data")]
    data_dir: PathBuf,
    /// Durability of replies.
    #[arg(long, value_enum, default_value_t = Fsync::Always)]
    fsync: Fsync,
    /// Shards of the books (a power of two up to 4096); fixed for a data directory.
    #[arg(long, default_value_t = engine::limits::SHARDS_DEFAULT)]
    shards: u32,
    /// Event loop threads, 1 to 256 (default: one per CPU authd may run on; see --cpus).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// CPUs authd's threads run on, as taskset writes them: "1", "0,2-3" (0 to 1023; default:
    /// the CPUs it was started with). --threads and recovery's replay workers then default to
    /// one per CPU given. Keeping a vCPU free of authd and its clients can keep a VM's host from
    /// stalling the disk (BENCHMARKS.md, "Short idles count as busy").
    #[arg(long, value_delimiter = ',', value_parser = CpuRange::parse)]
    cpus: Vec<CpuRange>,
    /// ISO 4217 numeric currency of the books (1..=999); fixed for a data directory.
    #[arg(long, default_value_t = 978, value_parser = clap::value_parser!(u16).range(1..=999))]
    currency: u16,
    /// Connections open at once (1 to 1000000); more are answered "busy" and closed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections_max: u64,
    /// Unanswered requests per connection before authd stops reading it (1 to 1000000).
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    in_flight_max: u32,
    /// Largest frame accepted, bytes, length prefix included (1024..=1048576).
    #[arg(long, default_value_t = wire::FRAME_BYTES_MAX, value_parser = clap::value_parser!(u32).range(1_024..=1_048_576))]
    frame_bytes_max: u32,
    /// Unwritten reply bytes per connection before authd stops reading it (65536 to
    /// 1073741824).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(65_536..=1_073_741_824))]
    write_bytes_max: u64,
    /// Milliseconds a new connection has to log on (1..=3600000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    logon_timeout_ms: u64,
    /// Longest busy-poll, microseconds, of an event loop before it sleeps: adapts to how soon
    /// clients answer, and spares a wake-up of a halted vCPU (tens of microseconds) per round
    /// trip; 0 sleeps at once.
    #[arg(long, default_value_t = engine::server::SPIN_US_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=engine::server::SPIN_US_MAX_MAX))]
    spin_us: u64,
    /// Largest step of the wall clock, seconds, that the clock commands are stamped with
    /// follows (1..=86400); a larger step, either way, is ignored and logged
    /// (`clock_step_ignored`) until a restart adopts the wall clock.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    clock_step_max_s: u64,
    /// Seconds a logged-on connection may stay silent with nothing in flight (1..=604800).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    idle_timeout_s: u64,
    /// Failed log-ons per peer (IPv4 address or IPv6 /64) per --logon-failure-window-s before it is refused
    /// (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    logon_failures_max: u32,
    /// The window of --logon-failures-max, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    logon_failure_window_s: u64,
    /// Seconds from the end of one snapshot to the next, taken only if the log moved (0:
    /// never, not even at a clean stop).
    #[arg(long, default_value_t = 300)]
    snapshot_interval_s: u64,
    /// Most megabytes (10^6 bytes) a second a snapshot writes while authd serves, synced
    /// every MiB, so that the log's fdatasyncs never wait behind a whole snapshot (0: as fast
    /// as the disk goes, synced once; at most 100000). The snapshot at a clean stop is not paced.
    #[arg(long, default_value_t = engine::server::SNAPSHOT_WRITE_MB_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=engine::server::SNAPSHOT_WRITE_MB_S_MAX))]
    snapshot_write_mb_s: u64,
    /// Idempotency window: remembered requests per shard (1 to 1048576).
    #[arg(long, default_value_t = engine::limits::IDEMPOTENCY_WINDOW_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(engine::limits::IDEMPOTENCY_WINDOW_MAX)))]
    idempotency_window: u32,
    /// Holds kept per shard (live and refundable), at least 1.
    #[arg(long, default_value_t = engine::limits::HOLDS_PER_SHARD_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..))]
    holds_per_shard_max: u32,
    /// Size of each log segment file, bytes (4152 to 1073741824).
    #[arg(long, default_value_t = engine::wal::SEGMENT_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u64).range(engine::wal::SEGMENT_BYTES_MIN..=engine::wal::SEGMENT_BYTES_MAX))]
    segment_bytes: u64,
    /// Mebibytes of old log segments kept to be written over instead of removed after a
    /// snapshot, so that the log does not zero-fill a new file per segment (0: remove them
    /// all but as many as --wal-preallocate-mb makes; at most 1048576).
    #[arg(long, default_value_t = engine::wal::REUSE_BYTES_MAX_DEFAULT >> 20,
          value_parser = clap::value_parser!(u64).range(0..=REUSE_MB_MAX))]
    wal_reuse_mb: u64,
    /// Mebibytes of log segments zero-filled ahead when authd starts, before it listens, and
    /// kept ahead by snapshots: a fresh data dir then does not zero-fill a segment per 64 MiB
    /// of records under load (0: none; at most 1048576). Rounded up to whole segments.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=REUSE_MB_MAX))]
    wal_preallocate_mb: u64,
    /// Write every page of the hold rings when authd starts, before it listens, so that no
    /// payment waits for one's first touch (a fresh ring takes a new page every 46 holds until
    /// it is full). Resident from the start: --shards x --holds-per-shard-max x 88 bytes, 1.5
    /// GB with the defaults, about a second here; refused if the machine has less available.
    #[arg(long)]
    prefault_holds: bool,
    /// Microseconds the log's writer waits before a commit that follows a batch of at least
    /// --commit-delay-min-records records: fewer, larger fdatasyncs under heavy load (0: never
    /// waits; at most 10000).
    #[arg(long, default_value_t = engine::wal::COMMIT_DELAY_US_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=engine::wal::COMMIT_DELAY_US_MAX))]
    commit_delay_us: u64,
    /// The batch size, in records, from which the next commit waits --commit-delay-us (at
    /// least 1).
    #[arg(long, default_value_t = engine::wal::COMMIT_DELAY_MIN_RECORDS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    commit_delay_min_records: u64,
    /// Cut the log at a corrupt record instead of refusing to start (what is cut is reported
    /// and kept aside), or go on from a snapshot whose log segments are all gone.
    #[arg(long)]
    truncate_corrupt_log: bool,
}

/// Largest --wal-reuse-mb and --wal-preallocate-mb (1 TiB).
const REUSE_MB_MAX: u64 = engine::wal::FREE_BYTES_MAX_MAX >> 20;

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("authd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn store_config(flags: &Flags) -> StoreConfig {
    let books = BooksConfig {
        shards: flags.shards,
        currency: Currency(flags.currency),
        idempotency_window: flags.idempotency_window,
        holds_per_shard_max: flags.holds_per_shard_max,
        ..BooksConfig::default()
    };
    let mut wal = WalConfig::new(&flags.data_dir);
    wal.segment_bytes = flags.segment_bytes;
    wal.reuse_bytes_max = flags.wal_reuse_mb << 20;
    wal.preallocate_bytes = flags.wal_preallocate_mb << 20;
    wal.commit_delay_us = flags.commit_delay_us;
    wal.commit_delay_min_records = flags.commit_delay_min_records;
    wal.fsync_mode = match flags.fsync {
        Fsync::Always => FsyncMode::Always,
        Fsync::Never => FsyncMode::Never,
    };
    StoreConfig {
        books,
        wal,
        read: ReadOptions {
            truncate_corrupt: flags.truncate_corrupt_log,
        },
    }
}

fn server_config(flags: &Flags) -> ServerConfig {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let mut config = ServerConfig::new(flags.listen);
    config.threads = flags.threads.map_or(cores, usize::from).max(1);
    config.connections_max = flags.connections_max as usize;
    config.in_flight_max = flags.in_flight_max.max(1);
    config.frame_bytes_max = flags.frame_bytes_max;
    config.write_bytes_max = flags.write_bytes_max as usize;
    config.logon_timeout = Duration::from_millis(flags.logon_timeout_ms);
    config.idle_timeout = Duration::from_secs(flags.idle_timeout_s);
    config.clock_step_max = Duration::from_secs(flags.clock_step_max_s);
    config.logon_failures_max = flags.logon_failures_max;
    config.logon_failure_window = Duration::from_secs(flags.logon_failure_window_s);
    config.snapshot_interval = Duration::from_secs(flags.snapshot_interval_s);
    config.snapshot_write_pace = std::num::NonZeroU64::new(flags.snapshot_write_mb_s * 1_000_000);
    config.spin_max = Duration::from_micros(flags.spin_us);
    config
}

/// File descriptors authd needs beside its connections: the log, snapshots, epoll and
/// wakers, the listener, a spare for the segment being prepared.
const FDS_BESIDE_CONNECTIONS: u64 = 64;

/// Raises the soft limit on open files to the hard one (the soft default, often 1024, is
/// below the default --connections-max), and warns if connections could still run out of
/// file descriptors: accepts then fail (logged) until some close.
fn raise_open_files_limit(connections_max: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            // Refused only by a policy stricter than the hard limit: the warning below says so.
            let _ = setrlimit(Resource::Nofile, raised);
        }
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = connections_max.saturating_add(FDS_BESIDE_CONNECTIONS);
    if current < needed {
        let warning = format!(
            "--connections-max {connections_max} needs about {needed} open files but the limit is {current}; \
             raise it (ulimit -n, LimitNOFILE=) or lower --connections-max"
        );
        log(Level::Warn, "open_files_limit", &[("msg", &warning)]);
    }
}

/// Pins authd to --cpus, if given, before any thread starts: every thread inherits it.
fn pin_to_cpus(cpus: &[CpuRange]) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let pinned = engine::cpus::pin_process(cpus).map_err(|error| {
        let asked: Vec<String> = cpus.iter().map(CpuRange::to_string).collect();
        anyhow::anyhow!(
            "--cpus {}: {error}: pass CPUs among those, or leave --cpus out",
            asked.join(",")
        )
    })?;
    log(Level::Info, "cpus_pinned", &[("cpus", &pinned)]);
    Ok(())
}

/// Refuses --prefault-holds, before the data dir is opened, when the hold rings would take
/// more than the memory available: the least of the kernel's `MemAvailable` and what this
/// process's memory cgroup may still take; no check where neither can be read. Better than
/// the OOM killer stopping the start half way. The rest of the books (idempotency windows,
/// accounts) is not counted.
fn check_memory_for_prefault(books: &BooksConfig) -> anyhow::Result<()> {
    let needed = books.hold_rings_bytes();
    let (machine, cgroup) = (mem_available_bytes(), cgroup_memory_left_bytes());
    let Some(available) = [machine, cgroup].into_iter().flatten().min() else {
        return Ok(());
    };
    if needed > available {
        let said =
            |bytes: Option<u64>| bytes.map_or("unknown".to_string(), |bytes| format!("{} MiB", bytes >> 20));
        anyhow::bail!(
            "--prefault-holds would make the hold rings resident at once: {} MiB ({} shards x {} holds), \
             and {} MiB is available (MemAvailable: {}; this process's memory cgroup's room: {}); free \
             memory, on a new data dir pass a smaller --holds-per-shard-max or fewer --shards, or start \
             without --prefault-holds",
            needed >> 20,
            books.shards,
            books.holds_per_shard_max,
            available >> 20,
            said(machine),
            said(cgroup)
        );
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    let kib = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// What this process's memory cgroup may still take, in bytes (see [`cgroup_room`]): cgroup
/// v2 (`0::/path` in /proc/self/cgroup: `memory.max`, `memory.current`, `file` in
/// `memory.stat`) or v1 (`N:memory:/path`: `memory.limit_in_bytes`, `memory.usage_in_bytes`,
/// `total_cache`). None where the files are not there (a container that shows its host's path,
/// say) or there is no limit. Only the process's own cgroup is read, not its parents'.
fn cgroup_memory_left_bytes() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = std::path::Path::new("/sys/fs/cgroup");
    let v1 = cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|name| name == "memory")
            .then_some(path)
    });
    let (dir, files) = match v1 {
        Some(path) => (
            root.join("memory").join(path.trim_start_matches('/')),
            ["memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache"],
        ),
        None => {
            let path = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
            (
                root.join(path.trim_start_matches('/')),
                ["memory.max", "memory.current", "file"],
            )
        }
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let stat = read("memory.stat")?;
    cgroup_room(&read(files[0])?, &read(files[1])?, &stat, files[2])
}

/// A memory cgroup's room: its `limit` less its `usage` without the file cache (`cache_key`
/// in its `stat`), which the kernel reclaims before it refuses memory. A cgroup that has read
/// or written much sits near its limit in cache. None for no limit ("max") or unreadable text.
fn cgroup_room(limit: &str, usage: &str, stat: &str, cache_key: &str) -> Option<u64> {
    let limit = limit.trim().parse::<u64>().ok()?;
    let usage = usage.trim().parse::<u64>().ok()?;
    let cache = stat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == cache_key).then(|| value.trim().parse::<u64>().ok())?
    })?;
    Some(limit.saturating_sub(usage.saturating_sub(cache)))
}

fn prefault_holds(store: &Store) {
    let books = store.books();
    let mb = books.holds_unwarmed_bytes() >> 20;
    let msg = "writing every page of the hold rings before listening";
    log(Level::Info, "holds_prefaulting", &[("mb", &mb), ("msg", &msg)]);
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let pages = books.prefault_holds(threads);
    let ms = started.elapsed().as_millis();
    log(Level::Info, "holds_prefaulted", &[("pages", &pages), ("ms", &ms)]);
}

fn cannot_listen(flags: &Flags, error: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot listen on {}: {error}; is another program (another authd?) listening there? stop it, or pass --listen with a free address",
        flags.listen
    )
}

fn run(flags: Flags) -> anyhow::Result<()> {
    // First: every thread authd starts inherits the affinity, and so does the default of
    // --threads (one loop per CPU authd may run on).
    pin_to_cpus(&flags.cpus)?;
    raise_open_files_limit(flags.connections_max);
    // An address in use fails the start at once, not after recovery and segments written
    // ahead took their time, and before the data dir is made; bound as the server binds it.
    // Most often it is another authd on the same defaults: then its lock says which.
    if let Err(error) = std::net::TcpListener::bind(flags.listen) {
        if flags.data_dir.is_dir() {
            if let Err(locked @ engine::wal::WalError::Locked { .. }) =
                engine::wal::DirLock::acquire(&flags.data_dir)
            {
                return Err(locked.into());
            }
        }
        return Err(cannot_listen(&flags, error));
    }
    if flags.wal_preallocate_mb > 0 {
        let msg = "after recovery, zero-filling the free log segments missing, before listening";
        log(
            Level::Info,
            "log_preallocating",
            &[("mb", &flags.wal_preallocate_mb), ("msg", &msg)],
        );
    }
    let config = store_config(&flags);
    if flags.prefault_holds {
        // Bad flags get their own error first, not a memory figure computed from them.
        config.books.validate()?;
        check_memory_for_prefault(&config.books)?;
    }
    let (store, recovered) = Store::open(config)?;
    report_recovery(&flags, &recovered);
    if flags.prefault_holds {
        prefault_holds(&store);
    }
    if matches!(flags.fsync, Fsync::Never) {
        let warning = "replies leave before their decisions are on disk; a crash of the machine loses acknowledged decisions; benchmarks only";
        log(Level::Warn, "fsync_never", &[("msg", &warning)]);
    }
    let fresh = random_secret().map_err(|error| {
        anyhow::anyhow!("cannot draw a random operator key: {error}; check that the kernel's getrandom works")
    })?;
    let operator_secret = operator_key::load_or_create(&flags.data_dir, fresh)?;
    let server =
        Server::start(Arc::new(store), server_config(&flags), operator_secret).map_err(
            |error| match error {
                StartError::Listen(error) => cannot_listen(&flags, error),
                other => other.into(),
            },
        )?;
    println!("authd listening on {}", server.local_addr());
    log(
        Level::Info,
        "listening",
        &[
            ("addr", &server.local_addr()),
            ("data_dir", &flags.data_dir.display()),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    log(
        Level::Info,
        "stopping",
        &[("msg", &"finishing requests in flight")],
    );
    server.shutdown();
    let server_replies = server.shared().stats.replies();
    server.join()?;
    log(Level::Info, "stopped", &[("replies", &server_replies)]);
    Ok(())
}

fn report_recovery(flags: &Flags, recovered: &engine::store::Recovered) {
    for skipped in &recovered.skipped_snapshots {
        log(Level::Warn, "snapshot_skipped", &[("error", skipped)]);
    }
    for failed in &recovered.removal_failed {
        log(Level::Warn, "snapshot_cleanup_failed", &[("error", failed)]);
    }
    if let Some(torn) = &recovered.log.torn_tail {
        log(
            Level::Warn,
            "torn_tail_cut",
            &[
                ("file", &torn.file.display()),
                ("offset", &torn.offset),
                ("bytes", &torn.bytes),
            ],
        );
    }
    if let Some((first, last)) = recovered.log.lsns_skipped {
        log(
            Level::Warn,
            "log_lsns_skipped",
            &[
                ("first", &first),
                ("last", &last),
                (
                    "msg",
                    &"the newest snapshot covers records the log no longer holds; --truncate-corrupt-log went on from the snapshot",
                ),
            ],
        );
    }
    if recovered.log.preallocated > 0 {
        log(
            Level::Info,
            "log_preallocated",
            &[
                ("segments", &recovered.log.preallocated),
                ("segment_bytes", &flags.segment_bytes),
            ],
        );
    }
    for kept in &recovered.log.kept_aside {
        log(Level::Warn, "log_bytes_kept_aside", &[("file", &kept.display())]);
    }
    if let Some(cut) = &recovered.log.cut {
        log(
            Level::Warn,
            "corrupt_log_cut",
            &[("file", &cut.file.display()), ("offset", &cut.offset)],
        );
    }
    if let Some(rerecorded) = &recovered.rerecorded {
        let before = match rerecorded.before {
            None => "no BOOKS file".to_string(),
            Some(before) => format!("{before}"),
        };
        log(
            Level::Info,
            "books_rerecorded",
            &[
                ("before", &before),
                (
                    "after",
                    &engine::store::books_file::Recorded::of(&store_config(flags).books),
                ),
                ("files_removed", &rerecorded.removed.len()),
                (
                    "msg",
                    &"nothing was left to replay: the log goes on under this authd's rules and settings",
                ),
            ],
        );
    }
    let snapshot = recovered
        .snapshot
        .as_ref()
        .map_or("none".to_string(), |(path, _)| path.display().to_string());
    log(
        Level::Info,
        "recovered",
        &[
            ("data_dir", &flags.data_dir.display()),
            ("snapshot", &snapshot),
            ("records_replayed", &recovered.records_applied),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::cgroup_room;

    #[test]
    fn a_cgroups_room_counts_its_file_cache_as_free() {
        let stat_v1 = "cache 205000000\nrss 2000000\ntotal_cache 210000000\ntotal_rss 2000000\n";
        // 1 GB limit, 261 MB used of which 210 MB cache: 949 MB left, not 739.
        assert_eq!(
            cgroup_room("1000000000\n", "261000000\n", stat_v1, "total_cache"),
            Some(949_000_000)
        );
        let stat_v2 = "anon 50000000\nfile 400000000\nkernel 1000000\n";
        assert_eq!(
            cgroup_room("500000000", "460000000", stat_v2, "file"),
            Some(440_000_000)
        );
        // Over its limit in anonymous memory: no room.
        assert_eq!(cgroup_room("100", "300", "file 50\n", "file"), Some(0));
        assert_eq!(
            cgroup_room("max\n", "460000000", stat_v2, "file"),
            None,
            "no limit"
        );
        assert_eq!(
            cgroup_room("500", "400", "anon 1\n", "file"),
            None,
            "no cache line"
        );
        assert_eq!(cgroup_room("500", "x", stat_v2, "file"), None);
    }
}
