//! What a snapshot of the books holds, section by section (the container, with its header and
//! checksums, is `wal::snapshot_file`):
//!
//! | section | contents |
//! |---|---|
//! | 0, meta | magic `authdbk1` (8 bytes), format version u32, shards u32, currency u16, registry lsn u64, then one u64 lsn per shard |
//! | 1, registry | `books::state::encode_registry` |
//! | 2 + i | shard i, `books::state::ShardImage::encode` |
//!
//! Each part is taken under its own lock and covers the log up to its own lsn; the registry is
//! taken first, so its lsn is the smallest and names the snapshot file. Recovery replays a
//! record into the registry if it is after the registry lsn, into shard i if after shard i's.

use crate::books::registry::Registry;
use crate::books::shard::Shard;
use crate::books::state::{self, Reader, StateError};
use crate::books::{Books, BooksConfig};
use crate::ids::{Currency, Lsn};

/// Identifies the meta section.
pub const MAGIC: [u8; 8] = *b"authdbk1";
/// Version of the section layout written; bump on any change of the canonical forms. History:
/// 1, the first; 2 adds each shard's hold id runs at the end of its section (a version 1
/// shard has none, and is read as such).
pub const BOOKS_FORMAT_VERSION: u32 = 2;

/// The log positions a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The registry covers records up to here.
    pub registry_lsn: Lsn,
    /// Shard i covers records up to `shard_lsns[i]`.
    pub shard_lsns: Vec<Lsn>,
}

impl Coverage {
    /// The furthest position any part covers (shards' parts are taken after the registry's,
    /// so at least `registry_lsn`): the log must hold everything up to it.
    pub fn furthest(&self) -> Lsn {
        self.shard_lsns.iter().copied().fold(self.registry_lsn, Lsn::max)
    }
}

/// Take a snapshot of `books` part by part into a sink: `open` makes it once the registry's
/// lsn (the smallest, which names the snapshot) is known, then `put` gets each section as it
/// is taken, the registry first, then shard 0, 1, ... Returns what they cover, which the meta
/// section ([`meta`]) names, and the sink. `last_lsn` is the log's last assigned lsn. Only one
/// shard's copy and encoding is held at a time, and each part is taken when `put` took the one
/// before: a snapshot written at a pace spreads its shards' locks over its whole write.
pub fn take_into<S, E>(
    books: &Books,
    last_lsn: impl Fn() -> Lsn,
    open: impl FnOnce(Lsn) -> Result<S, E>,
    mut put: impl FnMut(&mut S, &[u8]) -> Result<(), E>,
) -> Result<(Coverage, S), E> {
    let (registry_lsn, registry) = books.snapshot_registry(&last_lsn);
    let mut sink = open(registry_lsn)?;
    put(&mut sink, &registry)?;
    drop(registry);
    let mut shard_lsns = Vec::with_capacity(books.config().shards as usize);
    let mut image = crate::books::state::ShardImage::default();
    let mut bytes = Vec::new();
    for index in 0..books.config().shards {
        bytes.clear();
        let lsn = books.snapshot_shard(index, &last_lsn, &mut image, &mut bytes);
        assert!(lsn >= registry_lsn, "shards are taken after the registry");
        shard_lsns.push(lsn);
        put(&mut sink, &bytes)?;
    }
    let coverage = Coverage {
        registry_lsn,
        shard_lsns,
    };
    Ok((coverage, sink))
}

/// The meta section of a snapshot of books configured as `config`, covering `coverage`.
pub fn meta(config: &BooksConfig, coverage: &Coverage) -> Vec<u8> {
    let mut meta = Vec::with_capacity(meta_len(config));
    meta.extend_from_slice(&MAGIC);
    meta.extend_from_slice(&BOOKS_FORMAT_VERSION.to_le_bytes());
    meta.extend_from_slice(&config.shards.to_le_bytes());
    meta.extend_from_slice(&config.currency.0.to_le_bytes());
    meta.extend_from_slice(&coverage.registry_lsn.to_le_bytes());
    for lsn in &coverage.shard_lsns {
        meta.extend_from_slice(&lsn.to_le_bytes());
    }
    meta
}

/// The length of [`meta`], known before the parts are taken.
pub fn meta_len(config: &BooksConfig) -> usize {
    MAGIC.len() + 4 + 4 + 2 + 8 + 8 * config.shards as usize
}

