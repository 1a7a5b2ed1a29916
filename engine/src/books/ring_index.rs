//! A hash index of ring positions: which slot of the idempotency window's ring holds a key.
//!
//! The table is a fixed array of buckets, one cache line each: seven slots of 8 bytes and an
//! overflow word. A slot holds 15 bits of the key's hash beside the *sequence number* of the
//! insert that wrote it (the window's n-th insert has number n, and ring position
//! (n - 1) % capacity). An entry is alive while its number is among the last `capacity`
//! inserts: it expires by arithmetic when the ring overwrites its position, so evicting the
//! oldest entry reads and writes nothing here, and a later insert reuses its slot. A purchase
//! thus reads one random line of the index, where deleting the evicted key made it two.
//!
//! An insert takes the first dead or empty slot from the key's home bucket on; passing a full
//! bucket, it writes its own number into that bucket's overflow word. A lookup goes on past a
//! bucket only while the number there is alive: an entry that overflowed is no younger than
//! the bucket's overflow number (numbers only grow), so while it is alive the number is too,
//! and no lookup stops short of it. The table is sized for at most two live entries a bucket on
//! average, so an overflow is rare and a probe reads one line almost always.
//!
//! A slot keeps the low 48 bits of the sequence number; a live entry's full number is the
//! latest insert's less its age (under the capacity), so positions stay exact past 2^48 inserts.

use crate::books::prefetch;

/// The address of a `RingIndex`'s home bucket for a hash, for prefetching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLocator {
    base: usize,
    mask: usize,
}

impl SlotLocator {
    /// The address of the bucket a probe for `hash` reads first.
    pub(crate) fn home_slot_address(&self, hash: u64) -> usize {
        self.base
            .wrapping_add(RingIndex::home_of(hash, self.mask) * std::mem::size_of::<Bucket>())
    }
}

/// Slots a bucket holds.
const SLOTS: usize = 7;
/// An empty slot; a used one has `USED` set.
const EMPTY: u64 = 0;
const USED: u64 = 1 << 63;
const SEQUENCE_BITS: u32 = 48;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const TAG_MASK: u64 = (1 << 15) - 1;

/// One cache line of the table.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Bucket {
    slots: [u64; SLOTS],
    /// The (full) number of the latest insert that found this bucket full and went on (0:
    /// none; numbers start at 1).
    overflow: u64,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

impl Bucket {
    /// The bucket's first word, to load its line (`std::hint::black_box`).
    pub(crate) fn first_slot(&self) -> u64 {
        self.slots[0]
    }
}

/// The index.
#[derive(Debug)]
pub(crate) struct RingIndex {
    buckets: Box<[Bucket]>,
    mask: usize,
    capacity: u64,
    /// Inserts so far: the number of the latest.
    inserted: u64,
}

impl RingIndex {
    /// An index for a ring of `capacity` positions (at least 1).
    pub(crate) fn new(capacity: usize) -> RingIndex {
        let capacity = capacity.max(1);
        // At most two live entries a bucket on average (of seven slots).
        let count = capacity.div_ceil(2).max(2).next_power_of_two();
        // Every page is written now, not on first use: keys hash to random buckets, so a few
        // hundred requests touch every page of a shard's index anyway, and in a fresh authd
        // those page faults (64 shards x 128 pages) stalled the first second of load: p99
        // 108 ms, against 3.8 ms for the same load on an authd that had served before.
        // `black_box` keeps the allocation and the fill apart, so they cannot become a lazily
        // zeroed `calloc`.
        let empty = Bucket {
            slots: [EMPTY; SLOTS],
            overflow: 0,
        };
        let mut buckets: Vec<Bucket> = std::hint::black_box(Vec::with_capacity(count));
        buckets.resize(count, empty);
        RingIndex {
            buckets: buckets.into_boxed_slice(),
            mask: count - 1,
            capacity: capacity as u64,
            inserted: 0,
        }
    }

    /// The bucket a probe for `hash` starts at: from the hash's upper half.
    fn home_of(hash: u64, mask: usize) -> usize {
        (hash >> 32) as usize & mask
    }

    /// The 15 bits of a hash a slot keeps (from its lower half, apart from the home's bits).
    fn tag(hash: u64) -> u64 {
        hash & TAG_MASK
    }

    fn tag_of(slot: u64) -> u64 {
        (slot >> SEQUENCE_BITS) & TAG_MASK
    }

