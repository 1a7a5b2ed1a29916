//! Offers: a merchant asks the payer, on the payer's phone, to pay.
//!
//! An offer is a hold with `Hold::offer` set and a reference text: placed after the checks of
//! an authorization (payer, payee, limits, funds; the PIN comes with the payer's accept), it
//! stays OFFERED until the first of: the payer accepts with the right PIN (the hold is captured
//! in full, fee as for a capture), the payer rejects, the merchant cancels (the hold is
//! released), or it expires (released by the expiry timer, or found expired by a late answer).
//! A repeated answer that agrees with the final state is approved again without a second
//! effect; any other late answer is declined `OfferClosed`. Every change is recorded as an
//! [`OfferEvent`] for the server to push to the payer's devices and the merchant's terminal.

use crate::books::hold::{HoldState, OFFER, OFFER_CANCELLED, OFFER_REJECTED};
use crate::books::payment::{merchant_stripe, new_hold, Payment};
use crate::books::registry::Registry;
use crate::books::shard::{Shard, STRIPE_FEE};
use crate::command::{Origin, Outcome};
use crate::ids::{AccountId, Currency, HoldId, MerchantId, PinBlock, Reference, Status, TerminalId};
use crate::limits::{OFFER_LIFETIME_DEFAULT_US, OFFER_LIFETIME_MAX_US};
use crate::reason::Reason;

/// Where an offer stands (the numbers are the wire's).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfferState {
    /// Waiting for the payer.
    Offered = 1,
    /// The payer accepted: captured.
    Accepted = 2,
    /// The payer rejected: released.
    Rejected = 3,
    /// Nobody answered in time: released.
    Expired = 4,
    /// The merchant withdrew it: released.
    Cancelled = 5,
}

/// An offer as the parties see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferView {
    /// The offer (its hold id).
    pub offer: HoldId,
    /// The payer asked.
    pub payer: AccountId,
    /// The merchant asking.
    pub merchant: MerchantId,
    /// The terminal that sent it.
    pub terminal: TerminalId,
    /// Amount, minor units.
    pub amount: u64,
    /// Where it stands.
    pub state: OfferState,
    /// When it expires.
    pub expires_us: u64,
    /// The merchant's text.
    pub reference: Reference,
}

/// A change of an offer, for the server to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferEvent {
    /// The offer after the change.
    pub view: OfferView,
}

impl Shard {
    /// Place an offer (see the module doc).
    pub(crate) fn offer(
        &mut self,
        registry: &Registry,
        origin: Origin,
        payment: &Payment,
        lifetime_us: u64,
        reference: Reference,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        if lifetime_us > OFFER_LIFETIME_MAX_US
            || std::str::from_utf8(&reference.bytes[..usize::from(reference.len).min(32)]).is_err()
        {
            return Err(Reason::InvalidRequest);
        }
        self.make_room_for_a_hold()?;
        let (slot, _) = self.admit_payment(registry, origin, payment, now_us)?;
        let lifetime_us = if lifetime_us == 0 {
            OFFER_LIFETIME_DEFAULT_US
        } else {
            lifetime_us
        };
        let payer = &mut self.payers[slot as usize];
        payer.held += payment.amount;
        payer.count_payment(now_us, payment.amount);
        let mut hold = new_hold(
            slot,
            origin,
            payment.amount,
            now_us,
            now_us.saturating_add(lifetime_us),
        );
        hold.offer = OFFER;
        let sequence = self.holds.push(hold);
        self.references.insert(sequence, reference);
        self.offer_event(sequence);
        Ok(Outcome::approved(self.hold_id(sequence).0, payment.amount))
    }

    /// The merchant cancels a pending offer.
    pub(crate) fn offer_cancel(
        &mut self,
        merchant: MerchantId,
        offer: HoldId,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        let sequence = self.owned_hold(merchant, offer)?;
        let state = self.settle_offer_clock(sequence, now_us)?;
        match state {
            OfferState::Offered => {
                if let Some(hold) = self.holds.get_mut(sequence) {
                    hold.offer = OFFER_CANCELLED;
                }
                let amount = self.holds.get(sequence).map_or(0, |hold| hold.held);
                self.release_hold(sequence, HoldState::Voided, now_us);
                Ok(Outcome::approved(offer.0, amount))
            }
            OfferState::Cancelled => Ok(Outcome::approved(offer.0, 0)),
            _ => Err(Reason::OfferClosed),
        }
    }

    /// The payer (or a gateway, `payer: None`) answers an offer.
    pub(crate) fn offer_answer(
        &mut self,
        registry: &Registry,
        offer: HoldId,
        payer: Option<AccountId>,
        accept: bool,
        pin: Option<PinBlock>,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        let sequence = self.sequence_of(offer).ok_or(Reason::HoldUnknown)?;
        let hold = self
            .holds
            .get(sequence)
            .filter(|hold| hold.offer != 0)
            .ok_or(Reason::HoldUnknown)?;
        let slot = hold.payer_slot;
        if payer.is_some_and(|payer| self.slot_of(payer) != Some(slot)) {
            return Err(Reason::HoldUnknown);
        }
        let (amount, captured, merchant) = (hold.held, hold.captured, hold.merchant);
        match (self.settle_offer_clock(sequence, now_us)?, accept) {
            (OfferState::Offered, true) => {
                // Paying now: the payer and the merchant must still be active, as for any
                // payment (either may have been frozen since the offer was made).
                self.payers[slot as usize].may_pay()?;
                let fees = registry
                    .merchant(MerchantId(merchant))
                    .filter(|entry| entry.status() == Status::Active)
                    .map(|entry| entry.fees())
                    .ok_or(Reason::MerchantInvalid)?;
                let account = self.account_id(slot);
                self.check_pin(slot, account, pin, true)?;
                self.capture_offer(sequence, amount, fees.on(amount, false), now_us);
                Ok(Outcome::approved(offer.0, amount))
            }
            (OfferState::Offered, false) => {
                if let Some(hold) = self.holds.get_mut(sequence) {
                    hold.offer = OFFER_REJECTED;
                }
                self.release_hold(sequence, HoldState::Voided, now_us);
                Ok(Outcome::approved(offer.0, amount))
            }
            (OfferState::Accepted, true) => Ok(Outcome::approved(offer.0, captured)),
            (OfferState::Rejected, false) => Ok(Outcome::approved(offer.0, 0)),
            _ => Err(Reason::OfferClosed),
        }
    }

