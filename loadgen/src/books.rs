//! The books check: what authd's books say moved, against what loadgen saw approved.
//!
//! Before the load, loadgen reads (ACCOUNT_INFO over an operator connection) the balance of
//! every merchant's settlement account, of the issuer's fee account, and the balance and held
//! amount of a sample of payers (the hottest ones and an even spread of the rest). After the
//! load has drained it reads them again. Every difference must equal what the approved replies
//! add up to: nothing lost (an approval the books do not show), nothing doubled (a retry or a
//! replay booked twice). When the merchants' fee is not known (credentials from a file), each
//! merchant is checked to be at most its gross takings and the merchants plus the fee account
//! must add up exactly.

use wire::client::Client;
use wire::messages::operator::AccountInfo;
use wire::types::AccountNumber;
use wire::{Reply, Request};

use crate::flow::BooksTally;
use crate::provision::{pipelined, Credentials};

/// The issuer's fee account number.
pub const FEE_ACCOUNT: u64 = 2;
/// Most mismatches listed in the report.
const MISMATCHES_LISTED_MAX: usize = 20;

/// Balances read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Settlement balance of each merchant (signed: a ledger account).
    pub merchants: Vec<i64>,
    /// The fee account's balance.
    pub fee: i64,
    /// (payer index, balance, held) of the sampled payers.
    pub payers: Vec<(usize, i64, i64)>,
}

/// Which payers the check reads: all of them up to `size`, else the first `size / 2` (the
/// hottest under zipf) and an even spread of the rest. A payer's place in the sample is
/// arithmetic, so booking a reply touches no table with a line per payer: with 100,000 payers
/// such a table missed the cache on almost every reply, a fifth of loadgen's CPU at 500,000/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayerSample {
    /// Payers `0..hot` are all in.
    hot: usize,
    /// Then every `stride`-th payer from `hot` on, `spread` of them.
    stride: usize,
    spread: usize,
}

impl PayerSample {
    /// The sample of at most `size` of `payers` payers.
    pub fn new(payers: usize, size: usize) -> PayerSample {
        if payers <= size {
            return PayerSample {
                hot: payers,
                stride: 1,
                spread: 0,
            };
        }
        let hot = size / 2;
        let spread = size - hot;
        PayerSample {
            hot,
            stride: ((payers - hot) / spread.max(1)).max(1),
            spread,
        }
    }

    /// Payers in the sample.
    pub fn len(&self) -> usize {
        self.hot + self.spread
    }

    /// True if no payer is read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payers, by place.
    pub fn payers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.hot).chain((0..self.spread).map(|place| self.hot + place * self.stride))
    }

    /// The place of `payer` in the sample, if it is in it.
    #[inline]
    pub fn place(&self, payer: usize) -> Option<usize> {
        if payer < self.hot {
            return Some(payer);
        }
        let beyond = payer - self.hot;
        let place = beyond / self.stride;
        (beyond.is_multiple_of(self.stride) && place < self.spread).then_some(self.hot + place)
    }
}

/// Reads the balances the check compares.
pub fn snapshot(
    operator: &mut Client,
    credentials: &Credentials,
    sample: &PayerSample,
) -> anyhow::Result<Snapshot> {
    let payers: Vec<usize> = sample.payers().collect();
    let accounts: Vec<u64> = credentials
        .merchants
        .iter()
        .map(|merchant| merchant.settlement)
        .chain([FEE_ACCOUNT])
        .chain(payers.iter().map(|index| credentials.payers[*index]))
        .collect();
    let requests: Vec<Request> = accounts
        .iter()
        .map(|account| {
            Request::AccountInfo(AccountInfo {
                account: AccountNumber(*account),
            })
        })
        .collect();
    let mut infos = Vec::with_capacity(accounts.len());
    for (account, reply) in accounts.iter().zip(pipelined(operator, &requests)?) {
        let Reply::AccountInfo(info) = reply else {
            anyhow::bail!("account info of {account}: unexpected reply {reply:?}");
        };
        if info.code != 0 {
            anyhow::bail!(
                "account info of {account} declined (code {}, reason {})",
                info.code,
                info.reason
            );
        }
        infos.push((info.balance_minor as i64, info.held_minor as i64));
    }
    let merchants = credentials.merchants.len();
    Ok(Snapshot {
        merchants: infos[..merchants].iter().map(|(balance, _)| *balance).collect(),
        fee: infos[merchants].0,
        payers: payers
            .iter()
            .zip(&infos[merchants + 1..])
            .map(|(index, (balance, held))| (*index, *balance, *held))
            .collect(),
    })
}

/// The verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BooksCheck {
    /// True if every figure agreed.
    pub ok: bool,
    /// Payers compared.
    pub payers_checked: usize,
    /// Merchants compared.
    pub merchants_checked: usize,
    /// True if each merchant was compared exactly (fee known).
    pub exact_per_merchant: bool,
    /// Requests whose outcome loadgen never learnt: a mismatch may be theirs.
    pub unknown_outcomes: u64,
    /// What disagreed (the first few).
    pub mismatches: Vec<String>,
    /// How many figures disagreed.
    pub mismatch_count: usize,
}

