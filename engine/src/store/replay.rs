//! Parallel replay of the log into the books.
//!
//! Each record touches one shard, and a shard's records must be applied in log order; records
//! of different shards commute, except where a decision reads state outside its shard: the
//! registry (merchants, terminals, devices) and the mobile alias map. So the reader decodes
//! each record and hands it to the worker that owns its shard (shard mod workers), in batches;
//! a registry change or an account opening with a mobile number is a barrier: every worker
//! finishes what it was given, then the reader applies that record itself. The result is the
//! books a sequential replay builds (the recovery tests compare digests).

use crossbeam::channel::{bounded, Receiver, Sender};

use crate::books::Books;
use crate::command::Command;
use crate::ids::Lsn;
use crate::journal::codec;
use crate::store::snapshot::Coverage;
use crate::store::StoreError;

/// Records handed to a worker at once.
const BATCH_RECORDS: usize = 512;
/// Batches queued per worker at most (bounded memory; the reader waits when they are full).
const QUEUE_BATCHES: usize = 16;

struct Record {
    command: Command,
    timestamp_us: u64,
    lsn: Lsn,
}

enum Work {
    Batch(Vec<Record>),
    Drain(Sender<()>),
}

/// Feeds records to the workers; see the module doc.
struct Replayer<'a> {
    books: &'a Books,
    coverage: &'a Coverage,
    /// Asked before a record is applied: an error stops the replay there.
    refusal: &'a dyn Fn() -> Option<StoreError>,
    queues: Vec<Sender<Work>>,
    pending: Vec<Vec<Record>>,
    /// Records applied (the rest were covered by the snapshot).
    applied: u64,
}

impl<'a> Replayer<'a> {
    /// A replayer over `queues` (one per worker, from [`spawn_workers`]).
    fn new(
        books: &'a Books,
        coverage: &'a Coverage,
        refusal: &'a dyn Fn() -> Option<StoreError>,
        queues: Vec<Sender<Work>>,
    ) -> Replayer<'a> {
        let pending = queues.iter().map(|_| Vec::with_capacity(BATCH_RECORDS)).collect();
        Replayer {
            books,
            coverage,
            refusal,
            queues,
            pending,
            applied: 0,
        }
    }

    /// One record read from the log.
    fn visit(&mut self, lsn: Lsn, timestamp_us: u64, payload: &[u8]) -> Result<(), StoreError> {
        let command = codec::decode(payload).map_err(|error| StoreError::Record {
            lsn,
            what: error.to_string(),
        })?;
        let shard = self.books.shard_of(&command);
        let covered_to = match shard {
            Some(shard) => self.coverage.shard_lsns[shard as usize],
            None if command.is_registry_change() => self.coverage.registry_lsn,
            None => {
                return Err(StoreError::Record {
                    lsn,
                    what: "it names no shard".into(),
                })
            }
        };
        if lsn <= covered_to {
            return Ok(());
        }
        if let Some(refused) = (self.refusal)() {
            return Err(refused);
        }
        self.applied += 1;
        let reads_outside_its_shard =
            command.is_registry_change() || matches!(command, Command::OpenAccount { mobile: Some(_), .. });
        match shard {
            Some(shard) if !reads_outside_its_shard => {
                let worker = shard as usize % self.queues.len();
                self.pending[worker].push(Record {
                    command,
                    timestamp_us,
                    lsn,
                });
                if self.pending[worker].len() == BATCH_RECORDS {
                    self.send(worker);
                }
            }
            _ => {
                self.drain();
                self.books.replay(&command, timestamp_us, lsn);
            }
        }
        Ok(())
    }

    fn send(&mut self, worker: usize) {
        let batch = std::mem::replace(&mut self.pending[worker], Vec::with_capacity(BATCH_RECORDS));
        // A worker only stops when its queue is dropped, so the send cannot fail.
        let _ = self.queues[worker].send(Work::Batch(batch));
    }

    /// Wait until every worker applied everything it was given.
    fn drain(&mut self) {
        let (done, finished) = bounded(self.queues.len());
        for worker in 0..self.queues.len() {
            if !self.pending[worker].is_empty() {
                self.send(worker);
            }
            let _ = self.queues[worker].send(Work::Drain(done.clone()));
        }
        // Only the workers hold senders now: a worker that panicked drops its own, so the
        // wait ends (and the panic surfaces when the workers are joined) instead of hanging.
        drop(done);
        for _ in 0..self.queues.len() {
            if finished.recv().is_err() {
                break;
            }
        }
    }
}

/// The queue and loop of one worker: apply batches in order, acknowledge drains.
fn queue() -> (Sender<Work>, Receiver<Work>) {
    bounded(QUEUE_BATCHES)
}

/// Run a worker until its queue closes.
fn work(books: &Books, queue: Receiver<Work>) {
    for work in queue {
        match work {
            Work::Batch(records) => {
                for record in records {
                    books.replay(&record.command, record.timestamp_us, record.lsn);
                }
            }
            Work::Drain(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Replay with `workers` threads: `read` drives the reader (it calls the visitor for each
/// record), the workers apply. Returns what `read` returned and the records applied.
pub fn replay<T>(
    books: &Books,
    coverage: &Coverage,
    refusal: &dyn Fn() -> Option<StoreError>,
    workers: usize,
    read: impl FnOnce(&mut dyn FnMut(Lsn, u64, &[u8]) -> Result<(), StoreError>) -> Result<T, StoreError>,
) -> Result<(T, u64), StoreError> {
    let workers = workers.max(1);
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = queue();
            scope.spawn(move || work(books, receiver));
            senders.push(sender);
        }
        let mut replayer = Replayer::new(books, coverage, refusal, senders);
        let result = read(&mut |lsn, timestamp_us, payload| replayer.visit(lsn, timestamp_us, payload));
        replayer.drain();
        let applied = replayer.applied;
        drop(replayer);
        result.map(|value| (value, applied))
    })
}
