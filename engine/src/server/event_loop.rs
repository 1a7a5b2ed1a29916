//! One event loop: accept, read, handle, release durable replies, write; one thread.
//!
//! The first loop owns the listener and deals accepted connections round robin to every loop
//! (through each loop's hand-off inbox and waker), so both cores serve whatever the order of
//! wake-ups. Per iteration: poll; open a batch of the log; accept until the listener would
//! block (first loop); adopt connections handed over; for each readable connection read and
//! handle every whole frame; queue the pushes routed to this loop, writing offers shown at once
//! straight away; commit the batch (in place when the log is idle: the records are
//! durable when it returns; else the writer thread takes them); then, for every connection
//! with replies in flight, release those whose record is durable (one `durable_lsn` read for
//! the whole iteration) and write them with one `write` per connection. Before sleeping, the
//! loop announces the lsn its oldest waiting reply needs; whoever commits that lsn wakes it.

use std::io::Write;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use wire::messages::reply::{ErrorReply, ProtocolError};
use wire::{Frame, Message, Reply};

use crate::server::connection::{Connection, State, READ_CHUNK_BYTES};
use crate::server::push::Target;
use crate::server::spin::Spin;
use crate::server::Shared;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;
/// Events taken per poll.
const EVENTS_MAX: usize = 1_024;
/// Time between sweeps for log-on and idle timeouts.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// One loop and its connections.
pub struct EventLoop {
    index: usize,
    shared: Arc<Shared>,
    poll: Poll,
    /// The listener, on the first loop only (it deals connections to every loop).
    listener: Option<TcpListener>,
    /// The loop the next accepted connection goes to.
    next_loop: usize,
    waker: Arc<Waker>,
    connections: Slab<Connection>,
    /// Connections that may have replies to release or bytes to write.
    busy: Vec<usize>,
    listed: Vec<bool>,
    spin: Spin,
    /// Every connection of the loop reads into this, zeroed once (see
    /// [`Connection::read_ready`]).
    scratch: Box<[u8]>,
}

