//! Reversals: a terminal that is unsure whether a request reached us asks to undo it by its
//! request id.
//!
//! | the original | what the reversal does |
//! |---|---|
//! | never arrived | leaves a marker: the late original is declined (`Reversed`) |
//! | was declined, or already reversed | nothing; approved |
//! | an approved authorization, hold active and nothing captured | voids the hold, gives back the day's usage |
//! | an approved increment, hold still active | takes the increment off the hold |
//! | an approved purchase, not refunded | undoes it exactly: payer, merchant, fee, loyalty |
//! | anything else (capture, void, refund, a (partly) captured hold) | declined: use void or refund |
//! | an original of another payer | declined (`InvalidRequest`) |

use crate::books::hold::HoldState;
use crate::books::idempotency::Entry;
use crate::books::shard::{Shard, STRIPE_FEE};
use crate::command::{Outcome, TerminalOp};
use crate::ids::{AccountId, HoldId, RequestKey};
use crate::reason::Reason;

const KIND_AUTHORIZE: u8 = 1;
const KIND_INCREMENT: u8 = 2;
const KIND_PURCHASE: u8 = 5;

impl Shard {
    pub(crate) fn reversal(
        &mut self,
        payer: AccountId,
        original: RequestKey,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        let slot = self.slot_of(payer).ok_or(Reason::AccountUnknown)?;
        let Some(entry) = self.window.get(&original) else {
            let marker = Entry {
                key: original,
                fingerprint: 0,
                kind: 0,
                outcome: Outcome::declined(Reason::Reversed),
                at_us: now_us,
                reversed: true,
            };
            self.window.insert(marker);
            return Ok(Outcome::approved(0, 0));
        };
        if entry.reversed || !entry.outcome.reason.is_approved() {
            self.mark_reversed(&original);
            return Ok(Outcome::approved(entry.outcome.id, 0));
        }
        let hold = HoldId(entry.outcome.id);
        let hold_payer = self
            .sequence_of(hold)
            .and_then(|sequence| self.holds.get(sequence))
            .map(|kept| kept.payer_slot);
        if hold_payer.is_some_and(|hold_slot| hold_slot != slot) {
            // The reversal names another payer than the original paid with.
            return Err(Reason::InvalidRequest);
        }
        let undone = match entry.kind {
            KIND_AUTHORIZE => self.undo_authorize(hold, now_us)?,
            KIND_INCREMENT => self.undo_increment(hold, &entry, now_us)?,
            KIND_PURCHASE => self.undo_purchase(hold, &entry, now_us)?,
            _ => return Err(Reason::InvalidRequest),
        };
        self.mark_reversed(&original);
        Ok(Outcome::approved(hold.0, undone))
    }

    fn mark_reversed(&mut self, original: &RequestKey) {
        self.window.update(original, |entry| entry.reversed = true);
    }

    fn undo_authorize(&mut self, hold: HoldId, now_us: u64) -> Result<u64, Reason> {
        let sequence = self.sequence_of(hold).ok_or(Reason::HoldUnknown)?;
        let entry = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if entry.state != HoldState::Active || entry.captured != 0 {
            return Err(Reason::HoldNotActive);
        }
        let released = entry.held;
        // Releasing gives back the day's usage, increments included.
        self.release_hold(sequence, HoldState::Voided, now_us);
        Ok(released)
    }

    fn undo_increment(&mut self, hold: HoldId, original: &Entry, now_us: u64) -> Result<u64, Reason> {
        let sequence = self.sequence_of(hold).ok_or(Reason::HoldUnknown)?;
        let amount = original.outcome.amount;
        let entry = self.holds.get_mut(sequence).ok_or(Reason::HoldUnknown)?;
        if entry.state != HoldState::Active || entry.held < amount {
            return Err(Reason::HoldNotActive);
        }
        entry.held -= amount;
        entry.authorized -= amount;
        let payer = &mut self.payers[entry.payer_slot as usize];
        assert!(payer.held >= amount, "a payer's held covers each of its holds");
        payer.held -= amount;
        payer.uncount_payment(now_us, original.at_us, amount, 0);
        Ok(amount)
    }

    fn undo_purchase(&mut self, hold: HoldId, original: &Entry, now_us: u64) -> Result<u64, Reason> {
        let sequence = self.sequence_of(hold).ok_or(Reason::HoldUnknown)?;
        let found = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if found.state != HoldState::Captured || found.refunded != 0 {
            return Err(Reason::HoldNotActive);
        }
        self.credit_room(found.payer_slot as usize, found.captured)?;
        let entry = self.holds.get_mut(sequence).ok_or(Reason::HoldUnknown)?;
        let (amount, fee) = (entry.captured, entry.fee);
        entry.state = HoldState::Voided;
        entry.refunded = entry.captured;
        entry.finished_us = now_us;
        let (slot, merchant, points) = (entry.payer_slot as usize, entry.merchant, entry.loyalty_points);
        let payer = &mut self.payers[slot];
        payer.balance += amount;
        payer.uncount_payment(now_us, original.at_us, amount, 1);
        let cold = &mut self.cold[slot];
        cold.loyalty_points = cold.loyalty_points.saturating_sub(u64::from(points));
        self.post(1 + merchant as usize, -i128::from(amount - fee));
        self.post(STRIPE_FEE, -i128::from(fee));
        Ok(amount)
    }
}

/// True if a terminal operation is one a reversal can undo.
pub fn is_reversible(op: &TerminalOp) -> bool {
    matches!(
        op,
        TerminalOp::Authorize { .. } | TerminalOp::Increment { .. } | TerminalOp::Purchase { .. }
    )
}