/// Take the sections of a snapshot of `books` in memory, meta first; `last_lsn` is the log's
/// last assigned lsn.
pub fn take(books: &Books, last_lsn: impl Fn() -> Lsn) -> (Coverage, Vec<Vec<u8>>) {
    let taken = take_into(
        books,
        last_lsn,
        |_| Ok::<_, std::convert::Infallible>(vec![Vec::new()]),
        |sections: &mut Vec<Vec<u8>>, section| {
            sections.push(section.to_vec());
            Ok(())
        },
    );
    let Ok((coverage, mut sections)) = taken;
    sections[0] = meta(books.config(), &coverage);
    (coverage, sections)
}

/// Why a snapshot's contents cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The sections are not what this version writes.
    #[error("snapshot section {section}: {error}")]
    Section {
        /// Which section.
        section: usize,
        /// What is wrong in it.
        error: StateError,
    },
    /// The sections decode, but the books in them break an invariant.
    #[error(
        "the books in it are inconsistent ({0}); restore an earlier snapshot or a backup of the data dir"
    )]
    Inconsistent(String),
    /// The books in it cannot be built with this configuration (their shards disagree with it,
    /// or their hold rings cannot be reserved).
    #[error("{0}")]
    Config(crate::books::ConfigError),
    /// The snapshot is of books configured differently.
    #[error(
        "the snapshot has {stored}; this authd is configured with {configured}: start with the stored value"
    )]
    Differs {
        /// What the snapshot says.
        stored: String,
        /// What the configuration says.
        configured: String,
    },
}

/// Rebuild books (and learn what they cover) from a snapshot's sections.
pub fn load(config: BooksConfig, sections: &[&[u8]]) -> Result<(Books, Coverage), LoadError> {
    let section_error = |section, error| LoadError::Section { section, error };
    let meta = sections.first().ok_or(section_error(0, missing()))?;
    let mut reader = Reader::new(meta);
    let bad = |what| section_error(0, StateError { offset: 0, what });
    if reader.array::<8>().map_err(|error| section_error(0, error))? != MAGIC {
        return Err(bad("not an authd books snapshot"));
    }
    let version = reader.u32().map_err(|error| section_error(0, error))?;
    if !(1..=BOOKS_FORMAT_VERSION).contains(&version) {
        return Err(bad("unknown books format version"));
    }
    let shards = reader.u32().map_err(|error| section_error(0, error))?;
    let currency = Currency(reader.u16().map_err(|error| section_error(0, error))?);
    if shards != config.shards {
        return Err(LoadError::Differs {
            stored: format!("--shards {shards}"),
            configured: format!("--shards {}", config.shards),
        });
    }
    if currency != config.currency {
        return Err(LoadError::Differs {
            stored: format!("--currency {}", currency.0),
            configured: format!("--currency {}", config.currency.0),
        });
    }
    let registry_lsn = reader.u64().map_err(|error| section_error(0, error))?;
    let shard_lsns = (0..shards)
        .map(|_| reader.u64())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| section_error(0, error))?;
    if sections.len() != 2 + shards as usize {
        return Err(bad("section count does not match the shard count"));
    }
    let registry: Registry = state::decode_registry(sections[1]).map_err(|error| section_error(1, error))?;
    let parts = sections[2..]
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let with_runs = version >= 2;
            state::decode_shard(
                bytes,
                config.idempotency_window,
                config.holds_per_shard_max,
                with_runs,
            )
            .and_then(|shard| {
                // Shards were counted against the configuration above; one in another's
                // section (or of another shard count) is damage, told as such.
                let placed =
                    shard.index as usize == index && shard.shard_bits == config.shards.trailing_zeros();
                placed.then_some(shard).ok_or(StateError {
                    offset: 0,
                    what: "the shard's index or shard bits do not match its section",
                })
            })
            .map_err(|error| section_error(2 + index, error))
        })
        .collect::<Result<Vec<Shard>, _>>()?;
    let books = Books::from_parts(config, registry, parts).map_err(LoadError::Config)?;
    // Checksums catch damage, not books that were never consistent (a file from a faulty
    // build, or edited): what the books assert at every payment is checked once here.
    books.check_loaded().map_err(LoadError::Inconsistent)?;
    Ok((
        books,
        Coverage {
            registry_lsn,
            shard_lsns,
        },
    ))
}

fn missing() -> StateError {
    StateError {
        offset: 0,
        what: "section missing",
    }
}
