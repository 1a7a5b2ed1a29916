//! loadgen: how fast authd really is on this machine, measured the way serious latency tools
//! measure.
//!
//! # Design
//!
//! loadgen shares the machine with authd, so it is built to cost less per request than authd
//! does (it prints what each side spends):
//!
//! * A few threads, each a mio event loop over many terminal connections ([`worker`]). Each
//!   connection has fixed read and write buffers and a fixed ring of requests in flight
//!   ([`connection`]); requests are pre-encoded templates patched in place ([`template`]);
//!   replies are read by offset; latencies go into HdrHistograms ([`recorder`]). Nothing on the
//!   request path allocates, formats or locks.
//! * Two modes. Closed loop (`--connections C --pipeline P`): every connection keeps P flows in
//!   progress, as fast as replies come. Open loop (`--rate R`): flows start on a fixed schedule
//!   whatever the server does, and latency counts from when a request was *due*, so a stall is
//!   charged to every request it delayed ([`schedule`], coordinated omission corrected as
//!   wrk2 does). A timerfd paces sends to the microsecond rather than epoll's millisecond.
//!   Flows due before the stop and not yet sent go out during the drain; those without a reply
//!   at its deadline are errors and count in the latency as waiting until then (a lower bound),
//!   so a stall at the end cannot vanish from the figures.
//! * A workload is a weighted mix of flows (purchase; authorize then capture; refund; ...) over
//!   payers drawn uniformly or by a Zipf law ([`workload`], [`flow`]).
//! * Offer flows (`--mix offer=N`): the terminal offers, a simulated payer device (one gateway
//!   connection per thread, in the same event loop) accepts with the PIN after `--think-time-us`,
//!   and the OFFER_OUTCOME push to the terminal ends the flow; offer-to-outcome latency has its
//!   own histogram ([`worker`]).
//! * Every approved reply is booked as authd books it; afterwards the books check reads the
//!   merchants', the fee account's and a sample of payers' balances and compares ([`books`]).
//! * Credentials come from `authctl provision`'s CSV or are opened by loadgen over a pipelined
//!   operator connection ([`provision`]); `--spawn` starts and stops a release authd
//!   ([`spawn`]).
//! * Results: a progress line per second, a summary, `--json`, `--hgrm`, `--plot` ([`report`],
//!   [`plot`]); with the operator key, the summary also gives authd's fdatasyncs while
//!   measuring, from its STATS counters, so a tail can be told from a slow disk, and for an
//!   open loop of purchases and offers the disk floor: the least share of requests that
//!   fdatasyncs alone held past 1 to 20 ms ([`authd_log`]).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`run`] (this file) | one run from flags to report: provision, connect, threads, check |
//! | [`worker`] | a thread's event loop |
//! | [`connection`] | a terminal connection: log-on, buffers, in-flight ring, reply parsing |
//! | [`template`] | pre-encoded request frames |
//! | [`schedule`] | open-loop due times |
//! | [`workload`] | `--mix`, `--distribution`, the random generator, Zipf |
//! | [`flow`] | flows step by step and the money they move |
//! | [`recorder`] | per-thread histograms and counts |
//! | [`books`] | the books check |
//! | [`authd_log`] | authd's log counters (fdatasyncs) during the run |
//! | [`cpu_wait`] | how long loadgen's and authd's threads waited for a CPU |
//! | [`machine_cpu`] | the machine's CPU time by state: busy, I/O wait, idle, stolen by a VM's host |
//! | [`provision`] | credentials: CSV or self-provisioned |
//! | [`spawn`] | starting and stopping authd |
//! | [`report`], [`plot`] | outputs |
//! | [`clock`] | monotonic and CPU clocks |

pub mod authd_log;
pub mod books;
pub mod clock;
pub mod connection;
pub mod cpu_wait;
pub mod flow;
pub mod machine_cpu;
pub mod plot;
pub mod provision;
pub mod recorder;
pub mod report;
pub mod schedule;
pub mod spawn;
pub mod spin;
pub mod template;
pub mod worker;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use wire::client::Client;
use wire::logon::Secret;
use wire::Role;

use crate::authd_log::AuthdLog;
use crate::books::{BooksCheck, Snapshot};
use crate::clock::{now_ns, other_process_cpu_ns, process_cpu_ns};
use crate::connection::{Connection, TerminalLogon, IN_FLIGHT_MAX, SEQUENCE_SPAN};
use crate::cpu_wait::{CpuWait, Waits};
use crate::flow::BooksTally;
use crate::machine_cpu::{BySecond, CpuShares, StatTicks};
use crate::provision::{Credentials, Device, ProvisionPlan};
use crate::recorder::{latency_histogram, Errors, Interval, OfferCounts};
use crate::report::{Report, Second};
use crate::schedule::NS_PER_S;
use crate::spawn::Spawned;
use crate::worker::{Mode, Plan, Timeline};
use crate::workload::{Distribution, FlowKind, Mix};

