//! One load thread: a mio event loop over many connections.
//!
//! Each turn: start the flows that are due (open loop: the schedule; closed loop: a new flow
//! whenever one ends, `--pipeline` per connection), write every connection's queued requests
//! with one syscall each, wait for replies (or the pacing timer), and for each reply record its
//! latency, book it, and queue the flow's next request. Nothing on this path allocates.
//!
//! Offer flows: the thread's gateway (a payer device registered for account 0, logged on like
//! the terminals and polled with them) receives OFFER_PRESENTED for the thread's offers (their
//! reference carries the thread's tag) and queues each, due after the think time, in a FIFO
//! (the think time is constant, so arrival order is due order: a timer wheel of one slot); due
//! accepts go out as ACCEPT_OFFER with the PIN. The offering terminal's OFFER_OUTCOME push ends
//! the flow; its latency runs from the OFFER's intended send. The queue and the map of offers
//! awaiting their outcome are allocated up front.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
};

use crate::books::PayerSample;
use crate::clock::{now_ns, timespec};
use crate::connection::{
    Completed, Connection, Pushed, ERROR_BUSY, OFFER_ACCEPTED, PUSH_OFFER_OUTCOME, PUSH_OFFER_PRESENTED,
};
use crate::cpu_wait::ThreadWait;
use crate::flow::{self, BooksTally, FlowState};
use crate::recorder::{Interval, Recorder};
use crate::schedule::{latency_ns, Schedule, NS_PER_S};
use crate::spin::Spin;
use crate::template::{Fields, RequestKind, Templates};
use crate::workload::{Mix, PayerDraws, PayerSampler, Rng};

/// Events taken per poll.
const EVENTS_MAX: usize = 1024;
const TIMER: Token = Token(usize::MAX - 1);
/// Offers awaiting their outcome, and accepts awaiting their time, room reserved up front.
const OFFERS_WAITING_RESERVED: usize = 16_384;

/// Closed or open loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// As fast as replies come: `pipeline` flows in progress on every connection.
    Closed {
        /// Flows in progress per connection.
        pipeline: u32,
    },
    /// New flows at a fixed rate, whatever the replies do.
    Open {
        /// This thread's share of `--rate`, flows per second.
        rate_per_s: f64,
    },
}

/// When the phases of the run begin and end (monotonic ns).
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Load starts.
    pub start_ns: u64,
    /// Warm-up ends: replies to requests due from here on are measured.
    pub measure_from_ns: u64,
    /// No new flows from here on; flows in progress finish.
    pub stop_ns: u64,
    /// Requests still unanswered here are given up.
    pub drain_deadline_ns: u64,
}

impl Timeline {
    /// Whether a request due (or sent, closed loop) at `intended_ns` is measured: after the
    /// warm-up, before the stop.
    #[inline]
    pub fn measures(&self, intended_ns: u64) -> bool {
        intended_ns >= self.measure_from_ns && intended_ns < self.stop_ns
    }
}

/// What a thread does.
pub struct Plan {
    /// Closed or open loop.
    pub mode: Mode,
    /// Flow kinds by weight.
    pub mix: Mix,
    /// Payer choice.
    pub sampler: PayerSampler,
    /// Payer account numbers by payer index.
    pub accounts: Arc<[u64]>,
    /// The payers the books check reads (the tally keeps only theirs).
    pub books_sample: PayerSample,
    /// Merchants (for the tally).
    pub merchants: usize,
    /// Fee assumed for the tally.
    pub fee_bps: u16,
    /// Amounts are drawn uniformly from this range, minor units.
    pub amount_minor: (u64, u64),
    /// Phases.
    pub timeline: Timeline,
    /// Random seed.
    pub seed: u64,
    /// Where per-second figures go.
    pub progress: SyncSender<Interval>,
    /// Poll without sleeping (lower latency, one core busy).
    pub spin: bool,
    /// Adaptive busy-poll before sleeping, at most this long (0: off); see [`Spin`].
    pub spin_ns_max: u64,
    /// Open loop: due flows are sent in batches once the oldest has waited this long.
    pub pacing_ns: u64,
    /// Offer flows: the simulated payer's think time between OFFER_PRESENTED and ACCEPT_OFFER.
    pub think_ns: u64,
    /// Offer flows: this thread's tag in its offers' reference (nonzero).
    pub offer_tag: u32,
    /// Open loop: this thread's schedule starts this long after the others' start, so that
    /// the threads' flows interleave rather than fall due together.
    pub phase_ns: u64,
}

