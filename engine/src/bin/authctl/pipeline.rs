//! Many requests in flight on one connection, each tagged with what it was for.
//!
//! A round trip per request would make bulk set-up as slow as one fdatasync per request; with
//! many in flight, authd's group commit makes one sync durable for all of them. The window is
//! bounded twice: by the caller's limit, and by the `requests_in_flight_max` authd announced at
//! log-on (past it authd would answer `Busy` and not execute the request).

use std::collections::{HashMap, VecDeque};

use anyhow::{anyhow, bail};
use wire::client::{Client, Incoming};
use wire::{Reply, Request};

use crate::operator::reply_error;

/// Requests waiting to be sent, and those sent and not yet answered.
pub struct Pipeline<'a, T> {
    client: &'a mut Client,
    window: usize,
    queued: VecDeque<(Request, T)>,
    in_flight: HashMap<u64, T>,
    sent: u64,
}

impl<'a, T> Pipeline<'a, T> {
    /// A pipeline on `client` keeping at most `window_max` (and at most what authd allows) in
    /// flight.
    pub fn new(client: &'a mut Client, window_max: usize) -> Pipeline<'a, T> {
        let server_max = usize::try_from(client.server_limits().requests_in_flight_max).unwrap_or(usize::MAX);
        let window = window_max.min(server_max).max(1);
        Pipeline {
            client,
            window,
            queued: VecDeque::new(),
            in_flight: HashMap::with_capacity(window),
            sent: 0,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Drop the queued requests whose tag `keep` refuses; what is in flight still comes back
    /// through [`Pipeline::next`] (a stopped bulk run keeps what authd did).
    pub fn retain_queued(&mut self, keep: impl Fn(&T) -> bool) {
        self.queued.retain(|(_, tag)| keep(tag));
    }

    /// Queue `request`; `tag` comes back with its reply.
    pub fn push(&mut self, request: Request, tag: T) {
        self.queued.push_back((request, tag));
    }

    /// The next reply with its tag, in arrival order; `None` once everything is answered.
    pub fn next(&mut self) -> anyhow::Result<Option<(T, Reply)>> {
        self.fill()?;
        if self.in_flight.is_empty() {
            debug_assert!(self.queued.is_empty());
            return Ok(None);
        }
        loop {
            let incoming = self
                .client
                .recv()
                .map_err(|error| reply_error(error, "provision"))?;
            let Incoming::Reply { request_id, reply } = incoming else {
                continue; // Pushes are for terminals and devices; an operator ignores them.
            };
            if let Some(tag) = self.in_flight.remove(&request_id) {
                return Ok(Some((tag, reply)));
            }
            if let Reply::Error(error) = reply {
                bail!(
                    "authd refused the connection's frames: {:?} (ISO {:02}, reason {}); \
                     try a smaller --in-flight",
                    error.error,
                    error.code,
                    error.reason
                );
            }
            return Err(anyhow!(
                "authd answered request {request_id}, which was never sent"
            ));
        }
    }

    /// Send queued requests until the window is full.
    fn fill(&mut self) -> anyhow::Result<()> {
        while self.in_flight.len() < self.window {
            let Some((request, tag)) = self.queued.pop_front() else {
                break;
            };
            let request_id = self
                .client
                .send(&request)
                .map_err(|error| reply_error(error, "provision"))?;
            self.in_flight.insert(request_id, tag);
            self.sent += 1;
        }
        debug_assert!(self.in_flight.len() <= self.window);
        Ok(())
    }
}
