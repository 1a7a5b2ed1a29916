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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use wire::messages::operator::{LoadFunds, OpenAccount, RegisterMerchant, RegisterTerminal};
use wire::types::{AccountKind, Limits, MerchantId, ShortText};
use wire::{Reply, Request};

use crate::amount::{format_minor, MajorAmount};
use crate::mobile::{format_mobile, MOBILE_DIGITS_MAX};
use crate::operator::{check, Operator};
use crate::output::hex;
use crate::pipeline::Pipeline;

/// The CSV's first line: format and version.
pub const CSV_VERSION_LINE: &str = "# authd provision v1";
/// The CSV's header line.
pub const CSV_HEADER_LINE: &str = "kind,id,owner,secret_hex";
/// Default most requests in flight (authd's own limit may be lower).
pub const IN_FLIGHT_DEFAULT: usize = 1_000;

/// Flags of `provision`.
#[derive(Args, Debug)]
pub struct ProvisionFlags {
    /// Payer accounts to open.
    #[arg(long)]
    payers: u32,
    /// Merchants to register.
    #[arg(long, default_value_t = 1)]
    merchants: u32,
    /// Terminals per merchant.
    #[arg(long, default_value_t = 1)]
    terminals: u32,
    /// Balance to load on each payer, major units.
    #[arg(long)]
    balance: MajorAmount,
    /// Payer i gets mobile number MOBILE_BASE + i (0: no mobile numbers).
    #[arg(long, default_value_t = 33_600_000_000)]
    mobile_base: u64,
    /// ISO 4217 numeric currency of the payers.
    #[arg(long, default_value_t = 978)]
    currency: u16,
    /// Merchants' fee, basis points.
    #[arg(long, default_value_t = 100)]
    fee_bps: u16,
    /// Merchants' fee with product details, basis points.
    #[arg(long, default_value_t = 50)]
    fee_bps_with_product: u16,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = IN_FLIGHT_DEFAULT)]
    in_flight: usize,
    /// Where to write the CSV of merchants, terminals (with secrets) and payers.
    #[arg(long)]
    out: PathBuf,
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
    /// (merchant id, settlement account).
    merchants: Vec<(u32, u64)>,
    /// (terminal id, merchant id, secret).
    terminals: Vec<(u32, u32, [u8; 32])>,
    /// Payer i's account number.
    payers: Vec<u64>,
}

/// Run `provision` on `operator`'s connection; returns the summary to print.
pub fn run(operator: &mut Operator, exponent: u8, flags: &ProvisionFlags) -> anyhow::Result<String> {
    let balance_minor = flags.balance.minor(exponent)?;
    check_mobile_range(flags)?;
    let started = Instant::now();
    let mut pipeline = Pipeline::new(operator.client(), flags.in_flight);
    let mut provisioned = Provisioned {
        payers: vec![0; flags.payers as usize],
        ..Provisioned::default()
    };
    queue_first_steps(&mut pipeline, flags)?;
    while let Some((step, reply)) = pipeline.next()? {
        for (request, next) in record(&mut provisioned, flags, balance_minor, step, reply)? {
            pipeline.push(request, next);
        }
    }
    let elapsed = started.elapsed();
    let requests = pipeline.sent();
    let window = pipeline.window();
    provisioned.merchants.sort_unstable();
    provisioned.terminals.sort_unstable();
    write_csv(&flags.out, &provisioned, flags.mobile_base)?;
    Ok(summary(flags, exponent, balance_minor, requests, window, elapsed))
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
fn queue_first_steps(pipeline: &mut Pipeline<'_, Step>, flags: &ProvisionFlags) -> anyhow::Result<()> {
    let origin = ShortText::new("provision").context("origin text fits")?;
    for index in 0..flags.merchants {
        let request = Request::RegisterMerchant(RegisterMerchant {
            fee_bps: flags.fee_bps,
            fee_bps_with_product: flags.fee_bps_with_product,
            origin,
        });
        pipeline.push(request, Step::Merchant(index));
    }
    for index in 0..flags.payers {
        let request = Request::OpenAccount(OpenAccount {
            kind: AccountKind::Payer,
            currency: flags.currency,
            mobile: mobile(flags.mobile_base, index),
            limits: Limits::NONE,
        });
        pipeline.push(request, Step::Open(index));
    }
    Ok(())
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
            provisioned.payers[index as usize] = account.account.0;
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
        (step, reply) => bail!("authd answered {step:?} with {reply:?}"),
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

/// The CSV, created with mode 0600 because it holds the terminals' secrets.
fn write_csv(path: &Path, provisioned: &Provisioned, mobile_base: u64) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}; pass another --out", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "{CSV_VERSION_LINE}\n{CSV_HEADER_LINE}")?;
    for (merchant, settlement) in &provisioned.merchants {
        writeln!(out, "merchant,{merchant},{settlement},")?;
    }
    for (terminal, merchant, secret) in &provisioned.terminals {
        writeln!(out, "terminal,{terminal},{merchant},{}", hex(secret))?;
    }
    for (index, account) in provisioned.payers.iter().enumerate() {
        let index = u32::try_from(index).context("payer index fits u32")?;
        writeln!(out, "payer,{account},{},", mobile(mobile_base, index))?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}; pass another --out", path.display()))
}

fn summary(
    flags: &ProvisionFlags,
    exponent: u8,
    balance_minor: u64,
    requests: u64,
    window: usize,
    elapsed: Duration,
) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    format!(
        "provisioned {} merchants, {} terminals, {} payers with {} each: {requests} requests \
         ({window} in flight) in {seconds:.3} s, {:.0} payers/s, {:.0} requests/s\n\
         wrote {} (mode 0600: it holds the terminals' secrets)\n",
        flags.merchants,
        u64::from(flags.merchants) * u64::from(flags.terminals),
        flags.payers,
        format_minor(balance_minor, exponent),
        f64::from(flags.payers) / seconds,
        requests as f64 / seconds,
        flags.out.display()
    )
}
