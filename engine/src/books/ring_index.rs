//! A hash index of ring positions: which slot of the idempotency window's ring holds a key.
//!
//! Open addressing with linear probing over a fixed table of 8-byte slots, each holding the
//! upper half of the key's hash beside the ring position it points to. The table is sized
//! once to at least twice the ring, so it stays at most half full and never grows, and the
//! slot a key hashes to is computed without reading anything: the window uses that to start
//! loading it before it is needed (`home_slot`). A probe reads one cache line (eight slots)
//! almost always, including the probe that finds a position to delete.
//!
//! Why not `hashbrown::HashTable<u32>` (used before): it keeps its control bytes and its
//! positions in different cache lines, so finding the position of the entry being evicted cost
//! two cache misses one after the other, and the second line could not be requested early.
//! Deletion here shifts later entries back (no tombstones), so the table never needs a rehash.

use crate::books::prefetch;

/// The address of a `RingIndex`'s home slot for a hash, for prefetching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLocator {
    base: usize,
    mask: usize,
}

impl SlotLocator {
    /// The address of the first slot a probe for `hash` reads.
    pub(crate) fn home_slot_address(&self, hash: u64) -> usize {
        let home = RingIndex::tag(hash) as usize & self.mask;
        self.base.wrapping_add(home * std::mem::size_of::<u64>())
    }
}

/// An empty slot. A used slot always has a nonzero low half (position + 1).
const EMPTY: u64 = 0;

/// The index.
#[derive(Debug)]
pub(crate) struct RingIndex {
    slots: Box<[u64]>,
    mask: usize,
}

impl RingIndex {
    /// An index for a ring of `capacity` positions.
    pub(crate) fn new(capacity: usize) -> RingIndex {
        let size = (capacity.max(4) * 2).next_power_of_two();
        // Every page is written now, not on first use: keys hash to random slots, so a few
        // hundred requests touch every page of a shard's index anyway, and in a fresh authd
        // those page faults (64 shards x 128 pages) stalled the first second of load: p99
        // 108 ms, against 3.8 ms for the same load on an authd that had served before.
        // `black_box` keeps the allocation and the fill apart, so they cannot become a lazily
        // zeroed `calloc`.
        let mut slots: Vec<u64> = std::hint::black_box(Vec::with_capacity(size));
        slots.resize(size, EMPTY);
        RingIndex {
            slots: slots.into_boxed_slice(),
            mask: size - 1,
        }
    }

    /// The upper half of a hash, kept in the slot; its low bits choose the home slot. The
    /// lower half of a hash is never read, so callers may pass just the upper half.
    fn tag(hash: u64) -> u64 {
        hash >> 32
    }

    fn home(&self, tag: u64) -> usize {
        tag as usize & self.mask
    }

    fn tag_of(slot: u64) -> u64 {
        slot >> 32
    }

    fn position_of(slot: u64) -> u32 {
        (slot as u32).wrapping_sub(1)
    }

    /// The first slot a probe for `hash` reads (to start loading it early).
    pub(crate) fn home_slot(&self, hash: u64) -> &u64 {
        &self.slots[self.home(Self::tag(hash))]
    }

    /// Where the table is, to compute home slot addresses without holding the index
    /// (`SlotLocator`). The table never moves.
    pub(crate) fn locator(&self) -> SlotLocator {
        SlotLocator {
            base: prefetch::address_of(&self.slots[0]),
            mask: self.mask,
        }
    }

    /// The position of the first entry with this hash for which `is_key` holds.
    pub(crate) fn find(&self, hash: u64, is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        self.probe(hash, is_key)
            .map(|at| Self::position_of(self.slots[at]))
    }

