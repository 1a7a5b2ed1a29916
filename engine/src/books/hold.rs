//! Holds (reservations) of one shard, and the timer that expires them.
//!
//! Holds are numbered by a per-shard sequence and kept in a ring in sequence order, so a hold
//! is found by subtraction, not hashing. Finished holds stay (a refund needs what was captured)
//! until they are older than the retention and at the front of the ring; purchases are holds
//! born captured.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::hold_ring::HoldRing;

/// Where a hold is in its life.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Funds are reserved; it may be incremented, captured or voided.
    Active = 0,
    /// Captured (fully, or finally with the rest released); refunds may follow.
    Captured = 1,
    /// Released by the terminal or a reversal.
    Voided = 2,
    /// Released because its lifetime ended.
    Expired = 3,
}

impl HoldState {
    /// The state for a stored byte.
    pub fn from_u8(value: u8) -> Option<HoldState> {
        match value {
            0 => Some(HoldState::Active),
            1 => Some(HoldState::Captured),
            2 => Some(HoldState::Voided),
            3 => Some(HoldState::Expired),
            _ => None,
        }
    }
}

/// `Hold::offer` of an offer.
pub const OFFER: u8 = 1;
/// `Hold::offer` of an offer the payer rejected.
pub const OFFER_REJECTED: u8 = 2;
/// `Hold::offer` of an offer the merchant cancelled.
pub const OFFER_CANCELLED: u8 = 3;

/// One reservation (or a purchase, born captured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The payer's slot in this shard.
    pub payer_slot: u32,
    /// The merchant it was placed for.
    pub merchant: u32,
    /// The terminal that placed it.
    pub terminal: u32,
    /// Life state.
    pub state: HoldState,
    /// 0 for a plain hold; for an offer `OFFER`, or how it was voided (`OFFER_REJECTED`,
    /// `OFFER_CANCELLED`).
    pub offer: u8,
    /// Loyalty points granted by its captures (a reversal of a purchase takes them back).
    pub loyalty_points: u32,
    /// Still reserved (counted in the payer's `held`) while active.
    pub held: u64,
    /// Total authorized: the first amount plus increments.
    pub authorized: u64,
    /// Total captured so far.
    pub captured: u64,
    /// Total refunded so far; never above `captured`.
    pub refunded: u64,
    /// Total fee booked on captures (a reversal of a purchase gives it back).
    pub fee: u64,
    /// When it was placed.
    pub created_us: u64,
    /// It may not be captured at or after this instant.
    pub expires_us: u64,
    /// When it stopped being active (0 while active).
    pub finished_us: u64,
}

impl Hold {
    /// What fills a slot of the ring that no hold has used yet (see `HoldRing::warm`).
    pub const UNUSED: Hold = Hold {
        payer_slot: 0,
        merchant: 0,
        terminal: 0,
        state: HoldState::Voided,
        offer: 0,
        loyalty_points: 0,
        held: 0,
        authorized: 0,
        captured: 0,
        refunded: 0,
        fee: 0,
        created_us: 0,
        expires_us: 0,
        finished_us: 0,
    };
}

/// The holds of one shard, in sequence order.
#[derive(Debug, Default)]
pub struct HoldTable {
    /// Sequence number of `ring[0]`.
    first_sequence: u64,
    ring: HoldRing,
    /// (expires_us, sequence) of holds that were active when pushed; stale entries are skipped.
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
}

impl HoldTable {
    /// An empty table whose first hold gets sequence 1.
    pub fn new() -> HoldTable {
        HoldTable {
            first_sequence: 1,
            ring: HoldRing::default(),
            expiry: BinaryHeap::new(),
        }
    }

    /// A table restored from a snapshot: `holds` start at `first_sequence`.
    pub fn restore(first_sequence: u64, holds: Vec<Hold>) -> HoldTable {
        let mut table = HoldTable {
            first_sequence,
            ring: HoldRing::from_vec(holds),
            expiry: BinaryHeap::new(),
        };
        for (offset, hold) in table.ring.iter().enumerate() {
            if hold.state == HoldState::Active {
                table
                    .expiry
                    .push(Reverse((hold.expires_us, first_sequence + offset as u64)));
            }
        }
        table
    }

