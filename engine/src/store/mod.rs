//! The books with their write-ahead log: what the server runs.
//!
//! Opening a data dir: take its lock, check the books' shape against its `BOOKS` file
//! ([`books_file`]), load the newest valid snapshot (or start empty), replay
//! the log after it (each record into the part of the books it belongs to, only if that part's
//! snapshot does not already cover it), then keep appending where the log ends. Executing: the
//! books log each command through the [`Wal`] inside the shard lock, and the caller releases
//! the reply once [`Wal::durable_lsn`] reaches the returned lsn. Snapshots are taken part by
//! part without stopping the other shards; the log segments and snapshots older than the
//! previous snapshot are then removed (one older generation is kept, so a damaged newest
//! snapshot can still be recovered from the one before it).

pub mod books_file;
pub mod replay;
pub mod snapshot;

use std::path::PathBuf;

use parking_lot::Mutex;

use crate::books::{Books, BooksConfig, Executed};
use crate::command::Command;
use crate::ids::Lsn;
use crate::wal::{self, DirLock, ReadOptions, RecoveryReport, Wal, WalConfig, WalError};
use snapshot::{Coverage, LoadError};

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The books' layout and bounds.
    pub books: BooksConfig,
    /// The log (its `dir` is the data dir).
    pub wal: WalConfig,
    /// Whether to cut the log at a corrupt record (the operator's explicit choice).
    pub read: ReadOptions,
}

