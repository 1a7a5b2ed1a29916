//! The books: payer accounts, ledger accounts, holds and merchants, sharded under locks.
//!
//! [`Books`] routes each command to the one shard it touches, takes that shard's lock, hands
//! the command to the [`Journal`] (the write-ahead log appends it and gives it a position while
//! the lock is held, so the log's order is the apply order), then applies it. The registry of
//! merchants and terminals is read without locks; its rare changes take every shard lock so
//! that they too are ordered against every payment.

pub mod account;
pub mod dispute;
pub mod hold;
pub mod hold_ids;
mod hold_ring;
pub mod idempotency;
pub mod offer;
pub mod payment;
mod prefetch;
pub mod read;
pub mod registry;
pub mod reversal;
mod ring_index;
pub mod shard;
pub mod state;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use parking_lot::{Mutex, MutexGuard};

use crate::command::{Command, Outcome, TerminalOp};
use crate::ids::{AccountId, Currency, HoldId, Lsn, RequestKey, Status};
use crate::limits::{
    FEE_BPS_MAX, HOLDS_PER_SHARD_DEFAULT, HOLD_RETENTION_DEFAULT_US, IDEMPOTENCY_WINDOW_DEFAULT,
    IDEMPOTENCY_WINDOW_MAX, SHARDS_DEFAULT, SHARDS_MAX,
};
use crate::reason::Reason;
use offer::OfferEvent;
use registry::{Fees, Registry};
use shard::Shard;

/// Offer changes queued for the server at most.
pub const OFFER_EVENTS_MAX: usize = 100_000;

/// How the books are laid out and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BooksConfig {
    /// Number of shards, a power of two up to `SHARDS_MAX`. Fixed for a data directory:
    /// account and hold ids encode their shard.
    pub shards: u32,
    /// The currency of the books: every account is in it (one currency per deployment).
    pub currency: Currency,
    /// Idempotency window entries per shard.
    pub idempotency_window: u32,
    /// Holds kept per shard at most (live and retained for refunds).
    pub holds_per_shard_max: u32,
    /// How long finished holds stay refundable.
    pub hold_retention_us: u64,
}

impl BooksConfig {
    /// Bytes the hold rings take when full, over every shard (each is reserved whole).
    pub fn hold_rings_bytes(&self) -> u64 {
        hold_rings_bytes(self.holds_per_shard_max, self.shards)
    }

    /// Refuses a configuration books cannot be built with, naming the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.shards.is_power_of_two() || self.shards > SHARDS_MAX {
            return Err(ConfigError::Shards(self.shards));
        }
        if !(1..=IDEMPOTENCY_WINDOW_MAX).contains(&self.idempotency_window) {
            return Err(ConfigError::Window(self.idempotency_window));
        }
        if self.holds_per_shard_max == 0 {
            return Err(ConfigError::Holds);
        }
        Ok(())
    }
}

impl Default for BooksConfig {
    fn default() -> BooksConfig {
        BooksConfig {
            shards: SHARDS_DEFAULT,
            currency: Currency(978),
            idempotency_window: IDEMPOTENCY_WINDOW_DEFAULT,
            holds_per_shard_max: HOLDS_PER_SHARD_DEFAULT,
            hold_retention_us: HOLD_RETENTION_DEFAULT_US,
        }
    }
}

/// Where commands go to be made durable. Called with the command's shard lock held; must only
/// take a short lock of its own and copy the record.
pub trait Journal {
    /// Append the command with its timestamp; returns its log position.
    fn append(&self, timestamp_us: u64, command: &Command) -> Result<Lsn, JournalError>;
}

/// The journal could not take the record: the command is not applied and must be answered
/// with [`Reason::SystemMalfunction`].
#[derive(Debug, thiserror::Error)]
#[error("the write-ahead log refused the record: {0}")]
pub struct JournalError(pub String);

/// A journal that keeps nothing: for tests, benchmarks and replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoJournal;

/// Why a start could not move a shard's hold ids on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoldIdsError {
    /// The shard's ids are used up: every start skips `hold_ids::HOLD_SERIAL_SKIP` of them.
    #[error(
        "shard {shard} has no hold ids left for another start (each start skips 2^32 ids; \
         the next would have serial {serial}, above {serial_max})"
    )]
    UsedUp {
        shard: u32,
        serial: u64,
        serial_max: u64,
    },
    /// The log could not take the record.
    #[error("the log did not take the start of shard {shard}'s hold ids")]
    Log { shard: u32 },
}

