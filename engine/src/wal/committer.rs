//! Writing one batch: whoever commits holds the [`Committer`], the only owner of the segment
//! file, and so batches are written one at a time, in lsn order.
//!
//! Two kinds of thread commit. The writer thread (group commit: it takes whatever is pending
//! after each write and sync, so everything that arrived during one sync goes into the next),
//! and a caller of [`super::Batch::commit`] that finds the log idle (an event loop with the
//! log to itself: it writes, syncs and publishes its own batch and replies at once, with no
//! thread hand-off and no wake-up either way). Both run [`Committer::commit`]: take everything
//! pending (swap buffers), one `pwrite` (two around a segment roll), one fdatasync per the
//! mode, then publish. A batch is published only after its write (and, with
//! [`FsyncMode::Always`], its fdatasync) succeeded; a failure makes the log FAILED for good.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::record::{self, RECORD_HEADER_BYTES};
use super::segment::{self, PreparedSegment, SegmentFile};
use super::writer::{count, Shared};
use super::{FaultInjection, FsyncMode, Lsn, WalConfig, WalError};

/// The segment being written and what writing it needs; behind `Shared::committer`.
pub(super) struct Committer {
    dir: PathBuf,
    segment: SegmentFile,
    segment_bytes: u64,
    /// Whether free segments are taken ([`WalConfig::takes_free_segments`]).
    reuse: bool,
    mode: FsyncMode,
    faults: Option<Arc<FaultInjection>>,
    /// The buffer swapped with the pending one; allocated once.
    spare: Vec<u8>,
    next_lsn_to_write: Lsn,
    /// The next segment, being zero-filled (or taken for reuse) in the background.
    next_segment: Option<JoinHandle<std::io::Result<PreparedSegment>>>,
    /// Set by the final sync at close: nothing is written after it.
    closed: bool,
    /// The latest sync's duration, microseconds (0 before the first): the held time of a sync
    /// is counted when the next one ends.
    previous_sync_us: u64,
}

impl Committer {
    /// The committer of a fresh `segment` whose first record will be `next_lsn`; starts
    /// preparing the segment after it.
    pub(super) fn new(config: &WalConfig, segment: SegmentFile, next_lsn: Lsn) -> Committer {
        let mut committer = Committer {
            dir: config.dir.clone(),
            segment,
            segment_bytes: config.segment_bytes,
            reuse: config.takes_free_segments(),
            mode: config.fsync_mode,
            faults: config.faults.clone(),
            spare: Vec::with_capacity(config.pending_bytes_max),
            next_lsn_to_write: next_lsn,
            next_segment: None,
            closed: false,
            previous_sync_us: 0,
        };
        committer.prepare_next_segment();
        committer
    }

    /// Takes everything pending, writes it (and syncs it with [`FsyncMode::Always`]), then
    /// publishes its last lsn. Returns that lsn, or `None` if nothing was pending, the log
    /// has failed (this batch's failure included) or it is closed.
    pub(super) fn commit(&mut self, shared: &Shared) -> Option<Lsn> {
        if self.closed || shared.failed.load(Ordering::Acquire) {
            return None;
        }
        let last_lsn = {
            let mut pending = shared.pending.lock();
            if pending.buffer.is_empty() {
                return None;
            }
            debug_assert!(self.spare.is_empty());
            std::mem::swap(&mut pending.buffer, &mut self.spare);
            pending.next_lsn - 1
        };
        shared.space.notify_all();
        let batch = std::mem::take(&mut self.spare);
        let written = self.write_batch(shared, &batch).and_then(|()| match self.mode {
            FsyncMode::Always => self.sync(shared),
            FsyncMode::Never => Ok(()),
        });
        self.spare = batch;
        self.spare.clear();
        match written {
            Ok(()) => {
                shared.publish(last_lsn);
                // After publishing: the writer thread's and other loops' replies are released
                // without waiting for it (a loop committing in place writes its own after this).
                count(&shared.counters.bytes_dropped, self.segment.drop_synced_pages());
                Some(last_lsn)
            }
            Err(failure) => {
                shared.fail(failure);
                None
            }
        }
    }

    /// Syncs what was written, in every mode (see `Wal::sync_written`).
    pub(super) fn sync_written(&mut self, shared: &Shared) -> Result<(), WalError> {
        if shared.failed.load(Ordering::Acquire) {
            return Err(shared.failure());
        }
        if self.closed {
            return Ok(());
        }
        self.sync(shared)
            .inspect_err(|failure| shared.fail(failure.clone()))
    }

