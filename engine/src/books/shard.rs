//! One shard of the books: its payers, holds, ledger stripes and idempotency window, all
//! behind the one lock [`crate::Books`] takes for a command. Payments are in `payment.rs`;
//! this file has the shard's layout, the operator's changes, time, and reads.

use crate::books::account::{pin_verifier, Payer, PayerCold};
use crate::books::hold::{HoldState, HoldTable};
use crate::books::hold_ids::HoldIds;
use crate::books::idempotency::Window;
use crate::command::{Limits, Outcome};
use crate::ids::{AccountId, Currency, HoldId, PinBlock, Status};
use crate::limits::{ACCOUNTS_PER_SHARD_MAX, AMOUNT_MINOR_MAX, PAYER_ID_BASE};
use crate::reason::Reason;

/// Stripe index of the issuer's funding account.
pub const STRIPE_FUNDING: usize = 0;
/// Stripe index of the issuer's fee account.
pub const STRIPE_FEE: usize = 1;

/// Largest balance a load may bring a payer to (a thousand maximal amounts).
pub const BALANCE_MINOR_MAX: u64 = AMOUNT_MINOR_MAX * 1_000;

/// One shard's books.
#[derive(Debug)]
pub struct Shard {
    pub(crate) index: u32,
    pub(crate) shard_bits: u32,
    pub(crate) payers: Vec<Payer>,
    pub(crate) cold: Vec<PayerCold>,
    pub(crate) holds: HoldTable,
    /// The serials of the holds' ids, which skip ahead at every start of the server.
    pub(crate) hold_ids: HoldIds,
    /// This shard's part of every ledger account's balance, by ledger index (funding 0, fee 1,
    /// merchant m at 1 + m). Signed: the funding account goes negative by design.
    pub(crate) stripes: Vec<i128>,
    pub(crate) window: Window,
    /// Reference texts of offers, by hold sequence (pruned with their holds).
    pub(crate) references: std::collections::HashMap<u64, crate::ids::Reference>,
    /// Disputes of this shard, by sequence - 1.
    pub(crate) disputes: Vec<crate::books::dispute::Dispute>,
    /// Offer changes for the server to push; not part of the state.
    pub(crate) events: Vec<crate::books::offer::OfferEvent>,
    /// Sequences of the offers still pending (their holds active), in order, and the same by
    /// payer slot: lists read these, not every hold. Derived from the holds (kept by
    /// `offer_event`, rebuilt at load).
    pub(crate) pending_offers: std::collections::BTreeSet<u64>,
    pub(crate) pending_offers_by_payer: std::collections::BTreeSet<(u32, u64)>,
    pub(crate) holds_max: u32,
}

/// A payer account as the operator (or the payer) sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// The account.
    pub account: AccountId,
    /// Balance, held and what is available.
    pub balance: u64,
    /// Sum of active holds.
    pub held: u64,
    /// `balance - held`.
    pub available: u64,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: Status,
    /// Its limits.
    pub limits: Limits,
    /// Loyalty points accrued.
    pub loyalty_points: u64,
    /// The mobile alias.
    pub mobile: Option<u64>,
    /// A PIN is set.
    pub pin_set: bool,
    /// The PIN is locked by wrong tries.
    pub pin_locked: bool,
}

impl Shard {
    /// An empty shard.
    pub fn new(index: u32, shard_bits: u32, window_entries: u32, holds_max: u32) -> Shard {
        Shard {
            index,
            shard_bits,
            payers: Vec::new(),
            cold: Vec::new(),
            holds: HoldTable::new(),
            hold_ids: HoldIds::default(),
            stripes: vec![0; 2],
            window: Window::new(window_entries),
            references: std::collections::HashMap::new(),
            disputes: Vec::new(),
            events: Vec::new(),
            pending_offers: std::collections::BTreeSet::new(),
            pending_offers_by_payer: std::collections::BTreeSet::new(),
            holds_max,
        }
    }

    /// The account id of a slot of this shard.
    pub fn account_id(&self, slot: u32) -> AccountId {
        AccountId(PAYER_ID_BASE + ((u64::from(slot) << self.shard_bits) | u64::from(self.index)))
    }

