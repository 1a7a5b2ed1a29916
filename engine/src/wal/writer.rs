//! Group commit: callers copy records into a pending buffer; one batch at a time is written
//! and synced, by the writer thread or, when the log is idle, by the caller itself.
//!
//! [`Wal::append`] is called while the caller holds its shard lock, so it does the least
//! possible: lock the pending mutex, take the next lsn, encode the record into the pending
//! buffer (preallocated to [`super::WalConfig::pending_bytes_max`], never grown), unlock, and
//! wake the writer thread if the buffer was empty and no [`Batch`] is open. If the record does
//! not fit, `append` wakes the writer and waits until the buffer is taken: that is the log's
//! backpressure, and it stalls the caller's shard for as long as one write and sync take.
//!
//! An event loop opens a [`Batch`] ([`Wal::open_batch`]) before handling what it read: while
//! any batch is open, appends do not wake the writer thread, because [`Batch::commit`] will see
//! to whatever is pending. It commits here and now if the log is idle: no commit under way,
//! none asked of the writer thread, no other batch open (no thread hand-off, no wake-up, the
//! reply can leave as soon as `commit` returns). Otherwise it hands the records to the writer
//! thread, which takes them right after the commit under way (group commit, as everything that
//! arrives during one sync goes into the next): a loop syncing in place under load would hold
//! its connections for a sync that others' records could share. The two never contend for the
//! segment: a commit under way is a flag under the pending mutex, and the other waits on a
//! condvar (a first version let the writer thread spin on the committer's mutex, and under
//! load `parking_lot`'s `sched_yield`s there took 3-4 ms each).
//!
//! Either way the commit ([`super::committer`]) swaps the pending buffer with its spare one,
//! writes the whole batch with one `pwrite` (two around a segment roll), syncs once per
//! [`FsyncMode`](super::FsyncMode), stores the batch's last lsn in `durable_lsn`, wakes [`Wal::wait_durable`]
//! callers and calls every notifier once. A failed write, sync or segment creation makes the
//! log FAILED for good: `durable_lsn` stops, `append` and `wait_durable` return
//! [`WalError::Failed`], and notifiers fire once more so that callers can answer "system
//! malfunction" for what was never made durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use super::committer::Committer;
use super::record::{self, RECORD_PAYLOAD_BYTES_MAX};
use super::recovery::{self, ReadOptions, RecoveryReport};
use super::segment::{self, PreparedSegment};
use super::{DirLock, FsyncMode, Lsn, WalConfig, WalError};

/// What a notifier is told after a published batch, or when the log fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durable {
    /// Every record up to this lsn is durable.
    pub lsn: Lsn,
    /// The log has failed: nothing after `lsn` will ever be durable.
    pub failed: bool,
}

/// A callback called after every published batch (and on failure), on the thread that
/// committed: the writer thread or a caller of [`Batch::commit`].
pub type Notifier = Box<dyn Fn(Durable) + Send + Sync>;

/// Counters of the writer, for tests, benchmarks and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written to segment files.
    pub records_written: u64,
    /// Batches taken from the pending buffer.
    pub batches_written: u64,
    /// fdatasync calls (one per batch in `Always`, plus one before each segment roll).
    pub syncs: u64,
    /// The log's mode: with `Always` every reply waits for a sync.
    pub fsync_mode: FsyncMode,
    /// Microseconds spent in those fdatasync calls.
    pub sync_us: u64,
    /// For each of [`HELD_PAST_US`]: microseconds in which an arriving record would have
    /// waited longer than it for syncs alone (see [`HELD_PAST_US`]).
    pub held_us_past: [u64; HELD_PAST_US.len()],
    /// Median fdatasync latency, microseconds (from a histogram of every sync).
    pub sync_us_p50: u64,
    /// 99th percentile fdatasync latency, microseconds.
    pub sync_us_p99: u64,
    /// Slowest fdatasync, microseconds.
    pub sync_us_max: u64,
    pub bytes_written: u64,
    pub segments_created: u64,
    /// Of `segments_created`, old segments reused instead of zero-filled files ([`super::reuse`]).
    pub segments_reused: u64,
    /// Times an `append` waited for room in the pending buffer (backpressure).
    pub append_waits: u64,
    /// Batches committed by the caller of [`Batch::commit`] itself, the log being idle (the
    /// rest of `batches_written` went through the writer thread).
    pub commits_in_place: u64,
    /// Times the writer thread paused before a commit ([`WalConfig::commit_delay_us`]).
    pub commit_delays: u64,
    /// Bytes of synced segment pages dropped from the page cache
    /// ([`super::segment::SegmentFile::drop_synced_pages`]).
    pub bytes_dropped: u64,
}