impl Journal for NoJournal {
    fn append(&self, _timestamp_us: u64, _command: &Command) -> Result<Lsn, JournalError> {
        Ok(0)
    }
}

/// The journal replay uses: the record is already in the log at this position.
struct Replaying(Lsn);

impl Journal for Replaying {
    fn append(&self, _timestamp_us: u64, _command: &Command) -> Result<Lsn, JournalError> {
        Ok(self.0)
    }
}

/// What executing a command produced: its outcome and the log position to wait for before the
/// outcome may be released (0 when nothing was logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The outcome.
    pub outcome: Outcome,
    /// The log position of the command's record.
    pub lsn: Lsn,
}

impl Executed {
    fn unlogged(reason: Reason) -> Executed {
        Executed {
            outcome: Outcome::declined(reason),
            lsn: 0,
        }
    }
}

/// Where a shard's hot tables are, for `Books::prefetch` to compute addresses without the
/// shard's lock. Addresses are hints: a stale one costs a useless prefetch, never a wrong
/// read.
#[derive(Debug)]
struct ShardLines {
    /// The address of the shard's first payer; changes (under the shard's lock) when the
    /// payers grow.
    payers: AtomicUsize,
    /// The window's index, which never moves.
    window: idempotency::KeyLocator,
}

impl ShardLines {
    fn of(shard: &Shard) -> ShardLines {
        ShardLines {
            payers: AtomicUsize::new(shard.payers.as_ptr().addr()),
            window: shard.window.key_locator(),
        }
    }

    fn payers_moved(&self, shard: &Shard) {
        self.payers.store(shard.payers.as_ptr().addr(), Ordering::Relaxed);
    }

    fn payer_address(&self, slot: u64) -> usize {
        let offset = (slot as usize).wrapping_mul(std::mem::size_of::<account::Payer>());
        self.payers.load(Ordering::Relaxed).wrapping_add(offset)
    }
}

/// Bytes that `holds` in each of `shards` hold rings take.
fn hold_rings_bytes(holds: u32, shards: u32) -> u64 {
    let hold = std::mem::size_of::<hold::Hold>() as u64;
    hold.saturating_mul(u64::from(holds))
        .saturating_mul(u64::from(shards))
}

/// Sums the invariant check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Sum of payer balances.
    pub payers: i128,
    /// Sum of all ledger stripes (funding, fee, merchants).
    pub ledgers: i128,
}

/// The books of one deployment.
#[derive(Debug)]
pub struct Books {
    config: BooksConfig,
    shard_bits: u32,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Where each shard's hot tables are, read without the shard's lock by `prefetch`.
    lines: Box<[ShardLines]>,
    registry: Registry,
    /// Mobile number -> (account, log position of its opening).
    aliases: DashMap<u64, (AccountId, Lsn), foldhash::fast::RandomState>,
    /// Serialises operator changes that touch global state (aliases, the registry).
    operator: Mutex<()>,
    next_shard: AtomicU32,
    offer_events: Mutex<std::collections::VecDeque<(Lsn, OfferEvent)>>,
    offer_events_pending: std::sync::atomic::AtomicBool,
}

