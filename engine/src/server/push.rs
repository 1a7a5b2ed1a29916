//! Pushes: offers presented to the payer's devices (and gateways), and each offer's outcome
//! to the terminal that made it.
//!
//! Logged-on devices and terminals subscribe here with their loop, slab key and connection
//! number. Whoever executes commands drains the books' offer changes ([`PushHub::route`]) and
//! drops each push into the inbox of the loop that owns the target connection, then wakes that
//! loop; the loop queues the push behind the connection's replies. An outcome is tagged with
//! the log position of the change it announces, so, like a reply, it leaves only once that is
//! durable; an offer is shown at once (see `route` for why that is safe).

use std::collections::{HashMap, VecDeque};
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
    /// Log position to wait for; 0 for an offer shown at once (no record is 0).
    pub lsn: Lsn,
    /// The push.
    pub push: Push,
}

/// One loop's inbox.
pub struct Inbox {
    deliveries: Mutex<VecDeque<Delivery>>,
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
                deliveries: Mutex::new(VecDeque::new()),
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

    /// Take the books' offer changes and deliver their pushes. `router` is the loop that
    /// routes, if a loop does: it takes its own inbox right after, so it is not woken.
    pub fn route(&self, books: &Books, clock: &super::clock::Clock, router: Option<usize>) {
        let events = books.take_offer_events();
        if events.is_empty() {
            return;
        }
        // Read the clock only when there is something to push (this runs every loop iteration).
        let now_us = clock.now_us();
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
                // An offer is shown at once, without waiting for its record: one fdatasync
                // less from offer to outcome. Any answer is a later record, durable only
                // after this one. A crash may lose the offer while a device holds it; the
                // next start skips hold ids past it (books::hold_ids), so the stale answer
                // names no offer rather than another one. Outcomes (money moved) wait.
                for target in targets {
                    self.deliver(*target, 0, push.clone(), router);
                }
            } else {
                let push = Push::OfferOutcome(outcome(&view));
                if let Some(targets) = self.terminals.lock().get(&u64::from(view.terminal.0)) {
                    for target in targets {
                        self.deliver(*target, lsn, push.clone(), router);
                    }
                }
            }
        }
    }

    /// Drops a push in its loop's inbox; wakes that loop only when the inbox was empty (a
    /// wake is pending until the loop takes the inbox, and it takes all of it) and the loop is
    /// not the router: at 10,000 offers a second, a wake per push was 20,000 eventfd writes a
    /// second.
    fn deliver(&self, target: Target, lsn: Lsn, push: Push, router: Option<usize>) {
        let Some(inbox) = self
            .inboxes
            .get()
            .and_then(|inboxes| inboxes.get(target.loop_index))
        else {
            return;
        };
        let mut deliveries = inbox.deliveries.lock();
        if deliveries.len() >= INBOX_PUSHES_MAX {
            deliveries.pop_front();
        }
        let was_empty = deliveries.is_empty();
        deliveries.push_back(Delivery { target, lsn, push });
        drop(deliveries);
        if was_empty && router != Some(target.loop_index) {
            let _ = inbox.waker.wake();
        }
    }

    /// The pushes waiting for loop `loop_index`.
    pub fn take(&self, loop_index: usize) -> VecDeque<Delivery> {
        match self.inboxes.get().and_then(|inboxes| inboxes.get(loop_index)) {
            Some(inbox) => std::mem::take(&mut *inbox.deliveries.lock()),
            None => VecDeque::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    fn a_push() -> Push {
        Push::OfferOutcome(OfferOutcome {
            offer_id: w::OfferId(7),
            state: w::OfferState::Accepted,
            code: 0,
            reason: 0,
            hold_id: w::HoldId(7),
            amount_minor: 100,
        })
    }

    fn target(loop_index: usize) -> Target {
        Target {
            loop_index,
            key: 0,
            connection: 1,
        }
    }

    /// Whether the loop's waker fired since the last look.
    fn woken(poll: &mut Poll, events: &mut Events) -> bool {
        poll.poll(events, Some(Duration::ZERO)).expect("poll");
        !events.is_empty()
    }

    #[test]
    fn a_loop_is_woken_once_per_empty_inbox_and_never_by_its_own_routing() {
        let mut polls: Vec<Poll> = (0..2).map(|_| Poll::new().expect("poll")).collect();
        let wakers = polls
            .iter()
            .map(|poll| Arc::new(Waker::new(poll.registry(), Token(1)).expect("waker")))
            .collect();
        let hub = PushHub::default();
        hub.set_loops(wakers);
        let mut events = Events::with_capacity(8);

        // Another loop (or the ticker) routes to loop 0: woken for the first push only.
        hub.deliver(target(0), 0, a_push(), Some(1));
        assert!(
            woken(&mut polls[0], &mut events),
            "a push into an empty inbox wakes"
        );
        hub.deliver(target(0), 0, a_push(), None);
        assert!(!woken(&mut polls[0], &mut events), "a wake is pending already");
        assert_eq!(hub.take(0).len(), 2, "the loop takes every push");
        hub.deliver(target(0), 0, a_push(), None);
        assert!(
            woken(&mut polls[0], &mut events),
            "an inbox taken empty wakes again"
        );
        assert_eq!(hub.take(0).len(), 1);

        // Loop 1 routes to itself: it takes its inbox right after, no wake.
        hub.deliver(target(1), 0, a_push(), Some(1));
        assert!(!woken(&mut polls[1], &mut events));
        assert_eq!(hub.take(1).len(), 1);
        assert!(!woken(&mut polls[0], &mut events), "nothing for loop 0");
    }

    #[test]
    fn a_full_inbox_drops_its_oldest_pushes() {
        let poll = Poll::new().expect("poll");
        let hub = PushHub::default();
        hub.set_loops(vec![Arc::new(
            Waker::new(poll.registry(), Token(1)).expect("waker"),
        )]);
        for lsn in 1..=INBOX_PUSHES_MAX as u64 + 2 {
            hub.deliver(target(0), lsn, a_push(), None);
        }
        let taken = hub.take(0);
        assert_eq!(taken.len(), INBOX_PUSHES_MAX);
        assert_eq!(
            taken.front().map(|delivery| delivery.lsn),
            Some(3),
            "the two oldest dropped"
        );
        assert_eq!(
            taken.back().map(|delivery| delivery.lsn),
            Some(INBOX_PUSHES_MAX as u64 + 2)
        );
    }
}
