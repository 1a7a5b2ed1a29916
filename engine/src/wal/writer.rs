//! Group commit: callers copy records into a pending buffer; one writer thread writes and syncs.
//!
//! [`Wal::append`] is called while the caller holds its shard lock, so it does the least
//! possible: lock the pending mutex, take the next lsn, encode the record into the pending
//! buffer (preallocated to [`super::WalConfig::pending_bytes_max`], never grown), unlock, and
//! wake the writer if the buffer was empty. If the record does not fit, `append` waits until
//! the writer has taken the buffer: that is the log's backpressure, and it stalls the caller's
//! shard for as long as one write and sync take.
//!
//! The writer thread swaps the pending buffer with its spare one, writes the whole batch with
//! one `pwrite` (two around a segment roll), syncs once per [`FsyncMode`], stores the batch's
//! last lsn in `durable_lsn`, wakes [`Wal::wait_durable`] callers and calls every notifier
//! once. A failed write, sync or segment creation makes the log FAILED for good: `durable_lsn`
//! stops, `append` and `wait_durable` return [`WalError::Failed`], and notifiers fire once more
//! so that callers can answer "system malfunction" for what was never made durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use super::record::{self, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use super::recovery::{self, ReadOptions, RecoveryReport};
use super::segment::{self, PreparedSegment, SegmentFile};
use super::{DirLock, FaultInjection, FsyncMode, Lsn, WalConfig, WalError};

/// A callback the writer calls after every published batch (and on failure).
pub type Notifier = Box<dyn Fn() + Send + Sync>;

/// Counters of the writer, for tests, benchmarks and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written to segment files.
    pub records_written: u64,
    /// Batches taken from the pending buffer.
    pub batches_written: u64,
    /// fdatasync calls (one per batch in `Always`, plus one before each segment roll).
    pub syncs: u64,
    /// Microseconds spent in those fdatasync calls.
    pub sync_us: u64,
    /// Median fdatasync latency, microseconds (from a histogram of every sync).
    pub sync_us_p50: u64,
    /// 99th percentile fdatasync latency, microseconds.
    pub sync_us_p99: u64,
    /// Slowest fdatasync, microseconds.
    pub sync_us_max: u64,
    pub bytes_written: u64,
    pub segments_created: u64,
    /// Times an `append` waited for room in the pending buffer (backpressure).
    pub append_waits: u64,
}

#[derive(Default)]
struct Counters {
    records_written: AtomicU64,
    batches_written: AtomicU64,
    syncs: AtomicU64,
    sync_us: AtomicU64,
    /// Every sync's latency in microseconds (1 us to 60 s, 2 significant digits).
    sync_latency: parking_lot::Mutex<Option<hdrhistogram::Histogram<u64>>>,
    bytes_written: AtomicU64,
    segments_created: AtomicU64,
    append_waits: AtomicU64,
}

