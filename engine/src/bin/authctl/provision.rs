//! `authctl provision`: merchants, their terminals and funded payers in bulk, pipelined, and a
//! CSV of what loadgen needs to log on and pay (format below, version in its first line).
//!
//! ```text
//! # authd provision v1
//! kind,id,owner,secret_hex
//! merchant,<merchant_id>,<settlement_account>,
//! terminal,<terminal_id>,<merchant_id>,<64 lowercase hex>
//! payer,<account>,<mobile or 0>,
//! ```
//!
//! Opening a payer and loading it are two requests, the second needing the first's account
//! number; a merchant's terminals need its id. So the follow-up is queued when its reply
//! arrives, and the pipeline keeps the window full with whatever is ready.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use wire::logon::secret_to_hex;
use wire::messages::operator::{LoadFunds, OpenAccount, RegisterMerchant, RegisterTerminal};
use wire::types::{AccountKind, Limits, MerchantId, ShortText};
use wire::{Reply, Request};

use crate::amount::{format_minor, MajorAmount};
use crate::mobile::{format_mobile, MOBILE_DIGITS_MAX};
use crate::operator::{check, Operator};
use crate::pipeline::Pipeline;

/// The CSV's first line: format and version.
pub const CSV_VERSION_LINE: &str = "# authd provision v1";
/// The CSV's header line.
pub const CSV_HEADER_LINE: &str = "kind,id,owner,secret_hex";
/// Default most requests in flight (authd's own limit may be lower).
pub const IN_FLIGHT_DEFAULT: usize = 1_000;
/// Default connections. Measured on the 2-core machine (100,000 payers, release authd,
/// --fsync always, medians of 5): 1 connection 1.27 s, 2 0.83 s, 4 0.48 s, 8 about the same
/// as 4. More requests in flight make bigger group commits, and more connections spread over
/// authd's event loops.
pub const CONNECTIONS_DEFAULT: u8 = 4;

/// Most terminals one provision registers (each is a line of the CSV, with its secret).
const TERMINALS_IN_ALL_MAX: u64 = 1_000_000;

/// Flags of `provision`.
#[derive(Args, Debug)]
pub struct ProvisionFlags {
    /// Payer accounts to open (at most 10,000,000, the rows loadgen reads).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    payers: u32,
    /// Merchants to register (1 to 900,000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=900_000))]
    merchants: u32,
    /// Terminals per merchant (1 to 10,000; at most 1,000,000 in all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    terminals: u32,
    /// Balance to load on each payer, major units.
    #[arg(long, value_name = "AMOUNT")]
    balance: MajorAmount,
    /// Payer i gets mobile number MOBILE_BASE + i (0: no mobile numbers).
    #[arg(long, default_value_t = 33_600_000_000)]
    mobile_base: u64,
    /// ISO 4217 numeric currency of the payers (1 to 999).
    #[arg(long, default_value_t = 978, value_parser = clap::value_parser!(u16).range(1..=999))]
    pub currency: u16,
    /// Merchants' fee, basis points (at most 10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(0..=10_000))]
    fee_bps: u16,
    /// Merchants' fee with product details, basis points (at most 10000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(0..=10_000))]
    fee_bps_with_product: u16,
    /// Most requests in flight at once on each connection (1 to 65536, the client's limit).
    #[arg(long, default_value_t = IN_FLIGHT_DEFAULT, value_parser = parse_in_flight)]
    in_flight: usize,
    /// Connections to share the work (more in flight, spread over authd's event loops).
    #[arg(long, default_value_t = CONNECTIONS_DEFAULT, value_parser = clap::value_parser!(u8).range(1..=64))]
    connections: u8,
    /// Where to write the CSV of merchants, terminals (with secrets) and payers.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `--in-flight`: within what the wire client keeps.
fn parse_in_flight(text: &str) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (1..=wire::client::IN_FLIGHT_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in 1..={}", wire::client::IN_FLIGHT_MAX))
    }
}