/// Thresholds of [`WalStats::held_us_past`], microseconds.
///
/// Syncs run one at a time. A record appended during a sync is in none of its batch, so it is
/// durable no sooner than the end of the next sync: it waits at least for the rest of the
/// current sync plus the whole next one. When a sync ends, the part of the one before it in
/// which that wait exceeds a threshold is added to the threshold's count. Over a span, the
/// count is the least share of requests arriving evenly in it that syncs alone kept waiting
/// longer than the threshold. Counted only with [`FsyncMode::Always`], where replies wait.
pub const HELD_PAST_US: [u64; 5] = [1_000, 2_000, 5_000, 10_000, 20_000];

#[derive(Default)]
pub(super) struct Counters {
    pub(super) records_written: AtomicU64,
    pub(super) batches_written: AtomicU64,
    /// Under one lock, so that a reading never lands halfway through a sync's counting (a
    /// longer threshold showing more held time than a shorter one).
    sync_tally: Mutex<SyncTally>,
    pub(super) bytes_written: AtomicU64,
    pub(super) segments_created: AtomicU64,
    pub(super) segments_reused: AtomicU64,
    append_waits: AtomicU64,
    commits_in_place: AtomicU64,
    commit_delays: AtomicU64,
    pub(super) bytes_dropped: AtomicU64,
}

impl Counters {
    /// Counts one sync of `sync_us`. With `previous_us`, the sync before it (0 before the
    /// first), also the time the two held arriving records; `None` where records do not wait
    /// for syncs (fsync never).
    pub(super) fn count_sync(&self, sync_us: u64, previous_us: Option<u64>) {
        self.sync_tally.lock().count(sync_us, previous_us);
    }

    /// Counts a segment started, `reused` or zero-filled.
    pub(super) fn count_segment(&self, reused: bool) {
        count(&self.segments_created, 1);
        if reused {
            count(&self.segments_reused, 1);
        }
    }

    /// Every counter, those of the syncs read together under their lock.
    fn stats(&self, fsync_mode: FsyncMode) -> WalStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let tally = self.sync_tally.lock();
        let latency = tally.latency.as_ref();
        WalStats {
            records_written: load(&self.records_written),
            batches_written: load(&self.batches_written),
            syncs: tally.syncs,
            fsync_mode,
            sync_us: tally.sync_us,
            held_us_past: tally.held_us_past,
            sync_us_p50: latency.map_or(0, |histogram| histogram.value_at_quantile(0.5)),
            sync_us_p99: latency.map_or(0, |histogram| histogram.value_at_quantile(0.99)),
            sync_us_max: latency.map_or(0, |histogram| histogram.max()),
            bytes_written: load(&self.bytes_written),
            segments_created: load(&self.segments_created),
            segments_reused: load(&self.segments_reused),
            append_waits: load(&self.append_waits),
            commits_in_place: load(&self.commits_in_place),
            commit_delays: load(&self.commit_delays),
            bytes_dropped: load(&self.bytes_dropped),
        }
    }
}

/// What the syncs so far add up to.
#[derive(Default)]
struct SyncTally {
    syncs: u64,
    sync_us: u64,
    held_us_past: [u64; HELD_PAST_US.len()],
    /// Every sync's latency in microseconds (1 us to 60 s, 2 significant digits).
    latency: Option<hdrhistogram::Histogram<u64>>,
}

impl SyncTally {
    fn count(&mut self, sync_us: u64, previous_us: Option<u64>) {
        self.syncs += 1;
        self.sync_us += sync_us;
        if let Some(previous_us) = previous_us {
            for (held, threshold_us) in self.held_us_past.iter_mut().zip(HELD_PAST_US) {
                // Arriving `r` before the previous sync ended, a record waits at least
                // r + sync_us: past the threshold for r > threshold - sync_us.
                *held += (previous_us + sync_us)
                    .saturating_sub(threshold_us)
                    .min(previous_us);
            }
        }
        self.latency
            .get_or_insert_with(|| {
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
            })
            .saturating_record(sync_us);
    }
}

