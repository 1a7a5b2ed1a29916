//! The books against a plain reference model (issue 2, "Proof": a model-based property test).
//!
//! `Model` below is written from the semantics in the issue, BRIEF.md and the books' module
//! docs, not from the engine's data structures: payers in vectors per shard, holds in a
//! `BTreeMap` by their ids' serials, the idempotency window as a `VecDeque` that drops its oldest entry,
//! ledger accounts as one number each, daily usage as a list of approvals by UTC day. Random
//! sequences of every command (and balance checks) run against both; after every step the
//! outcome, every payer's figures, every ledger balance and every hold must agree, and the
//! engine's own invariant check must pass.
//!
//! Abstract steps (`Step`) are drawn first and made concrete against the model as they run,
//! so amounts land on the edges that matter (exactly what is available, one above a limit,
//! what is left to refund) and time lands on midnights and on hold expiries.
//!
//! The rules the model holds the engine to, beyond what each command obviously does:
//! - a payment is decided in the order: amount well-formed, payer admissible (known,
//!   active, currency), payee admissible (merchant, terminal, ownership), per-payment limit,
//!   per-day amount, per-day count (by UTC day), PIN, funds; before that, its own fields
//!   (lifetime, loyalty points) and room for one more hold in the shard;
//! - an increment that takes a hold authorized without the PIN past the threshold needs one
//!   (`PinRequired`: increments carry none);
//! - a wrong PIN counts, the third in a row locks (and says so), a right one resets the count,
//!   a new PIN unlocks; a proof for an account without PIN is wrong but not counted;
//! - fees are basis points rounded down, the lower rate with product details; a capture pays
//!   what the fee of the hold's captures grows by at its rate (at one rate, the fee of the sum);
//! - a released hold (voided, expired, finished by a partial capture) gives back to the day's
//!   usage what it never captured, and its count if it captured nothing, if made that day;
//!   a refund comes out of the merchant in full (the fee stays with the issuer);
//! - a retry within the shard's window (the last `WINDOW_ENTRIES` keyed requests) gets the
//!   original outcome and changes nothing (`Reversed` once its approval was reversed); other
//!   content under the same key is a conflict;
//! - a reversal undoes an authorization (voids the hold), an increment or an unrefunded
//!   purchase (money, fee, loyalty, and the day's usage if still the same day); an unknown
//!   original leaves a marker that declines the late original; a request cannot reverse itself;
//! - a hold expires at exactly `expires_us`, whether time is advanced or the hold is touched;
//!   finished holds are forgotten after the retention, oldest first, or early when the shard
//!   needs room for a new one.

use std::collections::{BTreeMap, VecDeque};

use engine::books::hold::{Hold, HoldState};
use engine::books::hold_ids::{serial_max, HOLD_SERIAL_SKIP};
use engine::limits::{
    AMOUNT_MINOR_MAX, DAY_US, FEE_BPS_MAX, HOLD_LIFETIME_DEFAULT_US, HOLD_LIFETIME_MAX_US,
    LOYALTY_POINTS_MAX, PAYER_ID_BASE, PIN_TRIES_MAX,
};
use engine::{
    AccountId, Books, BooksConfig, Command, Currency, DeviceId, Extras, HoldId, Limits, MerchantId,
    NoJournal, Origin, Outcome, PinBlock, Reason, Reference, RequestKey, Status, TerminalId, TerminalOp,
};
use proptest::prelude::*;

const EUR: Currency = Currency(978);
const USD: Currency = Currency(840);
/// Small, so that retries both hit and miss the window.
const WINDOW_ENTRIES: u32 = 6;
/// Small, so that the shard fills up and the oldest finished hold makes room.
const HOLDS_PER_SHARD_MAX: u32 = 8;
/// One day, so that finished holds are pruned while the test runs.
const RETENTION_US: u64 = DAY_US;
const HOUR_US: u64 = 3_600_000_000;
/// Two hours before a UTC midnight.
const START_US: u64 = 20_000 * DAY_US - 2 * HOUR_US;
const PINS: [PinBlock; 3] = [
    PinBlock([0x04, 0x12, 0x34, 0xff, 0xff, 0xff, 0xff, 0xff]),
    PinBlock([0x04, 0x99, 0x99, 0xff, 0xff, 0xff, 0xff, 0xff]),
    PinBlock([0x06, 0x55, 0x55, 0x55, 0xff, 0xff, 0xff, 0xff]),
];
/// An id in the payer range that no test opens.
const PAYER_UNKNOWN: AccountId = AccountId(PAYER_ID_BASE + (1 << 20));
const MERCHANT_UNKNOWN: MerchantId = MerchantId(999);
const TERMINAL_UNKNOWN: TerminalId = TerminalId(999);

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug)]
struct ModelPayer {
    currency: Currency,
    balance: u64,
    limits: Limits,
    /// Approvals counted toward the daily limits: (UTC day, amount, count, undone).
    usage: Vec<(u64, u64, u32, bool)>,
    /// What released holds gave back: (UTC day, amount never captured, payments not made).
    released: Vec<(u64, u64, u32)>,
    loyalty_points: u64,
    status: Status,
    pin: Option<PinBlock>,
    pin_failures: u8,
    mobile: Option<u64>,
}

#[derive(Clone, Debug)]
struct ModelEntry {
    key: RequestKey,
    /// `None` for the marker a reversal leaves when its original never arrived.
    op: Option<TerminalOp>,
    outcome: Outcome,
    reversed: bool,
    at_us: u64,
    /// The daily usage record the approval added: (payer, index).
    usage: Option<(AccountId, usize)>,
}

#[derive(Default, Debug)]
struct ModelShard {
    payers: Vec<ModelPayer>,
    /// Kept holds by their ids' serials (from 1; a start may skip).
    holds: BTreeMap<u64, Hold>,
    next_serial: u64,
    window: VecDeque<ModelEntry>,
}

#[derive(Clone, Copy, Debug)]
struct ModelMerchant {
    status: Status,
    fee_bps: u16,
    fee_bps_with_details: u16,
}

#[derive(Debug)]
struct Model {
    shard_bits: u32,
    shards: Vec<ModelShard>,
    ledgers: BTreeMap<AccountId, i128>,
    merchants: Vec<ModelMerchant>,
    /// (merchant, status) by terminal id - 1.
    terminals: Vec<(MerchantId, Status)>,
    /// The payer of each device, by device id - 1.
    devices: Vec<AccountId>,
    mobiles: BTreeMap<u64, AccountId>,
}

type Decided = Result<(Outcome, Option<(AccountId, usize)>), Reason>;

fn day(timestamp_us: u64) -> u64 {
    timestamp_us / DAY_US
}

fn check_amount(amount: u64) -> Result<(), Reason> {
    if amount == 0 || amount > AMOUNT_MINOR_MAX {
        return Err(Reason::AmountInvalid);
    }
    Ok(())
}

fn status_reason(status: Status) -> Result<(), Reason> {
    match status {
        Status::Active => Ok(()),
        Status::Frozen => Err(Reason::AccountFrozen),
        Status::Closed => Err(Reason::AccountClosed),
    }
}

impl Model {
    fn new(shards: u32) -> Model {
        Model {
            shard_bits: shards.trailing_zeros(),
            shards: (0..shards)
                .map(|_| ModelShard {
                    next_serial: 1,
                    ..ModelShard::default()
                })
                .collect(),
            ledgers: BTreeMap::new(),
            merchants: Vec::new(),
            terminals: Vec::new(),
            devices: Vec::new(),
            mobiles: BTreeMap::new(),
        }
    }

    fn mask(&self) -> u64 {
        (1 << self.shard_bits) - 1
    }

    fn shard_of_payer(&self, payer: AccountId) -> Option<usize> {
        let local = payer.0.checked_sub(PAYER_ID_BASE)?;
        Some((local & self.mask()) as usize)
    }

    fn shard_of_hold(&self, hold: HoldId) -> Option<usize> {
        (hold.0 >> self.shard_bits != 0).then_some((hold.0 & self.mask()) as usize)
    }

    fn payer_id(&self, shard: usize, slot: usize) -> AccountId {
        AccountId(PAYER_ID_BASE + (((slot as u64) << self.shard_bits) | shard as u64))
    }

    fn hold_id(&self, shard: usize, serial: u64) -> HoldId {
        HoldId((serial << self.shard_bits) | shard as u64)
    }

    fn payer(&self, payer: AccountId) -> Option<&ModelPayer> {
        let local = payer.0.checked_sub(PAYER_ID_BASE)?;
        let shard = &self.shards[(local & self.mask()) as usize];
        shard.payers.get(usize::try_from(local >> self.shard_bits).ok()?)
    }

    fn payer_mut(&mut self, payer: AccountId) -> Option<&mut ModelPayer> {
        let local = payer.0.checked_sub(PAYER_ID_BASE)?;
        let mask = self.mask();
        let shard = &mut self.shards[(local & mask) as usize];
        shard
            .payers
            .get_mut(usize::try_from(local >> self.shard_bits).ok()?)
    }

    fn payer_of_hold(&self, hold: &Hold, shard: usize) -> AccountId {
        self.payer_id(shard, hold.payer_slot as usize)
    }

