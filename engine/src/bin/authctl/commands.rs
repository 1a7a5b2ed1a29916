//! One function per single-request subcommand: build the request, call, say what happened.
//! Each returns the text to print; a decline comes back as an error from [`Operator::call`].

use std::time::Instant;

use anyhow::{anyhow, bail};
use wire::messages::operator::{
    AccountInfo, LoadFunds, OpenAccount, RegisterDevice, RegisterMerchant, RegisterTerminal, SetLimits,
    SetPin, SetStatus, Stats,
};
use wire::messages::reply::AccountInfoReply;
use wire::messages::terminal::Echo;
use wire::types::{AccountKind, AccountNumber, AccountStatus, Limits, MerchantId, ShortText};
use wire::{PinBlock, Reply, Request};

use crate::amount::{format_minor, Exponents, MajorAmount};
use crate::mobile::format_mobile;
use crate::operator::Operator;
use crate::output;
use crate::LimitFlags;

/// `open-account`: a payer with optional mobile alias and limits (absent = no limit).
pub fn open_account(
    operator: &mut Operator,
    exponent: u8,
    mobile: Option<u64>,
    currency: u16,
    flags: &LimitFlags,
) -> anyhow::Result<String> {
    let limits = apply_limits(Limits::NONE, flags, exponent)?;
    let request = Request::OpenAccount(OpenAccount {
        kind: AccountKind::Payer,
        currency,
        mobile: mobile.unwrap_or(0),
        limits,
    });
    // The mobile is named so that a decline for an alias taken says which.
    let what = match mobile {
        Some(mobile) => format!("open-account --mobile {}", format_mobile(mobile)),
        None => "open-account".to_string(),
    };
    let Reply::OpenAccount(reply) = operator.call(&what, &request)? else {
        bail!("authd answered open-account with another reply type");
    };
    Ok(format!(
        "opened payer account {}\n  currency {currency}, mobile {}\n  limits {}\n",
        reply.account.0,
        format_mobile(mobile.unwrap_or(0)),
        output::limits(&limits, exponent)
    ))
}

/// `load`: credit a payer from the issuer's funding account.
pub fn load(
    operator: &mut Operator,
    exponents: Exponents,
    account: u64,
    amount: &MajorAmount,
) -> anyhow::Result<String> {
    // The account's currency says how many decimals the amount has.
    let exponent = exponents.of(account_info(operator, account)?.currency)?;
    let amount_minor = amount.minor(exponent)?;
    let request = Request::LoadFunds(LoadFunds {
        account: AccountNumber(account),
        amount_minor,
    });
    let Reply::LoadFunds(reply) = operator.call(&format!("load into account {account}"), &request)? else {
        bail!("authd answered load with another reply type");
    };
    Ok(format!(
        "loaded {} into account {account}: balance {}, available {}\n",
        format_minor(amount_minor, exponent),
        format_minor(reply.balance_minor, exponent),
        format_minor(reply.available_minor, exponent)
    ))
}

/// `limits`: read the current limits, change the ones given, write them back.
pub fn set_limits(
    operator: &mut Operator,
    exponents: Exponents,
    account: u64,
    flags: &LimitFlags,
) -> anyhow::Result<String> {
    let info = account_info(operator, account)?;
    let exponent = exponents.of(info.currency)?;
    let current = info.limits;
    let limits = apply_limits(current, flags, exponent)?;
    let request = Request::SetLimits(SetLimits {
        account: AccountNumber(account),
        limits,
    });
    operator.call(&format!("limits of account {account}"), &request)?;
    Ok(format!(
        "limits of account {account}: {}\n",
        output::limits(&limits, exponent)
    ))
}

/// `base` with the limits given in `flags` replaced.
fn apply_limits(base: Limits, flags: &LimitFlags, exponent: u8) -> anyhow::Result<Limits> {
    let mut limits = base;
    if let Some(limit) = &flags.limit_payment {
        limits.per_payment_minor = limit.minor(exponent)?;
    }
    if let Some(limit) = &flags.limit_day {
        limits.per_day_minor = limit.minor(exponent)?;
    }
    if let Some(limit) = flags.limit_count {
        limits.per_day_count = limit.0;
    }
    if let Some(limit) = &flags.pin_above {
        limits.pin_above_minor = limit.minor(exponent)?;
    }
    Ok(limits)
}

/// `set-pin`: the PIN travels as a PIN block; authd keeps a verifier only.
pub fn set_pin(operator: &mut Operator, account: u64, pin: &str) -> anyhow::Result<String> {
    let pin = PinBlock::from_digits(pin).map_err(|error| anyhow!("--pin: {error}"))?;
    let request = Request::SetPin(SetPin {
        account: AccountNumber(account),
        pin,
    });
    operator.call(&format!("set-pin of account {account}"), &request)?;
    Ok(format!(
        "PIN of account {account} set (a PIN lock-out, if any, is lifted)\n"
    ))
}

