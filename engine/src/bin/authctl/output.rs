//! Readable text for what authd answers: accounts, limits, counters, secrets.

use std::fmt::Write as _;

use wire::counter;
use wire::logon::secret_to_hex;
use wire::messages::reply::{AccountInfoReply, Counter};
use wire::reason::reason_info;
use wire::types::{AccountKind, AccountStatus, Limits};

use crate::amount::{format_limit, format_minor, format_signed};
use crate::mobile::format_mobile;

/// A new secret, with the warning that this is the only time it is shown.
pub fn secret_once(secret: &[u8; 32]) -> String {
    format!(
        "secret {}\nthis secret is shown once only: authd keeps no copy it can show again; store it now\n",
        secret_to_hex(secret)
    )
}

/// `active`, `frozen`, `closed`.
pub fn status(status: Option<AccountStatus>) -> &'static str {
    match status {
        Some(AccountStatus::Active) => "active",
        Some(AccountStatus::Frozen) => "frozen",
        Some(AccountStatus::Closed) => "closed",
        None => "unknown",
    }
}

fn kind(kind: Option<AccountKind>) -> &'static str {
    match kind {
        Some(AccountKind::Payer) => "payer",
        Some(AccountKind::Merchant) => "merchant settlement",
        Some(AccountKind::IssuerFunding) => "issuer funding",
        Some(AccountKind::IssuerFee) => "issuer fees",
        None => "unknown",
    }
}

/// `per payment 50.00, per day none, payments per day 10, PIN above 25.00`.
pub fn limits(limits: &Limits, exponent: u8) -> String {
    let count = if limits.per_day_count == u32::MAX {
        "none".to_string()
    } else {
        limits.per_day_count.to_string()
    };
    format!(
        "per payment {}, per day {}, payments per day {count}, PIN above {}",
        format_limit(limits.per_payment_minor, exponent),
        format_limit(limits.per_day_minor, exponent),
        format_limit(limits.pin_above_minor, exponent)
    )
}

/// One account, a field a line; amounts in major units.
pub fn account(info: &AccountInfoReply, exponent: u8) -> String {
    let mut text = format!("account {}\n", info.account.0);
    let mut line = |name: &str, value: String| {
        let _ = writeln!(text, "  {name:<10} {value}");
    };
    line("kind", kind(info.kind).to_string());
    line("currency", info.currency.to_string());
    if info.kind != Some(AccountKind::Payer) {
        // Ledger accounts' balances are signed (the funding account goes negative), sent as
        // the bits of an i64.
        line(
            "balance",
            format_signed(i128::from(info.balance_minor as i64), exponent),
        );
        return text;
    }
    line("status", status(info.status).to_string());
    line("balance", format_minor(info.balance_minor, exponent));
    line("held", format_minor(info.held_minor, exponent));
    line("available", format_minor(info.available_minor, exponent));
    line("mobile", format_mobile(info.mobile));
    line("loyalty", format!("{} points", info.loyalty_points));
    line("limits", limits(&info.limits, exponent));
    text
}

/// The name of a counter id (engine/src/server/stats.rs), reasons by their table name.
pub fn counter_name(id: u16) -> String {
    let name = match id {
        counter::REPLIES => "replies",
        counter::REPLIES_PER_S => "replies per second",
        counter::CONNECTIONS_OPEN => "connections open",
        counter::CONNECTIONS_ACCEPTED => "connections accepted",
        counter::CONNECTIONS_REFUSED => "connections refused",
        counter::LOGONS_FAILED => "log-ons failed",
        counter::LOG_RECORDS => "log records written",
        counter::LOG_SYNCS => "log syncs",
        counter::LOG_SYNC_P50_US => "log sync p50 us",
        counter::LOG_SYNC_P99_US => "log sync p99 us",
        counter::LOG_SYNC_MAX_US => "log sync max us",
        counter::FRAMES_MALFORMED => "frames malformed",
        counter::LOG_SYNC_US => "log sync time us",
        counter::LOG_FSYNC_ALWAYS => "log fsync always",
        counter::LOG_SEGMENTS_STARTED => "log segments started",
        counter::LOG_SEGMENTS_REUSED => "log segments reused",
        _ => {
            if let Some((_, threshold_us)) = counter::LOG_HELD_PAST.iter().find(|(held, _)| *held == id) {
                return format!("log held past {} ms us", threshold_us / 1_000);
            }
            return reason_counter_name(id);
        }
    };
    name.to_string()
}

fn reason_counter_name(id: u16) -> String {
    let reason = id
        .checked_sub(counter::REASON_BASE)
        .and_then(|reason| u8::try_from(reason).ok());
    match reason.and_then(reason_info) {
        Some(info) => format!("replies {} (ISO {:02})", info.name, info.iso_code),
        None => format!("counter {id}"),
    }
}

/// The counters, a name and value a line, in id order.
pub fn counters(counters: &[Counter]) -> String {
    let mut sorted = counters.to_vec();
    sorted.sort_by_key(|counter| counter.counter);
    let named: Vec<(String, u64)> = sorted
        .iter()
        .map(|counter| (counter_name(counter.counter), counter.value))
        .collect();
    let width = named.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    named.iter().fold(String::new(), |mut text, (name, value)| {
        let _ = writeln!(text, "{name:<width$}  {value}");
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_have_names_and_reasons_their_table_name() {
        assert_eq!(counter_name(counter::LOG_SYNCS), "log syncs");
        assert_eq!(
            counter_name(counter::LOG_HELD_PAST_10MS_US),
            "log held past 10 ms us"
        );
        assert_eq!(
            counter_name(counter::REASON_BASE + 14),
            "replies InsufficientFunds (ISO 51)"
        );
        assert_eq!(counter_name(counter::REASON_BASE), "replies Approved (ISO 00)");
        assert_eq!(counter_name(99), "counter 99");
        assert_eq!(counter_name(counter::REASON_BASE + 200), "counter 300");
    }

    #[test]
    fn counters_print_in_id_order_aligned() {
        let text = counters(&[
            Counter {
                counter: counter::LOG_SYNCS,
                value: 7,
            },
            Counter {
                counter: counter::REPLIES,
                value: 12,
            },
        ]);
        assert_eq!(text, "replies    12\nlog syncs  7\n");
    }

    #[test]
    fn secrets_print_as_lowercase_hex() {
        assert!(secret_once(&[0xab; 32]).starts_with(&format!("secret {}\n", "ab".repeat(32))));
    }
}
