//! The terminal commands of one shard: the decision pipeline of the seeds and the money
//! movements that follow an approval.
//!
//! Order of checks for a payment (authorize, purchase): amount well-formed -> payer admissible
//! (exists, active, currency) -> payee admissible (merchant, terminal, ownership) ->
//! authorization criteria (per payment, per day amount, per day count) -> safety criterion
//! (PIN) -> funds. The first failing check names the reason.

use crate::books::account::pin_verifier;
use crate::books::hold::{Hold, HoldState};
use crate::books::idempotency::{fingerprint, Entry};
use crate::books::registry::{Fees, Registry};
use crate::books::shard::{Shard, STRIPE_FEE};
use crate::command::{Extras, Origin, Outcome, TerminalOp};
use crate::ids::{AccountId, Currency, HoldId, MerchantId, PinBlock, RequestKey};
use crate::limits::{
    AMOUNT_MINOR_MAX, HOLD_LIFETIME_DEFAULT_US, HOLD_LIFETIME_MAX_US, LOYALTY_POINTS_MAX, PIN_TRIES_MAX,
};
use crate::reason::Reason;

/// A payment request's fields, shared by authorize and purchase.
pub(crate) struct Payment {
    pub(crate) payer: AccountId,
    pub(crate) amount: u64,
    pub(crate) currency: Currency,
    pub(crate) pin: Option<PinBlock>,
    /// An offer: the PIN comes with the payer's accept, so the safety criterion waits.
    pub(crate) pin_deferred: bool,
}

/// Stripe index of a merchant's settlement account.
pub(crate) fn merchant_stripe(merchant: u32) -> usize {
    1 + merchant as usize
}

impl Shard {
    /// Execute a terminal command, answering a retry from the idempotency window.
    pub fn terminal(&mut self, registry: &Registry, origin: Origin, op: &TerminalOp, now_us: u64) -> Outcome {
        let key_hash = self.window.hash(&origin.key);
        self.warm_up(key_hash, op);
        let print = fingerprint(op);
        if let Some(entry) = self.window.get_hashed(&origin.key, key_hash) {
            if entry.is_marker() {
                // The original arrives after its reversal: decline it, and let its own
                // retries get the same answer.
                let outcome = Outcome::declined(Reason::Reversed);
                self.window.update_hashed(&origin.key, key_hash, |entry| {
                    entry.kind = op.kind();
                    entry.fingerprint = print;
                    entry.outcome = outcome;
                });
                return outcome;
            }
            if entry.kind != op.kind() || entry.fingerprint != print {
                return Outcome::declined(Reason::DuplicateConflict);
            }
            if entry.reversed && entry.outcome.reason.is_approved() {
                // Its original was applied, then reversed: a retry must not read "approved"
                // (the merchant would deliver for money given back). A decline stays itself.
                return Outcome::declined(Reason::Reversed);
            }
            return entry.outcome;
        }
        let outcome = self.decide(registry, origin, op, now_us);
        let entry = Entry {
            key: origin.key,
            fingerprint: print,
            kind: op.kind(),
            outcome,
            at_us: now_us,
            reversed: false,
        };
        self.window.insert_hashed(entry, key_hash);
        outcome
    }

    /// Start loading, all at once, the memory this request will touch: the payer's line, the
    /// window's index bucket for the new key and its ring slots, the hold ring's front. Done
    /// one after another as the decision needs them, each is a cache miss the next waits for
    /// (4-5 in a row on a large book, most of a purchase's time); issued together the misses
    /// overlap. Reads only; `std::hint::black_box` keeps them from being optimised away.
    fn warm_up(&self, key_hash: u64, op: &TerminalOp) {
        if let Some(slot) = op.payment_payer().and_then(|payer| self.slot_of(payer)) {
            std::hint::black_box(self.payers[slot as usize].balance);
        }
        self.window.warm_up(key_hash);
        self.holds.warm_up();
    }