    /// Number of holds kept (live and retained).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Reserve room for `holds` in all, so that pushing up to that many never moves the ring.
    /// A growing ring doubles by copying: on the way to 262,144 holds the last doubling copies
    /// 11.5 MB into 23 MB of fresh pages, while the shard's lock is held (a stall of milliseconds
    /// for every request behind it). Reserved memory is only address space until a hold, or
    /// [`HoldTable::warm`] ahead of the holds, writes it.
    pub fn reserve(&mut self, holds: usize) -> Result<(), std::collections::TryReserveError> {
        self.ring.reserve(holds)
    }

    /// Write the pages of up to `holds_ahead` unused slots past the newest hold, at most
    /// `pages_max` of them; returns the pages written (see `HoldRing::warm`).
    pub fn warm(&mut self, holds_ahead: usize, pages_max: usize) -> usize {
        self.ring.warm(holds_ahead, pages_max)
    }

    /// Holds the ring can keep without moving.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Slots whose pages are not written yet (see `HoldRing::unwarmed`).
    pub fn unwarmed(&self) -> usize {
        self.ring.unwarmed()
    }

    /// True when no hold is kept.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Sequence number of the oldest hold kept.
    pub fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// The sequence the next hold will get.
    pub fn next_sequence(&self) -> u64 {
        self.first_sequence + self.ring.len() as u64
    }

    /// Append a hold; returns its sequence.
    pub fn push(&mut self, hold: Hold) -> u64 {
        let sequence = self.next_sequence();
        if hold.state == HoldState::Active {
            self.expiry.push(Reverse((hold.expires_us, sequence)));
        }
        self.ring.push_back(hold);
        sequence
    }

    /// The hold with this sequence, if still kept.
    pub fn get(&self, sequence: u64) -> Option<&Hold> {
        let offset = sequence.checked_sub(self.first_sequence)?;
        self.ring.get(usize::try_from(offset).ok()?)
    }

    /// The hold with this sequence, mutably.
    pub fn get_mut(&mut self, sequence: u64) -> Option<&mut Hold> {
        let offset = sequence.checked_sub(self.first_sequence)?;
        self.ring.get_mut(usize::try_from(offset).ok()?)
    }

    /// Sequences of active holds whose expiry is at or before `now_us`, soonest first.
    /// Each is removed from the timer; the caller expires it.
    pub fn pop_due(&mut self, now_us: u64) -> Option<u64> {
        while let Some(Reverse((expires_us, sequence))) = self.expiry.peek().copied() {
            if expires_us > now_us {
                return None;
            }
            self.expiry.pop();
            let still_due = self
                .get(sequence)
                .is_some_and(|hold| hold.state == HoldState::Active && hold.expires_us == expires_us);
            if still_due {
                return Some(sequence);
            }
        }
        None
    }

    /// True if a timer entry is due at `now_us` (it may turn out stale).
    pub fn has_due(&self, now_us: u64) -> bool {
        self.expiry
            .peek()
            .is_some_and(|Reverse((expires_us, _))| *expires_us <= now_us)
    }

    /// Start loading the front hold, which making room for a new one reads, and prefetch the
    /// one after it, which the next payment's room-making reads, and the slots new holds go
    /// to. See `Shard::warm_up`.
    pub fn warm_up(&self) {
        self.ring.prefetch_tail();
        if let Some(front) = self.ring.front() {
            std::hint::black_box(front.state);
        }
        if let Some(next) = self.ring.get(1) {
            crate::books::prefetch::prefetch_value(next);
        }
    }

    /// True if the front hold could be pruned at `cutoff_us`.
    pub fn can_prune(&self, cutoff_us: u64) -> bool {
        self.ring
            .front()
            .is_some_and(|hold| hold.state != HoldState::Active && hold.finished_us <= cutoff_us)
    }