pub(super) fn count(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

pub(super) struct Pending {
    pub(super) buffer: Vec<u8>,
    bytes_max: usize,
    pub(super) next_lsn: Lsn,
    closing: bool,
    /// Batches open ([`Wal::open_batch`]): while any is, appends do not wake the writer
    /// thread; each batch's commit sees to what is pending.
    batches_open: usize,
    /// The writer thread is asked to commit what is pending (set with a wake-up).
    writer_wanted: bool,
    /// A commit is under way (the writer thread's or one in place): the other waits for it
    /// on a condvar, never spinning on the committer's mutex.
    committing: bool,
}

pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    /// The writer thread waits here for records.
    work: Condvar,
    /// Appenders wait here for room in the pending buffer.
    pub(super) space: Condvar,
    /// The one who writes a batch holds it: the writer thread or a [`Batch::commit`].
    committer: Mutex<Committer>,
    durable_lsn: AtomicU64,
    durable_mutex: Mutex<()>,
    durable: Condvar,
    pub(super) failed: AtomicBool,
    failure: Mutex<Option<WalError>>,
    notifiers: RwLock<Vec<Notifier>>,
    pub(super) counters: Counters,
}

impl Shared {
    pub(super) fn failure(&self) -> WalError {
        self.failure.lock().clone().unwrap_or(WalError::Closed)
    }

    pub(super) fn durable_lsn(&self) -> Lsn {
        self.durable_lsn.load(Ordering::Acquire)
    }

    fn notify_all(&self) {
        let durable = Durable {
            lsn: self.durable_lsn(),
            failed: self.failed.load(Ordering::Acquire),
        };
        for notifier in self.notifiers.read().iter() {
            notifier(durable);
        }
    }

    /// Asks the writer thread to commit what is pending (after the commit under way, if any).
    fn wake_writer(&self, pending: &mut Pending) {
        pending.writer_wanted = true;
        self.work.notify_one();
    }

    /// Everything up to `lsn` is durable: say so to waiters and notifiers.
    pub(super) fn publish(&self, lsn: Lsn) {
        debug_assert!(lsn >= self.durable_lsn());
        // SeqCst: a notifier that then reads who is about to sleep pairs with a sleeper that
        // announces itself, then reads this (neither misses the other).
        self.durable_lsn.store(lsn, Ordering::SeqCst);
        {
            let _guard = self.durable_mutex.lock();
            self.durable.notify_all();
        }
        self.notify_all();
    }

    /// The log is FAILED for good: wake everyone who waits, and tell the notifiers.
    pub(super) fn fail(&self, failure: WalError) {
        *self.failure.lock() = Some(failure);
        self.failed.store(true, Ordering::SeqCst);
        {
            let _pending = self.pending.lock();
            self.space.notify_all();
        }
        {
            let _guard = self.durable_mutex.lock();
            self.durable.notify_all();
        }
        self.notify_all();
    }
}

/// The write-ahead log, open for appending. See the module docs of [`super`].
pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    fsync_mode: FsyncMode,
    segment_bytes: u64,
    reuse_bytes_max: u64,
    /// Segments written ahead ([`WalConfig::preallocate_bytes`]).
    preallocate_segments: usize,
    _lock: DirLock,
}

impl Wal {
    /// Replays the log in `config.dir` after lsn `after` into `visit` (see [`recovery`]),
    /// applies the report (cuts a torn tail or, with `options.truncate_corrupt`, the corrupt
    /// part, keeping cut bytes aside), then starts a fresh segment at the next lsn and the
    /// writer thread. `lock` must be the lock of `config.dir`.
    pub fn open<E, F>(
        config: WalConfig,
        lock: DirLock,
        after: Lsn,
        options: &ReadOptions,
        visit: F,
    ) -> Result<(Wal, RecoveryReport), E>
    where
        E: From<WalError>,
        F: FnMut(Lsn, u64, &[u8]) -> Result<(), E>,
    {
        Wal::open_covering(config, lock, after, after, options, visit)
    }

