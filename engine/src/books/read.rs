//! Reads of the books: balances, holds, offers, disputes, the registry, the invariant check
//! and the digest. Nothing here changes the books or is logged; the server makes a read's
//! reply wait for the last log position it may have observed.

use super::dispute::DisputeView;
use super::hold::Hold;
use super::offer::OfferView;
use super::registry::MerchantView;
use super::shard::AccountInfo;
use super::{state, Books, Totals};
use crate::command::{Origin, Outcome};
use crate::ids::{AccountId, Currency, DeviceId, DisputeId, HoldId, MerchantId, Status, TerminalId};
use crate::reason::Reason;

impl Books {
    /// An offer as the parties see it.
    pub fn offer(&self, offer: HoldId) -> Option<OfferView> {
        let index = self.shard_of_hold(offer)?;
        let shard = self.shards[index as usize].lock();
        shard.offer_view(shard.sequence_of(offer)?)
    }

    /// Pending offers of `payer` (or of every payer, for a gateway) with ids above `after`,
    /// in id order, at most `count_max`.
    pub fn pending_offers(
        &self,
        payer: Option<AccountId>,
        after: HoldId,
        now_us: u64,
        count_max: usize,
    ) -> Vec<OfferView> {
        let mut offers = Vec::new();
        let shards: Vec<u32> = match payer {
            Some(account) => self.shard_of_account(account).into_iter().collect(),
            None => (0..self.config.shards).collect(),
        };
        // At most `count_max` from each shard: the first `count_max` of all are among them.
        for index in shards {
            self.shards[index as usize]
                .lock()
                .pending_offers(payer, after, now_us, count_max, &mut offers);
        }
        offers.sort_unstable_by_key(|view| view.offer);
        offers.truncate(count_max);
        offers
    }

    /// Disputes with ids above `after`, in id order, at most `count_max`.
    pub fn disputes(&self, after: DisputeId, count_max: usize) -> Vec<DisputeView> {
        let mut disputes: Vec<DisputeView> = Vec::new();
        // A shard lists its disputes in id order, from the first past `after`: at most
        // `count_max` from each.
        for shard in self.shards.iter() {
            let shard = shard.lock();
            disputes.extend(shard.dispute_views_after(after).take(count_max));
        }
        disputes.sort_unstable_by_key(|view| view.dispute);
        disputes.truncate(count_max);
        disputes
    }

    /// Answer a balance check (sufficient or not); nothing changes, nothing is logged.
    pub fn balance_check(
        &self,
        origin: Origin,
        payer: AccountId,
        amount: u64,
        currency: Currency,
    ) -> Outcome {
        let Some(index) = self.shard_of_account(payer) else {
            return Outcome::declined(Reason::AccountUnknown);
        };
        self.shards[index as usize]
            .lock()
            .balance_check(&self.registry, origin, payer, amount, currency)
    }

    /// The payer behind a mobile number.
    pub fn resolve_mobile(&self, mobile: u64) -> Option<AccountId> {
        self.aliases.get(&mobile).map(|entry| entry.value().0)
    }

    /// A payer account's figures.
    pub fn account_info(&self, account: AccountId) -> Option<AccountInfo> {
        let index = self.shard_of_account(account)?;
        self.shards[index as usize].lock().account_info(account)
    }

    /// A ledger account's balance (funding, fee or a merchant's settlement): the sum of its
    /// stripes, read one shard at a time.
    pub fn ledger_balance(&self, account: AccountId) -> Option<i128> {
        let stripe = account.ledger_index()? as usize;
        Some(self.shards.iter().map(|shard| shard.lock().stripe(stripe)).sum())
    }

    /// A hold (or purchase) as kept.
    pub fn hold(&self, hold: HoldId) -> Option<Hold> {
        let index = self.shard_of_hold(hold)?;
        let shard = self.shards[index as usize].lock();
        let sequence = shard.sequence_of(hold)?;
        shard.holds.get(sequence).cloned()
    }

    /// A merchant's origin address (empty if none was booked).
    pub fn merchant_origin(&self, merchant: MerchantId) -> Option<crate::ids::Reference> {
        self.registry.merchant(merchant).map(|entry| entry.origin)
    }

    /// A merchant's status and fees.
    pub fn merchant(&self, merchant: MerchantId) -> Option<MerchantView> {
        self.registry.merchant_view(merchant)
    }

    /// A payer device's account, status and log-on secret.
    pub fn device(&self, device: DeviceId) -> Option<(AccountId, Status, [u8; 32])> {
        let entry = self.registry.device(device)?;
        Some((entry.account, entry.status(), entry.secret))
    }

    /// A terminal's merchant, status and log-on secret.
    pub fn terminal(&self, terminal: TerminalId) -> Option<(MerchantId, Status, [u8; 32])> {
        let entry = self.registry.terminal(terminal)?;
        Some((entry.merchant, entry.status(), entry.secret))
    }

    /// Check every invariant with all shards locked: per shard (held is the sum of active
    /// holds, held <= balance) and globally (all balances sum to zero: double entry).
    pub fn check_invariants(&self) -> Result<Totals, String> {
        self.check_with_merchants(self.registry.merchant_count())
    }

    /// [`Books::check_invariants`] for books just loaded from a snapshot. Its shards may be
    /// newer than its registry (a merchant registered while the snapshot was being taken can
    /// have holds in a shard saved after the registry; replay brings the registry up), so a
    /// hold's merchant is only bounded by what any registry can hold.
    pub fn check_loaded(&self) -> Result<Totals, String> {
        self.check_with_merchants(crate::limits::MERCHANTS_MAX)
    }

    fn check_with_merchants(&self, merchants: u32) -> Result<Totals, String> {
        let shards = self.lock_all();
        let mut totals = Totals {
            payers: 0,
            ledgers: 0,
        };
        let overflow = || "the balances overflow 128 bits".to_string();
        for shard in shards.iter() {
            let (payers, ledgers) = shard.check(merchants)?;
            totals.payers = totals.payers.checked_add(payers).ok_or_else(overflow)?;
            totals.ledgers = totals.ledgers.checked_add(ledgers).ok_or_else(overflow)?;
        }
        if totals.payers.checked_add(totals.ledgers) != Some(0) {
            return Err(format!(
                "double entry broken: payers {} + ledgers {} != 0",
                totals.payers, totals.ledgers
            ));
        }
        Ok(totals)
    }

    /// SHA-256 of the whole state in canonical form (see `state`), with all shards locked:
    /// equal books give equal digests, which is how replay is proven to rebuild the books.
    pub fn digest(&self) -> [u8; 32] {
        let shards = self.lock_all();
        state::digest(&self.registry, shards.iter().map(|guard| &**guard))
    }
}
