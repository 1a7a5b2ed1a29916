//! `loadgen`: parses flags and hands off to `loadgen::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadgen::workload::{Distribution, Mix};
use loadgen::{Config, Target};

/// Load generator for authd: closed or open loop, latency from the intended send time
/// (coordinated omission corrected), books checked afterwards.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 when every request was answered and understood and the books check \
                  passed (or did not run: no operator key, or --books-sample 0); 1 when a request was \
                  lost, unanswered, never sent or misunderstood (ERROR Busy, authd shedding load, \
                  excepted), when the books check failed or could not run, or on any error before \
                  the report."
)]
struct Flags {
    /// Address of a running authd.
    #[arg(long, conflicts_with = "spawn", required_unless_present = "spawn")]
    connect: Option<SocketAddr>,
    /// Start a release authd (next to loadgen) on a temporary data dir, snapshots off unless
    /// --authd-arg sets --snapshot-interval-s; run, stop it.
    #[arg(long)]
    spawn: bool,
    /// The authd binary for --spawn (default: next to loadgen).
    #[arg(long)]
    authd: Option<PathBuf>,
    /// --fsync mode of the spawned authd (always or never; see authd --help).
    #[arg(long, default_value = "always")]
    fsync: String,
    /// One more flag for the spawned authd (repeat; e.g. --authd-arg=--shards=64).
    #[arg(long = "authd-arg", allow_hyphen_values = true)]
    authd_args: Vec<String>,
    /// Credentials CSV written by `authctl provision` (else loadgen provisions itself).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// authd's data dir: the operator key is read from <DIR>/operator.key.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The operator key file (64 hex digits).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Operator id.
    #[arg(long, default_value_t = 1)]
    operator_id: u32,
    /// Load threads, each multiplexing its share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Terminal connections in all.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Closed loop: flows in progress per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: u32,
    /// Open loop: new flows per second in all (latency counted from each one's due time; at
    /// most 100,000,000).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests in flight per connection, 1 to 16384 (the server's limit also
    /// applies).
    #[arg(long, default_value_t = 1024)]
    in_flight_max: u32,
    /// Flow mix, name=weight,...: purchase, authorize_capture, authorize_void,
    /// authorize_increment_capture, refund, reversal, balance_check, echo, offer_cancel, offer,
    /// offer_status, failed_provisioning.
    #[arg(long, default_value = "purchase=100")]
    mix: String,
    /// Payer choice: uniform or zipf:S.
    #[arg(long, default_value = "uniform")]
    distribution: String,
    /// Every terminal belongs to one merchant (self-provisioned only).
    #[arg(long)]
    hot_merchant: bool,
    /// Payers to open (self-provisioned; 1 to 10,000,000).
    #[arg(long, default_value_t = 10_000)]
    payers: u32,
    /// Merchants to register (self-provisioned; 1 to 100,000).
    #[arg(long, default_value_t = 8)]
    merchants: u32,
    /// Funds loaded on each payer, minor units (self-provisioned).
    #[arg(long, default_value_t = 1_000_000_000_000)]
    payer_balance: u64,
    /// Merchant fee in basis points: set when self-provisioning (default 25); with
    /// --credentials, the fee authctl used, for an exact per-merchant books check (at most
    /// 10000).
    #[arg(long)]
    fee_bps: Option<u16>,
    /// Smallest amount, minor units.
    #[arg(long, default_value_t = 100)]
    amount_min: u64,
    /// Largest amount, minor units.
    #[arg(long, default_value_t = 9_999)]
    amount_max: u64,
    /// Seconds measured (at most 86400).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (at most 3600).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Payers the books check reads before and after (0: no books check).
    #[arg(long, default_value_t = 1_000)]
    books_sample: usize,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write HdrHistogram's percentile distribution (microseconds).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write latency by percentile and requests/s over time as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Title of the plot.
    #[arg(long, default_value = "authd")]
    title: String,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Busy-poll instead of sleeping in epoll: lower latency at the cost of a busy core per
    /// thread (single-connection latency runs; never on a machine short of cores).
    #[arg(long)]
    spin: bool,
    /// Closed loop: poll for replies without sleeping for up to this many microseconds, a
    /// window that adapts to how soon replies come (0: sleep at once). Spares the load
    /// generator's own wake-up from a halted vCPU (tens of microseconds on a VM) in latency
    /// runs; under load loadgen never waits, so it costs nothing there. Open loops sleep
    /// until the next due time.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    spin_us: u64,
    /// Open loop at rates above one flow per PACING_US per thread: send due flows in batches
    /// once the oldest has waited this long (its latency includes the wait), so that a write
    /// carries several requests; 0 sends each the moment it is due; at most 1000000. On a
    /// small VM a longer wait (500 us for 10,000 offers/s) also lets the vCPUs halt for long
    /// spells, which in most runs measured kept its host from stalling the disk (BENCHMARKS.md,
    /// "Short idles count as busy").
    #[arg(long, default_value_t = 50)]
    pacing_us: u64,
    /// Offer flows: microseconds the simulated payer device thinks between the offer's
    /// presentation and its accept (at most 60000000).
    #[arg(long, default_value_t = 1_000)]
    think_time_us: u64,
    /// Seconds the flows in progress get to finish after --duration (plus the think time of
    /// offer flows); a request still unanswered then, or due and never sent, is an error and
    /// counts in the latency as waiting until then (at most 3600).
    #[arg(long, default_value_t = 10)]
    drain_s: u64,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    let mix = Mix::parse(&flags.mix)?;
    let distribution = Distribution::parse(&flags.distribution).map_err(anyhow::Error::msg)?;
    let target = match flags.connect {
        Some(address) => Target::Connect(address),
        None => Target::Spawn {
            authd: flags.authd.clone(),
            fsync: flags.fsync.clone(),
            extra: flags.authd_args.clone(),
        },
    };
    let self_provisioned = flags.credentials.is_none();
    let config = Config {
        target,
        credentials: flags.credentials.clone(),
        key: flags.key.clone(),
        data_dir: flags.data_dir.clone(),
        operator_id: flags.operator_id,
        threads: flags.threads,
        connections: flags.connections,
        pipeline: flags.pipeline,
        rate: flags.rate,
        in_flight_max: flags.in_flight_max,
        mix,
        mix_text: flags.mix.clone(),
        distribution,
        distribution_text: flags.distribution.clone(),
        hot_merchant: flags.hot_merchant,
        payers: flags.payers,
        merchants: flags.merchants,
        payer_balance: flags.payer_balance,
        fee_bps: flags.fee_bps.or(self_provisioned.then_some(25)),
        amount_minor: (flags.amount_min, flags.amount_max),
        duration_s: flags.duration,
        warmup_s: flags.warmup,
        books_sample: flags.books_sample,
        progress: !flags.quiet,
        seed: flags.seed,
        spin: flags.spin,
        spin_us: flags.spin_us,
        pacing_us: flags.pacing_us,
        think_time_us: flags.think_time_us,
        drain_s: flags.drain_s,
    };
    let report = loadgen::run(&config)?;
    print!("{}", report.summary());
    if let Some(path) = &flags.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write --json {}", path.display()))?;
    }
    if let Some(path) = &flags.hgrm {
        std::fs::write(path, report.hgrm())
            .with_context(|| format!("cannot write --hgrm {}", path.display()))?;
    }
    if let Some(path) = &flags.plot {
        loadgen::plot::write_svg(path, &flags.title, &report)?;
    }
    let books_failed = report
        .books
        .as_ref()
        .is_some_and(|books| books.as_ref().map_or(true, |books| !books.ok));
    // Busy replies are the server shedding load, which a run may measure; anything else
    // means requests were lost or misunderstood.
    let errors = &report.errors;
    let broken =
        errors.protocol + errors.bad_reply + errors.connections_lost + errors.unanswered + errors.not_sent
            > 0;
    Ok(if books_failed || broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
