//! The storage of a shard's holds: a ring in sequence order over one allocation, whose pages
//! can be written ahead of use.
//!
//! Every purchase pushes a hold, so a fresh shard's ring is forever reaching memory it never
//! wrote: one page fault per 46 holds. On this VM a first touch costs 5-11 us (the host backs
//! the page then; freed guest pages are handed back to it), and in [1] those faults were 16% of
//! authd's CPU, all in the event loops. [`HoldRing::warm`] writes the pages ahead of the ring's
//! tail from another thread (the ticker, under the shard's lock), so the loops find them ready.
//!
//! Slots `0..slots.len()` have been written; the ring uses positions `0..capacity` of the
//! allocation, the oldest hold at `head`. The tail only moves forward, so it is at
//! `slots.len()` until it first wraps, and below it after: a push either overwrites a slot or
//! appends the next one, never leaving a gap. Pages past `slots.len()` are warmed through
//! `Vec::spare_capacity_mut`, which the ring never reads.

use super::hold::Hold;

/// Bytes of the page a first write faults in.
const PAGE_BYTES: usize = 4096;

/// Holds whose slots start within one page at most: writing one hold in every this many slots
/// touches every page.
const HOLDS_PER_PAGE: usize = PAGE_BYTES / std::mem::size_of::<Hold>();

/// Holds in sequence order.
#[derive(Debug, Default)]
pub struct HoldRing {
    slots: Vec<Hold>,
    /// Positions the ring wraps at; never above `slots.capacity()`.
    capacity: usize,
    /// Position of the oldest hold.
    head: usize,
    len: usize,
    /// Slots from the allocation's start whose pages were written (by holds or by `warm`);
    /// never below `slots.len()`.
    warmed: usize,
}

impl HoldRing {
    /// The ring of `holds`, oldest first, in their own allocation (without copying them).
    pub fn from_vec(holds: Vec<Hold>) -> HoldRing {
        HoldRing {
            capacity: holds.capacity(),
            head: 0,
            len: holds.len(),
            warmed: holds.len(),
            slots: holds,
        }
    }

    /// Holds kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no hold is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Holds the ring keeps without moving.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots whose pages neither a hold nor [`HoldRing::warm`] has written yet.
    pub fn unwarmed(&self) -> usize {
        self.capacity - self.warmed
    }

    /// Where the `index`th oldest hold is. `index` is at most `capacity` (callers check it
    /// against `len` first) and `head` below it, so one subtraction wraps their sum.
    fn position(&self, index: usize) -> usize {
        let position = self.head + index;
        if position >= self.capacity {
            position - self.capacity
        } else {
            position
        }
    }

    /// The `index`th oldest hold.
    pub fn get(&self, index: usize) -> Option<&Hold> {
        (index < self.len).then(|| &self.slots[self.position(index)])
    }