/// Most threads.
pub const THREADS_MAX: usize = 64;
/// Most connections.
pub const CONNECTIONS_MAX: u32 = 10_000;
/// Longest --duration, seconds (a day).
pub const DURATION_S_MAX: f64 = 86_400.0;
/// Longest --warmup, seconds.
pub const WARMUP_S_MAX: f64 = 3_600.0;
/// Highest --rate, flows per second.
pub const RATE_MAX: f64 = 100_000_000.0;
/// Longest --pacing-us.
pub const PACING_US_MAX: u64 = 1_000_000;
/// Longest --think-time-us (a minute; offers loadgen sends expire after two).
pub const THINK_TIME_US_MAX: u64 = 60_000_000;
/// Most self-provisioned payers (the credentials file's row limit).
pub const PAYERS_MAX: u32 = 10_000_000;
/// Most self-provisioned merchants.
pub const MERCHANTS_MAX: u32 = 100_000;
/// Longest --drain-s: seconds flows in progress get to finish after the run (plus the think
/// time of offer flows) before they count as unanswered.
pub const DRAIN_S_MAX: u64 = 3_600;

// No latency can reach the histograms' bound: a run lasts at most this long.
const _: () = assert!(
    (WARMUP_S_MAX + DURATION_S_MAX) as u64 + DRAIN_S_MAX + THINK_TIME_US_MAX / 1_000_000
        < crate::recorder::LATENCY_NS_MAX / 1_000_000_000
);

/// How long an operator connection waits to connect, and for each read or write.
const OPERATOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the server is.
#[derive(Clone, Debug)]
pub enum Target {
    /// A running authd.
    Connect(SocketAddr),
    /// Start one: binary (None = next to loadgen), `--fsync` mode, extra flags.
    Spawn {
        /// The authd binary.
        authd: Option<PathBuf>,
        /// `--fsync` mode.
        fsync: String,
        /// More authd flags.
        extra: Vec<String>,
    },
}

/// Everything a run needs (main.rs fills it from the flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where.
    pub target: Target,
    /// Credentials CSV (else self-provisioned).
    pub credentials: Option<PathBuf>,
    /// Operator key file (else `<data dir>/operator.key`).
    pub key: Option<PathBuf>,
    /// The authd data dir (for the operator key).
    pub data_dir: Option<PathBuf>,
    /// Operator id.
    pub operator_id: u32,
    /// Load threads.
    pub threads: usize,
    /// Connections in all.
    pub connections: u32,
    /// Closed loop: flows in progress per connection.
    pub pipeline: u32,
    /// Open loop: flows per second (None = closed loop).
    pub rate: Option<f64>,
    /// Requests in flight per connection, most (open loop; the server's limit also applies).
    pub in_flight_max: u32,
    /// Flow mix.
    pub mix: Mix,
    /// The mix as given.
    pub mix_text: String,
    /// Payer choice.
    pub distribution: Distribution,
    /// The distribution as given.
    pub distribution_text: String,
    /// Every terminal belongs to one merchant.
    pub hot_merchant: bool,
    /// Self-provisioning: payers, merchants, balance, fee.
    pub payers: u32,
    /// Merchants to register.
    pub merchants: u32,
    /// Funds per payer, minor units.
    pub payer_balance: u64,
    /// Merchant fee, basis points (known when self-provisioned or given).
    pub fee_bps: Option<u16>,
    /// Amount range, minor units.
    pub amount_minor: (u64, u64),
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds before measuring.
    pub warmup_s: f64,
    /// Payers the books check reads (0 = no books check).
    pub books_sample: usize,
    /// Print a line per second.
    pub progress: bool,
    /// Random seed.
    pub seed: u64,
    /// Busy-poll instead of sleeping in epoll.
    pub spin: bool,
    /// Closed loop: busy-poll for replies up to this long before sleeping (adaptive; 0: off).
    pub spin_us: u64,
    /// Open loop: send due flows in batches once the oldest waited this long, microseconds.
    pub pacing_us: u64,
    /// Offer flows: the simulated payer's think time before accepting, microseconds.
    pub think_time_us: u64,
    /// Seconds flows in progress get to finish after the run.
    pub drain_s: u64,
}

struct Operator {
    address: SocketAddr,
    id: u32,
    secret: Secret,
}

impl Operator {
    fn connect(&self) -> anyhow::Result<Client> {
        // A timeout on the log-on too: a wedged authd that still accepts connections must not
        // hang loadgen's readings of its counters or books.
        Client::connect_timeout(
            self.address,
            Role::Operator,
            self.id,
            self.secret,
            OPERATOR_TIMEOUT,
        )
        .with_context(|| format!("operator log-on to {} failed", self.address))
    }
}

