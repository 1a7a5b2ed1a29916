//! `dispute open|resolve|list`: the operator opens a dispute on a payer's behalf against a
//! capture (the amount moves provisionally from the merchant to the payer, held until decided),
//! resolves it for the payer (final) or the merchant (moved back), and lists them all.

use std::fmt::Write as _;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use wire::messages::operator::{DisputeList, DisputeOpen, DisputeResolve};
use wire::messages::reply::DisputeSummary;
use wire::types::{DisputeCause, DisputeId, DisputeOutcome, DisputeState, HoldId};
use wire::{Reply, Request};

use crate::amount::{format_minor, MajorAmount};
use crate::operator::Operator;

/// Most pages `dispute list` asks for in one run (16 disputes a page: 1.6 million disputes).
pub const LIST_PAGES_MAX: u32 = 100_000;

/// The subcommands of `dispute`.
#[derive(Subcommand, Debug)]
pub enum DisputeCommand {
    /// Open a dispute against a captured hold or purchase: the amount moves from the merchant to
    /// the payer at once, held on the payer's account until the dispute is resolved. One open
    /// dispute per capture, never more than captured minus refunded.
    Open {
        /// The captured hold or purchase (its transaction id).
        #[arg(long)]
        hold: u64,
        /// Amount disputed, major units.
        #[arg(long, value_name = "AMOUNT")]
        amount: MajorAmount,
        /// Why the payer disputes it.
        #[arg(long, value_enum)]
        cause: Cause,
    },
    /// Decide an open dispute: for the payer (the credit becomes final) or for the merchant
    /// (the amount goes back to the merchant).
    Resolve {
        /// The dispute's id, as `dispute open` or `dispute list` printed it.
        #[arg(long)]
        dispute: u64,
        /// Who wins.
        #[arg(long = "for", value_enum, value_name = "SIDE")]
        side: Side,
    },
    /// List every dispute, oldest first (asks authd page by page).
    List {
        /// Only disputes with a larger id.
        #[arg(long, value_name = "DISPUTE", default_value_t = 0)]
        after: u64,
    },
}

/// Why a dispute is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cause {
    /// Nothing was delivered.
    NotDelivered,
    /// Delivered but unusable.
    Defective,
    /// Only part was delivered.
    Partial,
    /// Anything else.
    Other,
}

/// Who a dispute is resolved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Side {
    /// The payer keeps the credit.
    Payer,
    /// The merchant gets the amount back.
    Merchant,
}

/// Run a `dispute` subcommand; returns what to print.
pub fn run(operator: &mut Operator, exponent: u8, command: &DisputeCommand) -> anyhow::Result<String> {
    match command {
        DisputeCommand::Open { hold, amount, cause } => open(operator, exponent, *hold, amount, *cause),
        DisputeCommand::Resolve { dispute, side } => resolve(operator, *dispute, *side),
        DisputeCommand::List { after } => list(operator, exponent, *after),
    }
}

fn open(
    operator: &mut Operator,
    exponent: u8,
    hold: u64,
    amount: &MajorAmount,
    cause: Cause,
) -> anyhow::Result<String> {
    let amount_minor = amount.minor(exponent)?;
    let cause = match cause {
        Cause::NotDelivered => DisputeCause::NotDelivered,
        Cause::Defective => DisputeCause::Defective,
        Cause::Partial => DisputeCause::Partial,
        Cause::Other => DisputeCause::Other,
    };
    let request = Request::DisputeOpen(DisputeOpen {
        hold_id: HoldId(hold),
        amount_minor,
        cause,
    });
    let Reply::DisputeOpen(reply) = operator.call(&format!("dispute open on hold {hold}"), &request)? else {
        bail!("authd answered dispute open with another reply type");
    };
    Ok(format!(
        "dispute {} opened on hold {hold}: {} {}\n  moved from the merchant to the payer, held until \
         `dispute resolve --dispute {} --for payer|merchant`\n",
        reply.dispute_id.0,
        format_minor(amount_minor, exponent),
        cause_name(cause),
        reply.dispute_id.0
    ))
}