/// `freeze`, `unfreeze`, `close`: a payer's status, or a merchant's by its settlement account.
pub fn set_status(operator: &mut Operator, account: u64, status: AccountStatus) -> anyhow::Result<String> {
    let request = Request::SetStatus(SetStatus {
        account: AccountNumber(account),
        status,
    });
    let name = output::status(Some(status));
    operator.call(&format!("making account {account} {name}"), &request)?;
    Ok(format!("account {account} is now {name}\n"))
}

/// `register-merchant`: its id and settlement account.
pub fn register_merchant(
    operator: &mut Operator,
    fee_bps: u16,
    fee_bps_with_product: u16,
    origin: &str,
) -> anyhow::Result<String> {
    let origin = ShortText::new(origin)
        .ok_or_else(|| anyhow!("--origin is {} bytes; at most 32 fit", origin.len()))?;
    let request = Request::RegisterMerchant(RegisterMerchant {
        fee_bps,
        fee_bps_with_product,
        origin,
    });
    let what = format!("register-merchant --origin {}", origin.as_str());
    let Reply::RegisterMerchant(reply) = operator.call(&what, &request)? else {
        bail!("authd answered register-merchant with another reply type");
    };
    Ok(format!(
        "merchant {} registered\nsettlement account {}\nfee {fee_bps} bps, {fee_bps_with_product} bps with product details\n",
        reply.merchant_id.0, reply.settlement_account.0
    ))
}

/// `register-terminal`: its id and secret, which authd never shows again.
pub fn register_terminal(operator: &mut Operator, merchant: u32) -> anyhow::Result<String> {
    let request = Request::RegisterTerminal(RegisterTerminal {
        merchant_id: MerchantId(merchant),
    });
    let what = format!("register-terminal for merchant {merchant}");
    let Reply::RegisterTerminal(reply) = operator.call(&what, &request)? else {
        bail!("authd answered register-terminal with another reply type");
    };
    Ok(format!(
        "terminal {} registered for merchant {merchant}\n{}",
        reply.terminal_id.0,
        output::secret_once(&reply.secret)
    ))
}

/// `register-device`: its id and secret, which authd never shows again.
pub fn register_device(operator: &mut Operator, account: u64) -> anyhow::Result<String> {
    let request = Request::RegisterDevice(RegisterDevice {
        account: AccountNumber(account),
    });
    let what = format!("register-device for account {account}");
    let Reply::RegisterDevice(reply) = operator.call(&what, &request)? else {
        bail!("authd answered register-device with another reply type");
    };
    Ok(format!(
        "device {} registered for account {account}\n{}",
        reply.device_id.0,
        output::secret_once(&reply.secret)
    ))
}

/// `account`: everything authd knows about one account.
pub fn account(operator: &mut Operator, exponents: Exponents, account: u64) -> anyhow::Result<String> {
    let info = account_info(operator, account)?;
    Ok(output::account(&info, exponents.of(info.currency)?))
}

/// The books' currency (one per deployment): the funding account's.
pub fn books_currency(operator: &mut Operator) -> anyhow::Result<u16> {
    Ok(account_info(operator, 1)?.currency)
}

fn account_info(operator: &mut Operator, account: u64) -> anyhow::Result<AccountInfoReply> {
    let request = Request::AccountInfo(AccountInfo {
        account: AccountNumber(account),
    });
    match operator.call(&format!("account {account}"), &request)? {
        Reply::AccountInfo(info) => Ok(info),
        _ => bail!("authd answered account with another reply type"),
    }
}

/// `stats`: the server's counters by name.
pub fn stats(operator: &mut Operator) -> anyhow::Result<String> {
    let Reply::Stats(reply) = operator.call("stats", &Request::Stats(Stats {}))? else {
        bail!("authd answered stats with another reply type");
    };
    Ok(output::counters(reply.counters.as_slice()))
}

/// `echo`: a round trip, timed.
pub fn echo(operator: &mut Operator, address: &str) -> anyhow::Result<String> {
    let value = 0x0123_4567_89ab_cdef;
    let started = Instant::now();
    let Reply::Echo(reply) = operator.call("echo", &Request::Echo(Echo { value }))? else {
        bail!("authd answered echo with another reply type");
    };
    let elapsed_us = started.elapsed().as_micros();
    if reply.value != value {
        bail!("authd echoed {:#x} instead of {value:#x}", reply.value);
    }
    Ok(format!("authd at {address} answered echo in {elapsed_us} us\n"))
}