    fn hold(&self, hold: HoldId) -> Option<&Hold> {
        let shard = self.shard_of_hold(hold)?;
        self.shards[shard].holds.get(&(hold.0 >> self.shard_bits))
    }

    fn hold_mut(&mut self, hold: HoldId) -> Option<&mut Hold> {
        let shard = self.shard_of_hold(hold)?;
        let serial = hold.0 >> self.shard_bits;
        self.shards[shard].holds.get_mut(&serial)
    }

    /// Sum of the payer's active holds.
    fn held(&self, payer: AccountId) -> u64 {
        let Some(shard) = self.shard_of_payer(payer) else {
            return 0;
        };
        let holds = self.shards[shard].holds.iter();
        holds
            .filter(|(_, hold)| hold.state == HoldState::Active)
            .filter(|(_, hold)| self.payer_of_hold(hold, shard) == payer)
            .map(|(_, hold)| hold.held)
            .sum()
    }

    fn available(&self, payer: AccountId) -> u64 {
        self.payer(payer)
            .map_or(0, |account| account.balance - self.held(payer))
    }

    /// Approved amount and count of today (`now_us`'s UTC day).
    fn day_usage(&self, payer: AccountId, now_us: u64) -> (u64, u32) {
        let Some(account) = self.payer(payer) else {
            return (0, 0);
        };
        let today = account
            .usage
            .iter()
            .filter(|usage| usage.0 == day(now_us) && !usage.3);
        let (amount, count) = today.fold((0, 0), |(amount, count), usage| {
            (amount + usage.1, count + usage.2)
        });
        let released = account.released.iter().filter(|release| release.0 == day(now_us));
        released.fold((amount, count), |(amount, count), release| {
            (amount.saturating_sub(release.1), count.saturating_sub(release.2))
        })
    }

    /// Finish an active hold; what it never captured leaves the day's usage (and its payment
    /// the count, if nothing was captured), if it was made today.
    fn release(&mut self, hold: HoldId, state: HoldState, now_us: u64) {
        let shard = self.shard_of_hold(hold).expect("kept");
        let entry = self.hold(hold).expect("kept");
        let payer = self.payer_of_hold(entry, shard);
        let (created_us, uncaptured, nothing) = (
            entry.created_us,
            entry.authorized - entry.captured,
            u32::from(entry.captured == 0),
        );
        finish(self.hold_mut(hold).expect("kept"), state, now_us);
        if day(created_us) == day(now_us) {
            let account = self.payer_mut(payer).expect("a hold's payer");
            account.released.push((day(now_us), uncaptured, nothing));
        }
    }

    fn count_usage(&mut self, payer: AccountId, now_us: u64, amount: u64, count: u32) -> (AccountId, usize) {
        let account = self.payer_mut(payer).expect("an admitted payer");
        account.usage.push((day(now_us), amount, count, false));
        (payer, account.usage.len() - 1)
    }

    fn post(&mut self, account: AccountId, amount: i128) {
        *self.ledgers.entry(account).or_insert(0) += amount;
    }

    fn ledger(&self, account: AccountId) -> i128 {
        self.ledgers.get(&account).copied().unwrap_or(0)
    }

    fn execute(&mut self, command: &Command, now_us: u64) -> Outcome {
        let result = match *command {
            Command::Terminal { origin, op } => return self.terminal(origin, op, now_us),
            Command::OfferAnswer { .. } | Command::DisputeOpen { .. } | Command::DisputeResolve { .. } => {
                unreachable!("the generator makes no offers or disputes; engine/tests/offers.rs covers them")
            }
            Command::OpenAccount {
                shard,
                currency,
                mobile,
                limits,
            } => self.open_account(shard, currency, mobile, limits),
            Command::Load { account, amount } => self.load(account, amount),
            Command::SetLimits { account, limits } => self.with_payer(account, |payer| {
                payer.limits = limits;
                Ok(())
            }),
            Command::SetPin { account, pin } => self.with_payer(account, |payer| {
                payer.pin = Some(pin);
                payer.pin_failures = 0;
                Ok(())
            }),
            Command::SetAccountStatus { account, status } => self.set_account_status(account, status),
            Command::RegisterMerchant {
                fee_bps,
                fee_bps_with_details,
                ..
            } => self.register_merchant(fee_bps, fee_bps_with_details),
            Command::RegisterTerminal { merchant, .. } => self.register_terminal(merchant),
            Command::RegisterDevice { account, .. } => match self.payer(account) {
                Some(_) => {
                    self.devices.push(account);
                    Ok(Outcome::approved(self.devices.len() as u64, 0))
                }
                None => Err(Reason::AccountUnknown),
            },
            Command::SetMerchantStatus { merchant, status } => {
                let index = (merchant.0 as usize).wrapping_sub(1);
                match self.merchants.get_mut(index) {
                    Some(entry) if entry.status != Status::Closed => {
                        entry.status = status;
                        Ok(Outcome::approved(u64::from(merchant.0), 0))
                    }
                    _ => Err(Reason::MerchantInvalid),
                }
            }
            Command::SetTerminalStatus { terminal, status } => {
                let index = (terminal.0 as usize).wrapping_sub(1);
                match self.terminals.get_mut(index) {
                    Some(entry) if entry.1 != Status::Closed => {
                        entry.1 = status;
                        Ok(Outcome::approved(u64::from(terminal.0), 0))
                    }
                    _ => Err(Reason::TerminalInvalid),
                }
            }
            Command::AdvanceTime { shard } => match self.shards.get(shard as usize) {
                None => Err(Reason::InvalidRequest),
                Some(_) => Ok(Outcome::approved(0, self.advance_time(shard as usize, now_us))),
            },
            // The model numbers holds by their ids' serials: a start moves the next one on.
            Command::StartHoldIds { shard, serial } => {
                let serial_max = serial_max(self.shard_bits);
                match self.shards.get_mut(shard as usize) {
                    Some(model) if serial >= model.next_serial && serial <= serial_max => {
                        model.next_serial = serial;
                        Ok(Outcome::approved(serial, 0))
                    }
                    _ => Err(Reason::InvalidRequest),
                }
            }
        };
        result.unwrap_or_else(Outcome::declined)
    }

    fn open_account(
        &mut self,
        shard: u32,
        currency: Currency,
        mobile: Option<u64>,
        limits: Limits,
    ) -> Result<Outcome, Reason> {
        let shard = shard as usize;
        if shard >= self.shards.len() {
            return Err(Reason::InvalidRequest);
        }
        if currency != EUR {
            return Err(Reason::CurrencyMismatch);
        }
        let e164 = |number: u64| (1_000..=999_999_999_999_999).contains(&number);
        if mobile.is_some_and(|number| !e164(number) || self.mobiles.contains_key(&number)) {
            return Err(Reason::InvalidRequest);
        }
        let id = self.payer_id(shard, self.shards[shard].payers.len());
        self.shards[shard].payers.push(ModelPayer {
            currency,
            balance: 0,
            limits,
            usage: Vec::new(),
            released: Vec::new(),
            loyalty_points: 0,
            status: Status::Active,
            pin: None,
            pin_failures: 0,
            mobile,
        });
        if let Some(number) = mobile {
            self.mobiles.insert(number, id);
        }
        Ok(Outcome::approved(id.0, 0))
    }

    fn with_payer(
        &mut self,
        account: AccountId,
        change: impl FnOnce(&mut ModelPayer) -> Result<(), Reason>,
    ) -> Result<Outcome, Reason> {
        let payer = self.payer_mut(account).ok_or(Reason::AccountUnknown)?;
        change(payer)?;
        Ok(Outcome::approved(account.0, 0))
    }

    fn load(&mut self, account: AccountId, amount: u64) -> Result<Outcome, Reason> {
        let payer = self.payer_mut(account).ok_or(Reason::AccountUnknown)?;
        check_amount(amount)?;
        if payer.status == Status::Closed {
            return Err(Reason::AccountClosed);
        }
        payer.balance += amount;
        self.post(AccountId::FUNDING, -i128::from(amount));
        Ok(Outcome::approved(account.0, amount))
    }

    fn set_account_status(&mut self, account: AccountId, status: Status) -> Result<Outcome, Reason> {
        let held = self.held(account);
        self.with_payer(account, |payer| {
            if payer.status == Status::Closed {
                return Err(Reason::AccountClosed);
            }
            if status == Status::Closed && held != 0 {
                return Err(Reason::InvalidRequest);
            }
            payer.status = status;
            Ok(())
        })
    }

    fn register_merchant(&mut self, fee_bps: u16, fee_bps_with_details: u16) -> Result<Outcome, Reason> {
        if fee_bps > FEE_BPS_MAX || fee_bps_with_details > fee_bps {
            return Err(Reason::InvalidRequest);
        }
        self.merchants.push(ModelMerchant {
            status: Status::Active,
            fee_bps,
            fee_bps_with_details,
        });
        Ok(Outcome::approved(self.merchants.len() as u64, 0))
    }

    fn register_terminal(&mut self, merchant: MerchantId) -> Result<Outcome, Reason> {
        if merchant.0 == 0 || merchant.0 as usize > self.merchants.len() {
            return Err(Reason::MerchantInvalid);
        }
        self.terminals.push((merchant, Status::Active));
        Ok(Outcome::approved(self.terminals.len() as u64, 0))
    }