/// Runs the load described by `config` and returns its report (also printed as it goes).
pub fn run(config: &Config) -> anyhow::Result<Report> {
    check_config(config)?;
    let spawned = match &config.target {
        Target::Spawn { authd, fsync, extra } => {
            let binary = spawn::locate_authd(authd.as_deref())?;
            eprintln!(
                "loadgen: starting {} --fsync {fsync} {}",
                binary.display(),
                extra.join(" ")
            );
            Some(Spawned::start(&binary, fsync, extra)?)
        }
        Target::Connect(_) => None,
    };
    let address = match (&config.target, &spawned) {
        (_, Some(spawned)) => spawned.address,
        (Target::Connect(address), None) => *address,
        (Target::Spawn { .. }, None) => unreachable!("spawned above"),
    };
    let operator = operator_secret(config, spawned.as_ref())?.map(|secret| Operator {
        address,
        id: config.operator_id,
        secret,
    });
    let report = run_against(
        config,
        address,
        operator.as_ref(),
        spawned.as_ref().map(Spawned::pid),
    );
    if let Some(spawned) = spawned {
        eprintln!("loadgen: stopping authd (SIGTERM)");
        spawned.stop()?;
    }
    report
}

fn check_config(config: &Config) -> anyhow::Result<()> {
    if config.threads == 0 || config.threads > THREADS_MAX {
        bail!("--threads must be 1..={THREADS_MAX}");
    }
    if config.connections == 0 || config.connections > CONNECTIONS_MAX {
        bail!("--connections must be 1..={CONNECTIONS_MAX}");
    }
    if (config.connections as usize) < config.threads {
        bail!(
            "--connections ({}) must be at least --threads ({})",
            config.connections,
            config.threads
        );
    }
    if config.pipeline == 0 {
        bail!("--pipeline must be at least 1");
    }
    if config.rate.is_some_and(|rate| !(rate > 0.0 && rate <= RATE_MAX)) {
        bail!("--rate must be above 0 and at most {RATE_MAX}");
    }
    if !(config.duration_s > 0.0 && config.duration_s <= DURATION_S_MAX) {
        bail!("--duration must be above 0 and at most {DURATION_S_MAX} seconds");
    }
    if !(config.warmup_s >= 0.0 && config.warmup_s <= WARMUP_S_MAX) {
        bail!("--warmup must be 0 to {WARMUP_S_MAX} seconds");
    }
    let (low, high) = config.amount_minor;
    if low == 0 || low > high {
        bail!("amounts: need 0 < --amount-min <= --amount-max");
    }
    if config.pacing_us > PACING_US_MAX {
        bail!("--pacing-us must be at most {PACING_US_MAX}");
    }
    if config.think_time_us > THINK_TIME_US_MAX {
        bail!("--think-time-us must be at most {THINK_TIME_US_MAX}");
    }
    if config.drain_s == 0 || config.drain_s > DRAIN_S_MAX {
        bail!("--drain-s must be 1..={DRAIN_S_MAX}");
    }
    if config.in_flight_max == 0 || config.in_flight_max > IN_FLIGHT_MAX {
        bail!("--in-flight-max must be 1..={IN_FLIGHT_MAX}");
    }
    if config.payers == 0 || config.payers > PAYERS_MAX {
        bail!("--payers must be 1..={PAYERS_MAX}");
    }
    if config.merchants == 0 || config.merchants > MERCHANTS_MAX {
        bail!("--merchants must be 1..={MERCHANTS_MAX}");
    }
    if config.fee_bps.is_some_and(|fee| fee > 10_000) {
        bail!("--fee-bps must be at most 10000 (100%)");
    }
    Ok(())
}

fn operator_secret(config: &Config, spawned: Option<&Spawned>) -> anyhow::Result<Option<Secret>> {
    let path = match (&config.key, &config.data_dir, spawned) {
        (Some(key), _, _) => key.clone(),
        (None, Some(dir), _) => dir.join("operator.key"),
        (None, None, Some(spawned)) => spawned.operator_key(),
        (None, None, None) => return Ok(None),
    };
    provision::read_operator_key(&path).map(Some)
}