    /// The last act of the log: syncs what was written (in every mode), and lets nothing
    /// be written after. Leaves no thread writing in the data dir.
    pub(super) fn close(&mut self, shared: &Shared) {
        if !self.closed && !shared.failed.load(Ordering::Acquire) {
            if let Err(failure) = self.sync(shared) {
                shared.fail(failure);
            }
        }
        self.closed = true;
        if let Some(preparing) = self.next_segment.take() {
            let _ = preparing.join();
        }
    }

    /// Writes whole records, rolling to a new segment when the next one does not fit.
    fn write_batch(&mut self, shared: &Shared, batch: &[u8]) -> Result<(), WalError> {
        let mut rest = batch;
        while !rest.is_empty() {
            let (fitting, records) = self.whole_records_fitting(rest);
            if fitting > 0 {
                self.write(shared, &rest[..fitting], records)?;
                rest = &rest[fitting..];
            }
            if let Some(next_lsn) = record::peek_lsn(rest) {
                self.roll(shared, next_lsn)?;
            }
        }
        count(&shared.counters.batches_written, 1);
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

    fn write(&mut self, shared: &Shared, bytes: &[u8], records: u64) -> Result<(), WalError> {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.fail_writes.load(Ordering::Relaxed));
        let result = if injected {
            Err(rustix::io::Errno::NOSPC.into())
        } else {
            self.segment.append(bytes)
        };
        result.map_err(|error| self.failed(shared, "write to", error))?;
        count(&shared.counters.records_written, records);
        count(&shared.counters.bytes_written, bytes.len() as u64);
        Ok(())
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), WalError> {
        let injected = self
            .faults
            .as_ref()
            .is_some_and(|faults| faults.fail_syncs.load(Ordering::Relaxed));
        let started = Instant::now();
        if let Some(faults) = &self.faults {
            let delay_us = faults.sync_delay_us.load(Ordering::Relaxed);
            if delay_us > 0 {
                std::thread::sleep(std::time::Duration::from_micros(delay_us));
            }
        }
        let result = if injected {
            Err(rustix::io::Errno::IO.into())
        } else {
            self.segment.sync_data()
        };
        result.map_err(|error| self.failed(shared, "fdatasync of", error))?;
        let sync_us = started.elapsed().as_micros() as u64;
        let previous_us = std::mem::replace(&mut self.previous_sync_us, sync_us);
        // Only with Always do replies wait for syncs, and so only then do syncs hold them.
        let held_after = (self.mode == FsyncMode::Always).then_some(previous_us);
        shared.counters.count_sync(sync_us, held_after);
        Ok(())
    }

    /// Syncs the full segment, then starts the next one: a segment with a successor is
    /// always complete on disk (recovery relies on it).
    fn roll(&mut self, shared: &Shared, next_lsn: Lsn) -> Result<(), WalError> {
        self.sync(shared)?;
        // With fsync never, this sync is the segment's first (unless a snapshot synced it).
        count(&shared.counters.bytes_dropped, self.segment.drop_synced_pages());
        let prepared = match self.next_segment.take().map(JoinHandle::join) {
            Some(Ok(prepared)) => prepared,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => PreparedSegment::reuse_or_prepare(&self.dir, self.segment_bytes, self.reuse),
        };
        let activated = prepared.and_then(|prepared| prepared.activate(&self.dir, next_lsn));
        self.segment = activated.map_err(|error| {
            let path = self.dir.join(segment::segment_file_name(next_lsn));
            WalError::failed("create segment", &path, error, shared.durable_lsn())
        })?;
        shared.counters.count_segment(self.segment.is_reused());
        self.prepare_next_segment();
        Ok(())
    }

    /// Starts preparing the next segment on its own thread (or, if no thread can be started,
    /// leaves it to the roll).
    fn prepare_next_segment(&mut self) {
        let dir = self.dir.clone();
        let (segment_bytes, reuse) = (self.segment_bytes, self.reuse);
        self.next_segment = std::thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || PreparedSegment::reuse_or_prepare(&dir, segment_bytes, reuse))
            .ok();
    }

    fn failed(&self, shared: &Shared, operation: &'static str, error: std::io::Error) -> WalError {
        WalError::failed(operation, self.segment.path(), error, shared.durable_lsn())
    }
}