    fn decide(&mut self, registry: &Registry, origin: Origin, op: &TerminalOp, now_us: u64) -> Outcome {
        // Payments admit the payer before the payee (the seeds' order); operations on an
        // existing hold admit the payee first, since the hold is found through it.
        let fees = match op {
            TerminalOp::Authorize { .. } | TerminalOp::Purchase { .. } | TerminalOp::Offer { .. } => None,
            _ => match registry.admit_payee(origin.merchant, origin.key.terminal) {
                Ok(fees) => Some(fees),
                Err(reason) => return Outcome::declined(reason),
            },
        };
        let result = match *op {
            TerminalOp::Authorize {
                payer,
                amount,
                currency,
                pin,
                lifetime_us,
            } => {
                let payment = Payment {
                    payer,
                    amount,
                    currency,
                    pin,
                    pin_deferred: false,
                };
                self.authorize(registry, origin, &payment, lifetime_us, now_us)
            }
            TerminalOp::Purchase {
                payer,
                amount,
                currency,
                pin,
                extras,
            } => {
                let payment = Payment {
                    payer,
                    amount,
                    currency,
                    pin,
                    pin_deferred: false,
                };
                self.purchase(registry, origin, &payment, extras, now_us)
            }
            TerminalOp::Increment { hold, amount } => self.increment(origin.merchant, hold, amount, now_us),
            TerminalOp::Capture {
                hold,
                amount,
                last,
                extras,
            } => {
                let fees = fees.unwrap_or_else(|| unreachable!("admitted above"));
                self.capture(origin.merchant, hold, amount, last, fees, extras, now_us)
            }
            TerminalOp::Void { hold } => self.void(origin.merchant, hold, now_us),
            TerminalOp::Refund { hold, amount } => self.refund(origin.merchant, hold, amount, now_us),
            TerminalOp::Reversal {
                payer,
                original_request_id,
            } => {
                let key = RequestKey {
                    terminal: origin.key.terminal,
                    request_id: original_request_id,
                };
                if key == origin.key {
                    // A reversal cannot name itself as its original.
                    return Outcome::declined(Reason::InvalidRequest);
                }
                self.reversal(payer, key, now_us)
            }
            TerminalOp::Offer {
                payer,
                amount,
                currency,
                lifetime_us,
                reference,
            } => {
                let payment = crate::books::offer::offer_payment(payer, amount, currency);
                self.offer(registry, origin, &payment, lifetime_us, reference, now_us)
            }
            TerminalOp::OfferCancel { offer } => self.offer_cancel(origin.merchant, offer, now_us),
            TerminalOp::ReportFailedProvisioning { hold, amount, cause } => {
                self.report_failed_provisioning(origin.merchant, hold, amount, cause)
            }
        };
        result.unwrap_or_else(Outcome::declined)
    }

    /// Answer a balance check: approved if the payer could pay `amount` now. Changes nothing.
    pub fn balance_check(
        &self,
        registry: &Registry,
        origin: Origin,
        payer: AccountId,
        amount: u64,
        currency: Currency,
    ) -> Outcome {
        let check = || -> Result<Outcome, Reason> {
            check_amount(amount)?;
            let slot = self.admit_payer(payer, currency)?;
            registry.admit_payee(origin.merchant, origin.key.terminal)?;
            if self.payers[slot as usize].available() < amount {
                return Err(Reason::InsufficientFunds);
            }
            Ok(Outcome::approved(0, amount))
        };
        check().unwrap_or_else(Outcome::declined)
    }

    /// The payer half of admission: the account exists here, is active, pays in `currency`.
    fn admit_payer(&self, payer: AccountId, currency: Currency) -> Result<u32, Reason> {
        let slot = self.slot_of(payer).ok_or(Reason::AccountUnknown)?;
        let account = &self.payers[slot as usize];
        account.may_pay()?;
        if account.currency != currency {
            return Err(Reason::CurrencyMismatch);
        }
        Ok(slot)
    }

