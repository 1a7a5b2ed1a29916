//! Disputes: the issuer helps when digital goods bought with a capture were not delivered.
//!
//! - A terminal reports failed provisioning: the payer is refunded from the merchant at once
//!   and a dispute is recorded as resolved for the payer.
//! - The operator opens a dispute on the payer's behalf: the amount moves from the merchant to
//!   the payer provisionally, held on the payer's account so it cannot be spent before the
//!   dispute is resolved; resolving for the payer releases it, for the merchant moves it back.
//! - One open dispute per capture; a dispute (like a refund) never exceeds what was captured
//!   and not yet refunded or disputed. The payer's `held` counts open disputes besides holds.

use crate::books::payment::{check_amount, merchant_stripe};
use crate::books::shard::Shard;
use crate::command::Outcome;
use crate::ids::{AccountId, DisputeId, HoldId, MerchantId};
use crate::limits::DISPUTES_PER_SHARD_MAX;
use crate::reason::Reason;

/// Where a dispute stands (the numbers are the wire's).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisputeState {
    /// Provisionally credited to the payer, held.
    Open = 1,
    /// Final: the payer keeps the money.
    ResolvedForPayer = 2,
    /// Final: the money went back to the merchant.
    ResolvedForMerchant = 3,
}

impl DisputeState {
    /// The state for a stored byte.
    pub fn from_u8(value: u8) -> Option<DisputeState> {
        match value {
            1 => Some(DisputeState::Open),
            2 => Some(DisputeState::ResolvedForPayer),
            3 => Some(DisputeState::ResolvedForMerchant),
            _ => None,
        }
    }
}

/// One dispute; it keeps what it needs even after its hold is pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispute {
    /// The disputed hold (or purchase).
    pub hold_sequence: u64,
    /// Its payer's slot.
    pub payer_slot: u32,
    /// Its merchant.
    pub merchant: u32,
    /// Amount disputed.
    pub amount: u64,
    /// Why (wire `DisputeCause`).
    pub cause: u8,
    /// Where it stands.
    pub state: DisputeState,
}

/// A dispute as the operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisputeView {
    /// The dispute.
    pub dispute: DisputeId,
    /// The disputed hold.
    pub hold: HoldId,
    /// The payer.
    pub payer: AccountId,
    /// Amount.
    pub amount: u64,
    /// Cause.
    pub cause: u8,
    /// State.
    pub state: DisputeState,
}

impl Shard {
    /// The id of the dispute at `index` of this shard.
    pub fn dispute_id(&self, index: usize) -> DisputeId {
        DisputeId(((index as u64 + 1) << self.shard_bits) | u64::from(self.index))
    }

    fn dispute_index(&self, dispute: DisputeId) -> Option<usize> {
        let mask = (1u64 << self.shard_bits) - 1;
        if dispute.0 & mask != u64::from(self.index) {
            return None;
        }
        let index = usize::try_from((dispute.0 >> self.shard_bits).checked_sub(1)?).ok()?;
        (index < self.disputes.len()).then_some(index)
    }

    /// Whether `amount` of a hold can go back to its payer by a dispute, after checks: no
    /// more than captured and not refunded, room for the record, and the payer's balance
    /// ceiling.
    fn disputable(&self, sequence: u64, amount: u64) -> Result<(), Reason> {
        check_amount(amount)?;
        let hold = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if hold.captured - hold.refunded < amount {
            return Err(Reason::AmountAboveOriginal);
        }
        if self.disputes.len() >= DISPUTES_PER_SHARD_MAX {
            return Err(Reason::CapacityExceeded);
        }
        self.credit_room(hold.payer_slot as usize, amount)
    }

    fn record_dispute(&mut self, sequence: u64, amount: u64, cause: u8, state: DisputeState) -> DisputeId {
        let (payer_slot, merchant) = self
            .holds
            .get(sequence)
            .map_or((0, 0), |hold| (hold.payer_slot, hold.merchant));
        self.disputes.push(Dispute {
            hold_sequence: sequence,
            payer_slot,
            merchant,
            amount,
            cause,
            state,
        });
        self.dispute_id(self.disputes.len() - 1)
    }