    /// The offer's state at `now_us`, expiring it first if its time has passed.
    fn settle_offer_clock(&mut self, sequence: u64, now_us: u64) -> Result<OfferState, Reason> {
        let hold = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if hold.state == HoldState::Active && now_us >= hold.expires_us {
            self.release_hold(sequence, HoldState::Expired, now_us);
        }
        self.offer_view(sequence)
            .map(|view| view.state)
            .ok_or(Reason::HoldUnknown)
    }

    fn capture_offer(&mut self, sequence: u64, amount: u64, fee: u64, now_us: u64) {
        let Some(hold) = self.holds.get_mut(sequence) else {
            return;
        };
        let (slot, merchant) = (hold.payer_slot as usize, hold.merchant);
        // Everything held is captured, so the release below gives nothing back.
        hold.held -= amount;
        hold.captured += amount;
        hold.fee += fee;
        let payer = &mut self.payers[slot];
        assert!(
            payer.held >= amount && payer.balance >= amount,
            "an offer captures what it reserved"
        );
        payer.balance -= amount;
        payer.held -= amount;
        self.post(merchant_stripe(merchant), i128::from(amount - fee));
        self.post(STRIPE_FEE, i128::from(fee));
        self.release_hold(sequence, HoldState::Captured, now_us);
    }

    /// An offer of this shard as the parties see it.
    pub fn offer_view(&self, sequence: u64) -> Option<OfferView> {
        let hold = self.holds.get(sequence).filter(|hold| hold.offer != 0)?;
        let state = match (hold.state, hold.offer) {
            (HoldState::Active, _) => OfferState::Offered,
            (HoldState::Captured, _) => OfferState::Accepted,
            (HoldState::Expired, _) => OfferState::Expired,
            (HoldState::Voided, OFFER_REJECTED) => OfferState::Rejected,
            (HoldState::Voided, _) => OfferState::Cancelled,
        };
        Some(OfferView {
            offer: self.hold_id(sequence),
            payer: self.account_id(hold.payer_slot),
            merchant: MerchantId(hold.merchant),
            terminal: TerminalId(hold.terminal),
            amount: hold.authorized,
            state,
            expires_us: hold.expires_us,
            reference: self.references.get(&sequence).copied().unwrap_or_default(),
        })
    }

    /// Record a change of the offer at `sequence` for the server.
    pub(crate) fn offer_event(&mut self, sequence: u64) {
        if let Some(view) = self.offer_view(sequence) {
            let slot = self.holds.get(sequence).map_or(0, |hold| hold.payer_slot);
            self.index_offer(sequence, slot, view.state == OfferState::Offered);
            self.events.push(OfferEvent { view });
        }
    }

    /// Pending offers of this shard (of `payer`, or of everyone) with ids above `after`, the
    /// first `count_max` in id order. A shard's ids grow with its sequences, so the scan of
    /// the pending offers (the payer's, or all; not every hold) starts at the first sequence
    /// whose id is above `after` and stops at `count_max`.
    pub fn pending_offers(
        &self,
        payer: Option<AccountId>,
        after: HoldId,
        now_us: u64,
        count_max: usize,
        out: &mut Vec<OfferView>,
    ) {
        let slot = payer.and_then(|payer| self.slot_of(payer));
        if payer.is_some() && slot.is_none() {
            return;
        }
        let from = self.first_hold_sequence_after(after.0);
        let sequences: Box<dyn Iterator<Item = u64> + '_> = match slot {
            Some(slot) => Box::new(
                self.pending_offers_by_payer
                    .range((slot, from)..=(slot, u64::MAX))
                    .map(|&(_, sequence)| sequence),
            ),
            None => Box::new(self.pending_offers.range(from..).copied()),
        };
        let mut found = 0;
        for sequence in sequences {
            if found == count_max {
                return;
            }
            let Some(hold) = self.holds.get(sequence) else {
                continue;
            };
            let wanted = hold.offer != 0
                && hold.state == HoldState::Active
                && hold.expires_us > now_us
                && slot.is_none_or(|slot| slot == hold.payer_slot);
            if wanted {
                if let Some(view) = self.offer_view(sequence) {
                    out.push(view);
                    found += 1;
                }
            }
        }
    }
}

/// The payment fields of an offer.
pub(crate) fn offer_payment(payer: AccountId, amount: u64, currency: Currency) -> Payment {
    Payment {
        payer,
        amount,
        currency,
        pin: None,
        pin_deferred: true,
    }
}