    /// Expire the shard's active holds due at `now_us`, then forget finished holds older than
    /// the retention, oldest first, stopping at the first that must stay.
    fn advance_time(&mut self, shard: usize, now_us: u64) -> u64 {
        let due: Vec<u64> = self.shards[shard]
            .holds
            .iter()
            .filter(|(_, hold)| hold.state == HoldState::Active && hold.expires_us <= now_us)
            .map(|(&key, _)| key)
            .collect();
        let expired = due.len() as u64;
        for serial in due {
            let id = self.hold_id(shard, serial);
            self.release(id, HoldState::Expired, now_us);
        }
        let holds = &mut self.shards[shard].holds;
        while let Some(entry) = holds.first_entry() {
            let hold = entry.get();
            if hold.state == HoldState::Active || hold.finished_us > now_us.saturating_sub(RETENTION_US) {
                break;
            }
            entry.remove();
        }
        expired
    }

    /// A terminal request: a retry is answered from the window, a new one is decided and
    /// remembered.
    fn terminal(&mut self, origin: Origin, op: TerminalOp, now_us: u64) -> Outcome {
        let shard = match op {
            TerminalOp::Authorize { payer, .. }
            | TerminalOp::Purchase { payer, .. }
            | TerminalOp::Reversal { payer, .. } => self.shard_of_payer(payer).ok_or(Reason::AccountUnknown),
            TerminalOp::Increment { hold, .. }
            | TerminalOp::Capture { hold, .. }
            | TerminalOp::Void { hold }
            | TerminalOp::Refund { hold, .. } => self.shard_of_hold(hold).ok_or(Reason::HoldUnknown),
            TerminalOp::Offer { .. }
            | TerminalOp::OfferCancel { .. }
            | TerminalOp::ReportFailedProvisioning { .. } => {
                unreachable!("the generator makes no offers or disputes; engine/tests/offers.rs covers them")
            }
        };
        let shard = match shard {
            Ok(shard) => shard,
            Err(reason) => return Outcome::declined(reason),
        };
        let window = &mut self.shards[shard].window;
        if let Some(entry) = window.iter_mut().find(|entry| entry.key == origin.key) {
            return match entry.op {
                None => {
                    entry.op = Some(op);
                    entry.outcome = Outcome::declined(Reason::Reversed);
                    entry.outcome
                }
                // An approved original since reversed: its retry is told so.
                Some(original) if original == op && entry.reversed && entry.outcome.reason.is_approved() => {
                    Outcome::declined(Reason::Reversed)
                }
                Some(original) if original == op => entry.outcome,
                Some(_) => Outcome::declined(Reason::DuplicateConflict),
            };
        }
        let (outcome, usage) = self
            .decide(shard, origin, op, now_us)
            .unwrap_or_else(|reason| (Outcome::declined(reason), None));
        self.remember(
            shard,
            ModelEntry {
                key: origin.key,
                op: Some(op),
                outcome,
                reversed: false,
                at_us: now_us,
                usage,
            },
        );
        outcome
    }

    fn remember(&mut self, shard: usize, entry: ModelEntry) {
        let window = &mut self.shards[shard].window;
        window.push_back(entry);
        if window.len() > WINDOW_ENTRIES as usize {
            window.pop_front();
        }
    }

    /// Decide a new request: payments in `admit_payment`'s order after their own fields and
    /// room for a hold; requests on a hold and reversals after the payee.
    fn decide(&mut self, shard: usize, origin: Origin, op: TerminalOp, now_us: u64) -> Decided {
        match op {
            TerminalOp::Authorize {
                payer,
                amount,
                currency,
                pin,
                lifetime_us,
            } => {
                if lifetime_us > HOLD_LIFETIME_MAX_US {
                    return Err(Reason::InvalidRequest);
                }
                self.make_room(shard)?;
                let payment = (payer, amount, currency, pin);
                self.admit_payment(origin, payment, now_us)?;
                let lifetime_us = if lifetime_us == 0 {
                    HOLD_LIFETIME_DEFAULT_US
                } else {
                    lifetime_us
                };
                let hold = self.new_hold(origin, payer, amount, now_us, now_us + lifetime_us);
                let id = self.push_hold(shard, hold);
                let usage = self.count_usage(payer, now_us, amount, 1);
                Ok((Outcome::approved(id.0, amount), Some(usage)))
            }
            TerminalOp::Purchase {
                payer,
                amount,
                currency,
                pin,
                extras,
            } => {
                if extras.loyalty_points > LOYALTY_POINTS_MAX {
                    return Err(Reason::InvalidRequest);
                }
                self.make_room(shard)?;
                let fees = self.admit_payment(origin, (payer, amount, currency, pin), now_us)?;
                self.purchase(shard, origin, payer, amount, fees, extras, now_us)
            }
            other => {
                let fees = self.admit_payee(origin)?;
                let outcome = match other {
                    TerminalOp::Increment { hold, amount } => {
                        return self.increment(origin, hold, amount, now_us)
                    }
                    TerminalOp::Capture {
                        hold,
                        amount,
                        last,
                        extras,
                    } => self.capture(origin, hold, amount, last, fees, extras, now_us)?,
                    TerminalOp::Void { hold } => {
                        let hold = self.active_hold(origin.merchant, hold, now_us)?;
                        let released = self.hold(hold).expect("an active hold").held;
                        self.release(hold, HoldState::Voided, now_us);
                        Outcome::approved(hold.0, released)
                    }
                    TerminalOp::Refund { hold, amount } => self.refund(origin, hold, amount)?,
                    TerminalOp::Reversal {
                        payer,
                        original_request_id,
                    } => self.reversal(shard, origin, payer, original_request_id, now_us)?,
                    TerminalOp::Authorize { .. } | TerminalOp::Purchase { .. } => unreachable!(),
                    TerminalOp::Offer { .. }
                    | TerminalOp::OfferCancel { .. }
                    | TerminalOp::ReportFailedProvisioning { .. } => unreachable!(
                        "the generator makes no offers or disputes; engine/tests/offers.rs covers them"
                    ),
                };
                Ok((outcome, None))
            }
        }
    }

    /// At capacity the oldest kept hold makes room if it is finished; otherwise the shard is full.
    fn make_room(&mut self, shard: usize) -> Result<(), Reason> {
        let holds = &mut self.shards[shard].holds;
        if holds.len() < HOLDS_PER_SHARD_MAX as usize {
            return Ok(());
        }
        match holds.first_entry() {
            Some(oldest) if oldest.get().state != HoldState::Active => {
                oldest.remove();
                Ok(())
            }
            _ => Err(Reason::CapacityExceeded),
        }
    }

    /// The payee half of admission; returns the fee in basis points without and with details.
    fn admit_payee(&self, origin: Origin) -> Result<(u16, u16), Reason> {
        let merchant = (origin.merchant.0 as usize)
            .checked_sub(1)
            .and_then(|index| self.merchants.get(index))
            .filter(|merchant| merchant.status == Status::Active)
            .ok_or(Reason::MerchantInvalid)?;
        let terminal = (origin.key.terminal.0 as usize)
            .checked_sub(1)
            .and_then(|index| self.terminals.get(index));
        match terminal {
            Some(&(owner, Status::Active)) if owner == origin.merchant => {
                Ok((merchant.fee_bps, merchant.fee_bps_with_details))
            }
            _ => Err(Reason::TerminalInvalid),
        }
    }

    /// The decision order of the issue: amount well-formed, payer admissible, payee
    /// admissible, authorization criteria (per payment, per day amount, per day count), safety
    /// criterion (PIN), funds.
    fn admit_payment(
        &mut self,
        origin: Origin,
        (payer, amount, currency, pin): (AccountId, u64, Currency, Option<PinBlock>),
        now_us: u64,
    ) -> Result<(u16, u16), Reason> {
        check_amount(amount)?;
        let account = self.payer(payer).ok_or(Reason::AccountUnknown)?;
        status_reason(account.status)?;
        if account.currency != currency {
            return Err(Reason::CurrencyMismatch);
        }
        let fees = self.admit_payee(origin)?;
        let limits = account.limits;
        if amount > limits.payment_max {
            return Err(Reason::PaymentLimitExceeded);
        }
        let (day_amount, day_count) = self.day_usage(payer, now_us);
        if day_amount.saturating_add(amount) > limits.day_amount_max {
            return Err(Reason::DailyAmountExceeded);
        }
        if day_count >= limits.day_count_max {
            return Err(Reason::DailyCountExceeded);
        }
        let pin_needed = amount > limits.pin_above;
        if pin_needed || pin.is_some() {
            let account = self.payer_mut(payer).expect("admitted");
            check_pin(account, pin)?;
        }
        if self.available(payer) < amount {
            return Err(Reason::InsufficientFunds);
        }
        Ok(fees)
    }