/// Compares the change from `before` to `after` with `tally`.
pub fn compare(before: &Snapshot, after: &Snapshot, tally: &BooksTally, fee_known: bool) -> BooksCheck {
    let mut check = BooksCheck {
        payers_checked: after.payers.len(),
        merchants_checked: after.merchants.len(),
        exact_per_merchant: fee_known,
        unknown_outcomes: tally.unknown_outcomes,
        ..BooksCheck::default()
    };
    let mut mismatch = |text: String| {
        check.mismatch_count += 1;
        if check.mismatches.len() < MISMATCHES_LISTED_MAX {
            check.mismatches.push(text);
        }
    };
    for ((index, balance_before, held_before), (_, balance_after, held_after)) in
        before.payers.iter().zip(&after.payers)
    {
        let (expected_balance, expected_held) = tally.payer_moved(*index);
        let (balance_moved, held_moved) = (
            balance_after.wrapping_sub(*balance_before),
            held_after.wrapping_sub(*held_before),
        );
        if balance_moved != expected_balance {
            mismatch(format!(
                "payer #{index}: balance moved {} but loadgen saw {expected_balance} approved",
                balance_moved
            ));
        }
        if held_moved != expected_held {
            mismatch(format!(
                "payer #{index}: held moved {} but loadgen expects {expected_held}",
                held_moved
            ));
        }
    }
    // Wrapping: these are the server's figures, and a wrong one must be reported, not panic.
    let fee_moved = after.fee.wrapping_sub(before.fee);
    let mut moved_total = fee_moved;
    for (index, (balance_before, balance_after)) in before.merchants.iter().zip(&after.merchants).enumerate()
    {
        let moved = balance_after.wrapping_sub(*balance_before);
        moved_total = moved_total.wrapping_add(moved);
        let gross = tally.merchant_gross.get(index).copied().unwrap_or(0);
        let net = tally.merchant_net.get(index).copied().unwrap_or(0);
        if fee_known && moved != net {
            mismatch(format!(
                "merchant #{index}: settlement moved {moved}, loadgen expects {net}"
            ));
        }
        if !fee_known && moved > gross {
            mismatch(format!(
                "merchant #{index}: settlement moved {moved}, above the {gross} paid to it"
            ));
        }
    }
    if fee_known && fee_moved != tally.fee {
        mismatch(format!(
            "fee account moved {}, loadgen expects {}",
            fee_moved, tally.fee
        ));
    }
    let gross_total = tally
        .merchant_gross
        .iter()
        .fold(0i64, |sum, gross| sum.wrapping_add(*gross));
    if moved_total != gross_total {
        mismatch(format!(
            "merchants and fee account moved {moved_total} in all, loadgen saw {gross_total} paid"
        ));
    }
    check.ok = check.mismatch_count == 0;
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> BooksTally {
        let mut tally = BooksTally::new(PayerSample::new(3, 10), 1, 0);
        tally.payer_balance[1] = -500;
        tally.merchant_net[0] = 500;
        tally.merchant_gross[0] = 500;
        tally
    }

    fn snapshot(payer_balance: i64, merchant: i64) -> Snapshot {
        Snapshot {
            merchants: vec![merchant],
            fee: 0,
            payers: vec![(0, 1_000, 0), (1, payer_balance, 0)],
        }
    }

    #[test]
    fn agreeing_books_pass() {
        let check = compare(&snapshot(1_000, 0), &snapshot(500, 500), &tally(), true);
        assert!(check.ok, "{check:?}");
        assert_eq!((check.payers_checked, check.merchants_checked), (2, 1));
    }

    #[test]
    fn a_lost_or_doubled_payment_is_reported() {
        let lost = compare(&snapshot(1_000, 0), &snapshot(1_000, 0), &tally(), true);
        assert!(!lost.ok);
        assert_eq!(lost.mismatch_count, 3, "{:?}", lost.mismatches);
        let doubled = compare(&snapshot(1_000, 0), &snapshot(0, 1_000), &tally(), false);
        assert!(!doubled.ok);
        assert!(doubled.mismatches[0].contains("payer #1"));
    }

    #[test]
    fn the_sample_takes_the_hottest_and_a_spread() {
        let all: Vec<usize> = PayerSample::new(3, 10).payers().collect();
        assert_eq!(all, vec![0, 1, 2]);
        let sample = PayerSample::new(1_000, 10);
        let payers: Vec<usize> = sample.payers().collect();
        assert_eq!(payers.len(), 10);
        assert_eq!(&payers[..5], &[0, 1, 2, 3, 4]);
        assert!(payers[9] > 800 && payers[9] < 1_000, "{payers:?}");
        assert!(PayerSample::new(1_000, 0).is_empty());
    }

    #[test]
    fn a_payer_is_placed_where_the_sample_lists_it_and_no_other_is() {
        for (payers, size) in [
            (3, 10),
            (10, 10),
            (11, 10),
            (1_000, 10),
            (1_000, 999),
            (100_000, 1_000),
            (5, 0),
        ] {
            let sample = PayerSample::new(payers, size);
            let listed: Vec<usize> = sample.payers().collect();
            assert_eq!(listed.len(), sample.len());
            assert!(listed.len() <= size && listed.iter().all(|payer| *payer < payers));
            for payer in 0..payers {
                let expected = listed.iter().position(|listed| *listed == payer);
                assert_eq!(
                    sample.place(payer),
                    expected,
                    "payer {payer} of {payers}, sample {size}"
                );
            }
        }
    }
}