    /// Everything before the money moves: admission, criteria, safety, funds. A wrong PIN is
    /// counted here, which is why this takes `&mut self`.
    pub(crate) fn admit_payment(
        &mut self,
        registry: &Registry,
        origin: Origin,
        payment: &Payment,
        now_us: u64,
    ) -> Result<(u32, Fees), Reason> {
        check_amount(payment.amount)?;
        let slot = self.admit_payer(payment.payer, payment.currency)?;
        let fees = registry.admit_payee(origin.merchant, origin.key.terminal)?;
        let payer = &self.payers[slot as usize];
        if payment.amount > payer.payment_max {
            return Err(Reason::PaymentLimitExceeded);
        }
        let (day_amount, day_count) = payer.day_usage(now_us);
        if day_amount.saturating_add(payment.amount) > payer.day_amount_max {
            return Err(Reason::DailyAmountExceeded);
        }
        if day_count >= payer.day_count_max {
            return Err(Reason::DailyCountExceeded);
        }
        let pin_needed = payment.amount > payer.pin_above;
        if !payment.pin_deferred && (pin_needed || payment.pin.is_some()) {
            self.check_pin(slot, payment.payer, payment.pin, pin_needed)?;
        }
        if self.payers[slot as usize].available() < payment.amount {
            return Err(Reason::InsufficientFunds);
        }
        Ok((slot, fees))
    }

    /// The safety criterion. A wrong proof counts toward the lockout; a right one resets it.
    pub(crate) fn check_pin(
        &mut self,
        slot: u32,
        account: AccountId,
        pin: Option<PinBlock>,
        needed: bool,
    ) -> Result<(), Reason> {
        let payer = &mut self.payers[slot as usize];
        if payer.pin_locked() {
            return Err(Reason::PinLocked);
        }
        let Some(pin) = pin else {
            debug_assert!(needed);
            return Err(Reason::PinRequired);
        };
        let Some(verifier) = self.cold[slot as usize].pin_verifier else {
            // No PIN was ever set: nothing to guess, so nothing is counted.
            return Err(Reason::PinIncorrect);
        };
        if verifier != pin_verifier(account, &pin) {
            payer.pin_failures = payer.pin_failures.saturating_add(1).min(PIN_TRIES_MAX);
            return Err(if payer.pin_locked() {
                Reason::PinLocked
            } else {
                Reason::PinIncorrect
            });
        }
        payer.pin_failures = 0;
        Ok(())
    }

    fn authorize(
        &mut self,
        registry: &Registry,
        origin: Origin,
        payment: &Payment,
        lifetime_us: u64,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        if lifetime_us > HOLD_LIFETIME_MAX_US {
            return Err(Reason::InvalidRequest);
        }
        self.make_room_for_a_hold()?;
        let (slot, _) = self.admit_payment(registry, origin, payment, now_us)?;
        let lifetime_us = if lifetime_us == 0 {
            HOLD_LIFETIME_DEFAULT_US
        } else {
            lifetime_us
        };
        let payer = &mut self.payers[slot as usize];
        payer.held += payment.amount;
        payer.count_payment(now_us, payment.amount);
        let hold = new_hold(
            slot,
            origin,
            payment.amount,
            now_us,
            now_us.saturating_add(lifetime_us),
        );
        let sequence = self.holds.push(hold);
        Ok(Outcome::approved(self.hold_id(sequence).0, payment.amount))
    }

    fn purchase(
        &mut self,
        registry: &Registry,
        origin: Origin,
        payment: &Payment,
        extras: Extras,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        if extras.loyalty_points > LOYALTY_POINTS_MAX {
            return Err(Reason::InvalidRequest);
        }
        self.make_room_for_a_hold()?;
        let (slot, fees) = self.admit_payment(registry, origin, payment, now_us)?;
        let amount = payment.amount;
        let fee = fees.on(amount, extras.product_details);
        let payer = &mut self.payers[slot as usize];
        payer.balance -= amount;
        payer.count_payment(now_us, amount);
        self.accrue_loyalty(slot, extras.loyalty_points);
        self.post(merchant_stripe(origin.merchant.0), i128::from(amount - fee));
        self.post(STRIPE_FEE, i128::from(fee));
        let mut hold = new_hold(slot, origin, amount, now_us, now_us);
        hold.state = HoldState::Captured;
        hold.held = 0;
        hold.captured = amount;
        hold.fee = fee;
        hold.loyalty_points = extras.loyalty_points;
        hold.finished_us = now_us;
        let sequence = self.holds.push(hold);
        Ok(Outcome::approved(self.hold_id(sequence).0, amount))
    }