/// What a thread measured.
pub struct Outcome {
    /// Latencies, codes, errors.
    pub recorder: Recorder,
    /// Money seen moving.
    pub books: BooksTally,
    /// Flows started.
    pub flows_started: u64,
    /// Most flows due and not yet sent at once (open loop).
    pub backlog_max: u64,
    /// How long this thread was ready to run but waited for a CPU while measuring,
    /// milliseconds per second; `None` if the kernel does not say.
    pub cpu_wait_ms_per_s: Option<f64>,
}

/// An offer flow between its OFFER reply and its OFFER_OUTCOME push.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    connection: u32,
    intended_ns: u64,
    state: FlowState,
}

struct Worker {
    plan: Plan,
    templates: Templates,
    /// The terminal connections, then the gateway if any.
    connections: Vec<Connection>,
    /// Terminal connections: `connections[..terminals]`.
    terminals: usize,
    /// The gateway's index in `connections`.
    gateway: Option<usize>,
    /// Offers presented to the gateway: (accept due, offer id), in due order.
    thinking: VecDeque<(u64, u64)>,
    /// Offer flows awaiting their outcome, by offer id.
    waiting: HashMap<u64, Waiting>,
    recorder: Recorder,
    books: BooksTally,
    rng: Rng,
    /// The next flows' payers.
    payers: PayerDraws,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    stopping: bool,
    flows_started: u64,
    open_cursor: usize,
    /// Closed loop: connections that could not start a flow (write buffer full).
    starved: Vec<usize>,
    is_starved: Vec<bool>,
}