fn resolve(operator: &mut Operator, dispute: u64, side: Side) -> anyhow::Result<String> {
    let (outcome, effect) = match side {
        Side::Payer => (DisputeOutcome::ForPayer, "for the payer: the credit is final"),
        Side::Merchant => (
            DisputeOutcome::ForMerchant,
            "for the merchant: the amount went back to the merchant",
        ),
    };
    let request = Request::DisputeResolve(DisputeResolve {
        dispute_id: DisputeId(dispute),
        outcome,
    });
    operator.call(&format!("dispute resolve of dispute {dispute}"), &request)?;
    Ok(format!("dispute {dispute} resolved {effect}\n"))
}

/// Every dispute after `after`, a page a request, until authd says there are no more.
fn list(operator: &mut Operator, exponent: u8, after: u64) -> anyhow::Result<String> {
    let mut disputes: Vec<DisputeSummary> = Vec::new();
    let mut cursor = after;
    for _ in 0..LIST_PAGES_MAX {
        let request = Request::DisputeList(DisputeList {
            after_dispute_id: DisputeId(cursor),
        });
        let Reply::DisputeList(page) = operator.call("dispute list", &request)? else {
            bail!("authd answered dispute list with another reply type");
        };
        let entries = page.disputes.as_slice();
        if let Some(last) = entries.last() {
            if last.dispute_id.0 <= cursor {
                bail!(
                    "authd listed dispute {} after {cursor}; its list does not advance",
                    last.dispute_id.0
                );
            }
            cursor = last.dispute_id.0;
        }
        disputes.extend_from_slice(entries);
        if !page.more || entries.is_empty() {
            return Ok(dispute_table(&disputes, exponent));
        }
    }
    bail!(
        "stopped after {LIST_PAGES_MAX} pages ({} disputes); pass --after {cursor} to go on",
        disputes.len()
    )
}

/// A header and a line per dispute, aligned; the state last (it has spaces).
fn dispute_table(disputes: &[DisputeSummary], exponent: u8) -> String {
    if disputes.is_empty() {
        return "no disputes\n".to_string();
    }
    let rows: Vec<[String; 5]> = disputes
        .iter()
        .map(|dispute| {
            [
                dispute.dispute_id.0.to_string(),
                dispute.hold_id.0.to_string(),
                format_minor(dispute.amount_minor, exponent),
                cause_name(dispute.cause).to_string(),
                state_name(dispute.state).to_string(),
            ]
        })
        .collect();
    let header = ["dispute", "hold", "amount", "cause", "state"].map(String::from);
    let widths: [usize; 5] = std::array::from_fn(|column| {
        rows.iter()
            .chain([&header])
            .map(|row| row[column].len())
            .max()
            .unwrap_or(0)
    });
    [header].iter().chain(&rows).fold(String::new(), |mut text, row| {
        let [dispute, hold, amount, cause, state] = row;
        let _ = writeln!(
            text,
            "{dispute:<w0$}  {hold:<w1$}  {amount:>w2$}  {cause:<w3$}  {state}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        text
    })
}

fn cause_name(cause: DisputeCause) -> &'static str {
    match cause {
        DisputeCause::NotDelivered => "not-delivered",
        DisputeCause::Defective => "defective",
        DisputeCause::Partial => "partial",
        DisputeCause::Other => "other",
    }
}

fn state_name(state: DisputeState) -> &'static str {
    match state {
        DisputeState::Open => "open",
        DisputeState::ResolvedForPayer => "resolved for payer",
        DisputeState::ResolvedForMerchant => "resolved for merchant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispute_table_aligns_columns_and_puts_the_state_last() {
        let dispute = |id, amount_minor, state| DisputeSummary {
            dispute_id: DisputeId(id),
            hold_id: HoldId(id * 100),
            amount_minor,
            cause: DisputeCause::NotDelivered,
            state,
        };
        let text = dispute_table(
            &[
                dispute(1, 500, DisputeState::Open),
                dispute(12, 123_456, DisputeState::ResolvedForMerchant),
            ],
            2,
        );
        assert_eq!(
            text,
            "dispute  hold   amount  cause          state\n\
             1        100      5.00  not-delivered  open\n\
             12       1200  1234.56  not-delivered  resolved for merchant\n"
        );
        assert_eq!(dispute_table(&[], 2), "no disputes\n");
    }
}