    /// How many inserts ago a used slot was written.
    fn age(&self, slot: u64) -> u64 {
        self.inserted.wrapping_sub(slot) & SEQUENCE_MASK
    }

    /// Whether a slot holds an entry among the last `capacity` inserts.
    fn slot_alive(&self, slot: u64) -> bool {
        slot & USED != 0 && self.age(slot) < self.capacity
    }

    /// Whether the insert numbered `sequence` (a full number; 0 for none) is among the last
    /// `capacity`.
    fn alive(&self, sequence: u64) -> bool {
        sequence != 0 && self.inserted - sequence < self.capacity
    }

    /// The ring position the insert numbered `sequence` (a full number) wrote.
    fn position_of(&self, sequence: u64) -> u32 {
        ((sequence - 1) % self.capacity) as u32
    }

    /// The bucket a probe for `hash` reads first (to start loading it early).
    pub(crate) fn home_slot(&self, hash: u64) -> &Bucket {
        &self.buckets[Self::home_of(hash, self.mask)]
    }

    /// Where the table is, to compute home bucket addresses without holding the index
    /// (`SlotLocator`). The table never moves.
    pub(crate) fn locator(&self) -> SlotLocator {
        SlotLocator {
            base: prefetch::address_of(&self.buckets[0]),
            mask: self.mask,
        }
    }

