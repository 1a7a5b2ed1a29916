//! Pushes: offers presented to the payer's devices (and gateways) at once, and each offer's
//! outcome to the terminal that made it.
//!
//! Logged-on devices and terminals subscribe here with their loop, slab key and connection
//! number. Whoever executes commands drains the books' offer changes ([`PushHub::route`]) and
//! drops each push into the inbox of the loop that owns the target connection, then wakes that
//! loop; the loop queues the push behind the connection's replies. An offer's outcome is tagged
//! with the log position of the change, so, like a reply, it leaves only once what it announces
//! is durable; an offer is presented at once (see `route` for why that is safe).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use mio::Waker;
use parking_lot::Mutex;
use wire::messages::push::OfferOutcome;
use wire::types as w;
use wire::Push;

use crate::books::offer::{OfferState, OfferView};
use crate::books::Books;
use crate::ids::Lsn;
use crate::reason::Reason;
use crate::server::dispatch::Principal;
use crate::server::offers;

/// Pushes waiting in one loop's inbox at most; past it the oldest are dropped (a push is a
/// courtesy: the state can always be asked for).
pub const INBOX_PUSHES_MAX: usize = 65_536;

/// A connection that may receive pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The loop that owns it.
    pub loop_index: usize,
    /// Its slab key in that loop.
    pub key: usize,
    /// Its connection number (slab keys are reused).
    pub connection: u64,
}

/// A push on its way to a connection.
pub struct Delivery {
    /// The target.
    pub target: Target,
    /// Log position to wait for.
    pub lsn: Lsn,
    /// The push.
    pub push: Push,
}

/// One loop's inbox.
pub struct Inbox {
    deliveries: Mutex<Vec<Delivery>>,
    waker: Arc<Waker>,
}

/// Connections subscribed under each key.
type Subscribers = Mutex<HashMap<u64, Vec<Target>>>;

/// Who gets which pushes.
#[derive(Default)]
pub struct PushHub {
    inboxes: OnceLock<Vec<Inbox>>,
    /// Devices by payer account (0: gateways, which see every payer's offers).
    devices: Subscribers,
    /// Terminals by terminal id.
    terminals: Subscribers,
}

impl PushHub {
    /// Set the loops' wakers, once, before the loops run.
    pub fn set_loops(&self, wakers: Vec<Arc<Waker>>) {
        let inboxes = wakers
            .into_iter()
            .map(|waker| Inbox {
                deliveries: Mutex::new(Vec::new()),
                waker,
            })
            .collect();
        let _ = self.inboxes.set(inboxes);
    }

    /// Where a principal's subscriptions are kept, and under which key.
    fn place(&self, principal: &Principal) -> Option<(&Subscribers, u64)> {
        match *principal {
            Principal::Device { account, .. } => Some((&self.devices, account.0)),
            Principal::Terminal { terminal, .. } => Some((&self.terminals, u64::from(terminal.0))),
            Principal::Operator => None,
        }
    }

    /// A logged-on connection starts receiving its pushes.
    pub fn subscribe(&self, principal: &Principal, target: Target) {
        if let Some((subscribers, key)) = self.place(principal) {
            subscribers.lock().entry(key).or_default().push(target);
        }
    }

    /// A closing connection stops receiving pushes.
    pub fn unsubscribe(&self, principal: &Principal, target: Target) {
        if let Some((subscribers, key)) = self.place(principal) {
            let mut map = subscribers.lock();
            if let Some(targets) = map.get_mut(&key) {
                targets.retain(|entry| *entry != target);
                if targets.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    /// Take the books' offer changes and deliver their pushes.
    pub fn route(&self, books: &Books) {
        let events = books.take_offer_events();
        if events.is_empty() {
            return;
        }
        // Read the clock only when there is something to push (this runs every loop iteration).
        let now_us = super::now_us();
        for (lsn, event) in events {
            let view = event.view;
            if view.state == OfferState::Offered {
                let push = Push::OfferPresented(offers::summary(books, now_us, &view));
                let devices = self.devices.lock();
                let targets = devices
                    .get(&view.payer.0)
                    .into_iter()
                    .chain(devices.get(&0))
                    .flatten();
                // An offer is shown at once, without waiting for its record: the log is durable
                // by prefix, so any answer the payer gives is a later record, and once that
                // answer is acknowledged the offer's record is durable too. A crash before then
                // only withdraws an offer nobody could have acted on. This saves one fdatasync
                // from offer-to-outcome. Outcomes (money moved) still wait.
                for target in targets {
                    self.deliver(*target, 0, push.clone());
                }
            } else {
                let push = Push::OfferOutcome(outcome(&view));
                if let Some(targets) = self.terminals.lock().get(&u64::from(view.terminal.0)) {
                    for target in targets {
                        self.deliver(*target, lsn, push.clone());
                    }
                }
            }
        }
    }

    fn deliver(&self, target: Target, lsn: Lsn, push: Push) {
        let Some(inbox) = self
            .inboxes
            .get()
            .and_then(|inboxes| inboxes.get(target.loop_index))
        else {
            return;
        };
        let mut deliveries = inbox.deliveries.lock();
        if deliveries.len() >= INBOX_PUSHES_MAX {
            deliveries.remove(0);
        }
        deliveries.push(Delivery { target, lsn, push });
        drop(deliveries);
        let _ = inbox.waker.wake();
    }

    /// The pushes waiting for loop `loop_index`.
    pub fn take(&self, loop_index: usize) -> Vec<Delivery> {
        match self.inboxes.get().and_then(|inboxes| inboxes.get(loop_index)) {
            Some(inbox) => std::mem::take(&mut *inbox.deliveries.lock()),
            None => Vec::new(),
        }
    }
}

/// The outcome push of a final offer state: code 0 when accepted, else 12 `OfferClosed`.
fn outcome(view: &OfferView) -> OfferOutcome {
    let reason = if view.state == OfferState::Accepted {
        Reason::Approved
    } else {
        Reason::OfferClosed
    };
    OfferOutcome {
        offer_id: w::OfferId(view.offer.0),
        state: offers::wire_state(view.state),
        code: reason.iso_code(),
        reason: reason as u8,
        hold_id: w::HoldId(view.offer.0),
        amount_minor: if view.state == OfferState::Accepted {
            view.amount
        } else {
            0
        },
    }
}