impl EventLoop {
    /// A loop; the first one also gets the listener and deals accepted connections out.
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        listener: Option<std::net::TcpListener>,
    ) -> std::io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut listener = listener.map(TcpListener::from_std);
        if let Some(listener) = listener.as_mut() {
            poll.registry().register(listener, LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let spin = Spin::new(shared.config.spin_max);
        Ok(EventLoop {
            index,
            shared,
            poll,
            listener,
            next_loop: 0,
            waker,
            connections: Slab::new(),
            busy: Vec::new(),
            listed: Vec::new(),
            spin,
            scratch: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
        })
    }

    /// The waker the log calls after each group commit.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Serve until the server stops and every connection is done (or the shutdown deadline).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_MAX);
        let mut last_sweep = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        let store = Arc::clone(&self.shared.store);
        loop {
            let (timeout, waiting_on_log) = self.announce_sleep();
            let polled = self.wait(&mut events, timeout, waiting_on_log);
            if let Some(handle) = self.handle() {
                handle.sleeping_on.store(0, Ordering::SeqCst);
            }
            if let Err(error) = polled {
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                super::lifecycle::log(
                    super::lifecycle::Level::Error,
                    "loop_stopped",
                    &[("error", &error)],
                );
                return;
            }
            // Everything read in this iteration is one batch of the log.
            let batch = store.wal().open_batch();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(token) => self.ready(token - FIRST_CONNECTION, event),
                }
            }
            self.take_accepted();
            self.take_pushes();
            batch.commit();
            self.release_and_write();
            let now = Instant::now();
            if now.duration_since(last_sweep) >= SWEEP_INTERVAL {
                last_sweep = now;
                self.sweep(now);
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(|| self.begin_stopping(now));
                let deadline_passed = now.duration_since(since) >= self.shared.config.shutdown_timeout;
                if self
                    .connections
                    .iter()
                    .all(|(_, connection)| !connection.has_waiting())
                    || deadline_passed
                {
                    return;
                }
            }
        }
    }

    /// Poll for up to `timeout`; busy-poll for the spin window first (see [`Spin`]).
    /// Only a loop waiting for its clients spins: one waiting for the log waits for a sync
    /// under way (or a commit handed to the writer thread), and spinning through it would take
    /// the core from the thread that commits and from the clients.
    fn wait(&mut self, events: &mut Events, timeout: Duration, waiting_on_log: bool) -> std::io::Result<()> {
        if timeout.is_zero() {
            return self.poll.poll(events, Some(timeout));
        }
        let started = Instant::now();
        let window = if waiting_on_log {
            Duration::ZERO
        } else {
            self.spin.window()
        };
        if !window.is_zero() {
            loop {
                self.poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    self.spin.learn(started.elapsed());
                    return Ok(());
                }
                if started.elapsed() >= window {
                    break;
                }
                // Any other thread runnable on this core goes first.
                std::thread::yield_now();
            }
        }
        self.poll.poll(events, Some(timeout))?;
        self.spin.learn(started.elapsed());
        Ok(())
    }

    fn handle(&self) -> Option<&super::LoopHandle> {
        self.shared.loops.get().and_then(|loops| loops.get(self.index))
    }

    /// The poll timeout, and whether a reply waits for the log; before it, tells committers
    /// which lsn would let this loop release a reply (the oldest waiting reply of each
    /// connection), so that they wake it then. Zero if that lsn is durable already (or the log
    /// failed).
    fn announce_sleep(&self) -> (Duration, bool) {
        let needed = self
            .busy
            .iter()
            .filter_map(|&key| self.connections.get(key).and_then(Connection::waiting_lsn))
            .min();
        let (Some(needed), Some(handle)) = (needed, self.handle()) else {
            return (self.shared.config.poll_timeout, false);
        };
        // 0 means "not sleeping on the log"; a reply waiting on lsn 0 is released at once.
        handle.sleeping_on.store(needed.max(1), Ordering::SeqCst);
        // Pairs with the committer's fence between publishing and reading `sleeping_on`.
        fence(Ordering::SeqCst);
        let wal = self.shared.store.wal();
        if wal.durable_lsn() >= needed || wal.has_failed() {
            handle.sleeping_on.store(0, Ordering::SeqCst);
            return (Duration::ZERO, true);
        }
        (self.shared.config.poll_timeout, true)
    }

    fn begin_stopping(&mut self, now: Instant) -> Instant {
        if let Some(listener) = self.listener.as_mut() {
            let _ = self.poll.registry().deregister(listener);
        }
        for (_, connection) in self.connections.iter_mut() {
            connection.closing = true;
        }
        now
    }

    fn accept(&mut self) {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut socket, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving the others.
                    super::lifecycle::log(
                        super::lifecycle::Level::Warn,
                        "accept_failed",
                        &[("error", &error)],
                    );
                    return;
                }
            };
            let shared = &self.shared;
            // Claim a place before serving: loops accept concurrently, and a load-then-add
            // could let each of them take the last place.
            let claimed = shared
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open < shared.config.connections_max).then_some(open + 1)
                });
            if claimed.is_err() {
                shared.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                let mut busy = BytesMut::new();
                let error = ErrorReply::new(ProtocolError::Busy, 0, shared.config.connections_max as u64);
                Frame {
                    request_id: 0,
                    message: Message::Reply(Reply::Error(error)),
                }
                .encode(&mut busy);
                let _ = socket.write(&busy);
                continue;
            }
            let _ = socket.set_nodelay(true);
            // Deal connections round robin over the loops, so that both cores serve.
            let target = self.next_loop % self.shared.loops.get().map_or(1, |loops| loops.len());
            self.next_loop = self.next_loop.wrapping_add(1);
            if target == self.index {
                self.adopt(socket, peer);
            } else if let Some(target) = self.shared.loops.get().and_then(|loops| loops.get(target)) {
                target.accepted.lock().push((socket, peer));
                let _ = target.waker.wake();
            }
        }
    }

    /// Serve a connection accepted (by this loop or another) whose place is already claimed.
    fn adopt(&mut self, mut socket: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let shared = &self.shared;
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut socket, Token(key + FIRST_CONNECTION), interest)
            .is_err()
        {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        entry.insert(Connection::new(
            socket,
            peer,
            shared.config.frame_bytes_max,
            Instant::now(),
            id,
        ));
        let open = shared.connections.load(Ordering::Relaxed);
        shared
            .stats
            .connections_open
            .store(open as u64, Ordering::Relaxed);
        shared.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Serve the connections other loops accepted for this one.
    fn take_accepted(&mut self) {
        let accepted = match self.handle() {
            Some(handle) => std::mem::take(&mut *handle.accepted.lock()),
            None => return,
        };
        for (socket, peer) in accepted {
            self.adopt(socket, peer);
        }
    }

    fn ready(&mut self, key: usize, event: &Event) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let mut state = State::Open;
        if event.is_readable() {
            state = connection.read_ready(&self.shared, &mut self.scratch, event.is_read_closed());
        }
        if event.is_writable() && state == State::Open {
            state = connection.flush();
        }
        if state == State::Closed {
            self.close(key);
            return;
        }
        if !connection.subscribed {
            if let Some(principal) = connection.principal() {
                connection.subscribed = true;
                let target = Target {
                    loop_index: self.index,
                    key,
                    connection: connection.id,
                };
                self.shared.pushes.subscribe(&principal, target);
            }
        }
        self.mark_busy(key);
    }

    /// Route the books' offer changes, then queue the pushes addressed to this loop. A
    /// connection that has stopped reading (unwritten bytes at [`push_bytes_max`]) is closed
    /// instead: pushes have no backpressure, and its client can ask for what it missed
    /// (LIST_OFFERS, OFFER_STATUS) once it reconnects.
    fn take_pushes(&mut self) {
        self.shared
            .pushes
            .route(self.shared.store.books(), &self.shared.clock, Some(self.index));
        let config = &self.shared.config;
        let push_bytes_max = push_bytes_max(config.write_bytes_max, config.in_flight_max);
        let mut stopped_reading = Vec::new();
        let mut shown_at_once = Vec::new();
        for delivery in self.shared.pushes.take(self.index) {
            let key = delivery.target.key;
            match self.connections.get_mut(key) {
                Some(connection) if connection.id == delivery.target.connection => {
                    // Offers shown at once are already in the write buffer: write what the
                    // socket takes before judging the client (a failed write is seen again
                    // after the commit).
                    if connection.unwritten_bytes() >= push_bytes_max {
                        let _ = connection.flush();
                    }
                    if connection.unwritten_bytes() >= push_bytes_max {
                        if !stopped_reading.contains(&key) {
                            stopped_reading.push(key);
                        }
                        continue;
                    }
                    if delivery.lsn == 0 {
                        shown_at_once.push(key);
                    }
                    connection.queue_push(delivery.lsn, delivery.push);
                    self.mark_busy(key);
                }
                _ => {}
            }
        }
        // Offers shown at once leave now, not after this iteration's batch is committed (an
        // fdatasync when the loop commits in place). A failed write is seen again, and
        // handled, when the connection is written after the commit.
        shown_at_once.sort_unstable();
        shown_at_once.dedup();
        for &key in &shown_at_once {
            if let Some(connection) = self.connections.get_mut(key) {
                let _ = connection.flush();
            }
        }
        for key in stopped_reading {
            if let Some(connection) = self.connections.get(key) {
                super::lifecycle::log(
                    super::lifecycle::Level::Warn,
                    "push_overflow",
                    &[
                        ("peer", &connection.peer),
                        ("unwritten_bytes", &connection.unwritten_bytes()),
                        ("msg", &"the client stopped reading its pushes; connection closed"),
                    ],
                );
            }
            self.close(key);
        }
    }

    fn mark_busy(&mut self, key: usize) {
        if self.listed.len() <= key {
            self.listed.resize(key + 1, false);
        }
        if !self.listed[key] {
            self.listed[key] = true;
            self.busy.push(key);
        }
    }

    /// Release durable replies and write, for every busy connection.
    fn release_and_write(&mut self) {
        if self.busy.is_empty() {
            return;
        }
        let wal = self.shared.store.wal();
        // Failed first: once failed, the durable lsn no longer moves, so the pair is
        // consistent. Read the other way round, a batch made durable between the two reads
        // and a failure after it would answer that batch 96 though it is in the log.
        let failed = wal.has_failed();
        let durable = wal.durable_lsn();
        let busy = std::mem::take(&mut self.busy);
        for &key in &busy {
            self.listed[key] = false;
        }
        for key in busy {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            connection.release(durable, failed);
            let mut state = connection.flush();
            if state == State::Open && connection.read_stalled {
                // Back under the limits: read what waited in the kernel.
                connection.handle_frames(&self.shared);
                // No event to go by: read until WouldBlock.
                state = connection.read_ready(&self.shared, &mut self.scratch, true);
                connection.release(durable, failed);
                if state == State::Open {
                    state = connection.flush();
                }
            }
            match state {
                State::Closed => self.close(key),
                State::Open if connection_needs_attention(self.connections.get(key)) => self.mark_busy(key),
                State::Open => {}
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let config = &self.shared.config;
        let expired: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, connection)| {
                let logon_late =
                    !connection.logged_on() && now.duration_since(connection.opened) > config.logon_timeout;
                let idle = connection.logged_on()
                    && connection.is_idle()
                    && now.duration_since(connection.last_frame) > config.idle_timeout;
                logon_late || idle
            })
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(index) = self.listed.get_mut(key) {
            *index = false;
        }
        self.busy.retain(|&busy| busy != key);
        if self.connections.contains(key) {
            let mut connection = self.connections.remove(key);
            let _ = self.poll.registry().deregister(&mut connection.socket);
            if let (true, Some(principal)) = (connection.subscribed, connection.principal()) {
                let target = Target {
                    loop_index: self.index,
                    key,
                    connection: connection.id,
                };
                self.shared.pushes.unsubscribe(&principal, target);
            }
            let open = self.shared.connections.fetch_sub(1, Ordering::Relaxed) - 1;
            self.shared
                .stats
                .connections_open
                .store(open as u64, Ordering::Relaxed);
        }
    }
}