    /// The position of the first live entry with this hash for which `is_key` holds.
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut at = Self::home_of(hash, self.mask);
        loop {
            let bucket = &self.buckets[at];
            for &slot in &bucket.slots {
                if Self::tag_of(slot) == tag && self.slot_alive(slot) {
                    let position = self.position_of(self.inserted - self.age(slot));
                    if is_key(position) {
                        return Some(position);
                    }
                }
            }
            if !self.alive(bucket.overflow) {
                return None;
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Index the next insert under `hash`, and return the ring position it must write: the
    /// oldest entry's, whose index entry dies now (or the next free one while the ring fills).
    pub(crate) fn insert(&mut self, hash: u64) -> u32 {
        self.inserted += 1;
        let sequence = self.inserted;
        let value = USED | (Self::tag(hash) << SEQUENCE_BITS) | (sequence & SEQUENCE_MASK);
        let mut at = Self::home_of(hash, self.mask);
        // Live entries are at most `capacity`, under a third of the slots: a free one is near.
        loop {
            let free = self.buckets[at]
                .slots
                .iter()
                .position(|&slot| !self.slot_alive(slot));
            let bucket = &mut self.buckets[at];
            match free {
                Some(slot) => {
                    bucket.slots[slot] = value;
                    return self.position_of(sequence);
                }
                None => bucket.overflow = sequence,
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Live entries.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.slots)
            .filter(|&slot| self.slot_alive(slot))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, VecDeque};

    /// Hashes chosen to collide: `homes` distinct home buckets from bucket `first` on (the
    /// table's last bucket makes the runs wrap to the start), few distinct tags.
    fn crowded_hash(key: u32, homes: u32, first: u64) -> u64 {
        ((first + u64::from(key % homes)) << 32) | u64::from(key % 3)
    }

    /// The model: the live (key, position) pairs, oldest first, of a ring of `capacity`.
    struct Model {
        capacity: usize,
        live: VecDeque<(u32, u32)>,
        /// The ring: key by position.
        ring: HashMap<u32, u32>,
    }

    impl Model {
        /// Inserts `key` into index and model; checks the position the index gives.
        fn insert(&mut self, index: &mut RingIndex, hash: u64, key: u32) -> Result<(), TestCaseError> {
            let position = index.insert(hash);
            let expected = if self.live.len() == self.capacity {
                self.live.pop_front().map_or(0, |(_, oldest)| oldest)
            } else {
                self.live.len() as u32
            };
            prop_assert_eq!(position, expected, "the ring's next position, or its oldest");
            self.live.push_back((key, position));
            self.ring.insert(position, key);
            Ok(())
        }

        /// Looks `key` up as the window does (the ring's key at a position must match).
        fn check(&self, index: &RingIndex, hash: u64, key: u32) -> Result<(), TestCaseError> {
            let expected = self
                .live
                .iter()
                .find(|(live, _)| *live == key)
                .map(|(_, position)| *position);
            let found = index.find(hash, |position| self.ring.get(&position) == Some(&key));
            prop_assert_eq!(found, expected, "key {}", key);
            Ok(())
        }
    }

    #[test]
    fn finds_the_last_capacity_inserts_and_forgets_older_ones() {
        let mut index = RingIndex::new(16);
        let mut model = Model {
            capacity: 16,
            live: VecDeque::new(),
            ring: HashMap::new(),
        };
        for key in 0..40u32 {
            model
                .insert(&mut index, crowded_hash(key, 5, 0), key)
                .expect("insert");
        }
        for key in 0..40u32 {
            model.check(&index, crowded_hash(key, 5, 0), key).expect("lookup");
        }
        assert_eq!(index.used(), 16);
        // With hashes of their own, the index itself forgets: a lookup that would accept any
        // position finds a key exactly while it is among the last 16.
        let mut index = RingIndex::new(16);
        let own = |key: u32| (u64::from(key) << 32) | u64::from(key);
        for key in 0..40u32 {
            index.insert(own(key));
        }
        for key in 0..40u32 {
            assert_eq!(
                index.find(own(key), |_| true),
                (key >= 24).then_some(key % 16),
                "key {key}"
            );
        }
    }

    #[test]
    fn entries_that_overflowed_are_found_until_they_expire() {
        let mut index = RingIndex::new(64);
        // Every key's home is the last bucket: the run overflows it and wraps to the start.
        let last = index.mask as u64;
        let hash = |key: u32| (last << 32) | u64::from(key);
        for key in 0..20u32 {
            index.insert(hash(key));
        }
        assert!(
            index.buckets[index.mask].overflow != 0,
            "the home bucket overflowed"
        );
        for key in 0..20u32 {
            assert_eq!(index.find(hash(key), |position| position == key), Some(key));
        }
        // Once the overflowed entries are older than the window, lookups stop at home.
        for key in 20..84u32 {
            index.insert(crowded_hash(key, 7, 0));
        }
        for key in 0..20u32 {
            assert_eq!(index.find(hash(key), |_| true), None, "key {key} expired");
        }
        assert!(!index.alive(index.buckets[index.mask].overflow));
    }

    #[test]
    fn positions_stay_exact_past_the_slots_48_bits() {
        let mut index = RingIndex::new(5);
        // As if 2^48 - 3 inserts had happened: the next few cross the slots' wrap.
        index.inserted = (1 << SEQUENCE_BITS) - 3;
        let mut model = Model {
            capacity: 5,
            live: VecDeque::new(),
            ring: HashMap::new(),
        };
        // The model's positions start at the ring's: (inserted) % 5 next.
        let first = ((index.inserted) % 5) as u32;
        for key in 0..12u32 {
            let position = index.insert(crowded_hash(key, 2, 0));
            let expected = (first + key) % 5;
            assert_eq!(position, expected, "insert {key}");
            if model.live.len() == 5 {
                model.live.pop_front();
            }
            model.live.push_back((key, position));
            model.ring.insert(position, key);
            for probe in 0..=key {
                model
                    .check(&index, crowded_hash(probe, 2, 0), probe)
                    .expect("lookup");
            }
        }
    }

    proptest! {
        /// Inserts over crowded hashes, as the window makes them: a key is found exactly while
        /// it is among the last `capacity` inserts, at its ring position; a key never inserted,
        /// or expired, is not found. Runs may start at the table's last bucket and wrap.
        #[test]
        fn agrees_with_a_ring(
            capacity in 1usize..40,
            homes in 1u32..6,
            wrap in any::<bool>(),
            keys in proptest::collection::vec(0u32..1_000, 1..400),
        ) {
            let mut index = RingIndex::new(capacity);
            let first = if wrap { index.mask as u64 } else { 0 };
            let mut model = Model { capacity, live: VecDeque::new(), ring: HashMap::new() };
            for key in keys {
                // The window never indexes a key it still remembers.
                if model.live.iter().any(|(live, _)| *live == key) {
                    continue;
                }
                model.insert(&mut index, crowded_hash(key, homes, first), key)?;
                let probes: Vec<u32> =
                    (0..1_000u32).step_by(37).chain(model.live.iter().map(|(key, _)| *key)).collect();
                for probe in probes {
                    model.check(&index, crowded_hash(probe, homes, first), probe)?;
                }
                prop_assert_eq!(index.used(), model.live.len());
            }
        }
    }
}