    fn new_hold(&self, origin: Origin, payer: AccountId, amount: u64, now_us: u64, expires_us: u64) -> Hold {
        let slot = (payer.0 - PAYER_ID_BASE) >> self.shard_bits;
        Hold {
            payer_slot: slot as u32,
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

    fn push_hold(&mut self, shard: usize, hold: Hold) -> HoldId {
        let serial = self.shards[shard].next_serial;
        self.shards[shard].next_serial += 1;
        self.shards[shard].holds.insert(serial, hold);
        self.hold_id(shard, serial)
    }

    #[allow(clippy::too_many_arguments)]
    fn purchase(
        &mut self,
        shard: usize,
        origin: Origin,
        payer: AccountId,
        amount: u64,
        (fee_bps, fee_bps_with_details): (u16, u16),
        extras: Extras,
        now_us: u64,
    ) -> Decided {
        let bps = if extras.product_details {
            fee_bps_with_details
        } else {
            fee_bps
        };
        let fee = fee_on(amount, bps);
        let account = self.payer_mut(payer).expect("admitted");
        account.balance -= amount;
        account.loyalty_points += u64::from(extras.loyalty_points);
        let usage = self.count_usage(payer, now_us, amount, 1);
        self.post(AccountId::settlement(origin.merchant), i128::from(amount - fee));
        self.post(AccountId::FEE, i128::from(fee));
        let mut hold = self.new_hold(origin, payer, amount, now_us, now_us);
        hold.state = HoldState::Captured;
        hold.held = 0;
        hold.captured = amount;
        hold.fee = fee;
        hold.loyalty_points = extras.loyalty_points;
        hold.finished_us = now_us;
        let id = self.push_hold(shard, hold);
        Ok((Outcome::approved(id.0, amount), Some(usage)))
    }

    /// A kept hold placed for `merchant`; another merchant's hold is unknown to it.
    fn owned_hold(&self, merchant: MerchantId, hold: HoldId) -> Result<&Hold, Reason> {
        self.hold(hold)
            .filter(|entry| entry.merchant == merchant.0)
            .ok_or(Reason::HoldUnknown)
    }

    /// An active hold whose expiry has not come; one found past its expiry expires now.
    fn active_hold(&mut self, merchant: MerchantId, hold: HoldId, now_us: u64) -> Result<HoldId, Reason> {
        let entry = self.owned_hold(merchant, hold)?;
        match entry.state {
            HoldState::Active if now_us >= entry.expires_us => {
                self.release(hold, HoldState::Expired, now_us);
                Err(Reason::HoldExpired)
            }
            HoldState::Active => Ok(hold),
            HoldState::Expired => Err(Reason::HoldExpired),
            HoldState::Captured | HoldState::Voided => Err(Reason::HoldNotActive),
        }
    }

    fn increment(&mut self, origin: Origin, hold: HoldId, amount: u64, now_us: u64) -> Decided {
        check_amount(amount)?;
        let hold = self.active_hold(origin.merchant, hold, now_us)?;
        let entry = self.hold(hold).expect("active");
        let payer = self.payer_of_hold(entry, self.shard_of_hold(hold).expect("kept"));
        let account = self.payer(payer).expect("a hold's payer");
        status_reason(account.status)?;
        if entry.authorized.saturating_add(amount) > account.limits.payment_max {
            return Err(Reason::PaymentLimitExceeded);
        }
        let (day_amount, _) = self.day_usage(payer, now_us);
        if day_amount.saturating_add(amount) > account.limits.day_amount_max {
            return Err(Reason::DailyAmountExceeded);
        }
        let pin_above = account.limits.pin_above;
        if entry.authorized <= pin_above && entry.authorized.saturating_add(amount) > pin_above {
            return Err(Reason::PinRequired);
        }
        if self.available(payer) < amount {
            return Err(Reason::InsufficientFunds);
        }
        let entry = self.hold_mut(hold).expect("active");
        entry.held += amount;
        entry.authorized += amount;
        let usage = self.count_usage(payer, now_us, amount, 0);
        Ok((Outcome::approved(hold.0, amount), Some(usage)))
    }

    #[allow(clippy::too_many_arguments)]
    fn capture(
        &mut self,
        origin: Origin,
        hold: HoldId,
        amount: u64,
        last: bool,
        (fee_bps, fee_bps_with_details): (u16, u16),
        extras: Extras,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        check_amount(amount)?;
        if extras.loyalty_points > LOYALTY_POINTS_MAX {
            return Err(Reason::InvalidRequest);
        }
        let hold = self.active_hold(origin.merchant, hold, now_us)?;
        let shard = self.shard_of_hold(hold).expect("kept");
        let entry = self.hold_mut(hold).expect("active");
        if amount > entry.held {
            return Err(Reason::AmountAboveOriginal);
        }
        let bps = if extras.product_details {
            fee_bps_with_details
        } else {
            fee_bps
        };
        // What the fee of the hold's captures grows by, at this capture's rate.
        let fee = fee_on(entry.captured + amount, bps) - fee_on(entry.captured, bps);
        entry.held -= amount;
        entry.captured += amount;
        entry.fee += fee;
        entry.loyalty_points = entry.loyalty_points.saturating_add(extras.loyalty_points);
        if last || entry.held == 0 {
            self.release(hold, HoldState::Captured, now_us);
        }
        let payer = self.payer_of_hold(self.hold(hold).expect("kept"), shard);
        let account = self.payer_mut(payer).expect("a hold's payer");
        account.balance -= amount;
        account.loyalty_points += u64::from(extras.loyalty_points);
        self.post(AccountId::settlement(origin.merchant), i128::from(amount - fee));
        self.post(AccountId::FEE, i128::from(fee));
        Ok(Outcome::approved(hold.0, amount))
    }

    /// Give back up to what was captured and not yet refunded; the fee is not returned.
    fn refund(&mut self, origin: Origin, hold: HoldId, amount: u64) -> Result<Outcome, Reason> {
        check_amount(amount)?;
        let entry = self.owned_hold(origin.merchant, hold)?;
        if amount > entry.captured - entry.refunded {
            return Err(Reason::AmountAboveOriginal);
        }
        let payer = self.payer_of_hold(entry, self.shard_of_hold(hold).expect("kept"));
        self.hold_mut(hold).expect("kept").refunded += amount;
        self.payer_mut(payer).expect("a hold's payer").balance += amount;
        self.post(AccountId::settlement(origin.merchant), -i128::from(amount));
        Ok(Outcome::approved(hold.0, amount))
    }

    /// Undo the terminal's request `original_request_id` (see `reversal.rs`'s table).
    fn reversal(
        &mut self,
        shard: usize,
        origin: Origin,
        payer: AccountId,
        original_request_id: u64,
        now_us: u64,
    ) -> Result<Outcome, Reason> {
        if original_request_id == origin.key.request_id {
            // A request cannot undo itself.
            return Err(Reason::InvalidRequest);
        }
        self.payer(payer).ok_or(Reason::AccountUnknown)?;
        let key = RequestKey {
            terminal: origin.key.terminal,
            request_id: original_request_id,
        };
        let window = &self.shards[shard].window;
        let Some(original) = window.iter().find(|entry| entry.key == key).cloned() else {
            let marker = ModelEntry {
                key,
                op: None,
                outcome: Outcome::declined(Reason::Reversed),
                reversed: true,
                at_us: now_us,
                usage: None,
            };
            self.remember(shard, marker);
            return Ok(Outcome::approved(0, 0));
        };
        let hold = HoldId(original.outcome.id);
        let undone = if original.reversed || !original.outcome.reason.is_approved() {
            0
        } else {
            let shard_of_hold = self.shard_of_hold(hold);
            let hold_payer =
                shard_of_hold.and_then(|shard| self.hold(hold).map(|entry| self.payer_of_hold(entry, shard)));
            if hold_payer.is_some_and(|hold_payer| hold_payer != payer) {
                return Err(Reason::InvalidRequest);
            }
            match original.op {
                Some(TerminalOp::Authorize { .. }) => self.undo_authorize(hold, now_us)?,
                Some(TerminalOp::Increment { amount, .. }) => self.undo_increment(hold, amount)?,
                Some(TerminalOp::Purchase { .. }) => self.undo_purchase(hold, now_us)?,
                _ => return Err(Reason::InvalidRequest),
            }
        };
        // An authorization gives its usage back by its release; the others here.
        let released = matches!(original.op, Some(TerminalOp::Authorize { .. }));
        if let Some((payer, index)) = original.usage.filter(|_| !original.reversed && !released) {
            if day(original.at_us) == day(now_us) {
                self.payer_mut(payer).expect("a counted payer").usage[index].3 = true;
            }
        }
        let window = &mut self.shards[shard].window;
        if let Some(entry) = window.iter_mut().find(|entry| entry.key == key) {
            entry.reversed = true;
        }
        Ok(Outcome::approved(hold.0, undone))
    }

    fn undo_authorize(&mut self, hold: HoldId, now_us: u64) -> Result<u64, Reason> {
        let entry = self.hold_mut(hold).ok_or(Reason::HoldUnknown)?;
        if entry.state != HoldState::Active || entry.captured != 0 {
            return Err(Reason::HoldNotActive);
        }
        let released = entry.held;
        self.release(hold, HoldState::Voided, now_us);
        Ok(released)
    }

    fn undo_increment(&mut self, hold: HoldId, amount: u64) -> Result<u64, Reason> {
        let entry = self.hold_mut(hold).ok_or(Reason::HoldUnknown)?;
        if entry.state != HoldState::Active || entry.held < amount {
            return Err(Reason::HoldNotActive);
        }
        entry.held -= amount;
        entry.authorized -= amount;
        Ok(amount)
    }

    /// Undo a purchase exactly: the payer gets the amount and loses the loyalty points, the
    /// merchant and the fee account give back what they got.
    fn undo_purchase(&mut self, hold: HoldId, now_us: u64) -> Result<u64, Reason> {
        let shard = self.shard_of_hold(hold).ok_or(Reason::HoldUnknown)?;
        let entry = self.hold_mut(hold).ok_or(Reason::HoldUnknown)?;
        if entry.state != HoldState::Captured || entry.refunded != 0 {
            return Err(Reason::HoldNotActive);
        }
        entry.state = HoldState::Voided;
        entry.refunded = entry.captured;
        entry.finished_us = now_us;
        let entry = *entry;
        let payer = self.payer_of_hold(&entry, shard);
        let account = self.payer_mut(payer).expect("a hold's payer");
        account.balance += entry.captured;
        account.loyalty_points = account
            .loyalty_points
            .saturating_sub(u64::from(entry.loyalty_points));
        let merchant = AccountId::settlement(MerchantId(entry.merchant));
        self.post(merchant, -i128::from(entry.captured - entry.fee));
        self.post(AccountId::FEE, -i128::from(entry.fee));
        Ok(entry.captured)
    }

    /// A balance check: the payment pipeline without limits and PIN; nothing changes.
    fn balance_check(&self, origin: Origin, payer: AccountId, amount: u64, currency: Currency) -> Outcome {
        let check = || -> Result<Outcome, Reason> {
            if payer.0 < PAYER_ID_BASE {
                return Err(Reason::AccountUnknown);
            }
            check_amount(amount)?;
            let account = self.payer(payer).ok_or(Reason::AccountUnknown)?;
            status_reason(account.status)?;
            if account.currency != currency {
                return Err(Reason::CurrencyMismatch);
            }
            self.admit_payee(origin)?;
            if self.available(payer) < amount {
                return Err(Reason::InsufficientFunds);
            }
            Ok(Outcome::approved(0, amount))
        };
        check().unwrap_or_else(Outcome::declined)
    }
}

/// The safety criterion: a wrong proof counts, the last allowed wrong one locks, a right one
/// resets the count. A proof for an account without PIN is wrong but there is nothing to guess.
fn check_pin(account: &mut ModelPayer, pin: Option<PinBlock>) -> Result<(), Reason> {
    if account.pin_failures >= PIN_TRIES_MAX {
        return Err(Reason::PinLocked);
    }
    let given = pin.ok_or(Reason::PinRequired)?;
    let set = account.pin.ok_or(Reason::PinIncorrect)?;
    if given != set {
        account.pin_failures += 1;
        return Err(if account.pin_failures >= PIN_TRIES_MAX {
            Reason::PinLocked
        } else {
            Reason::PinIncorrect
        });
    }
    account.pin_failures = 0;
    Ok(())
}

/// The fee in basis points, rounded down.
fn fee_on(amount: u64, bps: u16) -> u64 {
    (u128::from(amount) * u128::from(bps) / 10_000) as u64
}

fn finish(hold: &mut Hold, state: HoldState, now_us: u64) {
    hold.state = state;
    hold.held = 0;
    hold.finished_us = now_us;
}

// ---------------------------------------------------------------------------------------------
// Abstract steps, made concrete against the model when they run.

/// Which payer a step names.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// The n-th opened payer (modulo how many there are).
    Opened(u8),
    /// An id in the payer range that was never opened.
    Unknown,
    /// A ledger account's id (the fee account): never a payer.
    Ledger,
}

/// An amount: fixed, or an edge (`which` picks what is available, a limit, what is held or
/// what is left to refund, as fits the step) plus `delta`.
#[derive(Clone, Copy, Debug)]
enum Amount {
    Fixed(u64),
    Edge { which: u8, delta: i8 },
}

/// Who sends a terminal request.
#[derive(Clone, Copy, Debug)]
struct Via {
    /// The n-th registered terminal, or an unknown one at 250 and above.
    terminal: u8,
    /// 0: the terminal's own merchant; 1: another registered merchant; 2: an unknown one.
    merchant: u8,
    /// Use a request id a reversal named before the request came (if any is left).
    reserved: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
enum Original {
    /// An earlier request, counted back from the last sent.
    Past(u8),
    /// A request id not used yet (the original is late, or never comes).
    Future,
    /// The reversal's own request id.
    Own,
}

#[derive(Clone, Copy, Debug)]
enum Clock {
    Tick(u64),
    Hour,
    /// To the next UTC midnight plus delta (-1 or 0).
    Midnight(i8),
    Day,
    /// To the expiry of the n-th hold issued, plus delta.
    Expiry(u8, i8),
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Pay {
        purchase: bool,
        payer: Who,
        amount: Amount,
        /// 0: no PIN; 1: the payer's own; else `PINS[pin - 2]`.
        pin: u8,
        lifetime: u8,
        details: bool,
        points: u8,
        dollars: bool,
        via: Via,
    },
    Increment {
        hold: u8,
        amount: Amount,
        via: Option<Via>,
    },
    Capture {
        hold: u8,
        amount: Amount,
        last: bool,
        details: bool,
        points: u8,
        via: Option<Via>,
    },
    Void {
        hold: u8,
        via: Option<Via>,
    },
    Refund {
        hold: u8,
        amount: Amount,
        via: Option<Via>,
    },
    Reverse {
        original: Original,
        payer: Option<Who>,
        via: Via,
    },
    Repeat {
        back: u8,
        changed: bool,
    },
    BalanceCheck {
        payer: Who,
        amount: Amount,
        dollars: bool,
        via: Via,
    },
    Open {
        shard: u8,
        mobile: u8,
        limits: (u8, u8, u8, u8),
        dollars: bool,
    },
    Load {
        payer: Who,
        amount: Amount,
    },
    SetLimits {
        payer: Who,
        limits: (u8, u8, u8, u8),
    },
    SetPin {
        payer: Who,
        pin: u8,
    },
    SetStatus {
        payer: Who,
        status: u8,
    },
    RegisterMerchant {
        fee_bps: u16,
        fee_bps_with_details: u16,
    },
    RegisterTerminal {
        merchant: u8,
    },
    RegisterDevice {
        payer: Who,
    },
    SetMerchantStatus {
        merchant: u8,
        status: u8,
    },
    SetTerminalStatus {
        terminal: u8,
        status: u8,
    },
    Clock(Clock),
    AdvanceShard {
        shard: u8,
    },
    AdvanceAll,
    /// A start of the server moving a shard's hold ids on: to the next serial (0), one past
    /// it (1), a start's skip (2), one before it (3, refused), the largest a start may give
    /// (4) or one more (5, refused).
    StartHoldIds {
        shard: u8,
        skip: u8,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        40 => any::<u8>().prop_map(Who::Opened),
        1 => Just(Who::Unknown),
        1 => Just(Who::Ledger),
    ]
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        12 => (1u64..=300).prop_map(Amount::Fixed),
        8 => (300u64..=3_000).prop_map(Amount::Fixed),
        1 => Just(Amount::Fixed(0)),
        1 => Just(Amount::Fixed(AMOUNT_MINOR_MAX + 1)),
        12 => (any::<u8>(), -1i8..=1).prop_map(|(which, delta)| Amount::Edge { which, delta }),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    let terminal = prop_oneof![30 => any::<u8>().prop_map(|t| t % 250), 1 => Just(255u8)];
    let merchant = prop_oneof![30 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)];
    let reserved = prop_oneof![6 => Just(None), 1 => any::<u8>().prop_map(Some)];
    (terminal, merchant, reserved).prop_map(|(terminal, merchant, reserved)| Via {
        terminal,
        merchant,
        reserved,
    })
}

/// Mostly the hold's own terminal, sometimes any.
fn hold_via() -> impl Strategy<Value = Option<Via>> {
    prop_oneof![8 => Just(None), 1 => via().prop_map(Some)]
}

fn status() -> impl Strategy<Value = u8> {
    prop_oneof![8 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)]
}