/// Runs the load on `connections` until the plan's stop time, then drains; `gateway` answers
/// the offers.
pub fn run(plan: Plan, mut connections: Vec<Connection>, gateway: Option<Connection>) -> io::Result<Outcome> {
    let terminals = connections.len();
    let gateway_index = gateway.is_some().then_some(terminals);
    connections.extend(gateway);
    let mut poll = Poll::new()?;
    for (index, connection) in connections.iter_mut().enumerate() {
        poll.registry().register(
            &mut connection.stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
    }
    let count = connections.len();
    let offer_room = if gateway_index.is_some() {
        OFFERS_WAITING_RESERVED
    } else {
        0
    };
    let ring_max = connections
        .iter()
        .map(|connection| connection.in_flight_max as usize)
        .max()
        .unwrap_or(1);
    let mut worker = Worker {
        books: BooksTally::new(plan.books_sample, plan.merchants, plan.fee_bps),
        rng: Rng::new(plan.seed),
        payers: PayerDraws::default(),
        plan,
        templates: Templates::new(),
        connections,
        terminals,
        gateway: gateway_index,
        thinking: VecDeque::with_capacity(offer_room),
        waiting: HashMap::with_capacity(offer_room),
        recorder: Recorder::new(),
        dirty: Vec::with_capacity(count),
        is_dirty: vec![false; count],
        stopping: false,
        flows_started: 0,
        open_cursor: 0,
        starved: Vec::with_capacity(count),
        is_starved: vec![false; count],
    };
    let mut completed: Vec<Completed> = Vec::with_capacity(ring_max * 4);
    let mut pushes: Vec<Pushed> = Vec::with_capacity(ring_max * 4);
    let mut events = Events::with_capacity(EVENTS_MAX);
    let mut spin = Spin::new(worker.plan.spin_ns_max);
    let timeline = worker.plan.timeline;
    // This thread's run-queue wait when measuring starts and when it stops (read once each).
    let mut cpu_wait_from: Option<Option<ThreadWait>> = None;
    let mut cpu_wait_to: Option<ThreadWait> = None;
    let mut schedule = match worker.plan.mode {
        Mode::Open { rate_per_s } => Some(Schedule::new(
            timeline.start_ns + worker.plan.phase_ns,
            rate_per_s,
        )),
        Mode::Closed { .. } => None,
    };
    let timer = match (&schedule, gateway_index) {
        (None, None) => None,
        _ => Some(new_timer(&poll)?),
    };
    let mut timer_armed_ns = 0u64;
    let pacing_ns = match worker.plan.mode {
        // Batching only helps when flows are due more often than the pacing interval.
        Mode::Open { rate_per_s } if (NS_PER_S as f64 / rate_per_s) < worker.plan.pacing_ns as f64 => {
            worker.plan.pacing_ns
        }
        _ => 0,
    };
    let mut backlog_max = 0u64;
    let mut next_second_ns = timeline.start_ns + NS_PER_S;
    let mut second = 1u64;
    if let Mode::Closed { pipeline } = worker.plan.mode {
        let now = now_ns();
        for index in 0..terminals {
            for _ in 0..pipeline.min(worker.connections[index].in_flight_max) {
                if !worker.start_flow(index, now, now) {
                    // The write buffer is full: top the pipeline up once it has drained.
                    worker.mark_starved(index);
                    break;
                }
            }
        }
    }
    loop {
        let now = now_ns();
        if cpu_wait_from.is_none() && now >= timeline.measure_from_ns {
            cpu_wait_from = Some(ThreadWait::read());
        }
        if !worker.stopping && now >= timeline.stop_ns {
            worker.stopping = true;
            cpu_wait_to = ThreadWait::read();
        }
        if now >= next_second_ns {
            let _ = worker
                .plan
                .progress
                .try_send(worker.recorder.take_interval(second));
            second += 1;
            next_second_ns += NS_PER_S;
        }
        if worker.stopping {
            let in_flight: u64 = worker.connections.iter().map(|c| u64::from(c.in_flight)).sum();
            // Flows due before the stop time and not sent yet are sent while draining: they
            // are part of the measured load, and dropping them would hide a stall.
            let backlog = schedule
                .as_ref()
                .is_some_and(|schedule| schedule.next_due_ns() < timeline.stop_ns)
                && worker.connections[..terminals].iter().any(|c| c.open);
            if in_flight == 0 && !backlog && worker.waiting.is_empty() && worker.thinking.is_empty() {
                break;
            }
            if now >= timeline.drain_deadline_ns {
                worker.abandon_all(now);
                break;
            }
        }
        let mut timer_wake_ns = u64::MAX;
        if let Some(schedule) = schedule.as_mut() {
            if worker.stopping {
                if schedule.next_due_ns() < timeline.stop_ns {
                    worker.start_due(schedule, now.min(timeline.stop_ns - 1), now);
                }
            } else {
                backlog_max = backlog_max.max(schedule.backlog(now));
                // Batch: send once the oldest due flow has waited `pacing_ns` (charged to its
                // latency), so one write carries several requests at high rates.
                if schedule.next_due_ns() + pacing_ns <= now {
                    worker.start_due(schedule, now, now);
                }
                timer_wake_ns = schedule.next_due_ns() + pacing_ns;
            }
        }
        // Accepts are sent while draining too: the flows in progress need them.
        if let Some(&(due_ns, _)) = worker.thinking.front() {
            if due_ns <= now {
                worker.send_due_accepts(now);
            }
        }
        if let Some(&(due_ns, _)) = worker.thinking.front() {
            timer_wake_ns = timer_wake_ns.min(due_ns);
        }
        if let (Some(timer), true) = (&timer, timer_wake_ns != u64::MAX) {
            // An armed timer that fires no later than needed is left alone: a spurious
            // early wake-up costs less than a syscall per turn.
            if timer_wake_ns > now && (timer_armed_ns <= now || timer_armed_ns > timer_wake_ns) {
                arm(timer, timer_wake_ns)?;
                timer_armed_ns = timer_wake_ns;
            }
        }
        worker.flush_dirty();
        if let (Mode::Closed { pipeline }, false, false) =
            (worker.plan.mode, worker.stopping, worker.starved.is_empty())
        {
            worker.refill_starved(pipeline, now);
            worker.flush_dirty();
        }
        let wake_ns = if worker.stopping {
            timeline.drain_deadline_ns
        } else {
            timeline.stop_ns
        }
        .min(next_second_ns);
        // Spinning trades a core for not paying the scheduler's wake-up on every reply.
        let timeout = if worker.plan.spin {
            Duration::ZERO
        } else {
            Duration::from_nanos(wake_ns.saturating_sub(now_ns()))
        };
        match wait(&mut poll, &mut events, timeout, &mut spin) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in events.iter() {
            if event.token() == TIMER {
                if let Some(timer) = &timer {
                    let mut expirations = [0u8; 8];
                    let _ = rustix::io::read(timer, &mut expirations);
                }
                continue;
            }
            let index = event.token().0;
            if index >= count || !worker.connections[index].open {
                continue;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let bad_before = worker.connections[index].bad_replies();
                let result = worker.connections[index].receive(&mut completed, &mut pushes, now_ns);
                // Counted as they come, so that each second's errors include them.
                worker.recorder.errors.bad_reply += worker.connections[index].bad_replies() - bad_before;
                if Some(index) == worker.gateway {
                    for done in completed.drain(..) {
                        worker.on_accept_reply(&done);
                    }
                    for pushed in pushes.drain(..) {
                        worker.on_presented(&pushed);
                    }
                } else {
                    for done in completed.drain(..) {
                        worker.on_reply(index, &done);
                    }
                    for pushed in pushes.drain(..) {
                        worker.on_outcome(&pushed);
                    }
                }
                if let Err(error) = result {
                    worker.lose(index, &error);
                    continue;
                }
            }
            if event.is_writable() {
                worker.mark_dirty(index);
            }
        }
    }
    if let Some(schedule) = &schedule {
        worker.never_sent(schedule, now_ns().max(timeline.stop_ns));
    }
    let mut recorder = worker.recorder;
    let last = recorder.take_interval(second);
    let _ = worker.plan.progress.try_send(last);
    Ok(Outcome {
        recorder,
        books: worker.books,
        flows_started: worker.flows_started,
        backlog_max,
        cpu_wait_ms_per_s: match (cpu_wait_from.flatten(), cpu_wait_to) {
            (Some(from), Some(to)) => Some(to.ms_per_s_since(&from)),
            _ => None,
        },
    })
}

impl Worker {
    /// Starts a new flow on connection `index`; false if it has no room.
    #[inline]
    fn start_flow(&mut self, index: usize, intended_ns: u64, now: u64) -> bool {
        let kind = self.plan.mix.pick(self.rng.next_u64());
        let (payer, account) = self
            .payers
            .take(&self.plan.sampler, &self.plan.accounts, &mut self.rng);
        let (low, high) = self.plan.amount_minor;
        let amount = self.rng.between(low, high);
        let step = flow::start(kind, payer, account, amount, self.plan.offer_tag);
        let connection = &mut self.connections[index];
        let queued = connection.queue(
            &self.templates,
            step.kind,
            step.fields,
            step.state,
            intended_ns,
            now,
        );
        if queued.is_none() {
            return false;
        }
        connection.flows += 1;
        self.flows_started += 1;
        self.mark_dirty(index);
        true
    }

    /// Open loop: starts every flow that is due. A turn's flows go to one connection while it
    /// has room (one write carries them all); the next turn starts on the next connection, so
    /// the load spreads over every connection and authd event loop. Flows due after
    /// `due_until` wait (while draining: the flows due from the stop on, which are not sent).
    fn start_due(&mut self, schedule: &mut Schedule, due_until: u64, now: u64) {
        let count = self.terminals;
        self.open_cursor = (self.open_cursor + 1) % count.max(1);
        let mut cursor = self.open_cursor;
        let mut tries = 0;
        while schedule.next_due_ns() <= due_until && tries < count {
            if self.connections[cursor].has_room(crate::template::TEMPLATE_BYTES_MAX) {
                let due = schedule.next_due_ns();
                if self.start_flow(cursor, due, now) {
                    let _ = schedule.take_due(due_until);
                    continue;
                }
            }
            tries += 1;
            cursor = (cursor + 1) % count;
        }
    }

    #[inline]
    fn mark_dirty(&mut self, index: usize) {
        if !self.is_dirty[index] {
            self.is_dirty[index] = true;
            self.dirty.push(index);
        }
    }

    fn flush_dirty(&mut self) {
        let mut position = 0;
        while position < self.dirty.len() {
            let index = self.dirty[position];
            self.is_dirty[index] = false;
            if self.connections[index].open {
                if let Err(error) = self.connections[index].flush() {
                    self.lose(index, &error);
                }
            }
            position += 1;
        }
        self.dirty.clear();
    }

    /// Records and books one reply; queues the flow's next request or a new flow.
    #[inline]
    fn on_reply(&mut self, index: usize, done: &Completed) {
        let timeline = self.plan.timeline;
        let measured = timeline.measures(done.intended_ns);
        if let Some(error) = done.error {
            if error == ERROR_BUSY {
                self.recorder.errors.busy += 1;
            } else {
                self.recorder.errors.protocol += 1;
            }
            self.end_flow(index, done.reply_ns);
            return;
        }
        self.recorder.reply(
            latency_ns(done.intended_ns, done.reply_ns),
            latency_ns(done.sent_ns, done.reply_ns),
            done.code,
            measured,
        );
        if measured && done.reply_ns >= timeline.stop_ns {
            self.recorder.answered_after_stop += 1;
        }
        let merchant = self.connections[index].merchant;
        match flow::advance(done, merchant, &mut self.books) {
            Some(step) => {
                let queued = self.connections[index].queue(
                    &self.templates,
                    step.kind,
                    step.fields,
                    step.state,
                    done.reply_ns,
                    done.reply_ns,
                );
                if queued.is_some() {
                    self.mark_dirty(index);
                } else {
                    self.books.follow_ups_dropped += 1;
                    self.end_flow(index, done.reply_ns);
                }
            }
            None if flow::awaits_outcome(done) => {
                let waiting = Waiting {
                    connection: index as u32,
                    intended_ns: done.intended_ns,
                    state: done.state,
                };
                self.waiting.insert(done.id, waiting);
            }
            None => self.end_flow(index, done.reply_ns),
        }
    }

    /// The gateway was shown an offer: this thread's are accepted after the think time.
    #[inline]
    fn on_presented(&mut self, pushed: &Pushed) {
        if pushed.kind == PUSH_OFFER_PRESENTED && pushed.tag == Some(self.plan.offer_tag) {
            self.recorder.offers.presented += 1;
            self.thinking
                .push_back((pushed.at_ns + self.plan.think_ns, pushed.offer_id));
        }
    }

    /// Queues every accept that is due on the gateway, as far as it has room.
    fn send_due_accepts(&mut self, now: u64) {
        let Some(gateway) = self.gateway else {
            self.thinking.clear();
            return;
        };
        let mut sent = false;
        while let Some(&(due_ns, offer)) = self.thinking.front() {
            if due_ns > now {
                break;
            }
            let fields = Fields {
                account: 0,
                amount: 0,
                hold: offer,
            };
            let state = FlowState {
                held: offer,
                ..FlowState::default()
            };
            let queued = self.connections[gateway].queue(
                &self.templates,
                RequestKind::AcceptOffer,
                fields,
                state,
                due_ns,
                now,
            );
            if queued.is_none() {
                // No room: the replies will make some.
                break;
            }
            self.thinking.pop_front();
            sent = true;
        }
        if sent {
            self.mark_dirty(gateway);
        }
    }

    /// The gateway's ACCEPT_OFFER was answered.
    #[inline]
    fn on_accept_reply(&mut self, done: &Completed) {
        let timeline = self.plan.timeline;
        if done.error.is_none() && timeline.measures(done.intended_ns) {
            self.recorder
                .accept
                .saturating_record(latency_ns(done.intended_ns, done.reply_ns).max(1));
        }
        match done.error {
            Some(ERROR_BUSY) => {
                // Not executed: try again at once, still timed from when it was first due.
                self.recorder.errors.busy += 1;
                self.thinking.push_front((done.intended_ns, done.state.held));
            }
            Some(_) => {
                self.recorder.errors.protocol += 1;
                self.recorder.offers.accept_declined += 1;
            }
            None if done.code == 0 => self.recorder.offers.accepted += 1,
            None => self.recorder.offers.accept_declined += 1,
        }
    }

    /// A terminal received a push: an offer flow's outcome ends it.
    #[inline]
    fn on_outcome(&mut self, pushed: &Pushed) {
        if pushed.kind != PUSH_OFFER_OUTCOME {
            return;
        }
        let Some(waiting) = self.waiting.remove(&pushed.offer_id) else {
            // Cancelled offers of offer_cancel and offer_status flows end here; an accepted
            // offer loadgen does not know is a bad reply.
            if pushed.state == OFFER_ACCEPTED {
                self.recorder.errors.bad_reply += 1;
            }
            return;
        };
        let timeline = self.plan.timeline;
        let measured = timeline.measures(waiting.intended_ns);
        let accepted = pushed.state == OFFER_ACCEPTED;
        self.recorder
            .offer_outcome(latency_ns(waiting.intended_ns, pushed.at_ns), accepted, measured);
        let terminal = waiting.connection as usize;
        let merchant = self.connections[terminal].merchant;
        flow::outcome(&waiting.state, merchant, accepted, pushed.amount, &mut self.books);
        self.end_flow(terminal, pushed.at_ns);
    }

    fn end_flow(&mut self, index: usize, now: u64) {
        let connection = &mut self.connections[index];
        connection.flows = connection.flows.saturating_sub(1);
        if let (Mode::Closed { .. }, false) = (self.plan.mode, self.stopping) {
            if connection.open && !self.start_flow(index, now, now) {
                // The write buffer is full: top the pipeline up once it has drained.
                self.mark_starved(index);
            }
        }
    }

    fn mark_starved(&mut self, index: usize) {
        if !self.is_starved[index] {
            self.is_starved[index] = true;
            self.starved.push(index);
        }
    }

    /// Closed loop: refills the pipelines of connections whose write buffer was full.
    fn refill_starved(&mut self, pipeline: u32, now: u64) {
        let mut position = 0;
        while position < self.starved.len() {
            let index = self.starved[position];
            let target = pipeline.min(self.connections[index].in_flight_max);
            while self.connections[index].open
                && self.connections[index].flows < target
                && self.start_flow(index, now, now)
            {}
            position += 1;
        }
        let (connections, is_starved) = (&self.connections, &mut self.is_starved);
        self.starved.retain(|index| {
            let connection = &connections[*index];
            let still = connection.open && connection.flows < pipeline.min(connection.in_flight_max);
            is_starved[*index] = still;
            still
        });
    }

    /// The connection failed: its unanswered requests have unknown outcomes.
    fn lose(&mut self, index: usize, error: &io::Error) {
        let connection = &mut self.connections[index];
        if !connection.open {
            return;
        }
        eprintln!("loadgen: connection {index} lost: {error}");
        connection.open = false;
        connection.flows = 0;
        self.recorder.errors.connections_lost += 1;
        self.give_up(index, now_ns());
    }

    /// Connection `index`'s unanswered requests are given up at `now`: errors with unknown
    /// outcomes, and a terminal's measured ones count in the latency as waiting until now, at
    /// least (the gateway's accepts are timed in their own histogram).
    fn give_up(&mut self, index: usize, now: u64) {
        let timeline = self.plan.timeline;
        let is_terminal = index < self.terminals;
        let mut unanswered = 0;
        for intended_ns in self.connections[index].take_unanswered() {
            unanswered += 1;
            if is_terminal && timeline.measures(intended_ns) {
                self.recorder.given_up(latency_ns(intended_ns, now), 1, 0);
            }
        }
        self.recorder.errors.unanswered += unanswered;
        self.books.unknown_outcomes += unanswered;
    }

    /// Open loop, at the end: flows due before the stop time that were never sent (every
    /// connection full or lost until `now`) are errors, and those of the measured phase count
    /// in the latency as waiting until `now`, at least.
    fn never_sent(&mut self, schedule: &Schedule, now: u64) {
        let timeline = self.plan.timeline;
        let first = schedule.issued();
        let count = schedule.count_due_before(timeline.stop_ns).saturating_sub(first);
        if count == 0 {
            return;
        }
        self.recorder.errors.not_sent += count;
        // Those due in warm-up are not measured.
        let skipped = schedule
            .count_due_before(timeline.measure_from_ns)
            .saturating_sub(first)
            .min(count);
        let measured = count - skipped;
        if measured > 0 {
            let oldest_ns = schedule.due_ns(first + skipped);
            let spacing_ns = if measured > 1 {
                (schedule.due_ns(first + skipped + measured - 1) - oldest_ns) / (measured - 1)
            } else {
                0
            };
            self.recorder
                .given_up(latency_ns(oldest_ns, now), measured, spacing_ns);
        }
    }

    /// The drain deadline passed at `now`: requests still unanswered are given up. Those of
    /// the measured phase count in the latency as waiting until now, at least.
    fn abandon_all(&mut self, now: u64) {
        let timeline = self.plan.timeline;
        for index in 0..self.connections.len() {
            self.give_up(index, now);
        }
        // An offer flow's OFFER was answered (and timed); its outcome never came: offer to
        // outcome is at least the time until now.
        for waiting in self.waiting.values() {
            if timeline.measures(waiting.intended_ns) {
                self.recorder
                    .offer_outcome
                    .saturating_record(latency_ns(waiting.intended_ns, now).max(1));
            }
        }
        // An offer whose outcome never came may have been accepted or not.
        let missing = self.waiting.len() as u64;
        self.waiting.clear();
        self.thinking.clear();
        self.recorder.offers.outcomes_missing += missing;
        self.recorder.errors.unanswered += missing;
        self.books.unknown_outcomes += missing;
    }
}

/// Polls for up to `timeout`, busy-polling (and yielding the core) for the spin window first.
fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration, spin: &mut Spin) -> io::Result<()> {
    if timeout.is_zero() {
        return poll.poll(events, Some(timeout));
    }
    let started_ns = now_ns();
    let window_ns = spin.window_ns();
    if window_ns > 0 {
        loop {
            poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() {
                spin.learn(now_ns().saturating_sub(started_ns));
                return Ok(());
            }
            if now_ns().saturating_sub(started_ns) >= window_ns {
                break;
            }
            std::thread::yield_now();
        }
    }
    poll.poll(events, Some(timeout))?;
    spin.learn(now_ns().saturating_sub(started_ns));
    Ok(())
}

fn new_timer(poll: &Poll) -> io::Result<OwnedFd> {
    let timer = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    poll.registry()
        .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    Ok(timer)
}

/// Arms the timer to fire once at monotonic time `at_ns`.
fn arm(timer: &OwnedFd, at_ns: u64) -> io::Result<()> {
    let spec = Itimerspec {
        it_interval: timespec(0),
        it_value: timespec(at_ns),
    };
    timerfd_settime(timer, TimerfdTimerFlags::ABSTIME, &spec)?;
    Ok(())
}
