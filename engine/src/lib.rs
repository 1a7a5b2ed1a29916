//! The authd engine: the books, their write-ahead log, recovery, and the server.
//!
//! # Design
//!
//! [`Books`] keep every balance, hold, offer and dispute in memory, in shards chosen by account
//! id, each behind one lock. A [`Command`] (with the timestamp the server gave it: the books
//! never read a clock) is routed to the one shard it touches, logged through a [`Journal`]
//! while that shard's lock is held, and then applied, so the log's order is the apply order and
//! replaying the log re-executes the same decisions. [`store::Store`] pairs the books with the
//! [`wal::Wal`] (group commit) and recovers them from the newest snapshot plus the log after it.
//! [`server`] serves the wire protocol (crate `wire`) over mio and releases each reply only once
//! the log is durable up to the record it reflects. The binaries `authd` and `authctl` parse
//! flags and call this library.
//!
//! # Invariants
//!
//! - Double entry: payer balances plus ledger stripes (funding, fee, merchants) sum to zero.
//! - A payer's `held` is the sum of its active holds and open disputes; `held <= balance`.
//! - One shard lock per command; registry changes take every shard lock.
//! - A reply (or outcome push) never leaves before its record, and every record before it, is
//!   durable. An offer is shown to devices at once; hold ids skip at every start, so one shown
//!   and lost in a crash is never given again (`books::hold_ids`).
//!
//! [`Books::check_invariants`] checks the first two; the tests call it after every concurrent
//! storm, crash and recovery, and compare [`Books::digest`]s to prove replay rebuilds the books.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`books`] | accounts, holds, registry, idempotency window, offers, disputes, canonical state |
//! | [`command`] | the commands and their outcomes |
//! | [`reason`] | every outcome's reason and its ISO 8583 code |
//! | [`ids`], [`limits`] | identifiers, and every bound in one place |
//! | [`journal`] | commands as log records |
//! | [`wal`] | the write-ahead log: records, segments, group commit, recovery, lock, snapshot file |
//! | [`store`] | books + log: open, recover (parallel replay), execute, snapshot |
//! | [`server`] | event loops, connections, log-on, dispatch, pushes, statistics |
//!
//! DESIGN.md at the repository root tells the same story with the formats and the recovery
//! decision table.

pub mod books;
pub mod command;
pub mod cpus;
pub mod ids;
pub mod journal;
pub mod limits;
pub mod reason;
pub mod server;
pub mod store;
pub mod wal;

pub use books::{Books, BooksConfig, Executed, Journal, JournalError, NoJournal, Totals};
pub use command::{Command, Extras, Limits, Origin, Outcome, TerminalOp};
pub use ids::{
    AccountId, AccountKind, Currency, DeviceId, DisputeId, HoldId, Lsn, MerchantId, PinBlock, Reference,
    RequestKey, Status, TerminalId,
};
pub use reason::Reason;