/// What one request was for.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Registering the merchant with this index.
    Merchant(u32),
    /// Registering a terminal of this merchant id.
    Terminal(u32),
    /// Opening the payer with this index.
    Open(u32),
    /// Loading the payer with this index.
    Load(u32),
}

/// Everything provisioned, in the order of the CSV.
#[derive(Debug, Default)]
struct Provisioned {
    /// The index of `payers[0]`.
    first_payer: u32,
    /// (merchant id, settlement account).
    merchants: Vec<(u32, u64)>,
    /// (terminal id, merchant id, secret).
    terminals: Vec<(u32, u32, [u8; 32])>,
    /// Payer `first_payer + i`'s account number.
    payers: Vec<u64>,
}

impl Provisioned {
    /// The shares together, merchants and terminals by id, payers by index.
    fn merge(shares: impl Iterator<Item = Provisioned>) -> Provisioned {
        let mut shares: Vec<Provisioned> = shares.collect();
        shares.sort_unstable_by_key(|share| share.first_payer);
        let mut all = Provisioned::default();
        for share in shares {
            assert_eq!(
                all.payers.len(),
                share.first_payer as usize,
                "payer shares are contiguous"
            );
            all.merchants.extend(share.merchants);
            all.terminals.extend(share.terminals);
            all.payers.extend(share.payers);
        }
        all.merchants.sort_unstable();
        all.terminals.sort_unstable();
        all
    }
}