    /// The slot of a payer account of this shard, if it exists.
    pub fn slot_of(&self, account: AccountId) -> Option<u32> {
        let (shard, slot) = account.payer_place(self.shard_bits)?;
        if shard != self.index {
            return None;
        }
        let slot = u32::try_from(slot).ok()?;
        ((slot as usize) < self.payers.len()).then_some(slot)
    }

    /// The hold id of a sequence of this shard.
    pub fn hold_id(&self, sequence: u64) -> HoldId {
        HoldId((self.hold_ids.serial(sequence) << self.shard_bits) | u64::from(self.index))
    }

    /// The serial of the largest id of this shard at or below `id`, if any.
    fn serial_at_or_below(&self, id: u64) -> Option<u64> {
        id.checked_sub(u64::from(self.index))
            .map(|beyond| beyond >> self.shard_bits)
    }

    /// The first sequence whose dispute id (`sequence << shard_bits | index`) is above `id`: a
    /// shard's dispute ids grow with their sequences, so a page of a list starts there.
    pub fn first_dispute_sequence_after(&self, id: u64) -> u64 {
        self.serial_at_or_below(id)
            .map_or(0, |serial| serial.saturating_add(1))
    }

    /// The first hold sequence whose id is above `id` (hold ids grow with their sequences).
    pub fn first_hold_sequence_after(&self, id: u64) -> u64 {
        self.serial_at_or_below(id)
            .map_or(0, |serial| self.hold_ids.first_sequence_after(serial))
    }

    /// Keeps the indexes of pending offers in step with the offer at `sequence`, of the payer
    /// in `slot`.
    pub(crate) fn index_offer(&mut self, sequence: u64, slot: u32, pending: bool) {
        if pending {
            self.pending_offers.insert(sequence);
            self.pending_offers_by_payer.insert((slot, sequence));
        } else {
            self.pending_offers.remove(&sequence);
            self.pending_offers_by_payer.remove(&(slot, sequence));
        }
    }

    /// The sequence of a hold id of this shard (whether or not the hold is still kept).
    pub fn sequence_of(&self, hold: HoldId) -> Option<u64> {
        let mask = (1u64 << self.shard_bits) - 1;
        if hold.0 & mask != u64::from(self.index) {
            return None;
        }
        self.hold_ids.sequence(hold.0 >> self.shard_bits)
    }

    /// A start of the server: holds from the next one on get serials from `serial` on.
    /// Declined if that would give a serial twice or pass the largest.
    pub fn start_hold_ids(&mut self, serial: u64) -> Outcome {
        let next = self.holds.next_sequence();
        match self
            .hold_ids
            .start(next, serial, crate::books::hold_ids::serial_max(self.shard_bits))
        {
            true => Outcome::approved(serial, 0),
            false => Outcome::declined(Reason::InvalidRequest),
        }
    }

    /// Add to a ledger stripe (growing the stripes when a new merchant is first paid here).
    pub(crate) fn post(&mut self, stripe: usize, amount: i128) {
        if stripe >= self.stripes.len() {
            self.stripes.resize(stripe + 1, 0);
        }
        self.stripes[stripe] += amount;
    }

    /// This shard's part of a ledger account.
    pub fn stripe(&self, stripe: usize) -> i128 {
        self.stripes.get(stripe).copied().unwrap_or(0)
    }

    /// Open a payer account here; returns its id.
    pub fn open_account(
        &mut self,
        currency: Currency,
        mobile: Option<u64>,
        limits: Limits,
        lsn: u64,
    ) -> Outcome {
        if self.payers.len() >= ACCOUNTS_PER_SHARD_MAX as usize {
            return Outcome::declined(Reason::CapacityExceeded);
        }
        let slot = self.payers.len() as u32;
        self.payers.push(Payer::new(currency, limits));
        self.cold.push(PayerCold {
            mobile,
            pin_verifier: None,
            opened_lsn: lsn,
            loyalty_points: 0,
        });
        Outcome::approved(self.account_id(slot).0, 0)
    }

