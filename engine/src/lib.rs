//! authd engine (work in progress: see the crate doc once the books land).
pub mod books;
pub mod command;
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