    /// [`Wal::open`] for a snapshot whose parts cover up to different lsns: reading starts
    /// after `after`, the least of them, and the log must reach `covered`, the greatest, or
    /// the open fails with [`WalError::ShorterThanSnapshot`] before anything is written. With
    /// `options.truncate_corrupt` the log goes on at `covered + 1` instead (reported in
    /// [`RecoveryReport::lsns_skipped`]): the caller must then write a snapshot covering
    /// `covered` before the next open, which would otherwise find the gap.
    pub fn open_covering<E, F>(
        config: WalConfig,
        lock: DirLock,
        after: Lsn,
        covered: Lsn,
        options: &ReadOptions,
        visit: F,
    ) -> Result<(Wal, RecoveryReport), E>
    where
        E: From<WalError>,
        F: FnMut(Lsn, u64, &[u8]) -> Result<(), E>,
    {
        config.validate()?;
        assert_eq!(
            lock.dir(),
            config.dir.as_path(),
            "the lock must be of the log's dir"
        );
        let mut report = recovery::read_log(&config.dir, after, options, visit)?;
        if report.last_lsn < covered {
            if !options.truncate_corrupt {
                return Err(WalError::ShorterThanSnapshot {
                    dir: config.dir,
                    last_lsn: report.last_lsn,
                    covered,
                }
                .into());
            }
            report.lsns_skipped = Some((report.last_lsn + 1, covered));
            report.next_lsn = covered + 1;
        }
        report.kept_aside = recovery::prepare_for_append(&config.dir, &report)?;
        report.preallocated = super::reuse::preallocate(&config)?;
        let wal = Wal::start(config, lock, report.next_lsn)?;
        Ok((wal, report))
    }