fn limits() -> impl Strategy<Value = (u8, u8, u8, u8)> {
    (0u8..6, 0u8..6, 0u8..6, 0u8..6)
}

fn step() -> impl Strategy<Value = Step> {
    let pay = (
        any::<bool>(),
        who(),
        amount(),
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 2 => 2u8..=4],
        any::<u8>(),
        any::<bool>(),
        prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![30 => Just(false), 1 => Just(true)],
        via(),
    )
        .prop_map(
            |(purchase, payer, amount, pin, lifetime, details, points, dollars, via)| Step::Pay {
                purchase,
                payer,
                amount,
                pin,
                lifetime,
                details,
                points,
                dollars,
                via,
            },
        );
    let original = prop_oneof![
        6 => any::<u8>().prop_map(|back| Original::Past(back % 12)),
        2 => Just(Original::Future),
        1 => Just(Original::Own),
    ];
    let clock = prop_oneof![
        3 => (1u64..=5_000_000).prop_map(Clock::Tick),
        2 => Just(Clock::Hour),
        2 => (-1i8..=0).prop_map(Clock::Midnight),
        1 => Just(Clock::Day),
        2 => (any::<u8>(), -1i8..=1).prop_map(|(hold, delta)| Clock::Expiry(hold, delta)),
    ];
    prop_oneof![
        40 => pay,
        6 => (any::<u8>(), amount(), hold_via()).prop_map(|(hold, amount, via)| Step::Increment {
            hold,
            amount,
            via
        }),
        12 => (any::<u8>(), amount(), any::<bool>(), any::<bool>(), prop_oneof![3 => Just(0u8), 1 => any::<u8>()], hold_via())
            .prop_map(|(hold, amount, last, details, points, via)| Step::Capture {
                hold,
                amount,
                last,
                details,
                points,
                via
            }),
        5 => (any::<u8>(), hold_via()).prop_map(|(hold, via)| Step::Void { hold, via }),
        7 => (any::<u8>(), amount(), hold_via()).prop_map(|(hold, amount, via)| Step::Refund {
            hold,
            amount,
            via
        }),
        8 => (original, prop_oneof![6 => Just(None), 1 => who().prop_map(Some)], via())
            .prop_map(|(original, payer, via)| Step::Reverse { original, payer, via }),
        8 => (0u8..16, any::<bool>()).prop_map(|(back, changed)| Step::Repeat { back, changed }),
        3 => (who(), amount(), prop_oneof![20 => Just(false), 1 => Just(true)], via())
            .prop_map(|(payer, amount, dollars, via)| Step::BalanceCheck { payer, amount, dollars, via }),
        2 => (any::<u8>(), 0u8..8, limits(), prop_oneof![20 => Just(false), 1 => Just(true)])
            .prop_map(|(shard, mobile, limits, dollars)| Step::Open { shard, mobile, limits, dollars }),
        6 => (who(), amount()).prop_map(|(payer, amount)| Step::Load { payer, amount }),
        2 => (who(), limits()).prop_map(|(payer, limits)| Step::SetLimits { payer, limits }),
        2 => (who(), 0u8..3).prop_map(|(payer, pin)| Step::SetPin { payer, pin }),
        2 => (who(), status()).prop_map(|(payer, status)| Step::SetStatus { payer, status }),
        1 => (prop_oneof![Just(0u16), Just(250), Just(10_000), Just(10_001)], prop_oneof![Just(0u16), Just(100), Just(300)])
            .prop_map(|(fee_bps, fee_bps_with_details)| Step::RegisterMerchant { fee_bps, fee_bps_with_details }),
        1 => any::<u8>().prop_map(|merchant| Step::RegisterTerminal { merchant }),
        1 => who().prop_map(|payer| Step::RegisterDevice { payer }),
        1 => (any::<u8>(), status()).prop_map(|(merchant, status)| Step::SetMerchantStatus { merchant, status }),
        1 => (any::<u8>(), status()).prop_map(|(terminal, status)| Step::SetTerminalStatus { terminal, status }),
        8 => clock.prop_map(Step::Clock),
        2 => any::<u8>().prop_map(|shard| Step::AdvanceShard { shard }),
        2 => Just(Step::AdvanceAll),
        1 => (any::<u8>(), 0u8..6).prop_map(|(shard, skip)| Step::StartHoldIds { shard, skip }),
    ]
}