fn credentials(config: &Config, operator: Option<&Operator>) -> anyhow::Result<(Credentials, Option<u16>)> {
    if let Some(path) = &config.credentials {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --credentials {}", path.display()))?;
        let credentials = provision::parse_csv(&text)
            .map_err(|error| anyhow::anyhow!("--credentials {}: {error}", path.display()))?;
        return Ok((credentials, config.fee_bps));
    }
    let Some(operator) = operator else {
        bail!("loadgen needs credentials: pass --credentials FILE (from authctl provision), or --data-dir / --key for the operator key so loadgen provisions itself, or --spawn");
    };
    let plan = ProvisionPlan {
        merchants: config.merchants,
        terminals: config.connections,
        payers: config.payers,
        payer_balance: config.payer_balance,
        fee_bps: config.fee_bps.unwrap_or(0),
        hot_merchant: config.hot_merchant,
    };
    let started = now_ns();
    let mut client = operator.connect()?;
    let credentials = provision::provision(&mut client, &plan)?;
    eprintln!(
        "loadgen: provisioned {} merchants, {} terminals, {} payers in {:.2} s",
        credentials.merchants.len(),
        credentials.terminals.len(),
        credentials.payers.len(),
        (now_ns() - started) as f64 / 1e9
    );
    Ok((credentials, Some(plan.fee_bps)))
}

/// Opens every connection (blocking log-ons) and deals them to threads round robin.
fn connect_all(
    config: &Config,
    address: SocketAddr,
    credentials: &Credentials,
) -> anyhow::Result<Vec<Vec<Connection>>> {
    let mut threads: Vec<Vec<Connection>> = (0..config.threads).map(|_| Vec::new()).collect();
    let terminals = credentials.terminals.len() as u64;
    let run_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_micros() as u64);
    let wanted = match config.rate {
        Some(_) => config.in_flight_max,
        None => config.pipeline,
    };
    for index in 0..u64::from(config.connections) {
        let terminal = credentials.terminals[(index % terminals) as usize];
        // Connections sharing a terminal use disjoint id ranges.
        let id_base = run_base + (index / terminals) * SEQUENCE_SPAN;
        let logon = TerminalLogon {
            terminal: terminal.id,
            secret: terminal.secret,
            merchant: terminal.merchant,
        };
        let connection = Connection::open(address, logon, id_base, wanted)
            .with_context(|| format!("connection {index} (terminal {}) to {address}", terminal.id))?;
        if config.rate.is_none() && connection.in_flight_max < config.pipeline {
            eprintln!(
                "loadgen: the server allows {} requests in flight per connection; --pipeline {} is capped",
                connection.in_flight_max, config.pipeline
            );
        }
        threads[(index as usize) % config.threads].push(connection);
    }
    Ok(threads)
}

/// Logs on one gateway device per thread (`Role::PayerDevice`).
fn connect_gateways(
    config: &Config,
    address: SocketAddr,
    devices: &[Device],
) -> anyhow::Result<Vec<Connection>> {
    devices
        .iter()
        .map(|device| {
            Connection::open_as(
                address,
                Role::PayerDevice,
                device.id,
                &device.secret,
                1,
                config.in_flight_max,
            )
            .with_context(|| format!("gateway device {} to {address}", device.id))
        })
        .collect()
}