/// The configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Shards must be a power of two within bounds.
    #[error(
        "shards must be a power of two between 1 and {SHARDS_MAX}, not {0}; pass --shards 64 for example"
    )]
    Shards(u32),
    /// The idempotency window must hold between 1 and `IDEMPOTENCY_WINDOW_MAX` entries.
    #[error(
        "the idempotency window must be between 1 and {IDEMPOTENCY_WINDOW_MAX} entries per shard, not {0}; \
         pass --idempotency-window {IDEMPOTENCY_WINDOW_DEFAULT} for example"
    )]
    Window(u32),
    /// A shard must be able to keep at least one hold.
    #[error("a shard must keep at least one hold, not 0; pass --holds-per-shard-max {HOLDS_PER_SHARD_DEFAULT} for example")]
    Holds,
    /// The hold rings' room could not be reserved.
    #[error(
        "cannot reserve room for {holds} holds in each of {shards} shards ({bytes} bytes each, {mib} MiB in all): \
         the system refused the memory; free some or raise its limits (ulimit -v, vm.overcommit_memory and \
         CommitLimit in /proc/meminfo), or on a new data dir pass a smaller --holds-per-shard-max",
        bytes = std::mem::size_of::<hold::Hold>(),
        mib = hold_rings_bytes(*.holds, *.shards) >> 20
    )]
    HoldsMemory {
        /// Holds per shard asked for.
        holds: u32,
        /// Shards.
        shards: u32,
    },
    /// The stored books have another shard count (ids encode their shard).
    #[error("the data was written with --shards {stored}, not {configured}; start with --shards {stored}")]
    ShardsDiffer {
        /// Shards in the data.
        stored: u32,
        /// Shards asked for.
        configured: u32,
    },
}

impl Books {
    /// Empty books, each shard's hold ring reserved whole.
    pub fn new(config: BooksConfig) -> Result<Books, ConfigError> {
        let books = Books::unreserved(config)?;
        books.reserve_holds()?;
        Ok(books)
    }

