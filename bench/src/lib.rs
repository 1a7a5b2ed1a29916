//! Shared set-up for authd's criterion benchmarks (`benches/`): books filled with payers, a
//! merchant and its terminals, and a cheap deterministic account picker, so every bench
//! measures the operation and not its preparation.

use engine::{
    AccountId, Books, BooksConfig, Command, Currency, Extras, Limits, MerchantId, NoJournal, Origin,
    RequestKey, TerminalId, TerminalOp,
};

/// The currency every fixture uses.
pub const EUR: Currency = Currency(978);

/// A fixed instant (2026-11-23 12:00 UTC) the benches run at.
pub const NOON_US: u64 = 1_795_435_200_000_000;

/// The whole-number command-line argument at `position` of a bench binary, or `default`;
/// anything else ends the process with a message.
pub fn argument(position: usize, default: u64) -> u64 {
    match std::env::args().nth(position) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("argument {position} must be a whole number, not {text:?}");
            std::process::exit(2)
        }),
    }
}

/// A purchase of `amount` EUR by `payer`, no PIN, no extras.
pub fn purchase(origin: Origin, payer: AccountId, amount: u64) -> Command {
    Command::Terminal {
        origin,
        op: TerminalOp::Purchase {
            payer,
            amount,
            currency: EUR,
            pin: None,
            extras: Extras::default(),
        },
    }
}

/// Books ready for payments.
pub struct Fixture {
    /// The books.
    pub books: Books,
    /// The one merchant everything pays.
    pub merchant: MerchantId,
    /// Its terminals.
    pub terminals: Vec<TerminalId>,
    /// The payers, in opening order.
    pub payers: Vec<AccountId>,
}

impl Fixture {
    /// `payers` accounts of a large balance over `config.shards` shards, one merchant with
    /// `terminals` terminals.
    pub fn new(config: BooksConfig, payers: u32, terminals: u32) -> Fixture {
        let books = Books::new(config).expect("bench config is valid");
        let register = Command::RegisterMerchant {
            fee_bps: 150,
            fee_bps_with_details: 90,
            origin: engine::Reference::default(),
        };
        let merchant = MerchantId(books.execute(&register, NOON_US, &NoJournal).outcome.id as u32);
        let terminals = (0..terminals)
            .map(|index| {
                let register = Command::RegisterTerminal {
                    merchant,
                    secret: [index as u8; 32],
                };
                TerminalId(books.execute(&register, NOON_US, &NoJournal).outcome.id as u32)
            })
            .collect();
        let payers = (0..payers)
            .map(|_| {
                let open = Command::OpenAccount {
                    shard: books.pick_shard(),
                    currency: EUR,
                    mobile: None,
                    limits: Limits::NONE,
                };
                let account = AccountId(books.execute(&open, NOON_US, &NoJournal).outcome.id);
                let load = Command::Load {
                    account,
                    amount: 1_000_000_000_000,
                };
                books.execute(&load, NOON_US, &NoJournal);
                account
            })
            .collect();
        Fixture {
            books,
            merchant,
            terminals,
            payers,
        }
    }

    /// The `index`th payer, by arithmetic: payers are opened round robin over the shards, so the
    /// `index`th has slot `index / shards` in shard `index % shards`, which is account
    /// `PAYER_ID_BASE + index`. A lookup in `payers` would add a cache miss to every iteration.
    pub fn payer_at(&self, index: usize) -> AccountId {
        AccountId(engine::limits::PAYER_ID_BASE + index as u64)
    }

    /// A purchase of `amount` by `payer` from terminal `terminal` with request id `request_id`.
    pub fn purchase(&self, terminal: usize, request_id: u64, payer: AccountId, amount: u64) -> Command {
        purchase(self.origin(terminal, request_id), payer, amount)
    }

    /// The origin of a request from one of the fixture's terminals.
    pub fn origin(&self, terminal: usize, request_id: u64) -> Origin {
        Origin {
            merchant: self.merchant,
            key: RequestKey {
                terminal: self.terminals[terminal],
                request_id,
            },
        }
    }
}

/// xorshift64*: a deterministic, allocation-free picker of uniform account indexes.
pub struct Picker(u64);

impl Picker {
    /// A picker from a non-zero seed.
    pub fn new(seed: u64) -> Picker {
        Picker(seed | 1)
    }

    /// The next index below `bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % bound
    }
}