fn limits_of((payment, day_amount, day_count, pin): (u8, u8, u8, u8)) -> Limits {
    Limits {
        payment_max: [u64::MAX, u64::MAX, u64::MAX, 1_000, 2_500][payment as usize % 5],
        day_amount_max: [u64::MAX, u64::MAX, u64::MAX, 4_000, 8_000][day_amount as usize % 5],
        day_count_max: [u32::MAX, u32::MAX, u32::MAX, 2, 5][day_count as usize % 5],
        pin_above: [u64::MAX, u64::MAX, u64::MAX, 0, 500][pin as usize % 5],
    }
}

fn status_of(status: u8) -> Status {
    Status::from_u8(status % 3).expect("0..3")
}

// ---------------------------------------------------------------------------------------------
// The harness: runs each step on the engine and the model and compares.

/// A payer opened before the steps: its limits (as picks), its balance, its PIN (0: none).
type Opened = ((u8, u8, u8, u8), u64, u8);

/// A reversal's original that has not been sent yet: its key, merchant and payer.
type Reserved = (RequestKey, MerchantId, AccountId);

struct Harness {
    books: Books,
    model: Model,
    now_us: u64,
    next_request_id: u64,
    payers: Vec<AccountId>,
    holds: Vec<HoldId>,
    sent: Vec<(Origin, TerminalOp)>,
    reserved: Vec<Reserved>,
    log: Vec<String>,
}