/// Run `provision` on `operator`'s connection and `flags.connections - 1` more from `connect`;
/// returns the summary to print.
pub fn run(
    operator: &mut Operator,
    connect: &dyn Fn() -> anyhow::Result<Operator>,
    exponent: u8,
    flags: &ProvisionFlags,
) -> anyhow::Result<String> {
    let balance_minor = flags.balance.minor(exponent)?;
    check_mobile_range(flags)?;
    if flags.fee_bps_with_product > flags.fee_bps {
        // authd refuses it; found there, after the first merchants, it would strand them.
        bail!(
            "--fee-bps-with-product {} is above --fee-bps {}: the rate with product details is the lower one; pass a smaller --fee-bps-with-product",
            flags.fee_bps_with_product,
            flags.fee_bps
        );
    }
    let terminals = u64::from(flags.merchants) * u64::from(flags.terminals);
    if terminals > TERMINALS_IN_ALL_MAX {
        anyhow::bail!(
            "--merchants {} x --terminals {} is {terminals} terminals, above {TERMINALS_IN_ALL_MAX}; provision in several runs",
            flags.merchants,
            flags.terminals
        );
    }
    let mut more: Vec<Operator> = (1..flags.connections)
        .map(|_| connect())
        .collect::<anyhow::Result<_>>()?;
    // The CSV is the only copy of the terminals' secrets: make sure it can be written before
    // registering anything, and never overwrite one.
    let out = create_csv(&flags.out)?;
    let operators: Vec<&mut Operator> = std::iter::once(operator).chain(more.iter_mut()).collect();
    let started = Instant::now();
    // The first connection to fail stops the others: the set-up is incomplete either way.
    let failed = AtomicBool::new(false);
    let failed = &failed;
    let shares = std::thread::scope(|scope| {
        let workers: Vec<_> = operators
            .into_iter()
            .enumerate()
            .map(|(index, operator)| {
                let share = Share::of(flags, index);
                scope.spawn(move || {
                    let share = provision_share(operator, flags, balance_minor, share, failed);
                    failed.fetch_or(share.error.is_some(), Ordering::Relaxed);
                    share
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    let requests = shares.iter().map(|share| share.sent).sum();
    let mut errors = Vec::new();
    let provisioned = Provisioned::merge(shares.into_iter().map(|share| {
        errors.extend(share.error);
        share.provisioned
    }));
    write_csv(out, &flags.out, &provisioned, flags.mobile_base)?;
    if let Some(error) = errors.into_iter().next() {
        return Err(error.context(format!(
            "provisioning stopped; {} holds what was registered before (merchants, terminals with their secrets, payers opened): keep it, and provision the rest with another --out and --mobile-base",
            flags.out.display()
        )));
    }
    Ok(summary(flags, exponent, balance_minor, requests, elapsed))
}

/// One connection's part of the work: contiguous ranges of merchant and payer indices.
#[derive(Clone, Debug)]
struct Share {
    merchants: Range<u32>,
    payers: Range<u32>,
}

impl Share {
    /// Connection `index`'s share, the counts split as evenly as they go.
    fn of(flags: &ProvisionFlags, index: usize) -> Share {
        let split = |count: u32| {
            let part = |index: usize| (u64::from(count) * index as u64 / flags.connections as u64) as u32;
            part(index)..part(index + 1)
        };
        Share {
            merchants: split(flags.merchants),
            payers: split(flags.payers),
        }
    }
}

/// What one connection made, the requests it sent, and what stopped it, if anything.
struct ShareDone {
    provisioned: Provisioned,
    sent: u64,
    error: Option<anyhow::Error>,
}

/// Provision `share` on one connection; keeps what it made even when it stops on an error.
fn provision_share(
    operator: &mut Operator,
    flags: &ProvisionFlags,
    balance_minor: u64,
    share: Share,
    failed: &AtomicBool,
) -> ShareDone {
    let mut pipeline = Pipeline::new(operator.client(), flags.in_flight);
    let mut provisioned = Provisioned {
        first_payer: share.payers.start,
        payers: vec![0; share.payers.len()],
        ..Provisioned::default()
    };
    queue_first_steps(&mut pipeline, flags, &share);
    // On the first error (here or on another connection) nothing new is started, but what was
    // started is finished: replies in flight are read and kept (authd may have registered
    // them, and the CSV is the only copy of a terminal's secret), and a registered merchant
    // still gets its terminals, an opened payer its balance.
    let mut error = None;
    let mut stopped = false;
    loop {
        if !stopped && (error.is_some() || failed.load(Ordering::Relaxed)) {
            pipeline.retain_queued(|step| matches!(step, Step::Terminal(_) | Step::Load(_)));
            stopped = true;
        }
        let (step, reply) = match pipeline.next() {
            Ok(Some(answered)) => answered,
            Ok(None) => break,
            Err(lost) => {
                error.get_or_insert(lost);
                break;
            }
        };
        match record(&mut provisioned, flags, balance_minor, step, reply) {
            Ok(next) => next
                .into_iter()
                .for_each(|(request, step)| pipeline.push(request, step)),
            Err(declined) => {
                error.get_or_insert(declined);
            }
        }
    }
    ShareDone {
        sent: pipeline.sent(),
        provisioned,
        error,
    }
}

/// Payers' mobile numbers must be E.164 (at most 15 digits).
fn check_mobile_range(flags: &ProvisionFlags) -> anyhow::Result<()> {
    if flags.mobile_base == 0 || flags.payers == 0 {
        return Ok(());
    }
    let last = flags.mobile_base.checked_add(u64::from(flags.payers) - 1);
    match last {
        Some(last) if last.to_string().len() <= MOBILE_DIGITS_MAX => Ok(()),
        _ => bail!(
            "--mobile-base {} + {} payers goes past {MOBILE_DIGITS_MAX} digits; pass a smaller --mobile-base",
            flags.mobile_base,
            flags.payers
        ),
    }
}

/// Every merchant, then every payer; terminals and loads follow their replies.
fn queue_first_steps(pipeline: &mut Pipeline<'_, Step>, flags: &ProvisionFlags, share: &Share) {
    // No origin: authd keeps non-empty origins unique, and load tests do not need them.
    let origin = ShortText::default();
    for index in share.merchants.clone() {
        let request = Request::RegisterMerchant(RegisterMerchant {
            fee_bps: flags.fee_bps,
            fee_bps_with_product: flags.fee_bps_with_product,
            origin,
        });
        pipeline.push(request, Step::Merchant(index));
    }
    for index in share.payers.clone() {
        let request = Request::OpenAccount(OpenAccount {
            kind: AccountKind::Payer,
            currency: flags.currency,
            mobile: mobile(flags.mobile_base, index),
            limits: Limits::NONE,
        });
        pipeline.push(request, Step::Open(index));
    }
}

/// Payer `index`'s mobile number (0 = none).
fn mobile(mobile_base: u64, index: u32) -> u64 {
    if mobile_base == 0 {
        0
    } else {
        mobile_base + u64::from(index)
    }
}

/// Keep what `reply` says; returns the requests that follow `step`.
fn record(
    provisioned: &mut Provisioned,
    flags: &ProvisionFlags,
    balance_minor: u64,
    step: Step,
    reply: Reply,
) -> anyhow::Result<Vec<(Request, Step)>> {
    let reply = check(&describe(step, flags.mobile_base), reply)?;
    match (step, reply) {
        (Step::Merchant(_), Reply::RegisterMerchant(merchant)) => {
            let id = merchant.merchant_id.0;
            provisioned.merchants.push((id, merchant.settlement_account.0));
            let terminal = Request::RegisterTerminal(RegisterTerminal {
                merchant_id: MerchantId(id),
            });
            Ok(vec![(terminal, Step::Terminal(id)); flags.terminals as usize])
        }
        (Step::Terminal(merchant), Reply::RegisterTerminal(terminal)) => {
            provisioned
                .terminals
                .push((terminal.terminal_id.0, merchant, terminal.secret));
            Ok(Vec::new())
        }
        (Step::Open(index), Reply::OpenAccount(account)) => {
            let slot = index
                .checked_sub(provisioned.first_payer)
                .map(|slot| slot as usize);
            let slot = slot.and_then(|slot| provisioned.payers.get_mut(slot));
            *slot.context("payer index within this connection's share")? = account.account.0;
            let load = Request::LoadFunds(LoadFunds {
                account: account.account,
                amount_minor: balance_minor,
            });
            Ok((balance_minor > 0)
                .then_some((load, Step::Load(index)))
                .into_iter()
                .collect())
        }
        (Step::Load(_), Reply::LoadFunds(_)) => Ok(Vec::new()),
        // The type only: a terminal's reply carries its secret, never for stderr.
        (step, reply) => bail!(
            "authd answered {step:?} with a reply of type {:#04x}",
            reply.message_type()
        ),
    }
}

/// What `step` was doing, for an error message.
fn describe(step: Step, mobile_base: u64) -> String {
    match step {
        Step::Merchant(index) => format!("registering merchant #{index}"),
        Step::Terminal(merchant) => format!("registering a terminal of merchant {merchant}"),
        Step::Open(index) => format!(
            "opening payer #{index} (mobile {})",
            format_mobile(mobile(mobile_base, index))
        ),
        Step::Load(index) => format!("loading payer #{index}"),
    }
}

/// The CSV file: new (an existing one may hold an earlier run's secrets, its only copy), mode
/// 0600 because it holds the terminals' secrets, and not through a symbolic link.
fn create_csv(path: &Path) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten: it may hold an earlier run's terminal secrets); move it away or pass another --out",
                path.display()
            )
        })
}

/// Writes the CSV into `file` (created by [`create_csv`] at `path`).
fn write_csv(
    file: std::fs::File,
    path: &Path,
    provisioned: &Provisioned,
    mobile_base: u64,
) -> anyhow::Result<()> {
    let mut out = BufWriter::new(file);
    writeln!(out, "{CSV_VERSION_LINE}\n{CSV_HEADER_LINE}")?;
    for (merchant, settlement) in &provisioned.merchants {
        writeln!(out, "merchant,{merchant},{settlement},")?;
    }
    for (terminal, merchant, secret) in &provisioned.terminals {
        writeln!(out, "terminal,{terminal},{merchant},{}", secret_to_hex(secret))?;
    }
    for (index, account) in provisioned.payers.iter().enumerate() {
        let index = u32::try_from(index).context("payer index fits u32")?;
        if *account != 0 {
            // 0: not opened (provisioning stopped first).
            writeln!(out, "payer,{account},{},", mobile(mobile_base, index))?;
        }
    }
    out.flush()
        .with_context(|| format!("cannot write {}; pass another --out", path.display()))
}

fn summary(
    flags: &ProvisionFlags,
    exponent: u8,
    balance_minor: u64,
    requests: u64,
    elapsed: Duration,
) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    format!(
        "provisioned {} merchants, {} terminals, {} payers with {} each: {requests} requests \
         ({} connections, up to {} in flight each) in {seconds:.3} s, {:.0} payers/s, {:.0} requests/s\n\
         wrote {} (mode 0600: it holds the terminals' secrets)\n",
        flags.merchants,
        u64::from(flags.merchants) * u64::from(flags.terminals),
        flags.payers,
        format_minor(balance_minor, exponent),
        flags.connections,
        flags.in_flight,
        f64::from(flags.payers) / seconds,
        requests as f64 / seconds,
        flags.out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(arguments: &[&str]) -> ProvisionFlags {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            flags: ProvisionFlags,
        }
        let mut all = vec!["provision", "--balance", "1", "--out", "x.csv"];
        all.extend_from_slice(arguments);
        Wrapper::parse_from(all).flags
    }

    #[test]
    fn shares_cover_every_index_once_in_order() {
        let flags = flags(&["--payers", "301", "--merchants", "2", "--connections", "3"]);
        let shares: Vec<Share> = (0..3).map(|index| Share::of(&flags, index)).collect();
        assert_eq!(shares[0].payers, 0..100);
        assert_eq!(shares[1].payers, 100..200);
        assert_eq!(shares[2].payers, 200..301);
        let merchants: Vec<u32> = shares.iter().flat_map(|share| share.merchants.clone()).collect();
        assert_eq!(merchants, vec![0, 1]);
    }

    #[test]
    fn the_csv_is_the_documented_format() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.csv");
        let second = Provisioned {
            first_payer: 1,
            merchants: vec![(2, 4)],
            terminals: vec![(2, 2, [0xab; 32])],
            payers: vec![1_000_007],
        };
        let first = Provisioned {
            first_payer: 0,
            merchants: vec![(1, 3)],
            terminals: vec![(1, 1, [0x01; 32])],
            payers: vec![1_000_005],
        };
        let all = Provisioned::merge([second, first].into_iter());
        let file = create_csv(&path).expect("create");
        write_csv(file, &path, &all, 33_600_000_000).expect("write");
        // Never over an existing file, nor through a symbolic link.
        assert!(create_csv(&path).is_err());
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(dir.path().join("elsewhere.csv"), &link).expect("symlink");
        assert!(create_csv(&link).is_err());
        assert!(!dir.path().join("elsewhere.csv").exists());
        let expected = format!(
            "# authd provision v1\nkind,id,owner,secret_hex\nmerchant,1,3,\nmerchant,2,4,\n\
             terminal,1,1,{}\nterminal,2,2,{}\npayer,1000005,33600000000,\npayer,1000007,33600000001,\n",
            "01".repeat(32),
            "ab".repeat(32)
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), expected);
        let mode = std::fs::metadata(&path).expect("metadata").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }

    #[test]
    fn mobile_numbers_past_e164_are_refused_before_anything_is_sent() {
        assert!(check_mobile_range(&flags(&["--payers", "10", "--mobile-base", "999999999999999"])).is_err());
        assert!(check_mobile_range(&flags(&["--payers", "10", "--mobile-base", "0"])).is_ok());
        assert!(check_mobile_range(&flags(&["--payers", "10"])).is_ok());
    }
}