    /// Loyalty lives in the cold part: only captures that carry points touch it.
    pub(crate) fn accrue_loyalty(&mut self, slot: u32, points: u32) {
        if points > 0 {
            self.cold[slot as usize].loyalty_points += u64::from(points);
        }
    }

    /// At capacity, forget the oldest finished hold (its refund window ends early); if the
    /// oldest is still active, the shard is full.
    pub(crate) fn make_room_for_a_hold(&mut self) -> Result<(), Reason> {
        if self.holds.len() < self.holds_max as usize || self.holds.prune(u64::MAX, 1) == 1 {
            return Ok(());
        }
        Err(Reason::CapacityExceeded)
    }

    /// The sequence of an active, unexpired hold of `merchant`; an expired one is released.
    pub(crate) fn active_hold(
        &mut self,
        merchant: MerchantId,
        hold: HoldId,
        now_us: u64,
    ) -> Result<u64, Reason> {
        let sequence = self.owned_hold(merchant, hold)?;
        let entry = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if entry.offer != 0 {
            // An offer's hold is the payer's to answer (with the PIN when it is due) and the
            // merchant's only to cancel: a capture, increment or void would take or change it
            // without the payer's consent.
            return Err(Reason::NotPermitted);
        }
        match entry.state {
            HoldState::Active if now_us >= entry.expires_us => {
                self.release_hold(sequence, HoldState::Expired, now_us);
                Err(Reason::HoldExpired)
            }
            HoldState::Active => Ok(sequence),
            HoldState::Expired => Err(Reason::HoldExpired),
            HoldState::Captured | HoldState::Voided => Err(Reason::HoldNotActive),
        }
    }

    /// The sequence of a kept hold placed for `merchant`. Another merchant's hold is reported
    /// as unknown, so a terminal learns nothing of other merchants' holds.
    pub(crate) fn owned_hold(&self, merchant: MerchantId, hold: HoldId) -> Result<u64, Reason> {
        let sequence = self.sequence_of(hold).ok_or(Reason::HoldUnknown)?;
        match self.holds.get(sequence) {
            Some(entry) if entry.merchant == merchant.0 => Ok(sequence),
            _ => Err(Reason::HoldUnknown),
        }
    }

    fn increment(
        &mut self,
        merchant: MerchantId,
        hold: HoldId,
        amount: u64,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        check_amount(amount)?;
        let sequence = self.active_hold(merchant, hold, now_us)?;
        let (slot, authorized) = match self.holds.get(sequence) {
            Some(entry) => (entry.payer_slot, entry.authorized),
            None => return Err(Reason::HoldUnknown),
        };
        let payer = &mut self.payers[slot as usize];
        payer.may_pay()?;
        if authorized.saturating_add(amount) > payer.payment_max {
            return Err(Reason::PaymentLimitExceeded);
        }
        let (day_amount, _) = payer.day_usage(now_us);
        if day_amount.saturating_add(amount) > payer.day_amount_max {
            return Err(Reason::DailyAmountExceeded);
        }
        if authorized <= payer.pin_above && authorized.saturating_add(amount) > payer.pin_above {
            // At most the threshold, the hold needed no PIN, and this would take it past: an
            // increment carries no PIN, so void and authorize again with it. (A hold above the
            // threshold needed the PIN to be authorized; judged by today's threshold, as the
            // hold records no PIN: see DESIGN.md.)
            return Err(Reason::PinRequired);
        }
        if payer.available() < amount {
            return Err(Reason::InsufficientFunds);
        }
        payer.held += amount;
        payer.count_usage(now_us, amount, 0);
        if let Some(entry) = self.holds.get_mut(sequence) {
            entry.held += amount;
            entry.authorized += amount;
        }
        Ok(Outcome::approved(hold.0, amount))
    }

