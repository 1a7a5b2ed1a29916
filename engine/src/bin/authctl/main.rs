//! `authctl`: the issuer operator's tool. Parses flags, logs on to authd with the operator key
//! and calls one small function per subcommand; the work is in the modules:
//!
//! - [`amount`]: major units as typed and printed, exact (never `f64`).
//! - [`operator`]: the key file, the log-on, and errors that say what to do next.
//! - [`commands`]: one function per single-request subcommand.
//! - [`disputes`]: `dispute open|resolve|list`.
//! - [`offers`]: `offers` and `offer`, logged on as a payer device or terminal (the operator
//!   role has no offer requests in protocol version 1).
//! - [`output`]: readable text for accounts, limits and counters.
//! - [`pipeline`] and [`provision`]: bulk set-up, many requests in flight.
//!
//! Exit status: 0 done, 1 error (connection, key, input), 2 bad flags (clap), 3 authd declined
//! the request, 4 no reply (the request may or may not have been applied).

mod amount;
mod commands;
mod disputes;
mod mobile;
mod offers;
mod operator;
mod output;
mod pipeline;
mod provision;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wire::types::AccountStatus;

use amount::{LimitAmount, LimitCount, MajorAmount, EXPONENT_MAX};
use operator::{Declined, Operator};

/// Where `--help` lists the flags every subcommand takes.
const GLOBAL: &str = "Global options";

/// Exit status when authd declined the request.
const EXIT_DECLINED: u8 = 3;
/// Exit status when no reply came: the request may or may not have been applied.
const EXIT_OUTCOME_UNKNOWN: u8 = 4;

/// authctl: the operator's tool for authd. Opens accounts, loads funds, sets limits and PINs,
/// registers merchants, terminals and devices, reads accounts and counters, handles disputes
/// and shows offers.
///
/// Amounts are in major units (12.50), with the currency's decimals (or --currency-exponent).
/// Exit status: 0 done, 1 error, 2 bad flags, 3 authd declined the request (reason and ISO code
/// printed), 4 no reply (the request may or may not have been applied: look before retrying).
#[derive(Parser, Debug)]
#[command(name = "authctl", version, about, long_about)]
struct Flags {
    /// authd's address.
    #[arg(long, global = true, value_name = "ADDR", default_value = "127.0.0.1:7700", help_heading = GLOBAL)]
    connect: String,
    /// authd's data dir; the operator key is DIR/operator.key.
    #[arg(long, global = true, value_name = "DIR", default_value = "./authd-data", help_heading = GLOBAL)]
    data_dir: PathBuf,
    /// The operator key file (64 hex digits); overrides --data-dir.
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    key: Option<PathBuf>,
    /// Decimals of the currency: amounts are typed and printed in major units (2: 12.50 = 1250).
    /// By default the currency's own (ISO 4217: EUR 2, JPY 0, BHD 3), taken from the account
    /// where there is one; given, it must agree with ISO 4217 where that knows the currency.
    #[arg(long, global = true, value_name = "N", help_heading = GLOBAL, value_parser = clap::value_parser!(u8).range(0..=i64::from(EXPONENT_MAX)))]
    currency_exponent: Option<u8>,
    /// Seconds to wait for the connection, the log-on and each reply (1 to 3600). Without a
    /// reply in time a request may or may not have been applied: exit status 4.
    #[arg(long, global = true, value_name = "S", help_heading = GLOBAL, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_s: u64,
    #[command(subcommand)]
    command: Command,
}