/// Why a store could not open or snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The log or a file in the data dir.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::books::ConfigError),
    /// A shard's hold ids are used up.
    #[error(transparent)]
    HoldIds(#[from] crate::books::HoldIdsError),
    /// The newest valid snapshot cannot be loaded into these books.
    #[error("snapshot {path}: {error}")]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        error: LoadError,
    },
    /// A snapshot under way was given up because the server is stopping (the snapshot at the
    /// stop covers everything); its temporary file is removed.
    #[error("snapshot abandoned: authd is stopping, and its stop snapshot covers everything")]
    SnapshotAbandoned,
    /// The data dir's books were created with another shard count or currency.
    #[error("data dir {dir} holds books created with {stored}; this authd is configured with {configured}: start with {stored}, or pass another --data-dir for new books")]
    BooksDiffer {
        /// The data dir.
        dir: PathBuf,
        /// What its `BOOKS` file says, as the flag.
        stored: String,
        /// What the configuration says, as the flag.
        configured: String,
    },
    /// A log with neither a `BOOKS` file nor a snapshot to check the books' shape against.
    #[error("data dir {dir} has a log but neither a BOOKS file nor a valid snapshot ({skipped_snapshots} damaged ones skipped) to check --shards and --currency against (an authd from before the BOOKS file wrote it); write {dir}/BOOKS with the lines `shards N` and `currency C` the dir was created with (its rules are then unknown, and the next start says how to have its log covered by a snapshot; this authd's rules are {current}), then start again")]
    BooksUnknown {
        /// The data dir.
        dir: PathBuf,
        /// Snapshots that were found but could not be read.
        skipped_snapshots: usize,
        /// This build's rules.
        current: u32,
    },
    /// The log has records past the newest snapshot written under older rules.
    #[error("data dir {dir} has log records written under rules {stored}, and this authd decides by rules {current}: replayed, they could get other outcomes than they did; start the authd that wrote them, with --snapshot-interval-s above 0, until it stops cleanly and logs snapshot_written at=stop (an authd too old for that: stop its traffic and wait for its next snapshot_written), then this one (rules 0: unknown, a dir from before the BOOKS file or its rules line)")]
    RulesOlder {
        /// The data dir.
        dir: PathBuf,
        /// The rules its `BOOKS` file names.
        stored: u32,
        /// This build's rules.
        current: u32,
    },
    /// The log has records past the newest snapshot written with other settings (or unknown
    /// ones) than the configured.
    #[error("data dir {dir} has log records written with {stored}, and this authd is configured with {configured}: replayed under these, they could get other outcomes than they did (a recognised retry charged, an approved authorization declined); start with {stored} until authd stops cleanly and logs snapshot_written at=stop (with --snapshot-interval-s above 0), then with the new settings")]
    SettingsDiffer {
        /// The data dir.
        dir: PathBuf,
        /// What its `BOOKS` file says, as the flags.
        stored: String,
        /// What the configuration says, as the flags.
        configured: String,
    },
    /// The log has records past the newest snapshot, and the `BOOKS` file does not record the
    /// settings they were written with (an authd from before its settings lines).
    #[error("data dir {dir} has log records written with settings its BOOKS file does not record (an authd from before the settings lines wrote them): replayed under this authd's, they could get other outcomes than they did; start the authd that wrote them, with --snapshot-interval-s above 0, until it stops cleanly and logs snapshot_written at=stop, then this one")]
    SettingsUnknown {
        /// The data dir.
        dir: PathBuf,
    },
    /// The `BOOKS` file names rules newer than this build's.
    #[error("data dir {dir} was written by an authd with rules {stored}, newer than this one's ({current}); run that authd, or a newer one")]
    RulesNewer {
        /// The data dir.
        dir: PathBuf,
        /// The rules its `BOOKS` file names.
        stored: u32,
        /// This build's rules.
        current: u32,
    },
    /// A snapshot, and no log segment at all: authd always leaves one, so they were removed.
    #[error("data dir {dir} has snapshot {snapshot} but no log segment (wal-*.log): the records after the snapshot are missing; restore the segment files from a backup, or start with --truncate-corrupt-log to go on from the snapshot alone (whatever came after it is lost)")]
    LogMissing {
        /// The data dir.
        dir: PathBuf,
        /// The snapshot found.
        snapshot: PathBuf,
    },
    /// The recovered books break an invariant.
    #[error("the books recovered from the data dir are inconsistent ({broken}); restore the data dir from a backup")]
    Inconsistent {
        /// What is broken.
        broken: String,
    },
    /// The data dir's `BOOKS` file cannot be read.
    #[error("{path}: {what}; the file records the --shards and --currency the data dir's books were created with and the rules and settings its log was written under, as lines `shards N`, `currency C`, `rules R`, `idempotency-window N`, `holds-per-shard-max N` and `hold-retention-us N`: restore it")]
    BooksFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A record passed its checksum but is not a command this version knows.
    #[error("log record {lsn} passed its checksum but is not a command this authd knows ({what}): a newer authd wrote it (start that one), or the log is damaged (restore the data dir from a backup)")]
    Record {
        /// The record's lsn.
        lsn: Lsn,
        /// What is wrong.
        what: String,
    },
}

/// What opening found and did.
#[derive(Debug)]
pub struct Recovered {
    /// The snapshot loaded, if any, and the log position its registry covers.
    pub snapshot: Option<(PathBuf, Lsn)>,
    /// Newer snapshots that were invalid and skipped.
    pub skipped_snapshots: Vec<WalError>,
    /// What reading the log found (torn tail, cut corruption).
    pub log: RecoveryReport,
    /// Records applied to the books (the rest were covered by the snapshot).
    pub records_applied: u64,
    /// Set when this open recorded other rules or settings in the `BOOKS` file than it found
    /// there (not for a new dir).
    pub rerecorded: Option<Rerecorded>,
    /// Files the open could not remove after the snapshot it wrote past a gap (tried again
    /// after the next snapshot; the open goes on).
    pub removal_failed: Vec<WalError>,
}

/// What an open found recorded, when it recorded this build's rules and settings instead.
#[derive(Debug)]
pub struct Rerecorded {
    /// What the `BOOKS` file said before (`None`: there was no file).
    pub before: Option<books_file::Recorded>,
    /// Log segments and snapshots removed: written under what was recorded before, they
    /// must not be replayed under this.
    pub removed: Vec<PathBuf>,
}