fn run_against(
    config: &Config,
    address: SocketAddr,
    operator: Option<&Operator>,
    authd_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let (credentials, fee_bps) = credentials(config, operator)?;
    let sample = books::PayerSample::new(credentials.payers.len(), config.books_sample);
    let books_operator = match (operator, config.books_sample) {
        (Some(operator), 1..) => Some(operator),
        _ => {
            eprintln!("loadgen: no operator key (or --books-sample 0): the books check will not run");
            None
        }
    };
    // Each reading of the books logs on afresh: one connection held open through the run
    // would meet authd's idle timeout on a long one.
    let before = match books_operator {
        Some(operator) => Some(
            books::snapshot(&mut operator.connect()?, &credentials, &sample)
                .context("reading the books before the run")?,
        ),
        None => None,
    };
    let offers = config.mix.contains(FlowKind::Offer);
    let gateways = match (offers, operator) {
        (false, _) => Vec::new(),
        (true, None) => bail!("offer flows need the operator key (to set the payers' PIN and register gateway devices): pass --data-dir, --key or --spawn"),
        (true, Some(operator)) => {
            let started = now_ns();
            let devices = provision::prepare_offers(&mut operator.connect()?, &credentials.payers, config.threads)?;
            eprintln!(
                "loadgen: set PIN on {} payers, registered {} gateway devices in {:.2} s",
                credentials.payers.len(),
                devices.len(),
                (now_ns() - started) as f64 / 1e9
            );
            devices
        }
    };
    let connections = connect_all(config, address, &credentials)?;
    let mut gateways = connect_gateways(config, address, &gateways)?.into_iter();
    let accounts: Arc<[u64]> = credentials.payers.clone().into();
    let start_ns = now_ns() + 50_000_000;
    let measure_from_ns = start_ns + (config.warmup_s * 1e9) as u64;
    let stop_ns = measure_from_ns + (config.duration_s * 1e9) as u64;
    // An offer flow in progress at the stop may still have its think time ahead.
    let think_ns = if offers { config.think_time_us * 1_000 } else { 0 };
    let timeline = Timeline {
        start_ns,
        measure_from_ns,
        stop_ns,
        drain_deadline_ns: stop_ns + config.drain_s * NS_PER_S + think_ns,
    };
    let (sender, receiver) = mpsc::sync_channel::<Interval>(4096);
    let threads = config.threads;
    let mut handles = Vec::with_capacity(threads);
    for (index, connections) in connections.into_iter().enumerate() {
        let plan = Plan {
            mode: match config.rate {
                Some(rate) => Mode::Open {
                    rate_per_s: rate / threads as f64,
                },
                None => Mode::Closed {
                    pipeline: config.pipeline,
                },
            },
            mix: config.mix.clone(),
            sampler: config.distribution.sampler(accounts.len() as u64),
            accounts: Arc::clone(&accounts),
            books_sample: sample,
            merchants: credentials.merchants.len(),
            fee_bps: fee_bps.unwrap_or(0),
            amount_minor: config.amount_minor,
            timeline,
            seed: config.seed.wrapping_add(index as u64 * 0x1000_0000_01b3),
            progress: sender.clone(),
            spin: config.spin,
            spin_ns_max: if config.rate.is_none() {
                config.spin_us * 1_000
            } else {
                0
            },
            pacing_ns: config.pacing_us * 1_000,
            think_ns: config.think_time_us * 1_000,
            offer_tag: index as u32 + 1,
            // Thread i's flows fall due i / rate after the first thread's, so that together
            // the threads' flows are evenly spaced.
            // (At most a second: a rate below one flow a second needs no phasing.)
            phase_ns: config
                .rate
                .map_or(0, |rate| (index as f64 * 1e9 / rate).min(1e9) as u64),
        };
        let gateway = gateways.next();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || worker::run(plan, connections, gateway))
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    drop(sender);
    let watched = watch(config, &timeline, receiver, &handles, authd_pid, operator);
    let mut outcomes = Vec::with_capacity(threads);
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?
            .context("a load thread failed")?;
        outcomes.push(outcome);
    }
    let mut tally = BooksTally::new(sample, credentials.merchants.len(), fee_bps.unwrap_or(0));
    let mut latency = latency_histogram();
    let mut service = latency_histogram();
    let mut offer_outcome = latency_histogram();
    let mut accept = latency_histogram();
    let mut offer_counts = OfferCounts::default();
    let mut codes = [0u64; 256];
    let mut errors = Errors::default();
    let (mut requests, mut flows_started, mut backlog_max) = (0, 0, 0);
    for outcome in &outcomes {
        tally.merge(&outcome.books);
        latency
            .add(&outcome.recorder.latency)
            .context("merge histograms")?;
        service
            .add(&outcome.recorder.service)
            .context("merge histograms")?;
        for (total, part) in codes.iter_mut().zip(outcome.recorder.codes) {
            *total += part;
        }
        errors.add(&outcome.recorder.errors);
        offer_outcome
            .add(&outcome.recorder.offer_outcome)
            .context("merge histograms")?;
        offer_counts.add(&outcome.recorder.offers);
        accept.add(&outcome.recorder.accept).context("merge histograms")?;
        requests += outcome.recorder.replies;
        flows_started += outcome.flows_started;
        backlog_max = backlog_max.max(outcome.backlog_max);
    }
    // The run's figures stand if the books cannot be read again: the report says so.
    let books = match (books_operator, before) {
        (Some(operator), Some(before)) => Some(
            check_books(operator, &credentials, &sample, &before, &tally, fee_bps)
                .map_err(|error| format!("{error:#}")),
        ),
        _ => None,
    };
    let measured_s = (timeline.stop_ns - timeline.measure_from_ns) as f64 / 1e9;
    Ok(Report {
        mode: if config.rate.is_some() { "open" } else { "closed" },
        settings: settings_json(config, &credentials, fee_bps),
        warmup_s: config.warmup_s,
        measured_s,
        requests,
        flows_started,
        latency,
        service,
        codes: codes
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(code, count)| (code as u8, *count))
            .collect(),
        errors,
        books,
        loadgen_cpu_ns_per_request: watched.loadgen_cpu_ns as f64 / requests.max(1) as f64,
        authd_cpu_ns_per_request: watched.authd_cpu_ns.map(|ns| ns as f64 / requests.max(1) as f64),
        backlog_max,
        follow_ups_dropped: tally.follow_ups_dropped,
        lower_bounds: outcomes.iter().map(|outcome| outcome.recorder.lower_bounds).sum(),
        answered_after_stop: outcomes
            .iter()
            .map(|outcome| outcome.recorder.answered_after_stop)
            .sum(),
        timeline: watched.timeline,
        offer_outcome: offers.then_some(offer_outcome),
        accept,
        offers: offer_counts,
        think_time_us: config.think_time_us,
        authd_log: watched.authd_log,
        floor_holds: config.mix.first_requests_all_logged(),
        cpu_wait: CpuWait::new(
            outcomes
                .iter()
                .enumerate()
                .filter_map(|(index, outcome)| Some((format!("loadgen-{index}"), outcome.cpu_wait_ms_per_s?)))
                .collect(),
            watched.authd_cpu_wait,
        ),
        machine_cpu: watched.machine_cpu,
    })
}