/// A payer's limits; an absent flag means no limit when opening and "unchanged" with `limits`.
/// Each takes `none` to remove the limit.
#[derive(Args, Debug, Default)]
pub struct LimitFlags {
    /// Largest single payment, major units.
    #[arg(long, value_name = "AMOUNT|none")]
    limit_payment: Option<LimitAmount>,
    /// Largest total per UTC day, major units.
    #[arg(long, value_name = "AMOUNT|none")]
    limit_day: Option<LimitAmount>,
    /// Most payments per UTC day.
    #[arg(long, value_name = "N|none")]
    limit_count: Option<LimitCount>,
    /// Payments above this amount need the PIN (0: always), major units.
    #[arg(long, value_name = "AMOUNT|none")]
    pin_above: Option<LimitAmount>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open a payer account; prints its number.
    OpenAccount {
        /// Mobile number alias in E.164, like +33612345678 (offers reach the payer by it).
        #[arg(long, value_parser = mobile::parse_mobile)]
        mobile: Option<u64>,
        /// ISO 4217 numeric currency (must be the books' currency).
        #[arg(long, default_value_t = 978)]
        currency: u16,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Credit a payer from the issuer's funding account.
    Load {
        /// The payer's account number.
        #[arg(long)]
        account: u64,
        /// Amount in major units, like 12.50.
        #[arg(long, value_name = "AMOUNT")]
        amount: MajorAmount,
    },
    /// Change a payer's limits; flags not given keep their current value.
    Limits {
        /// The payer's account number.
        #[arg(long)]
        account: u64,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Set (or reset, which unlocks) a payer's PIN.
    SetPin {
        /// The payer's account number.
        #[arg(long)]
        account: u64,
        /// 4 to 12 digits, or `-` to read them from standard input (a command line is visible
        /// to other users and stays in the shell's history).
        #[arg(long, value_parser = operator::parse_given_pin)]
        pin: operator::Given<String>,
    },
    /// Freeze an account: payments are declined until unfrozen. A merchant's settlement
    /// account freezes the merchant.
    Freeze(AccountFlag),
    /// Make a frozen account (or merchant, by its settlement account) active again.
    Unfreeze(AccountFlag),
    /// Close an account (or merchant, by its settlement account) for good.
    Close(AccountFlag),
    /// Register a merchant; prints its id and settlement account.
    RegisterMerchant {
        /// Fee in basis points (1/100 %) of each capture.
        #[arg(long)]
        fee_bps: u16,
        /// Fee in basis points when the capture carries product details.
        #[arg(long)]
        fee_bps_with_product: u16,
        /// Its origin address, shown on its offers (up to 32 bytes, unique among merchants;
        /// empty for none).
        #[arg(long, default_value = "")]
        origin: String,
    },
    /// Register a terminal of a merchant; prints its id and its secret, this once only.
    RegisterTerminal {
        /// The merchant's id.
        #[arg(long)]
        merchant: u32,
    },
    /// Register a payer's device; prints its id and its secret, this once only.
    RegisterDevice(AccountFlag),
    /// Show an account: balance, held, available, status, limits, mobile, loyalty.
    Account(AccountFlag),
    /// Show authd's counters: replies by reason, connections, log syncs.
    Stats,
    /// Check authd answers, and how fast.
    Echo,
    /// Open, resolve or list disputes (payers' claims against captures).
    #[command(subcommand)]
    Dispute(disputes::DisputeCommand),
    /// List a payer's pending offers, logged on as its device, not as the operator.
    ///
    /// The operator role cannot list offers (protocol version 1), so this logs on as the
    /// payer's device, or as a gateway (a device registered for account 0, which sees every
    /// payer's offers), with the id and secret register-device printed; no operator key.
    /// Prints each offer's id, merchant and origin, amount, reference and seconds left.
    Offers {
        /// The device's id, as register-device printed it.
        #[arg(long, value_name = "N")]
        device: u32,
        /// The device's secret, 64 hex digits as register-device printed it, or `-` to read it
        /// from standard input.
        #[arg(long, value_name = "HEX|-", value_parser = operator::parse_given_secret)]
        device_secret: operator::Given<[u8; 32]>,
    },
    /// Where one offer stands, asked as the merchant's terminal, not as the operator.
    ///
    /// The operator role cannot ask for an offer's state (protocol version 1), so this logs on
    /// as a terminal of the merchant that made the offer, with the id and secret
    /// register-terminal printed; no operator key. authd shows a terminal its own merchant's
    /// offers only.
    Offer {
        /// A terminal of the merchant that made the offer.
        #[arg(long, value_name = "N")]
        terminal: u32,
        /// The terminal's secret, 64 hex digits as register-terminal printed it, or `-` to read
        /// it from standard input.
        #[arg(long, value_name = "HEX|-", value_parser = operator::parse_given_secret)]
        terminal_secret: operator::Given<[u8; 32]>,
        /// The offer's id.
        #[arg(long, value_name = "N")]
        offer: u64,
    },
    /// Bulk set-up for load tests: merchants, terminals and funded payers, pipelined; writes
    /// the terminals' credentials to a CSV file (mode 0600: it holds secrets).
    Provision(provision::ProvisionFlags),
}

/// One account number.
#[derive(Args, Debug)]
struct AccountFlag {
    /// The account number.
    #[arg(long)]
    account: u64,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("authctl: {error:#}");
            if error.downcast_ref::<Declined>().is_some() {
                ExitCode::from(EXIT_DECLINED)
            } else if error.downcast_ref::<operator::OutcomeUnknown>().is_some() {
                ExitCode::from(EXIT_OUTCOME_UNKNOWN)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Log on and run the subcommand; returns what to print.
fn run(flags: Flags) -> anyhow::Result<String> {
    operator::set_timeout(std::time::Duration::from_secs(flags.timeout_s));
    let exponents = amount::Exponents {
        given: flags.currency_exponent,
    };
    match flags.command {
        Command::Offers {
            device,
            device_secret,
        } => {
            let secret = device_secret.resolve("--device-secret", operator::parse_secret)?;
            return offers::list(&flags.connect, exponents, device, secret);
        }
        Command::Offer {
            terminal,
            terminal_secret,
            offer,
        } => {
            let secret = terminal_secret.resolve("--terminal-secret", operator::parse_secret)?;
            return offers::status(&flags.connect, exponents.or_default(), terminal, secret, offer);
        }
        _ => {}
    }
    // A PIN from standard input is read before logging on: no connection waits on a person.
    let pin = match &flags.command {
        Command::SetPin { pin, .. } => Some(pin.clone().resolve("--pin", |text| Ok(text.to_string()))?),
        _ => None,
    };
    let key_path = operator::key_path(&flags.data_dir, flags.key.as_deref());
    let connect = || Operator::connect(&flags.connect, &key_path);
    let mut operator = connect()?;
    let operator = &mut operator;
    match flags.command {
        Command::OpenAccount {
            mobile,
            currency,
            limits,
        } => commands::open_account(operator, exponents.of(currency)?, mobile, currency, &limits),
        Command::Load { account, amount } => commands::load(operator, exponents, account, &amount),
        Command::Limits { account, limits } => commands::set_limits(operator, exponents, account, &limits),
        Command::SetPin { account, .. } => {
            commands::set_pin(operator, account, pin.as_deref().unwrap_or_default())
        }
        Command::Freeze(flag) => commands::set_status(operator, flag.account, AccountStatus::Frozen),
        Command::Unfreeze(flag) => commands::set_status(operator, flag.account, AccountStatus::Active),
        Command::Close(flag) => commands::set_status(operator, flag.account, AccountStatus::Closed),
        Command::RegisterMerchant {
            fee_bps,
            fee_bps_with_product,
            origin,
        } => commands::register_merchant(operator, fee_bps, fee_bps_with_product, &origin),
        Command::RegisterTerminal { merchant } => commands::register_terminal(operator, merchant),
        Command::RegisterDevice(flag) => commands::register_device(operator, flag.account),
        Command::Account(flag) => commands::account(operator, exponents, flag.account),
        Command::Stats => commands::stats(operator),
        Command::Echo => commands::echo(operator, &flags.connect),
        Command::Dispute(dispute) => {
            // Disputes name holds, not accounts: the books' currency is the funding account's.
            let exponent = exponents.of(commands::books_currency(operator)?)?;
            disputes::run(operator, exponent, &dispute)
        }
        Command::Provision(provision) => {
            let exponent = exponents.of(provision.currency)?;
            provision::run(operator, &connect, exponent, &provision)
        }
        Command::Offers { .. } | Command::Offer { .. } => unreachable!("answered before the operator log-on"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_flags_are_consistent() {
        Flags::command().debug_assert();
    }

    #[test]
    fn global_flags_go_after_the_subcommand_too() {
        let flags = Flags::try_parse_from(["authctl", "stats", "--connect", "10.0.0.1:7700"]).expect("parse");
        assert_eq!(flags.connect, "10.0.0.1:7700");
        assert_eq!(flags.currency_exponent, None, "the currency's own");
    }

    #[test]
    fn dispute_flags_take_kebab_case_causes_and_sides() {
        let flags = Flags::try_parse_from([
            "authctl",
            "dispute",
            "open",
            "--hold",
            "7",
            "--amount",
            "5",
            "--cause",
            "not-delivered",
        ])
        .expect("parse");
        assert!(matches!(
            flags.command,
            Command::Dispute(disputes::DisputeCommand::Open {
                hold: 7,
                cause: disputes::Cause::NotDelivered,
                ..
            })
        ));
        let flags = Flags::try_parse_from([
            "authctl",
            "dispute",
            "resolve",
            "--dispute",
            "3",
            "--for",
            "merchant",
        ])
        .expect("parse");
        assert!(matches!(
            flags.command,
            Command::Dispute(disputes::DisputeCommand::Resolve {
                dispute: 3,
                side: disputes::Side::Merchant
            })
        ));
    }

    #[test]
    fn a_short_secret_is_a_usage_error() {
        let error = Flags::try_parse_from(["authctl", "offers", "--device", "5", "--device-secret", "abcd"])
            .expect_err("short secret");
        assert!(error.to_string().contains("64 hex digits"), "{error}");
        let flags = Flags::try_parse_from([
            "authctl",
            "offers",
            "--device",
            "5",
            "--device-secret",
            &"0A".repeat(32),
        ])
        .expect("parse");
        assert!(
            matches!(flags.command, Command::Offers { device_secret, .. } if device_secret == operator::Given::Typed([10; 32]))
        );
        let flags = Flags::try_parse_from(["authctl", "offers", "--device", "5", "--device-secret", "-"])
            .expect("parse");
        assert!(matches!(
            flags.command,
            Command::Offers {
                device_secret: operator::Given::Stdin,
                ..
            }
        ));
    }

    #[test]
    fn a_malformed_amount_is_a_usage_error() {
        let error = Flags::try_parse_from(["authctl", "load", "--account", "5", "--amount", "1,5"])
            .expect_err("malformed");
        assert!(error.to_string().contains("not an amount"), "{error}");
    }
}