    /// Drop up to `count_max` finished holds from the front that finished at or before
    /// `cutoff_us`; returns how many were dropped.
    pub fn prune(&mut self, cutoff_us: u64, count_max: usize) -> usize {
        let mut pruned = 0;
        while let Some(front) = self.ring.front() {
            if pruned == count_max {
                break;
            }
            if front.state == HoldState::Active || front.finished_us > cutoff_us {
                break;
            }
            self.ring.pop_front();
            self.first_sequence += 1;
            pruned += 1;
        }
        pruned
    }

    /// Replace `out` with every hold kept, in sequence order (memory copies: a snapshot
    /// takes a full shard's holds this way while it holds the shard's lock).
    pub fn copy_into(&self, out: &mut Vec<Hold>) {
        let (front, back) = self.ring.as_slices();
        out.clear();
        out.extend_from_slice(front);
        out.extend_from_slice(back);
    }

    /// All kept holds with their sequence, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Hold)> {
        self.ring
            .iter()
            .enumerate()
            .map(move |(offset, hold)| (self.first_sequence + offset as u64, hold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(expires_us: u64) -> Hold {
        Hold {
            payer_slot: 0,
            merchant: 1,
            terminal: 1,
            state: HoldState::Active,
            offer: 0,
            loyalty_points: 0,
            held: 10,
            authorized: 10,
            captured: 0,
            refunded: 0,
            fee: 0,
            created_us: 0,
            expires_us,
            finished_us: 0,
        }
    }

    #[test]
    fn due_holds_come_out_soonest_first_and_stale_entries_are_skipped() {
        let mut table = HoldTable::new();
        let late = table.push(active(300));
        let early = table.push(active(100));
        let voided = table.push(active(200));
        if let Some(hold) = table.get_mut(voided) {
            hold.state = HoldState::Voided;
        }
        assert_eq!(table.pop_due(99), None);
        assert_eq!(table.pop_due(100), Some(early));
        assert_eq!(table.pop_due(250), None, "the voided hold's entry is stale");
        assert_eq!(table.pop_due(300), Some(late));
        assert_eq!(table.pop_due(u64::MAX), None);
    }

    #[test]
    fn a_reserved_ring_never_moves_until_it_is_full() {
        let mut table = HoldTable::new();
        table.reserve(1_000).expect("reserve");
        let capacity = table.capacity();
        assert!(capacity >= 1_000, "{capacity}");
        table.push(active(1));
        let first = table.ring.as_slices().0.as_ptr();
        for expires_us in 2..=1_000 {
            table.push(active(expires_us));
        }
        assert_eq!(table.ring.as_slices().0.as_ptr(), first, "the ring moved");
        assert_eq!(table.capacity(), capacity);
        // Reserving what is already there changes nothing; refusing is an error, not an abort.
        table.reserve(10).expect("no-op");
        assert_eq!(table.capacity(), capacity);
        assert!(HoldTable::new().reserve(usize::MAX).is_err());
    }

    #[test]
    fn prune_stops_at_the_first_active_or_recent_hold() {
        let mut table = HoldTable::new();
        for finished_us in [10, 20, 0, 5] {
            let sequence = table.push(active(1_000));
            if finished_us > 0 {
                let hold = table.get_mut(sequence).expect("just pushed");
                hold.state = HoldState::Captured;
                hold.finished_us = finished_us;
            }
        }
        assert_eq!(table.prune(15, usize::MAX), 1);
        assert_eq!(table.first_sequence(), 2);
        assert!(table.get(1).is_none());
        assert_eq!(
            table.prune(100, usize::MAX),
            1,
            "the active third hold blocks the fourth"
        );
        assert_eq!(table.get(3).map(|hold| hold.state), Some(HoldState::Active));
        assert_eq!(table.next_sequence(), 5);
    }
}