/// authd's log counters, over a connection of their own (a log-on per reading: one held open
/// through the run would meet authd's idle timeout), or `None`, said on stderr, if they cannot
/// be read: the run's figures stand without them.
fn read_log_counters(operator: &Operator) -> Option<AuthdLog> {
    operator
        .connect()
        .and_then(|mut client| AuthdLog::read(&mut client))
        .map_err(|error| eprintln!("loadgen: cannot read authd's log counters (STATS): {error:#}"))
        .ok()
}

fn check_books(
    operator: &Operator,
    credentials: &Credentials,
    sample: &books::PayerSample,
    before: &Snapshot,
    tally: &BooksTally,
    fee_bps: Option<u16>,
) -> anyhow::Result<BooksCheck> {
    let after = books::snapshot(&mut operator.connect()?, credentials, sample)?;
    Ok(books::compare(before, &after, tally, fee_bps.is_some()))
}

fn settings_json(config: &Config, credentials: &Credentials, fee_bps: Option<u16>) -> serde_json::Value {
    json!({
        "threads": config.threads,
        "connections": config.connections,
        "pipeline": config.rate.is_none().then_some(config.pipeline),
        "rate": config.rate,
        "in_flight_max": config.rate.map(|_| config.in_flight_max),
        "mix": config.mix_text,
        "distribution": config.distribution_text,
        "hot_merchant": config.hot_merchant,
        "payers": credentials.payers.len(),
        "merchants": credentials.merchants.len(),
        "terminals": credentials.terminals.len(),
        "fee_bps": fee_bps,
        "duration_s": config.duration_s,
        "spin": config.spin,
        "spin_us": config.rate.is_none().then_some(config.spin_us),
        "pacing_us": config.rate.map(|_| config.pacing_us),
        "think_time_us": config.mix.contains(FlowKind::Offer).then_some(config.think_time_us),
        "drain_s": config.drain_s,
        "warmup_s": config.warmup_s,
        "target": match &config.target {
            Target::Connect(address) => json!({"connect": address.to_string()}),
            Target::Spawn { fsync, extra, .. } => json!({"spawn": {"fsync": fsync, "flags": extra}}),
        },
    })
}

/// What the main thread saw while the load ran.
struct Watched {
    timeline: Vec<Second>,
    loadgen_cpu_ns: u64,
    authd_cpu_ns: Option<u64>,
    authd_log: Option<AuthdLog>,
    /// A spawned authd's threads: name -> milliseconds per second waited for a CPU.
    authd_cpu_wait: Option<BTreeMap<String, f64>>,
    /// The machine's CPU time by state over the measured phase.
    machine_cpu: Option<CpuShares>,
}

/// What is read at the start and at the end of the measured phase.
struct Reading {
    authd_waits: Option<Waits>,
    loadgen_cpu_ns: u64,
    authd_cpu_ns: Option<u64>,
    authd_log: Option<AuthdLog>,
    machine_ticks: Option<StatTicks>,
}

/// Collects per-second figures (printing progress lines) until every thread has finished, and
/// reads the CPU clocks (and, with the operator key, authd's log counters) at the start and end
/// of the measured phase.
fn watch(
    config: &Config,
    timeline: &Timeline,
    receiver: Receiver<Interval>,
    handles: &[JoinHandle<std::io::Result<worker::Outcome>>],
    authd_pid: Option<u32>,
    operator: Option<&Operator>,
) -> Watched {
    let mut seconds: Vec<(usize, Interval)> = Vec::new();
    let mut printed = 0u64;
    let mut timeline_out = Vec::new();
    let mut start: Option<Reading> = None;
    let mut end: Option<Reading> = None;
    let read_now = || Reading::now(authd_pid, operator);
    let mut machine_by_second = BySecond::new(timeline.start_ns);
    loop {
        let now = now_ns();
        machine_by_second.poll(now);
        if start.is_none() && now >= timeline.measure_from_ns {
            start = Some(read_now());
        }
        if end.is_none() && now >= timeline.stop_ns {
            end = Some(read_now());
        }
        // Once every thread has finished, everything they sent is in the channel: take it
        // all before printing, or a last second would print in parts.
        let finished = handles.iter().all(JoinHandle::is_finished);
        if finished {
            while let Ok(interval) = receiver.try_recv() {
                merge_interval(&mut seconds, interval);
            }
        } else if let Ok(interval) = receiver.recv_timeout(Duration::from_millis(5)) {
            merge_interval(&mut seconds, interval);
        }
        // A second is complete when every thread reported it; at the end, whatever came.
        loop {
            let next = if finished {
                seconds
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (_, interval))| interval.second)
                    .map(|(position, _)| position)
            } else {
                seconds
                    .iter()
                    .position(|(count, interval)| interval.second == printed + 1 && *count == config.threads)
            };
            let Some(position) = next else { break };
            let (_, interval) = seconds.remove(position);
            printed = interval.second;
            let stolen_pct = machine_by_second.stolen_pct(interval.second, now_ns());
            let second = to_second(&interval, timeline, stolen_pct);
            if config.progress {
                eprintln!("{}", second.line());
            }
            timeline_out.push(second);
        }
        if finished {
            break;
        }
    }
    // The threads may all finish (and the loop end) before it saw the stop time: read now.
    let start = start.unwrap_or_else(read_now);
    let end = end.unwrap_or_else(read_now);
    end.watched_since(start, timeline_out)
}