    /// Empty books whose hold rings are not reserved yet.
    fn unreserved(config: BooksConfig) -> Result<Books, ConfigError> {
        config.validate()?;
        let shard_bits = config.shards.trailing_zeros();
        let shards = (0..config.shards)
            .map(|index| {
                let shard = Shard::new(
                    index,
                    shard_bits,
                    config.idempotency_window,
                    config.holds_per_shard_max,
                );
                CachePadded::new(Mutex::new(shard))
            })
            .collect::<Box<[_]>>();
        let lines = shards.iter().map(|shard| ShardLines::of(&shard.lock())).collect();
        Ok(Books {
            config,
            shard_bits,
            shards,
            lines,
            registry: Registry::default(),
            aliases: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            operator: Mutex::new(()),
            next_shard: AtomicU32::new(0),
            offer_events: Mutex::new(std::collections::VecDeque::new()),
            offer_events_pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Books rebuilt from a snapshot's pieces: the registry and every shard, in index order.
    /// The alias map is rebuilt from the shards' cold parts.
    pub fn from_parts(
        config: BooksConfig,
        registry: Registry,
        shards: Vec<Shard>,
    ) -> Result<Books, ConfigError> {
        let mut books = Books::unreserved(config)?;
        if shards.len() != config.shards as usize {
            return Err(ConfigError::ShardsDiffer {
                stored: shards.len() as u32,
                configured: config.shards,
            });
        }
        for (index, shard) in shards.iter().enumerate() {
            if shard.index != index as u32 || shard.shard_bits != books.shard_bits {
                return Err(ConfigError::ShardsDiffer {
                    stored: shards.len() as u32,
                    configured: config.shards,
                });
            }
            for (slot, cold) in shard.cold.iter().enumerate() {
                if let Some(mobile) = cold.mobile {
                    books
                        .aliases
                        .insert(mobile, (shard.account_id(slot as u32), cold.opened_lsn));
                }
            }
        }
        books.registry = registry;
        books.lines = shards.iter().map(ShardLines::of).collect();
        books.shards = shards
            .into_iter()
            .map(|shard| CachePadded::new(Mutex::new(shard)))
            .collect();
        books.reserve_holds()?;
        Ok(books)
    }

    /// Reserve every shard's whole hold ring up front, so that no payment ever waits for one
    /// to grow.
    fn reserve_holds(&self) -> Result<(), ConfigError> {
        let (holds, shards) = (self.config.holds_per_shard_max, self.config.shards);
        for shard in self.shards.iter() {
            shard
                .lock()
                .holds
                .reserve(holds as usize)
                .map_err(|_| ConfigError::HoldsMemory { holds, shards })?;
        }
        Ok(())
    }

    /// The registry in canonical form with the log position it covers, read under the
    /// operator lock (every registry change holds it while it is logged).
    pub fn snapshot_registry(&self, last_lsn: impl Fn() -> Lsn) -> (Lsn, Vec<u8>) {
        let _operator = self.operator.lock();
        let mut bytes = Vec::new();
        state::encode_registry(&self.registry, &mut bytes);
        (last_lsn(), bytes)
    }

    /// Append one shard in canonical form to `out`; returns the log position it covers, read
    /// under its lock (every record of the shard is appended under it). The lock is taken
    /// briefly to read the shard's sizes (room is then made outside it), and held while the
    /// shard is copied into `image`; it is encoded after. Other shards keep working.
    pub fn snapshot_shard(
        &self,
        index: u32,
        last_lsn: impl Fn() -> Lsn,
        image: &mut state::ShardImage,
        out: &mut Vec<u8>,
    ) -> Lsn {
        let size = state::ShardSize::of(&self.shards[index as usize].lock());
        image.make_room(size);
        let lsn = {
            let shard = self.shards[index as usize].lock();
            image.capture(&shard);
            last_lsn()
        };
        image.encode(out);
        lsn
    }

    /// The configuration.
    pub fn config(&self) -> &BooksConfig {
        &self.config
    }

    /// The shard a new account should go to (round robin).
    pub fn pick_shard(&self) -> u32 {
        self.next_shard.fetch_add(1, Ordering::Relaxed) & (self.config.shards - 1)
    }

    /// The shard of a payer account id (whether or not the account exists).
    pub fn shard_of_account(&self, account: AccountId) -> Option<u32> {
        account.payer_place(self.shard_bits).map(|(shard, _)| shard)
    }

    /// The shard of a hold id.
    pub fn shard_of_hold(&self, hold: HoldId) -> Option<u32> {
        (hold.0 >> self.shard_bits != 0).then_some((hold.0 & u64::from(self.config.shards - 1)) as u32)
    }

    /// The shard a command touches; `None` for registry changes (all shards) and for commands
    /// that name no existing place (answered without logging).
    pub fn shard_of(&self, command: &Command) -> Option<u32> {
        match *command {
            Command::Terminal { op, .. } => match op {
                TerminalOp::Authorize { payer, .. }
                | TerminalOp::Purchase { payer, .. }
                | TerminalOp::Offer { payer, .. }
                | TerminalOp::Reversal { payer, .. } => self.shard_of_account(payer),
                TerminalOp::Increment { hold, .. }
                | TerminalOp::Capture { hold, .. }
                | TerminalOp::Void { hold }
                | TerminalOp::Refund { hold, .. }
                | TerminalOp::OfferCancel { offer: hold }
                | TerminalOp::ReportFailedProvisioning { hold, .. } => self.shard_of_hold(hold),
            },
            Command::OpenAccount { shard, .. }
            | Command::AdvanceTime { shard }
            | Command::StartHoldIds { shard, .. } => (shard < self.config.shards).then_some(shard),
            Command::Load { account, .. }
            | Command::SetLimits { account, .. }
            | Command::SetPin { account, .. }
            | Command::SetAccountStatus { account, .. } => self.shard_of_account(account),
            Command::OfferAnswer { offer: hold, .. } | Command::DisputeOpen { hold, .. } => {
                self.shard_of_hold(hold)
            }
            Command::DisputeResolve { dispute, .. } => self.shard_of_hold(HoldId(dispute.0)),
            Command::RegisterMerchant { .. }
            | Command::SetMerchantStatus { .. }
            | Command::RegisterTerminal { .. }
            | Command::SetTerminalStatus { .. }
            | Command::RegisterDevice { .. } => None,
        }
    }

    /// Execute one command at `now_us`, logging it through `journal` first.
    pub fn execute(&self, command: &Command, now_us: u64, journal: &impl Journal) -> Executed {
        if command.is_registry_change() {
            return self.execute_registry_change(command, now_us, journal);
        }
        let Some(shard_index) = self.shard_of(command) else {
            return Executed::unlogged(unroutable_reason(command));
        };
        let _operator = matches!(command, Command::OpenAccount { .. }).then(|| self.operator.lock());
        let mut shard = self.shards[shard_index as usize].lock();
        let lsn = match journal.append(now_us, command) {
            Ok(lsn) => lsn,
            Err(_) => return Executed::unlogged(Reason::SystemMalfunction),
        };
        let outcome = self.apply_to_shard(&mut shard, command, now_us, lsn);
        if !shard.events.is_empty() {
            self.queue_offer_events(&mut shard, lsn);
        }
        if matches!(command, Command::OpenAccount { .. }) {
            // The payers may have moved as they grew.
            self.lines[shard_index as usize].payers_moved(&shard);
        }
        Executed { outcome, lsn }
    }

    /// Start loading the cache lines `command` will read first (its payer's line, its key's
    /// window slot) without executing it or taking any lock. A caller that knows its next
    /// commands (the server, with a batch of requests read at once) prefetches the next one
    /// before executing the current one, so its memory arrives meanwhile. Only a hint: calling
    /// it or not changes no outcome.
    pub fn prefetch(&self, command: &Command) {
        if let Command::Terminal { origin, op } = command {
            if let Some(payer) = op.payment_payer() {
                self.prefetch_payment(&origin.key, payer);
            }
        }
    }

    /// `prefetch` for a payment (authorize, purchase, offer) keyed `key` by `payer`.
    pub fn prefetch_payment(&self, key: &RequestKey, payer: AccountId) {
        let Some((shard, slot)) = payer.payer_place(self.shard_bits) else {
            return;
        };
        let lines = &self.lines[shard as usize];
        prefetch::prefetch(lines.payer_address(slot));
        prefetch::prefetch(lines.window.address(key));
    }

    /// Move a shard's offer changes to the queue the server drains, tagged with the log
    /// position their pushes must wait for. Bounded: the oldest are dropped past the limit
    /// (a push is a courtesy; the state can always be queried).
    fn queue_offer_events(&self, shard: &mut Shard, lsn: Lsn) {
        let mut queue = self.offer_events.lock();
        for event in shard.events.drain(..) {
            if queue.len() >= OFFER_EVENTS_MAX {
                queue.pop_front();
            }
            queue.push_back((lsn, event));
        }
        self.offer_events_pending.store(true, Ordering::Release);
    }

    /// Take the offer changes since the last call (cheap when there are none).
    pub fn take_offer_events(&self) -> Vec<(Lsn, OfferEvent)> {
        if !self.offer_events_pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.offer_events.lock().drain(..).collect()
    }

    /// Apply a single-shard command at log position `lsn` to its (locked) shard.
    fn apply_to_shard(&self, shard: &mut Shard, command: &Command, now_us: u64, lsn: Lsn) -> Outcome {
        match *command {
            Command::Terminal { origin, ref op } => shard.terminal(&self.registry, origin, op, now_us),
            Command::OpenAccount {
                currency,
                mobile,
                limits,
                ..
            } => {
                if currency != self.config.currency {
                    return Outcome::declined(Reason::CurrencyMismatch);
                }
                if mobile.is_some_and(|number| !is_e164(number) || self.alias_taken(number, lsn)) {
                    return Outcome::declined(Reason::InvalidRequest);
                }
                let outcome = shard.open_account(currency, mobile, limits, lsn);
                if let (true, Some(number)) = (outcome.reason.is_approved(), mobile) {
                    self.aliases.insert(number, (AccountId(outcome.id), lsn));
                }
                outcome
            }
            Command::Load { account, amount } => shard.load(account, amount),
            Command::SetLimits { account, limits } => shard.set_limits(account, limits),
            Command::SetPin { account, ref pin } => shard.set_pin(account, pin),
            Command::SetAccountStatus { account, status } => shard.set_status(account, status),
            Command::AdvanceTime { .. } => {
                let expired = shard.advance_time(now_us, self.config.hold_retention_us);
                Outcome::approved(0, expired)
            }
            Command::StartHoldIds { serial, .. } => shard.start_hold_ids(serial),
            Command::OfferAnswer {
                offer,
                payer,
                accept,
                pin,
            } => shard
                .offer_answer(&self.registry, offer, payer, accept, pin, now_us)
                .unwrap_or_else(Outcome::declined),
            Command::DisputeOpen { hold, amount, cause } => shard
                .dispute_open(hold, amount, cause)
                .unwrap_or_else(Outcome::declined),
            Command::DisputeResolve { dispute, for_payer } => shard
                .dispute_resolve(dispute, for_payer)
                .unwrap_or_else(Outcome::declined),
            Command::RegisterMerchant { .. }
            | Command::SetMerchantStatus { .. }
            | Command::RegisterTerminal { .. }
            | Command::SetTerminalStatus { .. }
            | Command::RegisterDevice { .. } => {
                unreachable!("registry changes hold every shard")
            }
        }
    }

    fn execute_registry_change(&self, command: &Command, now_us: u64, journal: &impl Journal) -> Executed {
        let _operator = self.operator.lock();
        let shards = self.lock_all();
        let lsn = match journal.append(now_us, command) {
            Ok(lsn) => lsn,
            Err(_) => return Executed::unlogged(Reason::SystemMalfunction),
        };
        Executed {
            outcome: self.apply_registry_change(command, &shards, lsn),
            lsn,
        }
    }

    fn apply_registry_change(
        &self,
        command: &Command,
        shards: &[MutexGuard<'_, Shard>],
        lsn: Lsn,
    ) -> Outcome {
        match *command {
            Command::RegisterMerchant {
                fee_bps,
                fee_bps_with_details,
                origin,
            } => {
                if fee_bps > FEE_BPS_MAX || fee_bps_with_details > fee_bps {
                    return Outcome::declined(Reason::InvalidRequest);
                }
                if origin.len > 0 && self.registry.merchant_by_origin(&origin).is_some() {
                    // Origin addresses identify merchants to payers: never two alike.
                    return Outcome::declined(Reason::InvalidRequest);
                }
                let fees = Fees {
                    bps: fee_bps,
                    bps_with_details: fee_bps_with_details,
                };
                match self.registry.add_merchant(Status::Active, fees, origin) {
                    Ok(merchant) => Outcome::approved(u64::from(merchant.0), 0),
                    Err(reason) => Outcome::declined(reason),
                }
            }
            Command::RegisterTerminal { merchant, secret } => {
                if self.registry.merchant(merchant).is_none() {
                    return Outcome::declined(Reason::MerchantInvalid);
                }
                match self.registry.add_terminal(merchant, Status::Active, secret) {
                    Ok(terminal) => Outcome::approved(u64::from(terminal.0), 0),
                    Err(reason) => Outcome::declined(reason),
                }
            }
            Command::SetMerchantStatus { merchant, status } => match self.registry.merchant(merchant) {
                None => Outcome::declined(Reason::MerchantInvalid),
                Some(entry) if entry.status() == Status::Closed => Outcome::declined(Reason::MerchantInvalid),
                Some(entry) => {
                    entry.set_status(status);
                    Outcome::approved(u64::from(merchant.0), 0)
                }
            },
            Command::SetTerminalStatus { terminal, status } => match self.registry.terminal(terminal) {
                None => Outcome::declined(Reason::TerminalInvalid),
                Some(entry) if entry.status() == Status::Closed => Outcome::declined(Reason::TerminalInvalid),
                Some(entry) => {
                    entry.set_status(status);
                    Outcome::approved(u64::from(terminal.0), 0)
                }
            },
            Command::RegisterDevice { account, secret } => {
                // Opened before this record, as for aliases: during recovery a shard's part of
                // the snapshot may be newer than the registry's, and hold accounts opened after.
                let exists = self.shard_of_account(account).is_some_and(|index| {
                    let shard = &shards[index as usize];
                    shard
                        .slot_of(account)
                        .is_some_and(|slot| lsn == 0 || shard.cold[slot as usize].opened_lsn < lsn)
                });
                // Account 0 registers a gateway, which relays offers for every payer.
                if account.0 != 0 && !exists {
                    return Outcome::declined(Reason::AccountUnknown);
                }
                match self.registry.add_device(account, Status::Active, secret) {
                    Ok(device) => Outcome::approved(u64::from(device.0), 0),
                    Err(reason) => Outcome::declined(reason),
                }
            }
            _ => unreachable!("only registry changes come here"),
        }
    }

    /// Apply a command read back from the log at its position (same code path as live).
    pub fn replay(&self, command: &Command, timestamp_us: u64, lsn: Lsn) -> Outcome {
        self.execute(command, timestamp_us, &Replaying(lsn)).outcome
    }

    /// A mobile number is taken for a command at `lsn` if an account opened before it has it.
    /// Live, every alias in the map is older; during recovery the map already holds aliases of
    /// accounts from shard snapshots taken later, which must not count yet.
    fn alias_taken(&self, mobile: u64, lsn: Lsn) -> bool {
        self.aliases
            .get(&mobile)
            .is_some_and(|entry| lsn == 0 || entry.value().1 < lsn)
    }

    /// Tell every shard that time reached `now_us`; shards with nothing due log nothing.
    /// Returns how many holds expired.
    pub fn advance_time(&self, now_us: u64, journal: &impl Journal) -> u64 {
        let mut expired = 0;
        for index in 0..self.config.shards {
            let due = self.shards[index as usize]
                .lock()
                .time_work_due(now_us, self.config.hold_retention_us);
            if due {
                let executed = self.execute(&Command::AdvanceTime { shard: index }, now_us, journal);
                expired += executed.outcome.amount;
            }
        }
        expired
    }

    /// Write the pages of the next `holds_ahead` unused slots of every shard's hold ring, at
    /// most `pages_max` pages a shard, so that payments do not fault them in (`hold_ring`).
    /// The lock is taken for `WARM_PAGES_A_LOCK` pages at a time (5-11 us a page here), so
    /// that payments queued on the shard wait for a few pages, not for all of them. Returns
    /// the pages written.
    pub fn warm_holds(&self, holds_ahead: usize, pages_max: usize) -> usize {
        const WARM_PAGES_A_LOCK: usize = 8;
        let mut written = 0;
        for shard in self.shards.iter() {
            let mut left = pages_max;
            while left > 0 {
                let step = left.min(WARM_PAGES_A_LOCK);
                let pages = shard.lock().holds.warm(holds_ahead, step);
                written += pages;
                left -= step;
                if pages < step {
                    break;
                }
            }
        }
        written
    }

    /// Bytes of hold-ring pages no hold or warm-ahead has written yet, over every shard: the
    /// memory [`Books::prefault_holds`] makes resident.
    pub fn holds_unwarmed_bytes(&self) -> u64 {
        let slots: usize = self
            .shards
            .iter()
            .map(|shard| shard.lock().holds.unwarmed())
            .sum();
        slots as u64 * std::mem::size_of::<hold::Hold>() as u64
    }

    /// Writes every page of every shard's hold ring not written yet, on up to `threads`
    /// threads, and returns the pages written: payments then never fault a hold's page in,
    /// where the ticker's warm-ahead (`warm_holds`) keeps only a few thousand slots ahead of
    /// each ring's tail. For a start, before the server serves: each shard's lock is held for
    /// the whole of its ring (23 MB with the defaults).
    pub fn prefault_holds(&self, threads: usize) -> usize {
        let threads = threads.clamp(1, self.shards.len());
        let written = std::sync::atomic::AtomicUsize::new(0);
        // A worker only writes memory; the scope passes a panic in one on (a bug).
        let prefault = |first: usize| {
            let pages: usize = (self.shards.iter().skip(first).step_by(threads))
                .map(|shard| shard.lock().holds.warm(usize::MAX, usize::MAX))
                .sum();
            written.fetch_add(pages, Ordering::Relaxed);
        };
        std::thread::scope(|scope| {
            for first in 1..threads {
                let spawned = std::thread::Builder::new()
                    .name("prefault-holds".into())
                    .spawn_scoped(scope, move || prefault(first));
                if spawned.is_err() {
                    prefault(first); // No thread to be had: this one does that share too.
                }
            }
            prefault(0);
        });
        written.into_inner()
    }

    /// A start of the server: every shard's next hold id skips past any the run before may
    /// have shown ahead of its log (`hold_ids`). Returns the last record's lsn, which must be
    /// durable before anything is shown; `Err` names a shard with no ids left to skip to.
    pub fn start_hold_ids(&self, now_us: u64, journal: &impl Journal) -> Result<Lsn, HoldIdsError> {
        let serial_max = hold_ids::serial_max(self.shard_bits);
        let mut last = 0;
        for index in 0..self.config.shards {
            let serial = {
                let shard = self.shards[index as usize].lock();
                shard.hold_ids.next_start(shard.holds.next_sequence())
            };
            let executed = self.execute(&Command::StartHoldIds { shard: index, serial }, now_us, journal);
            match executed.outcome.reason {
                Reason::Approved => {}
                Reason::SystemMalfunction => return Err(HoldIdsError::Log { shard: index }),
                _ => {
                    return Err(HoldIdsError::UsedUp {
                        shard: index,
                        serial,
                        serial_max,
                    })
                }
            }
            last = executed.lsn;
        }
        Ok(last)
    }

    pub(crate) fn lock_all(&self) -> Vec<MutexGuard<'_, Shard>> {
        self.shards.iter().map(|shard| shard.lock()).collect()
    }
}

/// The reason for a command whose id names no shard.
fn unroutable_reason(command: &Command) -> Reason {
    match command {
        Command::Terminal {
            op:
                TerminalOp::Increment { .. }
                | TerminalOp::Capture { .. }
                | TerminalOp::Void { .. }
                | TerminalOp::Refund { .. },
            ..
        } => Reason::HoldUnknown,
        Command::OpenAccount { .. } | Command::AdvanceTime { .. } | Command::StartHoldIds { .. } => {
            Reason::InvalidRequest
        }
        _ => Reason::AccountUnknown,
    }
}

/// E.164 numbers have at most 15 digits and do not start with 0.
fn is_e164(number: u64) -> bool {
    (1_000..=999_999_999_999_999).contains(&number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold_room(books: &Books) -> Vec<usize> {
        books
            .shards
            .iter()
            .map(|shard| shard.lock().holds.capacity())
            .collect()
    }

    #[test]
    fn the_ticker_writes_every_ring_ahead_a_bounded_number_of_pages_at_a_time() {
        let books = Books::new(BooksConfig {
            shards: 4,
            holds_per_shard_max: 10_000,
            ..BooksConfig::default()
        })
        .expect("books");
        // 6,000 slots ahead are 131 pages of 46 holds; 64 a shard a pass.
        assert_eq!(books.warm_holds(6_000, 64), 4 * 64);
        assert_eq!(books.warm_holds(6_000, 64), 4 * 64);
        assert_eq!(books.warm_holds(6_000, 64), 4 * (131 - 128));
        assert_eq!(books.warm_holds(6_000, 64), 0, "all 6,000 ahead are written");
        // Past the capacity nothing is written: 10,000 slots are 218 pages.
        assert_eq!(books.warm_holds(20_000, 1_000), 4 * (218 - 131));
        assert_eq!(books.warm_holds(20_000, 1_000), 0);
    }

    #[test]
    fn prefaulting_writes_every_ring_page_the_warm_ahead_left_and_nothing_twice() {
        let books = Books::new(BooksConfig {
            shards: 8,
            holds_per_shard_max: 10_000,
            ..BooksConfig::default()
        })
        .expect("books");
        let hold_bytes = std::mem::size_of::<hold::Hold>() as u64;
        assert_eq!(books.holds_unwarmed_bytes(), 8 * 10_000 * hold_bytes);
        // 10,000 slots are 218 pages of 46 holds; the warm-ahead wrote 64 of each shard's.
        assert_eq!(books.warm_holds(6_000, 64), 8 * 64);
        assert_eq!(books.holds_unwarmed_bytes(), 8 * (10_000 - 64 * 46) * hold_bytes);
        // More threads than shards, and shards that do not divide among the threads.
        assert_eq!(books.prefault_holds(3), 8 * (218 - 64));
        assert_eq!(books.holds_unwarmed_bytes(), 0);
        assert_eq!(books.prefault_holds(16), 0, "every page is written already");
        assert_eq!(books.warm_holds(6_000, 64), 0, "nothing is left for the ticker");
    }

    #[test]
    fn hold_rings_are_reserved_whole_when_built_and_when_loaded() {
        let config = BooksConfig {
            shards: 4,
            holds_per_shard_max: 5_000,
            ..BooksConfig::default()
        };
        let books = Books::new(config).expect("books");
        assert!(
            hold_room(&books).iter().all(|&room| room >= 5_000),
            "{:?}",
            hold_room(&books)
        );
        let (_, sections) = crate::store::snapshot::take(&books, || 0);
        let sections: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        let (loaded, _) = crate::store::snapshot::load(config, &sections).expect("load");
        assert!(
            hold_room(&loaded).iter().all(|&room| room >= 5_000),
            "{:?}",
            hold_room(&loaded)
        );
    }
}