    /// Move `amount` from the issuer's funding account to a payer.
    pub fn load(&mut self, account: AccountId, amount: u64) -> Outcome {
        let Some(slot) = self.slot_of(account) else {
            return Outcome::declined(Reason::AccountUnknown);
        };
        if amount == 0 || amount > AMOUNT_MINOR_MAX {
            return Outcome::declined(Reason::AmountInvalid);
        }
        let payer = &mut self.payers[slot as usize];
        if payer.status == Status::Closed {
            return Outcome::declined(Reason::AccountClosed);
        }
        match payer.balance.checked_add(amount) {
            Some(balance) if balance <= BALANCE_MINOR_MAX => payer.balance = balance,
            _ => return Outcome::declined(Reason::AmountInvalid),
        }
        self.post(STRIPE_FUNDING, -i128::from(amount));
        Outcome::approved(account.0, amount)
    }

    /// Declines a credit that would take the payer in `slot` past [`BALANCE_MINOR_MAX`], the
    /// ceiling a load respects: refunds and disputes give back what was paid, but loads in
    /// between could otherwise carry a balance past it, and in the end past u64.
    pub(crate) fn credit_room(&self, slot: usize, amount: u64) -> Result<(), Reason> {
        match self
            .payers
            .get(slot)
            .and_then(|payer| payer.balance.checked_add(amount))
        {
            Some(balance) if balance <= BALANCE_MINOR_MAX => Ok(()),
            _ => Err(Reason::AmountInvalid),
        }
    }

    /// Replace a payer's limits.
    pub fn set_limits(&mut self, account: AccountId, limits: Limits) -> Outcome {
        let Some(slot) = self.slot_of(account) else {
            return Outcome::declined(Reason::AccountUnknown);
        };
        self.payers[slot as usize].set_limits(limits);
        Outcome::approved(account.0, 0)
    }

    /// Set a payer's PIN; this also unlocks a locked PIN.
    pub fn set_pin(&mut self, account: AccountId, pin: &PinBlock) -> Outcome {
        let Some(slot) = self.slot_of(account) else {
            return Outcome::declined(Reason::AccountUnknown);
        };
        self.cold[slot as usize].pin_verifier = Some(pin_verifier(account, pin));
        self.payers[slot as usize].pin_failures = 0;
        Outcome::approved(account.0, 0)
    }

    /// Freeze, unfreeze or close. Closing needs no active hold; a closed account stays closed.
    pub fn set_status(&mut self, account: AccountId, status: Status) -> Outcome {
        let Some(slot) = self.slot_of(account) else {
            return Outcome::declined(Reason::AccountUnknown);
        };
        let payer = &mut self.payers[slot as usize];
        if payer.status == Status::Closed {
            return Outcome::declined(Reason::AccountClosed);
        }
        if status == Status::Closed && payer.held != 0 {
            return Outcome::declined(Reason::InvalidRequest);
        }
        payer.status = status;
        Outcome::approved(account.0, 0)
    }

    /// Time reached `now_us`: expire due holds, then prune holds finished before the retention.
    /// Returns how many holds expired.
    pub fn advance_time(&mut self, now_us: u64, retention_us: u64) -> u64 {
        let mut expired = 0;
        while let Some(sequence) = self.holds.pop_due(now_us) {
            self.release_hold(sequence, HoldState::Expired, now_us);
            expired += 1;
        }
        if self.holds.prune(now_us.saturating_sub(retention_us), usize::MAX) > 0 {
            let first = self.holds.first_sequence();
            self.references.retain(|sequence, _| *sequence >= first);
        }
        expired
    }