    /// The slot of the first entry with this hash whose position satisfies `is_key`.
    fn probe(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<usize> {
        let tag = Self::tag(hash);
        let mut at = self.home(tag);
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                return None;
            }
            if Self::tag_of(slot) == tag && is_key(Self::position_of(slot)) {
                return Some(at);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Index `position` under `hash`. The caller keeps at most half the table in use (it
    /// never indexes more positions than the capacity it was built for).
    pub(crate) fn insert(&mut self, hash: u64, position: u32) {
        let tag = Self::tag(hash);
        let mut at = self.home(tag);
        while self.slots[at] != EMPTY {
            at = (at + 1) & self.mask;
        }
        self.slots[at] = (tag << 32) | u64::from(position.wrapping_add(1));
    }

    /// Forget `position`, indexed under `hash`; returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, position: u32) -> bool {
        let Some(at) = self.probe(hash, |candidate| candidate == position) else {
            return false;
        };
        // Shift back every later entry of the run whose probe passes over the hole, so a
        // probe never stops early at it.
        let mut hole = at;
        let mut next = at;
        loop {
            next = (next + 1) & self.mask;
            let slot = self.slots[next];
            if slot == EMPTY {
                break;
            }
            let home = self.home(Self::tag_of(slot));
            let distance_to_next = next.wrapping_sub(home) & self.mask;
            let distance_to_hole = hole.wrapping_sub(home) & self.mask;
            if distance_to_hole <= distance_to_next {
                self.slots[hole] = slot;
                hole = next;
            }
        }
        self.slots[hole] = EMPTY;
        true
    }

    /// Slots in use.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.slots.iter().filter(|&&slot| slot != EMPTY).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Hashes chosen to collide: few distinct home slots, few distinct tags.
    fn crowded_hash(key: u32) -> u64 {
        (u64::from(key % 5) << 32) | u64::from(key)
    }

    #[test]
    fn finds_what_was_inserted_and_forgets_what_was_removed() {
        let mut index = RingIndex::new(16);
        for position in 0..16u32 {
            index.insert(crowded_hash(position), position);
        }
        for position in 0..16u32 {
            assert_eq!(
                index.find(crowded_hash(position), |p| p == position),
                Some(position)
            );
        }
        assert!(index.remove(crowded_hash(3), 3));
        assert!(!index.remove(crowded_hash(3), 3), "removed twice");
        assert_eq!(index.find(crowded_hash(3), |p| p == 3), None);
        for position in (0..16u32).filter(|&p| p != 3) {
            assert_eq!(
                index.find(crowded_hash(position), |p| p == position),
                Some(position)
            );
        }
        assert_eq!(index.used(), 15);
    }

    #[test]
    fn a_run_that_wraps_the_end_of_the_table_is_kept_whole() {
        let mut index = RingIndex::new(4);
        let size = index.mask as u64 + 1;
        // Every key's home is the last slot, so the run wraps to the start.
        let hash = |key: u32| ((size - 1) << 32) | u64::from(key);
        for position in 0..4u32 {
            index.insert(hash(position), position);
        }
        assert!(index.remove(hash(0), 0));
        for position in 1..4u32 {
            assert_eq!(index.find(hash(position), |p| p == position), Some(position));
        }
        assert!(index.remove(hash(2), 2));
        assert_eq!(index.find(hash(3), |p| p == 3), Some(3));
        assert_eq!(index.find(hash(1), |p| p == 1), Some(1));
    }

    proptest! {
        /// Random inserts and removes over crowded hashes agree with a map, as the window uses
        /// the index: at most `capacity` positions at once.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..64), 1..400)) {
            let capacity = 24usize;
            let mut index = RingIndex::new(capacity);
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (insert, key) in ops {
                let hash = crowded_hash(key);
                if insert && !model.contains_key(&key) && model.len() < capacity {
                    index.insert(hash, key);
                    model.insert(key, hash);
                } else if !insert {
                    prop_assert_eq!(index.remove(hash, key), model.remove(&key).is_some());
                }
                for (&present, &present_hash) in &model {
                    prop_assert_eq!(index.find(present_hash, |p| p == present), Some(present));
                }
                prop_assert_eq!(index.used(), model.len());
            }
        }
    }
}