    fn start(config: WalConfig, lock: DirLock, next_lsn: Lsn) -> Result<Wal, WalError> {
        let reuse = config.takes_free_segments();
        let segment = PreparedSegment::reuse_or_prepare(&config.dir, config.segment_bytes, reuse);
        let segment = segment.and_then(|prepared| prepared.activate(&config.dir, next_lsn));
        let segment = segment.map_err(|error| {
            let path = config.dir.join(segment::segment_file_name(next_lsn));
            WalError::io("create segment", &path, error)
        })?;
        let is_reused = segment.is_reused();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buffer: Vec::with_capacity(config.pending_bytes_max),
                bytes_max: config.pending_bytes_max,
                next_lsn,
                closing: false,
                batches_open: 0,
                writer_wanted: false,
                committing: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            committer: Mutex::new(Committer::new(&config, segment, next_lsn)),
            durable_lsn: AtomicU64::new(next_lsn - 1),
            durable_mutex: Mutex::new(()),
            durable: Condvar::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            notifiers: RwLock::new(Vec::new()),
            counters: Counters::default(),
        });
        shared.counters.count_segment(is_reused);
        let writer = Arc::clone(&shared);
        let delay = CommitDelay::new(&config);
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || run_writer(&writer, delay))
            .map_err(|error| WalError::io("start writer thread for", &config.dir, error))?;
        Ok(Wal {
            shared,
            writer: Mutex::new(Some(handle)),
            fsync_mode: config.fsync_mode,
            segment_bytes: config.segment_bytes,
            reuse_bytes_max: config.reuse_bytes_max,
            preallocate_segments: config.segments_for(config.preallocate_bytes),
            dir: config.dir,
            _lock: lock,
        })
    }

    /// Assigns the next lsn to the record and queues it for the writer. Call it while holding
    /// the lock that orders the records (the shard lock). Waits only when the pending buffer
    /// is full (backpressure). The record is durable once [`Wal::durable_lsn`] reaches the
    /// returned lsn.
    pub fn append(&self, timestamp_us: u64, payload: &[u8]) -> Result<Lsn, WalError> {
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            return Err(WalError::PayloadTooLarge {
                bytes: payload.len(),
                max: RECORD_PAYLOAD_BYTES_MAX,
            });
        }
        let record_bytes = record::record_bytes(payload.len());
        let mut pending = self.shared.pending.lock();
        loop {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.failure());
            }
            if pending.closing {
                return Err(WalError::Closed);
            }
            if pending.buffer.len() + record_bytes <= pending.bytes_max {
                break;
            }
            count(&self.shared.counters.append_waits, 1);
            // The one who would commit may be this caller's own open batch: hand it over.
            self.shared.wake_writer(&mut pending);
            self.shared.space.wait(&mut pending);
        }
        let lsn = pending.next_lsn;
        pending.next_lsn = lsn + 1;
        let was_empty = pending.buffer.is_empty();
        let capacity = pending.buffer.capacity();
        record::encode_into(&mut pending.buffer, lsn, timestamp_us, payload);
        debug_assert_eq!(
            pending.buffer.capacity(),
            capacity,
            "the pending buffer never grows"
        );
        // With a batch open, its commit sees to this record; else the writer thread does.
        if was_empty && pending.batches_open == 0 {
            self.shared.wake_writer(&mut pending);
        }
        Ok(lsn)
    }

    /// Opens a batch: until it is committed (or dropped), appends, this caller's and
    /// everyone's, do not wake the writer thread. Commit it as soon as the records the caller
    /// appended should become durable.
    pub fn open_batch(&self) -> Batch<'_> {
        self.shared.pending.lock().batches_open += 1;
        Batch {
            wal: self,
            open: true,
        }
    }

    /// Closes a batch; commits here if `in_place` and the log is idle, else hands
    /// what is pending to the writer thread.
    fn close_batch(&self, in_place: bool) -> Committed {
        let mut pending = self.shared.pending.lock();
        debug_assert!(pending.batches_open > 0);
        pending.batches_open -= 1;
        if pending.buffer.is_empty() {
            return Committed::Nothing;
        }
        // Idle: nobody commits, nobody asked the writer thread to, no other batch is being
        // filled. Else the records join the group commit: committing them here would hold
        // this caller (an event loop and its connections) for a sync that others' records
        // could share, and the writer thread would wait for it.
        let idle = !pending.committing && !pending.writer_wanted && pending.batches_open == 0;
        if !(in_place && idle) {
            self.shared.wake_writer(&mut pending);
            return Committed::HandedOver;
        }
        pending.committing = true;
        drop(pending);
        // Uncontended: whoever holds the committer has `committing` set.
        let committed = self.shared.committer.lock().commit(&self.shared);
        let mut pending = self.shared.pending.lock();
        pending.committing = false;
        if pending.writer_wanted || pending.closing {
            // Handed over, or closing, while this commit was under way: the writer thread
            // waits for it to end.
            self.shared.work.notify_one();
        }
        drop(pending);
        if committed.is_some() {
            count(&self.shared.counters.commits_in_place, 1);
        }
        committed.map_or(Committed::Nothing, Committed::InPlace)
    }

    /// The lsn of the last record appended, durable or not (0 before any). Read it while
    /// holding the lock that orders a set of records to learn the position they reach.
    pub fn last_lsn(&self) -> Lsn {
        self.shared.pending.lock().next_lsn - 1
    }

    /// Every record up to this lsn is durable (per the fsync mode).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn()
    }

    /// True once the log has failed for good.
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Blocks until `lsn` is durable, or returns the failure that stopped the log.
    /// `lsn` must have been returned by [`Wal::append`].
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.durable_lsn() >= lsn {
            return Ok(());
        }
        assert!(
            lsn < self.shared.pending.lock().next_lsn,
            "lsn {lsn} was never appended"
        );
        let mut guard = self.shared.durable_mutex.lock();
        loop {
            if self.durable_lsn() >= lsn {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.failure());
            }
            self.shared.durable.wait(&mut guard);
        }
    }

    /// Registers a callback called after each batch is durable and when the log fails (the
    /// server wakes its sleeping event loops). Keep it short: it runs on the thread that
    /// committed, the writer thread or an event loop.
    pub fn add_notifier(&self, notifier: Notifier) {
        self.shared.notifiers.write().push(notifier);
    }

    /// The failure that stopped the log, if any.
    pub fn failure(&self) -> Option<WalError> {
        self.shared.failure.lock().clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> WalStats {
        self.shared.counters.stats(self.fsync_mode)
    }

    /// The segments whose records all come at or before `lsn` (each followed by one starting
    /// at most at `lsn + 1`): what [`Wal::remove_segments_before`] removes.
    pub fn segments_before(&self, lsn: Lsn) -> Result<Vec<PathBuf>, WalError> {
        let segments = segment::list_segments(&self.dir)?;
        Ok(segments
            .windows(2)
            .take_while(|pair| pair[1].first_lsn <= lsn.saturating_add(1))
            .map(|pair| pair[0].path.clone())
            .collect())
    }

    /// Removes the segments whose records all have lsn <= `lsn` (covered by a snapshot).
    /// The newest segment always stays. Returns the removed paths.
    pub fn remove_segments_before(&self, lsn: Lsn) -> Result<Vec<PathBuf>, WalError> {
        let removed = self.segments_before(lsn)?;
        for path in &removed {
            std::fs::remove_file(path).map_err(|error| WalError::io("remove", path, error))?;
        }
        if !removed.is_empty() {
            segment::sync_dir(&self.dir).map_err(|error| WalError::io("sync", &self.dir, error))?;
        }
        Ok(removed)
    }

    /// Syncs what was written, whatever the fsync mode (a no-op with [`FsyncMode::Always`],
    /// where everything durable is synced): a snapshot must not outlive, after a power loss,
    /// the records it covers. Segments before the current one are synced at their roll.
    pub fn sync_written(&self) -> Result<(), WalError> {
        if self.fsync_mode == FsyncMode::Always {
            return match self.failure() {
                Some(failure) => Err(failure),
                None => Ok(()),
            };
        }
        self.shared.committer.lock().sync_written(&self.shared)
    }

    /// Writes and syncs what is pending, stops the writer and returns the failure, if any.
    /// Appends after this return [`WalError::Closed`].
    pub fn close(&self) -> Result<(), WalError> {
        {
            let mut pending = self.shared.pending.lock();
            pending.closing = true;
            self.shared.work.notify_one();
        }
        self.shared.space.notify_all();
        if let Some(handle) = self.writer.lock().take() {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        match self.failure() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which of `segments` (redundant ones) to keep for reuse ([`super::reuse`]): those of the
    /// configured size, as many as [`WalConfig::reuse_bytes_max`] bytes hold. A segment whose
    /// size cannot be read is not kept.
    pub fn segments_to_reuse<'a>(&self, segments: &'a [PathBuf]) -> Vec<&'a PathBuf> {
        let room = usize::try_from(self.reuse_bytes_max / self.segment_bytes).unwrap_or(usize::MAX);
        self.of_size(segments, room)
    }

    /// Which of `free` (free segments the log did not take since the last snapshot) to keep
    /// all the same: those of the configured size, as many as segments written ahead
    /// ([`WalConfig::preallocate_bytes`]), whichever they are.
    pub fn free_to_keep<'a>(&self, free: &'a [PathBuf]) -> Vec<&'a PathBuf> {
        self.of_size(free, self.preallocate_segments)
    }

    fn of_size<'a>(&self, segments: &'a [PathBuf], count_max: usize) -> Vec<&'a PathBuf> {
        segments
            .iter()
            .filter(|path| super::reuse::is_of_size(path, self.segment_bytes))
            .take(count_max)
            .collect()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// What [`Batch::commit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Nothing was pending (another commit took it, or nothing was appended).
    Nothing,
    /// Committed here: everything up to this lsn is durable.
    InPlace(Lsn),
    /// The log was busy (a commit under way or asked for, another batch open): the writer
    /// thread commits what is pending, right after the commit under way.
    HandedOver,
}