impl Harness {
    fn new(shards: u32) -> Harness {
        let config = BooksConfig {
            shards,
            currency: EUR,
            idempotency_window: WINDOW_ENTRIES,
            holds_per_shard_max: HOLDS_PER_SHARD_MAX,
            hold_retention_us: RETENTION_US,
        };
        Harness {
            books: Books::new(config).expect("a valid config"),
            model: Model::new(shards),
            now_us: START_US,
            next_request_id: 1,
            payers: Vec::new(),
            holds: Vec::new(),
            sent: Vec::new(),
            reserved: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Two merchants, three terminals, a few payers spread over the shards with funds.
    fn prologue(&mut self, merchant_two_bps: (u16, u16), opened: &[Opened]) {
        self.run(Command::RegisterMerchant {
            fee_bps: 250,
            fee_bps_with_details: 100,
            origin: Reference::default(),
        });
        self.run(Command::RegisterMerchant {
            fee_bps: merchant_two_bps.0,
            fee_bps_with_details: merchant_two_bps.1,
            origin: Reference::default(),
        });
        for merchant in [1, 1, 2] {
            self.run(Command::RegisterTerminal {
                merchant: MerchantId(merchant),
                secret: [merchant as u8; 32],
            });
        }
        for (index, &(limits, balance, pin)) in opened.iter().enumerate() {
            let shards = self.model.shards.len() as u32;
            let account = self.run(Command::OpenAccount {
                shard: index as u32 % shards,
                currency: EUR,
                mobile: (index % 2 == 0).then_some(33_600_000_000 + index as u64),
                limits: limits_of(limits),
            });
            let account = AccountId(account.id);
            self.run(Command::Load {
                account,
                amount: balance,
            });
            if pin > 0 {
                self.run(Command::SetPin {
                    account,
                    pin: PINS[pin as usize - 1],
                });
            }
        }
    }

    fn fresh_request_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }

    fn payer(&self, who: Who) -> AccountId {
        match who {
            Who::Opened(index) if !self.payers.is_empty() => self.payers[index as usize % self.payers.len()],
            Who::Opened(_) | Who::Unknown => PAYER_UNKNOWN,
            Who::Ledger => AccountId::FEE,
        }
    }

    /// Mostly an active hold, else one of the recent holds issued, or an id no hold has
    /// (routable or not).
    fn hold(&self, index: u8) -> HoldId {
        let active: Vec<HoldId> = (self.holds.iter().copied())
            .filter(|&hold| {
                self.model
                    .hold(hold)
                    .is_some_and(|entry| entry.state == HoldState::Active)
            })
            .collect();
        if index < 128 && !active.is_empty() {
            return active[index as usize % active.len()];
        }
        if self.holds.is_empty() || index >= 240 {
            return if index.is_multiple_of(2) {
                HoldId(1)
            } else {
                HoldId(1_000 << 2)
            };
        }
        // Recent holds are the interesting ones: count back from the newest.
        let back = index as usize % self.holds.len().min(24);
        self.holds[self.holds.len() - 1 - back]
    }

    fn merchant_of_terminal(&self, terminal: TerminalId) -> MerchantId {
        let index = (terminal.0 as usize).wrapping_sub(1);
        self.model
            .terminals
            .get(index)
            .map_or(MerchantId(1), |entry| entry.0)
    }

    /// The origin of a request sent `via`; the payer a reserved key was named for, if used.
    fn origin(&mut self, via: Via) -> (Origin, Option<AccountId>) {
        if let Some(pick) = via.reserved.filter(|_| !self.reserved.is_empty()) {
            let (key, merchant, payer) = self.reserved.remove(pick as usize % self.reserved.len());
            return (Origin { merchant, key }, Some(payer));
        }
        let terminals = self.model.terminals.len();
        let terminal = if via.terminal >= 250 || terminals == 0 {
            TERMINAL_UNKNOWN
        } else {
            TerminalId(1 + (via.terminal as usize % terminals) as u32)
        };
        let own = self.merchant_of_terminal(terminal);
        let merchants = self.model.merchants.len() as u32;
        let merchant = match via.merchant {
            0 => own,
            1 => MerchantId(own.0 % merchants.max(1) + 1),
            _ => MERCHANT_UNKNOWN,
        };
        let key = RequestKey {
            terminal,
            request_id: self.fresh_request_id(),
        };
        (Origin { merchant, key }, None)
    }

    /// The origin of a request on `hold`: its own terminal unless `via` says otherwise.
    fn hold_origin(&mut self, hold: HoldId, via: Option<Via>) -> Origin {
        match (via, self.model.hold(hold)) {
            (None, Some(entry)) => {
                let terminal = TerminalId(entry.terminal);
                Origin {
                    merchant: MerchantId(entry.merchant),
                    key: RequestKey {
                        terminal,
                        request_id: self.fresh_request_id(),
                    },
                }
            }
            (via, _) => {
                let via = via.unwrap_or(Via {
                    terminal: 0,
                    merchant: 0,
                    reserved: None,
                });
                self.origin(via).0
            }
        }
    }

    /// An edge amount for a payment by `payer`: what is available, the per-payment limit, or
    /// what is left of today's amount limit, plus `delta`.
    fn payment_amount(&self, amount: Amount, payer: AccountId) -> u64 {
        let Amount::Edge { which, delta } = amount else {
            return fixed(amount);
        };
        let available = self.model.available(payer);
        let edges = match self.model.payer(payer) {
            Some(account) => [
                available,
                account.limits.payment_max,
                account
                    .limits
                    .day_amount_max
                    .saturating_sub(self.model.day_usage(payer, self.now_us).0),
            ],
            None => [available; 3],
        };
        let edge = edges[which as usize % 3];
        let edge = if edge > AMOUNT_MINOR_MAX { available } else { edge };
        edge.saturating_add_signed(i64::from(delta))
    }

    /// An edge amount on a hold, plus `delta`: for a refund mostly what is left to refund,
    /// else mostly what it holds, sometimes what the payer has available.
    fn hold_amount(&self, amount: Amount, hold: HoldId, refund: bool) -> u64 {
        let Amount::Edge { which, delta } = amount else {
            return fixed(amount);
        };
        let edge = match self.model.hold(hold) {
            Some(entry) => {
                let shard = self.model.shard_of_hold(hold).expect("kept");
                let payer = self.model.payer_of_hold(entry, shard);
                let (usual, other) = if refund {
                    (entry.captured - entry.refunded, entry.held)
                } else {
                    (entry.held, self.model.available(payer))
                };
                [usual, usual, other][which as usize % 3]
            }
            None => 10,
        };
        edge.saturating_add_signed(i64::from(delta))
    }

    /// Make a step concrete. Steps that are not commands (balance checks, the clock, advancing
    /// every shard) run and are compared here, and give `None`.
    fn command(&mut self, step: Step) -> Option<Command> {
        let terminal = |origin, op| Some(Command::Terminal { origin, op });
        match step {
            Step::Pay {
                purchase,
                payer,
                amount,
                pin,
                lifetime,
                details,
                points,
                dollars,
                via,
            } => {
                let (origin, reserved_payer) = self.origin(via);
                let payer = reserved_payer.unwrap_or_else(|| self.payer(payer));
                let amount = self.payment_amount(amount, payer);
                let currency = if dollars { USD } else { EUR };
                let own_pin = self.model.payer(payer).and_then(|account| account.pin);
                let pin = match pin {
                    0 => None,
                    1 => own_pin.or(Some(PINS[0])),
                    _ => Some(PINS[pin as usize - 2]),
                };
                let op = if purchase {
                    TerminalOp::Purchase {
                        payer,
                        amount,
                        currency,
                        pin,
                        extras: extras(details, points),
                    }
                } else {
                    let lifetime_us = match lifetime {
                        0..=99 => 0,
                        100..=139 => HOUR_US,
                        140..=179 => HOLD_LIFETIME_MAX_US,
                        180..=209 => 60_000_000,
                        210..=244 => 1_000,
                        _ => HOLD_LIFETIME_MAX_US + 1,
                    };
                    TerminalOp::Authorize {
                        payer,
                        amount,
                        currency,
                        pin,
                        lifetime_us,
                    }
                };
                terminal(origin, op)
            }
            Step::Increment { hold, amount, via } => {
                let hold = self.hold(hold);
                let amount = self.hold_amount(amount, hold, false);
                terminal(
                    self.hold_origin(hold, via),
                    TerminalOp::Increment { hold, amount },
                )
            }
            Step::Capture {
                hold,
                amount,
                last,
                details,
                points,
                via,
            } => {
                let hold = self.hold(hold);
                let amount = self.hold_amount(amount, hold, false);
                let op = TerminalOp::Capture {
                    hold,
                    amount,
                    last,
                    extras: extras(details, points),
                };
                terminal(self.hold_origin(hold, via), op)
            }
            Step::Void { hold, via } => {
                let hold = self.hold(hold);
                terminal(self.hold_origin(hold, via), TerminalOp::Void { hold })
            }
            Step::Refund { hold, amount, via } => {
                let hold = self.hold(hold);
                let amount = self.hold_amount(amount, hold, true);
                terminal(self.hold_origin(hold, via), TerminalOp::Refund { hold, amount })
            }
            Step::Reverse { original, payer, via } => self.reverse(original, payer, via),
            Step::Repeat { back, changed } => {
                if self.sent.is_empty() {
                    return None;
                }
                let (origin, op) = self.sent[self.sent.len() - 1 - back as usize % self.sent.len()];
                terminal(origin, if changed { change(op) } else { op })
            }
            Step::BalanceCheck {
                payer,
                amount,
                dollars,
                via,
            } => {
                let (origin, _) = self.origin(via);
                let payer = self.payer(payer);
                let amount = self.payment_amount(amount, payer);
                let currency = if dollars { USD } else { EUR };
                let outcome = self.books.balance_check(origin, payer, amount, currency);
                let expected = self.model.balance_check(origin, payer, amount, currency);
                self.log.push(format!(
                    "balance check {payer:?} {amount} {currency:?} {origin:?}"
                ));
                self.assert_same(outcome, expected);
                None
            }
            Step::Open {
                shard,
                mobile,
                limits,
                dollars,
            } => Some(Command::OpenAccount {
                shard: u32::from(shard) % (self.model.shards.len() as u32 + 1),
                currency: if dollars { USD } else { EUR },
                mobile: match mobile {
                    0..=3 => None,
                    4 => Some(999),
                    _ => Some(33_600_000_000 + u64::from(mobile - 4)),
                },
                limits: limits_of(limits),
            }),
            Step::Load { payer, amount } => {
                let account = self.payer(payer);
                let amount = match amount {
                    Amount::Fixed(_) => fixed(amount),
                    Amount::Edge { which, .. } => 1 + u64::from(which) * 20,
                };
                Some(Command::Load { account, amount })
            }
            Step::SetLimits { payer, limits } => Some(Command::SetLimits {
                account: self.payer(payer),
                limits: limits_of(limits),
            }),
            Step::SetPin { payer, pin } => Some(Command::SetPin {
                account: self.payer(payer),
                pin: PINS[pin as usize % PINS.len()],
            }),
            Step::SetStatus { payer, status } => Some(Command::SetAccountStatus {
                account: self.payer(payer),
                status: status_of(status),
            }),
            Step::RegisterMerchant {
                fee_bps,
                fee_bps_with_details,
            } => Some(Command::RegisterMerchant {
                fee_bps,
                fee_bps_with_details,
                origin: Reference::default(),
            }),
            Step::RegisterTerminal { merchant } => Some(Command::RegisterTerminal {
                merchant: MerchantId(u32::from(merchant % 4)),
                secret: [merchant; 32],
            }),
            Step::RegisterDevice { payer } => Some(Command::RegisterDevice {
                account: self.payer(payer),
                secret: [9; 32],
            }),
            Step::SetMerchantStatus { merchant, status } => Some(Command::SetMerchantStatus {
                merchant: MerchantId(u32::from(merchant % 4)),
                status: status_of(status),
            }),
            Step::SetTerminalStatus { terminal, status } => Some(Command::SetTerminalStatus {
                terminal: TerminalId(u32::from(terminal % 6)),
                status: status_of(status),
            }),
            Step::Clock(clock) => {
                self.advance_clock(clock);
                None
            }
            Step::AdvanceShard { shard } => Some(Command::AdvanceTime {
                shard: u32::from(shard) % (self.model.shards.len() as u32 + 1),
            }),
            Step::StartHoldIds { shard, skip } => {
                let shard = u32::from(shard) % (self.model.shards.len() as u32 + 1);
                let next = self
                    .model
                    .shards
                    .get(shard as usize)
                    .map_or(1, |model| model.next_serial);
                let serial_max = serial_max(self.model.shard_bits);
                let serial = match skip {
                    0 => next,
                    1 => next.saturating_add(1),
                    2 => next.saturating_add(HOLD_SERIAL_SKIP),
                    3 => next - 1,
                    4 => serial_max,
                    _ => serial_max + 1,
                };
                Some(Command::StartHoldIds { shard, serial })
            }
            Step::AdvanceAll => {
                let expired = self.books.advance_time(self.now_us, &NoJournal);
                let shards = self.model.shards.len();
                let expected: u64 = (0..shards)
                    .map(|shard| self.model.advance_time(shard, self.now_us))
                    .sum();
                self.log.push(format!("advance all shards at {}", self.now_us));
                assert_eq!(
                    expired,
                    expected,
                    "holds expired by advance_time\n{}",
                    self.history()
                );
                None
            }
        }
    }

    fn reverse(&mut self, original: Original, payer: Option<Who>, via: Via) -> Option<Command> {
        let via = Via {
            reserved: None,
            ..via
        };
        let (origin, original_request_id, original_payer) = match original {
            Original::Past(back) if !self.sent.is_empty() => {
                let (sent, op) = self.sent[self.sent.len() - 1 - back as usize % self.sent.len()];
                let origin = Origin {
                    merchant: sent.merchant,
                    key: RequestKey {
                        terminal: sent.key.terminal,
                        request_id: self.fresh_request_id(),
                    },
                };
                (origin, sent.key.request_id, self.payer_of(op))
            }
            Original::Past(_) | Original::Future => {
                let (origin, _) = self.origin(via);
                let original = self.fresh_request_id();
                let payer = self.payer(payer.unwrap_or(Who::Opened(origin.key.request_id as u8)));
                let key = RequestKey {
                    terminal: origin.key.terminal,
                    request_id: original,
                };
                self.reserved.push((key, origin.merchant, payer));
                (origin, original, payer)
            }
            Original::Own => {
                let (origin, _) = self.origin(via);
                (
                    origin,
                    origin.key.request_id,
                    self.payers.first().copied().unwrap_or(PAYER_UNKNOWN),
                )
            }
        };
        let payer = payer.map_or(original_payer, |who| self.payer(who));
        let op = TerminalOp::Reversal {
            payer,
            original_request_id,
        };
        Some(Command::Terminal { origin, op })
    }

    /// The payer a request concerns.
    fn payer_of(&self, op: TerminalOp) -> AccountId {
        match op {
            TerminalOp::Offer { .. }
            | TerminalOp::OfferCancel { .. }
            | TerminalOp::ReportFailedProvisioning { .. } => {
                unreachable!("the generator makes no offers or disputes; engine/tests/offers.rs covers them")
            }
            TerminalOp::Authorize { payer, .. }
            | TerminalOp::Purchase { payer, .. }
            | TerminalOp::Reversal { payer, .. } => payer,
            TerminalOp::Increment { hold, .. }
            | TerminalOp::Capture { hold, .. }
            | TerminalOp::Void { hold }
            | TerminalOp::Refund { hold, .. } => match self.model.hold(hold) {
                Some(entry) => {
                    let shard = self.model.shard_of_hold(hold).expect("kept");
                    self.model.payer_of_hold(entry, shard)
                }
                None => PAYER_UNKNOWN,
            },
        }
    }

    fn advance_clock(&mut self, clock: Clock) {
        self.now_us = match clock {
            Clock::Tick(us) => self.now_us + us,
            Clock::Hour => self.now_us + HOUR_US,
            Clock::Midnight(delta) => (day(self.now_us) + 1) * DAY_US - u64::from(delta < 0),
            Clock::Day => self.now_us + DAY_US,
            Clock::Expiry(index, delta) => {
                let expires_us = self
                    .model
                    .hold(self.hold(index))
                    .map_or(0, |hold| hold.expires_us);
                expires_us
                    .saturating_add_signed(i64::from(delta))
                    .max(self.now_us)
            }
        };
        self.log.push(format!("clock {clock:?} -> {}", self.now_us));
    }

    /// Run a command on both and compare the outcomes.
    fn run(&mut self, command: Command) -> Outcome {
        self.log.push(format!("at {}: {command:?}", self.now_us));
        let outcome = self.books.execute(&command, self.now_us, &NoJournal).outcome;
        let expected = self.model.execute(&command, self.now_us);
        self.assert_same(outcome, expected);
        if let Command::Terminal { origin, op } = command {
            self.sent.push((origin, op));
        }
        if outcome.reason.is_approved() {
            match command {
                Command::OpenAccount { .. } => self.payers.push(AccountId(outcome.id)),
                Command::Terminal {
                    op: TerminalOp::Authorize { .. } | TerminalOp::Purchase { .. },
                    ..
                } if !self.holds.contains(&HoldId(outcome.id)) => self.holds.push(HoldId(outcome.id)),
                _ => {}
            }
        }
        outcome
    }

    fn step(&mut self, step: Step) {
        if let Some(command) = self.command(step) {
            self.run(command);
        }
        self.compare_books();
    }

    fn history(&self) -> String {
        let start = self.log.len().saturating_sub(60);
        self.log[start..].join("\n")
    }

    fn assert_same(&self, outcome: Outcome, expected: Outcome) {
        assert_eq!(
            outcome,
            expected,
            "engine vs model outcome; steps so far:\n{}",
            self.history()
        );
    }

    /// Every payer's figures, every ledger, every hold, and the engine's own invariants.
    fn compare_books(&self) {
        let context = || self.history();
        for &payer in self.payers.iter().chain([&PAYER_UNKNOWN]) {
            let info = self.books.account_info(payer);
            let expected = self.model.payer(payer).map(|account| {
                let held = self.model.held(payer);
                (
                    account.balance,
                    held,
                    account.balance - held,
                    account.loyalty_points,
                    account.status,
                    account.limits,
                    account.mobile,
                    account.pin.is_some(),
                    account.pin_failures >= PIN_TRIES_MAX,
                )
            });
            let actual = info.map(|info| {
                (
                    info.balance,
                    info.held,
                    info.available,
                    info.loyalty_points,
                    info.status,
                    info.limits,
                    info.mobile,
                    info.pin_set,
                    info.pin_locked,
                )
            });
            assert_eq!(actual, expected, "payer {payer:?}\n{}", context());
            if let Some(number) = expected.and_then(|figures| figures.6) {
                assert_eq!(self.books.resolve_mobile(number), Some(payer), "{}", context());
            }
        }
        let merchants = self.model.merchants.len() as u32;
        let ledgers = [AccountId::FUNDING, AccountId::FEE]
            .into_iter()
            .chain((1..=merchants + 1).map(|merchant| AccountId::settlement(MerchantId(merchant))));
        for ledger in ledgers {
            let balance = self.books.ledger_balance(ledger);
            assert_eq!(
                balance,
                Some(self.model.ledger(ledger)),
                "ledger {ledger:?}\n{}",
                context()
            );
        }
        for (index, &payer) in self.model.devices.iter().enumerate() {
            let device = self.books.device(DeviceId(1 + index as u32));
            assert_eq!(device, Some((payer, Status::Active, [9; 32])), "{}", context());
        }
        for &hold in &self.holds {
            assert_eq!(
                self.books.hold(hold),
                self.model.hold(hold).cloned(),
                "hold {hold:?}\n{}",
                context()
            );
        }
        if let Err(broken) = self.books.check_invariants() {
            panic!("invariant broken: {broken}\n{}", context());
        }
    }
}

fn fixed(amount: Amount) -> u64 {
    match amount {
        Amount::Fixed(value) => value,
        Amount::Edge { which, .. } => u64::from(which) * 10,
    }
}

fn extras(product_details: bool, points: u8) -> Extras {
    Extras {
        product_details,
        loyalty_points: match points {
            0..=249 => u32::from(points),
            250..=252 => LOYALTY_POINTS_MAX,
            _ => LOYALTY_POINTS_MAX + 1,
        },
    }
}

/// The same request with different content: one amount more, another hold, another original.
fn change(op: TerminalOp) -> TerminalOp {
    match op {
        TerminalOp::Offer { .. }
        | TerminalOp::OfferCancel { .. }
        | TerminalOp::ReportFailedProvisioning { .. } => {
            unreachable!("the generator makes no offers or disputes; engine/tests/offers.rs covers them")
        }
        TerminalOp::Authorize {
            payer,
            amount,
            currency,
            pin,
            lifetime_us,
        } => TerminalOp::Authorize {
            payer,
            amount: amount.wrapping_add(1),
            currency,
            pin,
            lifetime_us,
        },
        TerminalOp::Purchase {
            payer,
            amount,
            currency,
            pin,
            extras,
        } => TerminalOp::Purchase {
            payer,
            amount,
            currency,
            pin,
            extras: Extras {
                product_details: !extras.product_details,
                ..extras
            },
        },
        TerminalOp::Increment { hold, amount } => TerminalOp::Increment {
            hold,
            amount: amount.wrapping_add(1),
        },
        TerminalOp::Capture {
            hold,
            amount,
            last,
            extras,
        } => TerminalOp::Capture {
            hold,
            amount,
            last: !last,
            extras,
        },
        TerminalOp::Void { hold } => TerminalOp::Refund { hold, amount: 1 },
        TerminalOp::Refund { hold, amount } => TerminalOp::Refund {
            hold,
            amount: amount.wrapping_add(1),
        },
        TerminalOp::Reversal {
            payer,
            original_request_id,
        } => TerminalOp::Reversal {
            payer,
            original_request_id: original_request_id.wrapping_add(1_000_000),
        },
    }
}

fn opened() -> impl Strategy<Value = Vec<Opened>> {
    let balance = prop_oneof![Just(0u64), 1u64..=2_000, 2_000u64..=20_000];
    prop::collection::vec((limits(), balance, 0u8..=3), 3..=6)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_books_agree_with_a_plain_model_on_every_step(
        shards in prop_oneof![Just(2u32), Just(4u32)],
        merchant_two_bps in prop_oneof![Just((0u16, 0u16)), Just((30, 0)), Just((10_000, 9_999)), Just((333, 333))],
        opened in opened(),
        steps in prop::collection::vec(step(), 150..=400),
    ) {
        let mut harness = Harness::new(shards);
        harness.prologue(merchant_two_bps, &opened);
        harness.compare_books();
        for step in steps {
            harness.step(step);
        }
    }
}