    /// The `index`th oldest hold, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Hold> {
        if index >= self.len {
            return None;
        }
        let position = self.position(index);
        Some(&mut self.slots[position])
    }

    /// The oldest hold.
    pub fn front(&self) -> Option<&Hold> {
        self.get(0)
    }

    /// Start loading the slots the next two pushes write (this payment's and the next one's):
    /// a slot `warm` wrote ahead is out of the cache by the time a push reaches it.
    pub fn prefetch_tail(&self) {
        if self.capacity == 0 {
            return;
        }
        let base = self.slots.as_ptr().addr();
        for ahead in 0..2 {
            // The tail, or past it: at most one lap beyond the head.
            let index = self.len + ahead;
            let slot = self.position(if index >= self.capacity {
                index - self.capacity
            } else {
                index
            });
            let bytes = std::mem::size_of::<Hold>();
            super::prefetch::prefetch_bytes(base.wrapping_add(slot * bytes), bytes);
        }
    }

    /// Append the newest hold; moves the ring (doubling it) only when it is full.
    pub fn push_back(&mut self, hold: Hold) {
        if self.len == self.capacity {
            // Never in a shard, whose ring is reserved whole and pruned before a push; tables
            // built without a reservation (tests, tools) grow as a Vec does.
            let doubled = self.capacity.saturating_mul(2).max(4);
            if let Err(error) = self.relayout(doubled) {
                panic!("cannot grow a hold ring to {doubled} holds: {error}");
            }
        }
        let tail = self.position(self.len);
        if tail < self.slots.len() {
            self.slots[tail] = hold;
        } else {
            debug_assert_eq!(tail, self.slots.len(), "the tail never skips a slot");
            self.slots.push(hold);
            self.warmed = self.warmed.max(self.slots.len());
        }
        self.len += 1;
    }

    /// Remove the oldest hold.
    pub fn pop_front(&mut self) -> Option<Hold> {
        let hold = *self.front()?;
        self.head = self.position(1);
        self.len -= 1;
        Some(hold)
    }

    /// Make room for `holds` in all, so that pushing up to that many never moves the ring.
    pub fn reserve(&mut self, holds: usize) -> Result<(), std::collections::TryReserveError> {
        if holds <= self.capacity {
            return Ok(());
        }
        self.relayout(holds)
    }

    /// Move the holds, oldest first, into an allocation of `capacity` slots.
    fn relayout(&mut self, capacity: usize) -> Result<(), std::collections::TryReserveError> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity)?;
        let (front, back) = self.as_slices();
        slots.extend_from_slice(front);
        slots.extend_from_slice(back);
        self.warmed = slots.len();
        self.slots = slots;
        self.capacity = capacity;
        self.head = 0;
        Ok(())
    }

    /// The holds, oldest first, as two runs of the allocation.
    pub fn as_slices(&self) -> (&[Hold], &[Hold]) {
        let end = self.head + self.len;
        if end <= self.capacity {
            (&self.slots[self.head..end], &[])
        } else {
            (&self.slots[self.head..], &self.slots[..end - self.capacity])
        }
    }

    /// The holds, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Hold> {
        let (front, back) = self.as_slices();
        front.iter().chain(back)
    }

    /// Write the pages of up to `holds_ahead` slots past the last ever written (within the
    /// capacity), touching at most `pages_max` pages; returns the pages touched. The slots
    /// stay unused: a push writes its hold over them.
    pub fn warm(&mut self, holds_ahead: usize, pages_max: usize) -> usize {
        let written = self.slots.len();
        let target = written.saturating_add(holds_ahead).min(self.capacity);
        let from = self.warmed;
        if from >= target {
            return 0;
        }
        let until = target.min(from.saturating_add(pages_max.saturating_mul(HOLDS_PER_PAGE)));
        let spare = self.slots.spare_capacity_mut();
        let mut pages = 0;
        for slot in (from..until).step_by(HOLDS_PER_PAGE) {
            spare[slot - written].write(Hold::UNUSED);
            pages += 1;
        }
        self.warmed = until;
        pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::books::hold::HoldState;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn hold(n: u64) -> Hold {
        Hold {
            payer_slot: n as u32,
            state: HoldState::Captured,
            authorized: n,
            ..Hold::UNUSED
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Push,
        Pop,
        Reserve(usize),
        Warm(usize, usize),
        Change(usize),
        /// Start over from the model's holds in a Vec with this much room to spare.
        FromVec(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => Just(Step::Push),
            3 => Just(Step::Pop),
            1 => (0usize..64).prop_map(Step::Reserve),
            1 => (0usize..200, 0usize..4).prop_map(|(ahead, pages)| Step::Warm(ahead, pages)),
            1 => (0usize..64).prop_map(Step::Change),
            1 => (0usize..3).prop_map(Step::FromVec),
        ]
    }

    proptest! {
        /// The ring holds what a `VecDeque` given the same steps holds, in the same order,
        /// whatever reservations, warming and wrapping happened between.
        #[test]
        fn the_ring_keeps_what_a_deque_keeps(steps in proptest::collection::vec(step(), 0..300)) {
            let mut ring = HoldRing::default();
            let mut model = VecDeque::new();
            let mut next = 1;
            for step in steps {
                match step {
                    Step::Push => {
                        ring.push_back(hold(next));
                        model.push_back(hold(next));
                        next += 1;
                    }
                    Step::Pop => prop_assert_eq!(ring.pop_front(), model.pop_front()),
                    Step::Reserve(holds) => {
                        ring.reserve(holds).expect("small");
                        prop_assert!(ring.capacity() >= holds);
                    }
                    Step::Warm(ahead, pages) => {
                        let touched = ring.warm(ahead, pages);
                        prop_assert!(touched <= pages);
                    }
                    Step::FromVec(spare) => {
                        let mut holds = Vec::with_capacity(model.len() + spare);
                        holds.extend(model.iter().copied());
                        ring = HoldRing::from_vec(holds);
                    }
                    Step::Change(index) => {
                        if let (Some(kept), Some(expected)) = (ring.get_mut(index), model.get_mut(index)) {
                            kept.refunded += 7;
                            expected.refunded += 7;
                        }
                    }
                }
                ring.prefetch_tail();
                prop_assert_eq!(ring.len(), model.len());
                prop_assert!(ring.len() <= ring.capacity());
                prop_assert!(ring.slots.len() <= ring.capacity && ring.capacity <= ring.slots.capacity());
                prop_assert!(ring.head < ring.capacity.max(1));
                prop_assert!(ring.slots.len() <= ring.warmed && ring.warmed <= ring.capacity);
                prop_assert!(ring.iter().eq(model.iter()));
                let (front, back) = ring.as_slices();
                prop_assert!(front.iter().chain(back).eq(model.iter()));
                for index in (0..=model.len()).chain([usize::MAX / 2, usize::MAX]) {
                    prop_assert_eq!(ring.get(index), model.get(index));
                }
                // Indexes come from hold ids a client sent: any of them is only a miss.
                prop_assert!(ring.get_mut(usize::MAX).is_none());
                prop_assert!(ring.get_mut(model.len()).is_none());
                prop_assert_eq!(ring.front(), model.front());
            }
        }
    }

    #[test]
    fn a_reserved_ring_never_moves_and_warming_stays_within_it() {
        let mut ring = HoldRing::default();
        ring.reserve(1_000).expect("reserve");
        ring.push_back(hold(0));
        let start = ring.as_slices().0.as_ptr();
        // Up to 200 slots ahead of the one written, at most 2 pages (46 slots each) at a time.
        assert_eq!(ring.warm(200, 2), 2);
        assert_eq!(ring.warmed, 1 + 2 * HOLDS_PER_PAGE);
        assert_eq!(
            ring.warm(200, 100),
            3,
            "the rest of the 200, from where it stopped"
        );
        assert_eq!(ring.warmed, 201);
        assert_eq!(ring.warm(200, 100), 0, "nothing new ahead");
        for n in 1..1_000 {
            ring.push_back(hold(n));
        }
        assert_eq!(ring.warm(200, 100), 0, "nothing past the capacity");
        assert_eq!(ring.as_slices().0.as_ptr(), start, "the ring moved");
        assert_eq!(ring.capacity(), 1_000);
        // Full: the oldest goes, the newest takes its slot.
        assert_eq!(ring.pop_front(), Some(hold(0)));
        ring.push_back(hold(1_000));
        assert_eq!(ring.as_slices(), (&ring.slots[1..], &ring.slots[..1]));
        assert_eq!(ring.get(999), Some(&hold(1_000)));
        assert!(HoldRing::default().reserve(usize::MAX).is_err());
    }
}