/// A batch of appends whose commit the caller sees to: see [`Wal::open_batch`].
#[must_use = "a batch is committed with Batch::commit; dropped, it hands its records to the writer thread"]
pub struct Batch<'a> {
    wal: &'a Wal,
    open: bool,
}

impl Batch<'_> {
    /// Makes what is pending durable: here and now if the log is idle (no commit under way
    /// or asked for, no other batch open), else by the writer thread. With
    /// [`Committed::InPlace`] every record appended before this call is durable when it
    /// returns (written, and synced with [`FsyncMode::Always`](super::FsyncMode::Always)), and the notifiers were told.
    pub fn commit(mut self) -> Committed {
        self.open = false;
        self.wal.close_batch(true)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.open {
            self.wal.close_batch(false);
        }
    }
}

/// The writer thread's pause before a commit that follows a large batch
/// ([`WalConfig::commit_delay_us`]); none with [`FsyncMode::Never`], which has no fdatasync
/// to save.
#[derive(Clone, Copy, Debug)]
struct CommitDelay {
    pause: std::time::Duration,
    min_records: u64,
}

impl CommitDelay {
    fn new(config: &WalConfig) -> CommitDelay {
        let pause_us = match config.fsync_mode {
            FsyncMode::Always => config.commit_delay_us,
            FsyncMode::Never => 0,
        };
        CommitDelay {
            pause: std::time::Duration::from_micros(pause_us),
            min_records: config.commit_delay_min_records,
        }
    }

    fn applies_after(&self, last_batch_records: u64) -> bool {
        !self.pause.is_zero() && last_batch_records >= self.min_records
    }
}