impl Reading {
    /// Reads everything now: loadgen's CPU clock, the machine's, and a spawned authd's (`pid`)
    /// clock and threads' waits, and with the operator key its log counters.
    fn now(authd_pid: Option<u32>, operator: Option<&Operator>) -> Reading {
        Reading {
            authd_waits: authd_pid.and_then(Waits::read),
            loadgen_cpu_ns: process_cpu_ns(),
            authd_cpu_ns: authd_pid.and_then(other_process_cpu_ns),
            authd_log: operator.and_then(read_log_counters),
            machine_ticks: StatTicks::read(),
        }
    }

    /// What changed from `start` to this reading, with the seconds' `timeline`.
    fn watched_since(self, start: Reading, timeline: Vec<Second>) -> Watched {
        let end = self;
        Watched {
            timeline,
            loadgen_cpu_ns: end.loadgen_cpu_ns.saturating_sub(start.loadgen_cpu_ns),
            authd_cpu_ns: match (start.authd_cpu_ns, end.authd_cpu_ns) {
                (Some(start), Some(end)) => Some(end.saturating_sub(start)),
                _ => None,
            },
            authd_log: match (start.authd_log, end.authd_log) {
                (Some(start), Some(end)) => Some(end.since(&start)),
                _ => None,
            },
            authd_cpu_wait: match (&start.authd_waits, &end.authd_waits) {
                (Some(before), Some(after)) => Some(after.ms_per_s_since(before)),
                _ => None,
            },
            machine_cpu: match (&start.machine_ticks, &end.machine_ticks) {
                (Some(before), Some(after)) => after.shares_since(before),
                _ => None,
            },
        }
    }
}

fn merge_interval(seconds: &mut Vec<(usize, Interval)>, interval: Interval) {
    if let Some((count, merged)) = seconds
        .iter_mut()
        .find(|(_, seen)| seen.second == interval.second)
    {
        *count += 1;
        merged.replies += interval.replies;
        merged.declines += interval.declines;
        merged.errors += interval.errors;
        let _ = merged.latency.add(&interval.latency);
    } else {
        seconds.push((1, interval));
    }
}