    #[allow(clippy::too_many_arguments)]
    fn capture(
        &mut self,
        merchant: MerchantId,
        hold: HoldId,
        amount: u64,
        last: bool,
        fees: Fees,
        extras: Extras,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        check_amount(amount)?;
        if extras.loyalty_points > LOYALTY_POINTS_MAX {
            return Err(Reason::InvalidRequest);
        }
        let sequence = self.active_hold(merchant, hold, now_us)?;
        let Some(entry) = self.holds.get_mut(sequence) else {
            return Err(Reason::HoldUnknown);
        };
        if amount > entry.held {
            return Err(Reason::AmountAboveOriginal);
        }
        // What the fee of the hold's captures grows by, at this capture's rate: rounded down
        // capture by capture, a hold captured in small parts would pay none; at one rate the
        // captures pay exactly the fee of their sum (at most the amount, whatever came before).
        let fee = fees.on(entry.captured + amount, extras.product_details)
            - fees.on(entry.captured, extras.product_details);
        entry.held -= amount;
        entry.captured += amount;
        entry.fee += fee;
        entry.loyalty_points = entry.loyalty_points.saturating_add(extras.loyalty_points);
        let slot = entry.payer_slot as usize;
        let finished = last || entry.held == 0;
        let payer = &mut self.payers[slot];
        assert!(
            payer.held >= amount && payer.balance >= amount,
            "a capture takes only what its hold reserved"
        );
        payer.held -= amount;
        payer.balance -= amount;
        self.accrue_loyalty(slot as u32, extras.loyalty_points);
        self.post(merchant_stripe(merchant.0), i128::from(amount - fee));
        self.post(STRIPE_FEE, i128::from(fee));
        if finished {
            self.release_hold(sequence, HoldState::Captured, now_us);
        }
        Ok(Outcome::approved(hold.0, amount))
    }

    fn void(&mut self, merchant: MerchantId, hold: HoldId, now_us: u64) -> Result<Outcome, Reason> {
        let sequence = self.active_hold(merchant, hold, now_us)?;
        let released = self.holds.get(sequence).map_or(0, |entry| entry.held);
        self.release_hold(sequence, HoldState::Voided, now_us);
        Ok(Outcome::approved(hold.0, released))
    }

    fn refund(
        &mut self,
        merchant: MerchantId,
        hold: HoldId,
        amount: u64,
        _now_us: u64,
    ) -> Result<Outcome, Reason> {
        check_amount(amount)?;
        let sequence = self.owned_hold(merchant, hold)?;
        let found = self.holds.get(sequence).ok_or(Reason::HoldUnknown)?;
        if amount > found.captured - found.refunded {
            return Err(Reason::AmountAboveOriginal);
        }
        let slot = found.payer_slot as usize;
        self.credit_room(slot, amount)?;
        let Some(entry) = self.holds.get_mut(sequence) else {
            return Err(Reason::HoldUnknown);
        };
        entry.refunded += amount;
        // The merchant bears the refund in full; the fee it paid is not returned.
        self.payers[slot].balance += amount;
        self.post(merchant_stripe(merchant.0), -i128::from(amount));
        Ok(Outcome::approved(hold.0, amount))
    }
}

pub(crate) fn check_amount(amount: u64) -> Result<(), Reason> {
    if amount == 0 || amount > AMOUNT_MINOR_MAX {
        return Err(Reason::AmountInvalid);
    }
    Ok(())
}

pub(crate) fn new_hold(slot: u32, origin: Origin, amount: u64, now_us: u64, expires_us: u64) -> Hold {
    Hold {
        payer_slot: slot,
        merchant: origin.merchant.0,
        terminal: origin.key.terminal.0,
        state: HoldState::Active,
        offer: 0,
        loyalty_points: 0,
        held: amount,
        authorized: amount,
        captured: 0,
        refunded: 0,
        fee: 0,
        created_us: now_us,
        expires_us,
        finished_us: 0,
    }
}