    /// A terminal reports that goods of this capture could not be provisioned.
    pub(crate) fn report_failed_provisioning(
        &mut self,
        merchant: MerchantId,
        hold: HoldId,
        amount: u64,
        cause: u8,
    ) -> Result<Outcome, Reason> {
        let sequence = self.owned_hold(merchant, hold)?;
        self.disputable(sequence, amount)?;
        let Some(entry) = self.holds.get_mut(sequence) else {
            return Err(Reason::HoldUnknown);
        };
        entry.refunded += amount;
        let slot = entry.payer_slot as usize;
        self.payers[slot].balance += amount;
        self.post(merchant_stripe(merchant.0), -i128::from(amount));
        let dispute = self.record_dispute(sequence, amount, cause, DisputeState::ResolvedForPayer);
        Ok(Outcome::approved(dispute.0, amount))
    }

    /// The operator opens a dispute against a capture.
    pub(crate) fn dispute_open(&mut self, hold: HoldId, amount: u64, cause: u8) -> Result<Outcome, Reason> {
        let sequence = self.sequence_of(hold).ok_or(Reason::HoldUnknown)?;
        let already_open = self
            .disputes
            .iter()
            .any(|dispute| dispute.hold_sequence == sequence && dispute.state == DisputeState::Open);
        if already_open {
            return Err(Reason::InvalidRequest);
        }
        self.disputable(sequence, amount)?;
        let Some(entry) = self.holds.get_mut(sequence) else {
            return Err(Reason::HoldUnknown);
        };
        // The hold may still be active after a partial capture: only its captured part is
        // disputed, and the payer's `held` counts the open dispute beside what the hold keeps.
        entry.refunded += amount;
        let (slot, merchant) = (entry.payer_slot as usize, entry.merchant);
        let payer = &mut self.payers[slot];
        payer.balance += amount;
        payer.held += amount;
        self.post(merchant_stripe(merchant), -i128::from(amount));
        let dispute = self.record_dispute(sequence, amount, cause, DisputeState::Open);
        Ok(Outcome::approved(dispute.0, amount))
    }

    /// The operator resolves an open dispute.
    pub(crate) fn dispute_resolve(&mut self, dispute: DisputeId, for_payer: bool) -> Result<Outcome, Reason> {
        let index = self.dispute_index(dispute).ok_or(Reason::DisputeUnknown)?;
        let entry = &mut self.disputes[index];
        if entry.state != DisputeState::Open {
            return Err(Reason::DisputeUnknown);
        }
        entry.state = if for_payer {
            DisputeState::ResolvedForPayer
        } else {
            DisputeState::ResolvedForMerchant
        };
        let (slot, merchant, amount, sequence) = (
            entry.payer_slot as usize,
            entry.merchant,
            entry.amount,
            entry.hold_sequence,
        );
        let payer = &mut self.payers[slot];
        assert!(
            payer.held >= amount,
            "an open dispute's amount is held on its payer"
        );
        payer.held -= amount;
        if !for_payer {
            payer.balance -= amount;
            self.post(merchant_stripe(merchant), i128::from(amount));
            if let Some(hold) = self.holds.get_mut(sequence) {
                hold.refunded -= amount;
            }
        }
        Ok(Outcome::approved(dispute.0, amount))
    }

    /// Amounts of open disputes by payer slot (for the invariant check).
    pub(crate) fn open_dispute_amounts(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.disputes
            .iter()
            .filter(|dispute| dispute.state == DisputeState::Open)
            .map(|dispute| (dispute.payer_slot, dispute.amount))
    }

    /// Every dispute of this shard.
    pub fn dispute_views(&self) -> impl Iterator<Item = DisputeView> + '_ {
        self.dispute_views_after(DisputeId(0))
    }

    /// The disputes of this shard with ids above `after`, in id order: a dispute's id is the
    /// id of sequence `index + 1`, so the first index is found by arithmetic.
    pub fn dispute_views_after(&self, after: DisputeId) -> impl Iterator<Item = DisputeView> + '_ {
        let start = self.first_dispute_sequence_after(after.0).saturating_sub(1);
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(self.disputes.len());
        self.disputes[start..]
            .iter()
            .enumerate()
            .map(move |(offset, dispute)| (start + offset, dispute))
            .map(|(index, dispute)| DisputeView {
                dispute: self.dispute_id(index),
                hold: self.hold_id(dispute.hold_sequence),
                payer: self.account_id(dispute.payer_slot),
                amount: dispute.amount,
                cause: dispute.cause,
                state: dispute.state,
            })
    }
}