/// Unwritten bytes at which a connection gets no more pushes and is closed: what replies
/// alone can reach, so that a client that reads its replies is never closed for them.
/// Reading stops at `--write-bytes-max` unwritten or `--in-flight-max` unanswered, and the
/// unanswered replies (each frame within [`wire::frame::FRAME_BYTES_MAX_FLOOR`], which every
/// message fits) may be released at once after that: 2 MiB with the defaults.
pub fn push_bytes_max(write_bytes_max: usize, in_flight_max: u32) -> usize {
    let replies = (in_flight_max as usize).saturating_mul(wire::frame::FRAME_BYTES_MAX_FLOOR as usize);
    write_bytes_max.saturating_add(replies)
}

fn connection_needs_attention(connection: Option<&Connection>) -> bool {
    connection.is_some_and(|connection| connection.has_waiting() || connection.read_stalled)
}

#[cfg(test)]
mod tests {
    use super::push_bytes_max;

    #[test]
    fn pushes_stop_only_past_what_replies_alone_can_reach() {
        // The defaults: 1 MiB unwritten, 1,024 requests in flight.
        assert_eq!(push_bytes_max(1 << 20, 1_024), 2 << 20);
        // The smallest write limit with the largest in-flight limit: a pipelining client
        // with every reply released at once stays under it.
        let replies = 1_000_000 * wire::frame::FRAME_BYTES_MAX_FLOOR as usize;
        assert!(push_bytes_max(65_536, 1_000_000) >= 65_536 + replies);
        assert_eq!(push_bytes_max(usize::MAX, u32::MAX), usize::MAX);
    }
}