/// The writer thread: commits what is pending whenever asked, and, as long as it found
/// something, again right away (group commit), after the pause of `delay` when the last batch
/// was large; at close, commits the rest and syncs.
fn run_writer(shared: &Shared, delay: CommitDelay) {
    let mut wrote = false;
    // Records in the writer's last batch (0 after an idle wait).
    let mut last_batch_records = 0;
    loop {
        {
            let mut pending = shared.pending.lock();
            loop {
                // While a commit in place is under way, wait: its end notifies `work` if the
                // writer thread was asked for meanwhile.
                let ready =
                    pending.closing || (!pending.buffer.is_empty() && (wrote || pending.writer_wanted));
                if ready && !pending.committing {
                    break;
                }
                if pending.buffer.is_empty() && !pending.committing {
                    // A hand-over whose records a commit in place took already: nothing is
                    // left to ask for. Left set, it would make every event loop hand its
                    // batches over (an extra wake-up each) until the writer's next commit.
                    pending.writer_wanted = false;
                }
                wrote = false;
                last_batch_records = 0;
                shared.work.wait(&mut pending);
            }
            pending.writer_wanted = false;
            if pending.closing {
                break;
            }
            pending.committing = true;
        }
        if delay.applies_after(last_batch_records) {
            // `committing` is set: event loops hand their batches over meanwhile, and all of
            // it goes into this commit. A close, or an append that finds the pending buffer
            // full, waits for the pause too (at most `COMMIT_DELAY_US_MAX`; the default 1 MiB
            // buffer takes over 10 ms to fill at 1.2 M purchases/s).
            std::thread::sleep(delay.pause);
            count(&shared.counters.commit_delays, 1);
        }
        let durable_before = shared.durable_lsn.load(Ordering::Acquire);
        let committed = shared.committer.lock().commit(shared);
        wrote = committed.is_some();
        last_batch_records = committed.map_or(0, |lsn| lsn.saturating_sub(durable_before));
        shared.pending.lock().committing = false;
    }
    // Closing: nothing can be appended any more, and no commit is under way; commit the
    // rest, then sync in every mode.
    let mut committer = shared.committer.lock();
    while committer.commit(shared).is_some() {}
    committer.close(shared);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_time_counts_the_part_of_each_sync_whose_rest_plus_the_next_sync_is_past_the_threshold() {
        let counters = Counters::default();
        let mut previous_us = 0;
        for sync_us in [500, 1_000, 1_500, 25_000] {
            counters.count_sync(sync_us, Some(previous_us));
            previous_us = sync_us;
        }
        let held = counters.stats(FsyncMode::Always).held_us_past;
        // Pairs (500, 1,000), (1,000, 1,500), (1,500, 25,000); the last sync waits for its next.
        // 1 ms: 500 + 1,000 + 1,500. 2 ms: 0 + 500 + 1,500. 5 ms on: the 1,500 before 25,000.
        assert_eq!(held, [3_000, 2_000, 1_500, 1_500, 1_500]);
        assert_eq!(counters.stats(FsyncMode::Always).sync_us, 28_000);
    }

    #[test]
    fn a_reading_never_lands_halfway_through_a_sync() {
        const SYNC_US: u64 = 25_000;
        const SYNCS: u64 = 2_000;
        let counters = Counters::default();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..SYNCS {
                    counters.count_sync(SYNC_US, Some(SYNC_US));
                }
            });
            // Two 25 ms syncs in a row hold 25 ms past every threshold (50 ms minus any of
            // them is over 25 ms), so every reading must be a whole number of such syncs.
            loop {
                let reading = counters.stats(FsyncMode::Always);
                assert_eq!(reading.sync_us, reading.syncs * SYNC_US);
                assert_eq!(
                    reading.held_us_past,
                    [reading.syncs * SYNC_US; HELD_PAST_US.len()]
                );
                if reading.syncs == SYNCS {
                    break;
                }
                std::thread::yield_now();
            }
        });
    }

    #[test]
    fn syncs_that_no_reply_waits_for_hold_nothing() {
        let counters = Counters::default();
        for sync_us in [30_000, 30_000] {
            counters.count_sync(sync_us, None);
        }
        let reading = counters.stats(FsyncMode::Always);
        assert_eq!(reading.held_us_past, [0; HELD_PAST_US.len()]);
        assert_eq!(reading.syncs, 2);
    }
}