fn count(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

struct Pending {
    buffer: Vec<u8>,
    bytes_max: usize,
    next_lsn: Lsn,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for records.
    work: Condvar,
    /// Appenders wait here for room in the pending buffer.
    space: Condvar,
    durable_lsn: AtomicU64,
    durable_mutex: Mutex<()>,
    durable: Condvar,
    failed: AtomicBool,
    failure: Mutex<Option<WalError>>,
    notifiers: RwLock<Vec<Notifier>>,
    counters: Counters,
}

impl Shared {
    fn failure(&self) -> WalError {
        self.failure.lock().clone().unwrap_or(WalError::Closed)
    }

    fn notify_all(&self) {
        for notifier in self.notifiers.read().iter() {
            notifier();
        }
    }
}

/// The write-ahead log, open for appending. See the module docs of [`super`].
pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
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
        config.validate()?;
        assert_eq!(
            lock.dir(),
            config.dir.as_path(),
            "the lock must be of the log's dir"
        );
        let mut report = recovery::read_log(&config.dir, after, options, visit)?;
        report.kept_aside = recovery::prepare_for_append(&config.dir, &report)?;
        let wal = Wal::start(config, lock, report.next_lsn)?;
        Ok((wal, report))
    }

    fn start(config: WalConfig, lock: DirLock, next_lsn: Lsn) -> Result<Wal, WalError> {
        let segment = SegmentFile::create(&config.dir, next_lsn, config.segment_bytes).map_err(|error| {
            let path = config.dir.join(segment::segment_file_name(next_lsn));
            WalError::io("create segment", &path, error)
        })?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buffer: Vec::with_capacity(config.pending_bytes_max),
                bytes_max: config.pending_bytes_max,
                next_lsn,
                closing: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            durable_lsn: AtomicU64::new(next_lsn - 1),
            durable_mutex: Mutex::new(()),
            durable: Condvar::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            notifiers: RwLock::new(Vec::new()),
            counters: Counters::default(),
        });
        count(&shared.counters.segments_created, 1);
        let writer = Writer {
            shared: Arc::clone(&shared),
            dir: config.dir.clone(),
            segment,
            segment_bytes: config.segment_bytes,
            mode: config.fsync_mode,
            faults: config.faults.clone(),
            spare: Vec::with_capacity(config.pending_bytes_max),
            next_lsn_to_write: next_lsn,
            next_segment: None,
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|error| WalError::io("start writer thread for", &config.dir, error))?;
        Ok(Wal {
            shared,
            writer: Mutex::new(Some(handle)),
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
        drop(pending);
        if was_empty {
            self.shared.work.notify_one();
        }
        Ok(lsn)
    }

    /// The lsn of the last record appended, durable or not (0 before any). Read it while
    /// holding the lock that orders a set of records to learn the position they reach.
    pub fn last_lsn(&self) -> Lsn {
        self.shared.pending.lock().next_lsn - 1
    }

    /// Every record up to this lsn is durable (per the fsync mode).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
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

    /// Registers a callback called by the writer after each batch is durable and when the
    /// log fails (the server passes a `mio::Waker::wake`). Keep it short: it runs on the
    /// writer thread.
    pub fn add_notifier(&self, notifier: Notifier) {
        self.shared.notifiers.write().push(notifier);
    }

    /// The failure that stopped the log, if any.
    pub fn failure(&self) -> Option<WalError> {
        self.shared.failure.lock().clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> WalStats {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let latency_guard = counters.sync_latency.lock();
        let latency = latency_guard.as_ref();
        WalStats {
            records_written: load(&counters.records_written),
            batches_written: load(&counters.batches_written),
            syncs: load(&counters.syncs),
            sync_us: load(&counters.sync_us),
            sync_us_p50: latency.map_or(0, |histogram| histogram.value_at_quantile(0.5)),
            sync_us_p99: latency.map_or(0, |histogram| histogram.value_at_quantile(0.99)),
            sync_us_max: latency.map_or(0, |histogram| histogram.max()),
            bytes_written: load(&counters.bytes_written),
            segments_created: load(&counters.segments_created),
            append_waits: load(&counters.append_waits),
        }
    }

    /// Removes the segments whose records all have lsn <= `lsn` (covered by a snapshot).
    /// The newest segment always stays. Returns the removed paths.
    pub fn remove_segments_before(&self, lsn: Lsn) -> Result<Vec<PathBuf>, WalError> {
        let segments = segment::list_segments(&self.dir)?;
        let mut removed = Vec::new();
        for pair in segments.windows(2) {
            if pair[1].first_lsn > lsn.saturating_add(1) {
                break;
            }
            std::fs::remove_file(&pair[0].path)
                .map_err(|error| WalError::io("remove", &pair[0].path, error))?;
            removed.push(pair[0].path.clone());
        }
        if !removed.is_empty() {
            segment::sync_dir(&self.dir).map_err(|error| WalError::io("sync", &self.dir, error))?;
        }
        Ok(removed)
    }

    /// Writes and syncs what is pending, stops the writer and returns the failure, if any.
    /// Appends after this return [`WalError::Closed`].
    pub fn close(&self) -> Result<(), WalError> {
        self.shared.pending.lock().closing = true;
        self.shared.work.notify_one();
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
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    segment: SegmentFile,
    segment_bytes: u64,
    mode: FsyncMode,
    faults: Option<Arc<FaultInjection>>,
    spare: Vec<u8>,
    next_lsn_to_write: Lsn,
    /// The next segment, being zero-filled in the background.
    next_segment: Option<JoinHandle<std::io::Result<PreparedSegment>>>,
}

impl Writer {
    fn run(mut self) {
        self.prepare_next_segment();
        self.write_until_closed();
        if let Some(preparing) = self.next_segment.take() {
            // Leave nothing writing in the data dir after close.
            let _ = preparing.join();
        }
    }

    fn write_until_closed(&mut self) {
        while let Some(last_lsn) = self.take_batch() {
            self.shared.space.notify_all();
            let batch = std::mem::take(&mut self.spare);
            let written = self.write_batch(&batch).and_then(|()| match self.mode {
                FsyncMode::Always => self.sync(),
                FsyncMode::Never => Ok(()),
            });
            self.spare = batch;
            self.spare.clear();
            if let Err(failure) = written {
                return self.fail(failure);
            }
            self.publish(last_lsn);
        }
        // Closing: everything pending is written; make it durable in every mode.
        if let Err(failure) = self.sync() {
            self.fail(failure);
        }
    }

    /// Waits for records and swaps them into `spare`; returns the batch's last lsn, or `None`
    /// when closing with nothing pending.
    fn take_batch(&mut self) -> Option<Lsn> {
        let mut pending = self.shared.pending.lock();
        loop {
            if pending.buffer.is_empty() {
                if pending.closing {
                    return None;
                }
                self.shared.work.wait(&mut pending);
                continue;
            }
            debug_assert!(self.spare.is_empty());
            std::mem::swap(&mut pending.buffer, &mut self.spare);
            return Some(pending.next_lsn - 1);
        }
    }

    /// Writes whole records, rolling to a new segment when the next one does not fit.
    fn write_batch(&mut self, batch: &[u8]) -> Result<(), WalError> {
        let mut rest = batch;
        while !rest.is_empty() {
            let (fitting, records) = self.whole_records_fitting(rest);
            if fitting > 0 {
                self.write(&rest[..fitting], records)?;
                rest = &rest[fitting..];
            }
            if let Some(next_lsn) = record::peek_lsn(rest) {
                self.roll(next_lsn)?;
            }
        }
        count(&self.shared.counters.batches_written, 1);
        Ok(())
    }

    /// Bytes and count of the leading whole records of `batch` that fit in the current
    /// segment. Asserts the lsns follow each other: the log's order is the apply order.
    fn whole_records_fitting(&mut self, batch: &[u8]) -> (usize, u64) {
        let remaining = usize::try_from(self.segment.remaining()).unwrap_or(usize::MAX);
        let mut offset = 0;
        let mut records = 0;
        while let Some(length) = record::peek_length(&batch[offset..]) {
            let end = offset + RECORD_HEADER_BYTES + length as usize;
            assert!(end <= batch.len(), "a pending record is cut short");
            if end > remaining {
                break;
            }
            assert_eq!(record::peek_lsn(&batch[offset..]), Some(self.next_lsn_to_write));
            self.next_lsn_to_write += 1;
            offset = end;
            records += 1;
        }
        (offset, records)
    }

    fn write(&mut self, bytes: &[u8], records: u64) -> Result<(), WalError> {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.fail_writes.load(Ordering::Relaxed));
        let result = if injected {
            Err(rustix::io::Errno::NOSPC.into())
        } else {
            self.segment.append(bytes)
        };
        result.map_err(|error| self.failed("write to", error))?;
        count(&self.shared.counters.records_written, records);
        count(&self.shared.counters.bytes_written, bytes.len() as u64);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.fail_syncs.load(Ordering::Relaxed));
        let started = Instant::now();
        let result = if injected {
            Err(rustix::io::Errno::IO.into())
        } else {
            self.segment.sync_data()
        };
        result.map_err(|error| self.failed("fdatasync of", error))?;
        count(&self.shared.counters.syncs, 1);
        count(
            &self.shared.counters.sync_us,
            started.elapsed().as_micros() as u64,
        );
        let mut latency = self.shared.counters.sync_latency.lock();
        let histogram = latency.get_or_insert_with(|| {
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
        });
        histogram.saturating_record(started.elapsed().as_micros() as u64);
        Ok(())
    }

    /// Syncs the full segment, then starts the next one: a segment with a successor is
    /// always complete on disk (recovery relies on it).
    fn roll(&mut self, next_lsn: Lsn) -> Result<(), WalError> {
        self.sync()?;
        let prepared = match self.next_segment.take().map(JoinHandle::join) {
            Some(Ok(prepared)) => prepared,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => PreparedSegment::prepare(&self.dir, self.segment_bytes),
        };
        let activated = prepared.and_then(|prepared| prepared.activate(&self.dir, next_lsn));
        self.segment = activated.map_err(|error| {
            let path = self.dir.join(segment::segment_file_name(next_lsn));
            WalError::failed("create segment", &path, error, self.durable_lsn())
        })?;
        count(&self.shared.counters.segments_created, 1);
        self.prepare_next_segment();
        Ok(())
    }

    /// Starts zero-filling the next segment on its own thread (or, if no thread can be
    /// started, leaves it to the roll).
    fn prepare_next_segment(&mut self) {
        let dir = self.dir.clone();
        let segment_bytes = self.segment_bytes;
        self.next_segment = std::thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || PreparedSegment::prepare(&dir, segment_bytes))
            .ok();
    }

    fn durable_lsn(&self) -> Lsn {
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    fn failed(&self, operation: &'static str, error: std::io::Error) -> WalError {
        WalError::failed(operation, self.segment.path(), error, self.durable_lsn())
    }

    fn publish(&self, lsn: Lsn) {
        debug_assert!(lsn >= self.durable_lsn());
        self.shared.durable_lsn.store(lsn, Ordering::Release);
        {
            let _guard = self.shared.durable_mutex.lock();
            self.shared.durable.notify_all();
        }
        self.shared.notify_all();
    }

    fn fail(&self, failure: WalError) {
        *self.shared.failure.lock() = Some(failure);
        self.shared.failed.store(true, Ordering::Release);
        {
            let _pending = self.shared.pending.lock();
            self.shared.space.notify_all();
        }
        {
            let _guard = self.shared.durable_mutex.lock();
            self.shared.durable.notify_all();
        }
        self.shared.notify_all();
    }
}