/// The books and their log.
pub struct Store {
    books: Books,
    wal: Wal,
    /// Registry lsn of the newest snapshot written or loaded (0 for none).
    snapshot_lsn: Mutex<Lsn>,
    /// Held by the snapshot being taken: one at a time (two would write the same file).
    snapshotting: Mutex<()>,
    /// Segments and snapshots before this lsn (the one before the newest snapshot's) are
    /// redundant: [`Store::remove_redundant`] removes them.
    redundant_before: Mutex<Lsn>,
}

impl Store {
    /// Open (or create) the data dir `config.wal.dir` and recover the books in it.
    pub fn open(config: StoreConfig) -> Result<(Store, Recovered), StoreError> {
        // Settings that cannot work are refused before anything is made, and a configuration
        // that cannot build books is never recorded as the dir's shape. (Memory the system
        // will not reserve for the hold rings is found when the books are built, after the
        // dir and its lock are made: nothing is recorded, and other settings may use it.)
        config.books.validate()?;
        config.wal.validate()?;
        let created = !config.wal.dir.exists();
        if !created && !config.wal.dir.is_dir() {
            return Err(WalError::NotADir {
                dir: config.wal.dir.clone(),
            }
            .into());
        }
        std::fs::create_dir_all(&config.wal.dir)
            .map_err(|error| WalError::io("create data dir", &config.wal.dir, error))?;
        if created {
            // The dir's own entry, or a power loss could take the whole new dir with it.
            let parent = match config.wal.dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => std::path::Path::new("."),
            };
            wal::segment::sync_dir(parent).map_err(|error| WalError::io("sync", parent, error))?;
        }
        let lock = DirLock::acquire(&config.wal.dir)?;
        // A crash while a snapshot was written leaves its temporary file: nothing reads it.
        wal::snapshot_file::remove_stale_temporaries(&config.wal.dir)?;
        let recorded = books_file::check(&config.wal.dir, &config.books)?;
        let scan = wal::read_newest_snapshot(&config.wal.dir)?;
        if let Some(found) = &scan.newest {
            let segments = wal::segment::list_segments(&config.wal.dir)?;
            if segments.is_empty() && !config.read.truncate_corrupt {
                return Err(StoreError::LogMissing {
                    dir: config.wal.dir.clone(),
                    snapshot: found.path.clone(),
                });
            }
        }
        let (books, coverage, snapshot) = match &scan.newest {
            Some(found) => {
                let sections: Vec<&[u8]> = found.sections().collect();
                let (books, coverage) =
                    snapshot::load(config.books, &sections).map_err(|error| StoreError::Snapshot {
                        path: found.path.clone(),
                        error,
                    })?;
                (books, coverage, Some((found.path.clone(), found.lsn)))
            }
            None => {
                let coverage = Coverage {
                    registry_lsn: 0,
                    shard_lsns: vec![0; config.books.shards as usize],
                };
                (Books::new(config.books)?, coverage, None)
            }
        };
        // Shards' parts are taken after the registry's: reading starts after the registry's
        // position, and the log must reach the furthest part's.
        let covered = coverage.furthest();
        let workers = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        let (wal_config, read) = (config.wal, config.read);
        // Only a BOOKS file or a snapshot (which checked the shape) vouches for the flags: a
        // log replayed into books of another shape would decline what was approved. With
        // neither, the first record stops the open before anything is replayed or written
        // (an empty log is a new dir, and gets its BOOKS file below). Likewise a record
        // written under older rules: replayed under these, it could get another outcome.
        let dir = wal_config.dir.clone();
        let skipped_snapshots = scan.skipped.len();
        let unvouched = recorded.is_none() && snapshot.is_none();
        // Without a BOOKS file the rules are unknown (0), as without its `rules` line; and the
        // settings, as without their lines.
        let current = books_file::Recorded::of(&config.books);
        let unknown = books_file::Recorded {
            rules: 0,
            settings: None,
        };
        let logged = recorded.unwrap_or(unknown);
        let unvouched_refusal = || StoreError::BooksUnknown {
            dir: dir.clone(),
            skipped_snapshots,
            current: books_file::RULES,
        };
        // Decided once: the closure is asked before every record replayed.
        let replays = logged == current;
        let refusal = || {
            if replays {
                return None;
            }
            if logged.rules < books_file::RULES {
                return Some(StoreError::RulesOlder {
                    dir: dir.clone(),
                    stored: logged.rules,
                    current: books_file::RULES,
                });
            }
            let configured = books_file::Settings::of(&config.books);
            match logged.settings {
                Some(stored) if stored == configured => None,
                Some(stored) => Some(StoreError::SettingsDiffer {
                    dir: dir.clone(),
                    stored: stored.differences(&configured),
                    configured: configured.differences(&stored),
                }),
                None => Some(StoreError::SettingsUnknown { dir: dir.clone() }),
            }
        };
        // The shape is refused at the first record, whatever it is; the rules only for a record
        // the snapshot does not cover (a shard's part may cover more than the registry's
        // position, where reading starts).
        let ((wal, log), records_applied) = replay::replay(&books, &coverage, &refusal, workers, |visit| {
            Wal::open_covering(
                wal_config,
                lock,
                coverage.registry_lsn,
                covered,
                &read,
                |lsn, timestamp_us, payload| match unvouched {
                    true => Err(unvouched_refusal()),
                    false => visit(lsn, timestamp_us, payload),
                },
            )
        })?;
        // Replay re-creates old offer changes; they were pushed (or not) before the restart.
        books.take_offer_events();
        // Every part now stands at the log's end, so the whole check holds, a hold's merchant
        // against the registry included (a snapshot alone could only bound it).
        if let Err(broken) = books.check_invariants() {
            // The refusal matters more than how the log closes.
            let _ = wal.close();
            return Err(StoreError::Inconsistent { broken });
        }
        let mut rerecorded = None;
        if recorded != Some(current) {
            // New, from an older authd, or written under older rules or other settings with
            // nothing left to replay: from now on the log is written under these. What the
            // older ones wrote before the loaded snapshot goes first: a fallback to an older
            // snapshot would replay it under these.
            let mut removed = Vec::new();
            if let Some((_, snapshot_lsn)) = &snapshot {
                removed = wal.remove_segments_before(*snapshot_lsn)?;
                removed.extend(wal::snapshot_file::remove_snapshots_before(
                    wal.dir(),
                    *snapshot_lsn,
                )?);
            }
            books_file::write(wal.dir(), &config.books)?;
            let new_dir = recorded.is_none() && snapshot.is_none();
            rerecorded = (!new_dir).then_some(Rerecorded {
                before: recorded,
                removed,
            });
        }
        let store = Store {
            books,
            wal,
            snapshot_lsn: Mutex::new(coverage.registry_lsn),
            snapshotting: Mutex::new(()),
            redundant_before: Mutex::new(0),
        };
        if log.lsns_skipped.is_some() {
            // The log now goes on past a gap only this snapshot's coverage explains: cover
            // it with a new one, whose registry position is past the gap, before anything
            // else, or the next open would find the gap and refuse.
            store.snapshot_paced(None, || true)?;
        }
        // What an earlier run left aside, and what that snapshot made redundant: a file that
        // will not go is reported, not a reason to refuse the books.
        let removal_failed = store.remove_redundant(None, || true).failed;
        let recovered = Recovered {
            snapshot,
            skipped_snapshots: scan.skipped,
            log,
            records_applied,
            rerecorded,
            removal_failed,
        };
        Ok((store, recovered))
    }

    /// The books (for reads and checks).
    pub fn books(&self) -> &Books {
        &self.books
    }

    /// The log (durable position, notifiers, stats).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Execute a command at `now_us`; release its outcome once `wal().durable_lsn() >= lsn`.
    pub fn execute(&self, command: &Command, now_us: u64) -> Executed {
        self.books.execute(command, now_us, &self.wal)
    }

    /// A start of the server, before it listens: every shard's next hold id skips past any
    /// an earlier run may have shown ahead of its log, and the records are durable on return.
    pub fn start_hold_ids(&self, now_us: u64) -> Result<(), StoreError> {
        let lsn = match self.books.start_hold_ids(now_us, &self.wal) {
            Ok(lsn) => lsn,
            Err(crate::books::HoldIdsError::Log { .. }) => {
                return Err(self.wal.failure().unwrap_or(WalError::Closed).into())
            }
            Err(used_up) => return Err(used_up.into()),
        };
        self.wal.wait_durable(lsn)?;
        // With fsync `never`, durable means written: a power loss could take the records
        // with the offers shown after them, and the next start would give their ids again.
        Ok(self.wal.sync_written()?)
    }

    /// Expire due holds at `now_us` (logged per shard).
    pub fn advance_time(&self, now_us: u64) -> u64 {
        self.books.advance_time(now_us, &self.wal)
    }

    /// Write a snapshot, then remove what the previous one made redundant. Returns its path;
    /// an error may come after the snapshot is in place, from the removal.
    pub fn snapshot(&self) -> Result<PathBuf, StoreError> {
        let path = self.snapshot_paced(None, || true)?;
        match self.remove_redundant(None, || true).failed.into_iter().next() {
            Some(error) => Err(error.into()),
            None => Ok(path),
        }
    }

    /// Write a snapshot, its file at `pace` bytes a second at most if given
    /// ([`wal::SnapshotWriter`]), removing nothing: [`Store::remove_redundant`] does, after
    /// (what a server does while it serves, and at its stop). The parts are taken
    /// as the file is written, one shard in memory at a time. Between parts it asks
    /// `keep_going`, and gives up ([`StoreError::SnapshotAbandoned`]) on false: a stopping
    /// server must not wait out a paced gigabyte.
    pub fn snapshot_paced(
        &self,
        pace: Option<std::num::NonZeroU64>,
        keep_going: impl Fn() -> bool,
    ) -> Result<PathBuf, StoreError> {
        let _one_at_a_time = self.snapshotting.lock();
        let dir = self.wal.dir().to_path_buf();
        let newest = *self.snapshot_lsn.lock();
        if newest > 0 && self.wal.last_lsn() <= newest {
            // Nothing appended since the newest snapshot read its registry position: it covers
            // everything. Written again under its own name, it would count as "the previous"
            // and take the older generation, the fallback, with it.
            return Ok(dir.join(wal::snapshot_file::snapshot_file_name(newest)));
        }
        let config = self.books.config();
        // Created at the registry, whose lsn names the file; meta comes first in the file and
        // names every part's lsn, so its room is kept and it is filled in at the end.
        let (coverage, (mut writer, meta)) = snapshot::take_into(
            &self.books,
            || self.wal.last_lsn(),
            |lsn| -> Result<_, StoreError> {
                let mut writer = wal::SnapshotWriter::create(&dir, lsn, pace)?;
                let meta = writer.reserve(snapshot::meta_len(config))?;
                Ok((writer, meta))
            },
            |(writer, _), section| {
                if !keep_going() {
                    return Err(StoreError::SnapshotAbandoned);
                }
                Ok(writer.section(section)?)
            },
        )?;
        // Only what the log holds durably: a record still in flight could yet fail (its
        // command answered 96 though applied in memory), and the next start would hand its
        // lsn out again. Refused on a failed log (the unfinished file is removed).
        self.wal.wait_durable(coverage.furthest())?;
        // With --fsync never "durable" means written: sync it, or a power loss could leave
        // the log shorter than the snapshot that covers it.
        self.wal.sync_written()?;
        writer.fill(meta, &snapshot::meta(config, &coverage))?;
        let path = writer.finish()?;
        let previous = std::mem::replace(&mut *self.snapshot_lsn.lock(), coverage.registry_lsn);
        // What came before the previous snapshot is redundant now (the previous one stays, the
        // fallback): for `remove_redundant`, apart from the snapshot so that a failure there
        // is not taken for a failed snapshot.
        *self.redundant_before.lock() = previous;
        Ok(path)
    }

    /// Remove the log segments and snapshots the newest snapshot made redundant (everything
    /// before the one before it, kept as a fallback), and whatever an earlier removal left
    /// aside. Paced, each is set aside and taken apart a step at a time at `pace` bytes a
    /// second ([`wal::removal`]): gigabytes of segments unlinked at once held the log's
    /// fdatasyncs behind the disk's discards. Asks `keep_going` before each step; what is
    /// left waits for the next call. Whatever goes wrong (a file that will not go, a dir
    /// that cannot be listed) is reported in the result, never a failure of the caller's
    /// snapshot or open: the next removal tries again.
    pub fn remove_redundant(
        &self,
        pace: Option<std::num::NonZeroU64>,
        keep_going: impl Fn() -> bool,
    ) -> wal::removal::Swept {
        let _one_at_a_time = self.snapshotting.lock();
        let dir = self.wal.dir();
        let before = *self.redundant_before.lock();
        let mut failed = Vec::new();
        let mut kept_for_reuse = 0;
        if before > 0 {
            match self.set_aside_redundant(before, &mut failed) {
                Ok(kept) => kept_for_reuse = kept,
                Err(error) => failed.push(error),
            }
        }
        let mut swept =
            wal::removal::sweep(dir, pace, keep_going).unwrap_or_else(|error| wal::removal::Swept {
                failed: vec![error],
                ..Default::default()
            });
        swept.failed.extend(failed);
        swept.kept_for_reuse = kept_for_reuse;
        swept
    }

    /// Sets aside for removal the snapshots before `before` and the segments whose records
    /// all come before it, except the segments kept for reuse ([`wal::reuse`]): what the log
    /// did not take of those kept last time goes (but for as many as `--wal-preallocate-mb`
    /// makes, whichever they are), and as many of these as `--wal-reuse-mb` allows are kept
    /// in their place. So what is kept is at most what the last snapshot freed, what the log
    /// held anyway, and what is written ahead. Returns how many were kept. Failures to
    /// set one file aside are pushed to `failed`; one to list the dir ends it.
    fn set_aside_redundant(&self, before: Lsn, failed: &mut Vec<WalError>) -> Result<usize, WalError> {
        let dir = self.wal.dir();
        let segments = self.wal.segments_before(before)?;
        let snapshots = wal::snapshot_file::snapshots_before(dir, before)?;
        let set_aside = |path: &PathBuf| match wal::removal::set_aside(path) {
            // Taken for reuse by the log meanwhile.
            Err(WalError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        let unused = wal::reuse::free_segments(dir)?;
        let ahead = self.wal.free_to_keep(&unused);
        let unwanted = unused.iter().filter(|path| !ahead.contains(path));
        failed.extend(unwanted.filter_map(|path| set_aside(path).err()));
        let reuse = self.wal.segments_to_reuse(&segments);
        let mut kept = 0;
        for path in &segments {
            if reuse.contains(&path) {
                match wal::reuse::set_free(path) {
                    Ok(()) => kept += 1,
                    Err(error) => failed.push(error),
                }
            } else {
                failed.extend(set_aside(path).err());
            }
        }
        if kept > 0 {
            wal::segment::sync_dir(dir).map_err(|error| WalError::io("sync", dir, error))?;
        }
        failed.extend(snapshots.iter().filter_map(|path| set_aside(path).err()));
        Ok(kept)
    }

    /// True if records were appended after what the newest snapshot covers.
    pub fn has_records_after_snapshot(&self) -> bool {
        self.wal.last_lsn() > *self.snapshot_lsn.lock()
    }

    /// Final sync and stop the log writer.
    pub fn close(&self) -> Result<(), WalError> {
        self.wal.close()
    }
}

/// A store with default books in `dir`, for the server's unit tests (1 MiB log segments).
#[cfg(test)]
pub(crate) fn open_for_tests(dir: &std::path::Path) -> Store {
    let mut wal = WalConfig::new(dir);
    wal.segment_bytes = 1 << 20;
    let config = StoreConfig {
        books: BooksConfig::default(),
        wal,
        read: ReadOptions::default(),
    };
    Store::open(config).expect("open the store").0
}