fn to_second(interval: &Interval, timeline: &Timeline, stolen_pct: Option<f64>) -> Second {
    let end_ns = timeline.start_ns + interval.second * NS_PER_S;
    Second {
        second: interval.second,
        replies: interval.replies,
        declines: interval.declines,
        errors: interval.errors,
        p50_us: (!interval.latency.is_empty())
            .then(|| interval.latency.value_at_quantile(0.5) as f64 / 1_000.0),
        p99_us: (!interval.latency.is_empty())
            .then(|| interval.latency.value_at_quantile(0.99) as f64 / 1_000.0),
        warmup: end_ns <= timeline.measure_from_ns,
        stolen_pct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            target: Target::Connect(SocketAddr::from(([127, 0, 0, 1], 7700))),
            credentials: None,
            key: None,
            data_dir: None,
            operator_id: 1,
            threads: 1,
            connections: 16,
            pipeline: 1,
            rate: None,
            in_flight_max: 1_024,
            mix: Mix::parse("purchase=100").expect("mix"),
            mix_text: "purchase=100".into(),
            distribution: Distribution::Uniform,
            distribution_text: "uniform".into(),
            hot_merchant: false,
            payers: 10_000,
            merchants: 8,
            payer_balance: 1_000,
            fee_bps: Some(25),
            amount_minor: (100, 9_999),
            duration_s: 10.0,
            warmup_s: 1.0,
            books_sample: 1_000,
            progress: false,
            seed: 1,
            spin: false,
            spin_us: 100,
            pacing_us: 50,
            think_time_us: 1_000,
            drain_s: 10,
        }
    }

    #[test]
    fn a_second_without_replies_has_no_latency_in_the_timeline() {
        let timeline = Timeline {
            start_ns: 0,
            measure_from_ns: NS_PER_S,
            stop_ns: 10 * NS_PER_S,
            drain_deadline_ns: 20 * NS_PER_S,
        };
        let mut latency = latency_histogram();
        let silent = Interval {
            second: 3,
            replies: 0,
            declines: 0,
            errors: 0,
            latency: latency.clone(),
        };
        let second = to_second(&silent, &timeline, None);
        assert_eq!((second.p50_us, second.p99_us, second.warmup), (None, None, false));
        latency.record(2_000_000).expect("record");
        let busy = Interval {
            second: 1,
            replies: 1,
            latency,
            ..silent
        };
        let second = to_second(&busy, &timeline, Some(2.5));
        assert_eq!(second.stolen_pct, Some(2.5));
        // Within the histogram's three significant digits of the 2 ms recorded.
        assert!(
            second.p99_us.is_some_and(|us| (1_998.0..2_003.0).contains(&us)),
            "{second:?}"
        );
        assert!(second.warmup, "the first second ends as the warm-up does");
    }

    #[test]
    fn every_bound_of_the_flags_is_accepted_and_one_past_it_refused() {
        type Change = fn(&mut Config);
        let edges: [(&str, Change, Change); 16] = [
            (
                "--drain-s",
                |c| c.drain_s = DRAIN_S_MAX,
                |c| c.drain_s = DRAIN_S_MAX + 1,
            ),
            ("--drain-s", |c| c.drain_s = 1, |c| c.drain_s = 0),
            (
                "--in-flight-max",
                |c| c.in_flight_max = IN_FLIGHT_MAX,
                |c| c.in_flight_max = IN_FLIGHT_MAX + 1,
            ),
            (
                "--in-flight-max",
                |c| c.in_flight_max = 1,
                |c| c.in_flight_max = 0,
            ),
            (
                "--threads",
                |c| (c.threads, c.connections) = (THREADS_MAX, 100),
                |c| c.threads = THREADS_MAX + 1,
            ),
            ("--threads", |c| c.threads = 1, |c| c.threads = 0),
            (
                "--connections",
                |c| (c.threads, c.connections) = (1, CONNECTIONS_MAX),
                |c| c.connections = CONNECTIONS_MAX + 1,
            ),
            (
                "--connections",
                |c| (c.threads, c.connections) = (4, 4),
                |c| (c.threads, c.connections) = (4, 3),
            ),
            (
                "--rate",
                |c| c.rate = Some(RATE_MAX),
                |c| c.rate = Some(RATE_MAX * 2.0),
            ),
            (
                "--duration",
                |c| c.duration_s = DURATION_S_MAX,
                |c| c.duration_s = DURATION_S_MAX + 1.0,
            ),
            (
                "--warmup",
                |c| c.warmup_s = WARMUP_S_MAX,
                |c| c.warmup_s = WARMUP_S_MAX + 1.0,
            ),
            (
                "--pacing-us",
                |c| c.pacing_us = PACING_US_MAX,
                |c| c.pacing_us = PACING_US_MAX + 1,
            ),
            (
                "--think-time-us",
                |c| c.think_time_us = THINK_TIME_US_MAX,
                |c| c.think_time_us = THINK_TIME_US_MAX + 1,
            ),
            (
                "--payers",
                |c| c.payers = PAYERS_MAX,
                |c| c.payers = PAYERS_MAX + 1,
            ),
            (
                "--merchants",
                |c| c.merchants = MERCHANTS_MAX,
                |c| c.merchants = MERCHANTS_MAX + 1,
            ),
            (
                "--fee-bps",
                |c| c.fee_bps = Some(10_000),
                |c| c.fee_bps = Some(10_001),
            ),
        ];
        assert!(check_config(&valid()).is_ok());
        for (flag, at_edge, past_it) in edges {
            let mut config = valid();
            at_edge(&mut config);
            assert!(check_config(&config).is_ok(), "{flag} at its edge");
            past_it(&mut config);
            let error = check_config(&config).expect_err(flag).to_string();
            assert!(error.contains(flag), "{flag}: {error}");
        }
        for (flag, broken) in [
            ("--rate", (|c| c.rate = Some(0.0)) as Change),
            ("--rate", |c| c.rate = Some(f64::NAN)),
            ("--duration", |c| c.duration_s = 0.0),
            ("--warmup", |c| c.warmup_s = -1.0),
            ("--amount-min", |c| c.amount_minor = (0, 10)),
            ("--amount-min", |c| c.amount_minor = (11, 10)),
            ("--pipeline", |c| c.pipeline = 0),
            ("--payers", |c| c.payers = 0),
        ] {
            let mut config = valid();
            broken(&mut config);
            let error = check_config(&config).expect_err(flag).to_string();
            assert!(error.contains(flag), "{flag}: {error}");
        }
    }
}