    /// End an active hold: give its remaining amount back to the payer.
    pub(crate) fn release_hold(&mut self, sequence: u64, state: HoldState, now_us: u64) {
        debug_assert_ne!(state, HoldState::Active);
        let Some(hold) = self.holds.get_mut(sequence) else {
            return;
        };
        assert_eq!(hold.state, HoldState::Active, "only an active hold is released");
        let payer = &mut self.payers[hold.payer_slot as usize];
        assert!(payer.held >= hold.held, "a payer's held covers each of its holds");
        payer.held -= hold.held;
        // What was never captured was never paid: it leaves the day's usage (and the payment
        // its count, if nothing was captured), or a merchant could use up a payer's daily
        // limits with offers the payer rejects, or authorizations it voids.
        let uncaptured = hold.authorized.saturating_sub(hold.captured);
        let count = u32::from(hold.captured == 0);
        payer.uncount_payment(now_us, hold.created_us, uncaptured, count);
        hold.held = 0;
        hold.state = state;
        hold.finished_us = now_us;
        if hold.offer != 0 {
            self.offer_event(sequence);
        }
    }

    /// A payer account's figures.
    pub fn account_info(&self, account: AccountId) -> Option<AccountInfo> {
        let slot = self.slot_of(account)? as usize;
        let payer = &self.payers[slot];
        let cold = &self.cold[slot];
        Some(AccountInfo {
            account,
            balance: payer.balance,
            held: payer.held,
            available: payer.available(),
            currency: payer.currency,
            status: payer.status,
            limits: payer.limits(),
            loyalty_points: cold.loyalty_points,
            mobile: cold.mobile,
            pin_set: cold.pin_verifier.is_some(),
            pin_locked: payer.pin_locked(),
        })
    }

    /// Check the shard's own invariants: each payer's `held` is the sum of its active holds,
    /// nobody's `held` exceeds the balance, finished holds hold nothing, refunds stay within
    /// captures. Returns the sum of payer balances and of stripes, for the global check.
    pub fn check(&self, merchants: u32) -> Result<(i128, i128), String> {
        let mut held_by_slot = vec![0u64; self.payers.len()];
        for (sequence, hold) in self.holds.iter() {
            let slot = hold.payer_slot as usize;
            let Some(held) = held_by_slot.get_mut(slot) else {
                return Err(format!(
                    "shard {} hold {sequence}: unknown payer slot {slot}",
                    self.index
                ));
            };
            if hold.merchant == 0 || hold.merchant > merchants {
                return Err(format!(
                    "shard {} hold {sequence}: unknown merchant {}",
                    self.index, hold.merchant
                ));
            }
            match hold.state {
                // Saturating: books read from a file may hold anything, and a sum past u64
                // cannot equal a payer's held amount either.
                HoldState::Active => *held = held.saturating_add(hold.held),
                _ if hold.held != 0 => {
                    return Err(format!(
                        "shard {} hold {sequence}: finished but holds {}",
                        self.index, hold.held
                    ))
                }
                _ => {}
            }
            if hold.refunded > hold.captured {
                return Err(format!(
                    "shard {} hold {sequence}: refunded above captured",
                    self.index
                ));
            }
        }
        for (slot, amount) in self.open_dispute_amounts() {
            if let Some(held) = held_by_slot.get_mut(slot as usize) {
                *held = held.saturating_add(amount);
            }
        }
        for (slot, payer) in self.payers.iter().enumerate() {
            if payer.held != held_by_slot[slot] {
                return Err(format!(
                    "shard {} slot {slot}: held {} but active holds sum to {}",
                    self.index, payer.held, held_by_slot[slot]
                ));
            }
            if payer.held > payer.balance {
                return Err(format!(
                    "shard {} slot {slot}: held {} above balance {}",
                    self.index, payer.held, payer.balance
                ));
            }
        }
        let payers: i128 = self.payers.iter().map(|payer| i128::from(payer.balance)).sum();
        let stripes = self
            .stripes
            .iter()
            .try_fold(0i128, |sum, stripe| sum.checked_add(*stripe))
            .ok_or_else(|| format!("shard {}: the ledger stripes overflow 128 bits", self.index))?;
        Ok((payers, stripes))
    }
}

impl Shard {
    /// True if advancing to `now_us` would expire or prune something here.
    pub fn time_work_due(&mut self, now_us: u64, retention_us: u64) -> bool {
        self.holds.has_due(now_us) || self.holds.can_prune(now_us.saturating_sub(retention_us))
    }
}
