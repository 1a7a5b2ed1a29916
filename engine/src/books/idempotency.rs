//! The bounded window of recent terminal requests of one shard.
//!
//! A terminal that times out resends the same request id; the window answers it with the
//! original outcome instead of acting twice. A retry is recognised while its key is among the
//! last `capacity` keyed requests of its shard.
//!
//! The entries live in a ring in insertion order (fixed size, allocated as it fills, reused
//! oldest first) and a `RingIndex` maps a key's hash to its ring position. The index never
//! holds more than `capacity` positions, so it never grows after it is sized; the ring costs
//! 56 bytes an entry and the index 16 (a table of 8-byte slots at most half full). (A map
//! from key to entry holding up to twice the window, as before, grew to about 1 GB over 64
//! shards and spent a quarter of the server's CPU faulting in fresh pages while it grew.)

use std::hash::BuildHasher;

use crate::books::prefetch;
use crate::books::ring_index::{RingIndex, SlotLocator};
use crate::command::{Outcome, TerminalOp};
use crate::ids::RequestKey;
use crate::journal::codec;
use crate::reason::Reason;

/// What the window remembers of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The request's key.
    pub key: RequestKey,
    /// A fingerprint of the request's content; a retry must match it.
    pub fingerprint: u64,
    /// The operation kind (`TerminalOp::kind`), 0 for a reversal marker.
    pub kind: u8,
    /// The outcome it got.
    pub outcome: Outcome,
    /// When it was decided.
    pub at_us: u64,
    /// A reversal undid it (or, for a marker, arrived before it).
    pub reversed: bool,
}

impl Entry {
    /// True for the marker a reversal leaves when its original never arrived.
    pub fn is_marker(&self) -> bool {
        self.kind == 0
    }
}

/// An entry as the ring keeps it, flattened (56 bytes).
#[derive(Debug, Clone, Copy)]
struct Stored {
    key: RequestKey,
    fingerprint: u64,
    id: u64,
    amount: u64,
    at_us: u64,
    kind: u8,
    reason: Reason,
    reversed: bool,
    /// The upper half of the key's hash: all the index reads of a hash, kept so evicting
    /// the entry needs no second hashing.
    index_tag: u32,
}

impl Stored {
    fn new(entry: &Entry, hash: u64) -> Stored {
        Stored {
            index_tag: (hash >> 32) as u32,
            key: entry.key,
            fingerprint: entry.fingerprint,
            id: entry.outcome.id,
            amount: entry.outcome.amount,
            at_us: entry.at_us,
            kind: entry.kind,
            reason: entry.outcome.reason,
            reversed: entry.reversed,
        }
    }

    /// The key's hash as far as the index reads it (its upper half).
    fn index_hash(&self) -> u64 {
        u64::from(self.index_tag) << 32
    }

    fn entry(&self) -> Entry {
        Entry {
            key: self.key,
            fingerprint: self.fingerprint,
            kind: self.kind,
            outcome: Outcome {
                reason: self.reason,
                id: self.id,
                amount: self.amount,
            },
            at_us: self.at_us,
            reversed: self.reversed,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Stored>() <= 56);

/// The window of one shard.
#[derive(Debug)]
pub struct Window {
    capacity: usize,
    ring: Vec<Stored>,
    /// Position the next entry is written to once the ring is full (its oldest entry).
    head: usize,
    index: RingIndex,
    hasher: foldhash::fast::RandomState,
}

impl Window {
    /// An empty window of `capacity` entries (at least 1).
    pub fn new(capacity: u32) -> Window {
        let capacity = capacity.max(1) as usize;
        Window {
            capacity,
            // Room for the whole window now: growing by doubling copied the ring under the
            // shard lock, up to a few MiB at a time in the first seconds of load.
            ring: Vec::with_capacity(capacity),
            head: 0,
            index: RingIndex::new(capacity),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The hash `key` is indexed under. A request computes it once and passes it to
    /// `warm_up`, `get_hashed` and `insert_hashed`.
    pub(crate) fn hash(&self, key: &RequestKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn position(&self, key: &RequestKey, hash: u64) -> Option<usize> {
        let ring = &self.ring;
        self.index
            .find(hash, |position| ring[position as usize].key == *key)
            .map(|position| position as usize)
    }

    /// The entry for a key, if still in the window.
    pub fn get(&self, key: &RequestKey) -> Option<Entry> {
        self.get_hashed(key, self.hash(key))
    }

    /// `get` with the key's `hash` computed already.
    pub(crate) fn get_hashed(&self, key: &RequestKey, hash: u64) -> Option<Entry> {
        self.position(key, hash)
            .map(|position| self.ring[position].entry())
    }

    /// Change the remembered entry of a key (not its key); returns it as changed.
    pub fn update(&mut self, key: &RequestKey, change: impl FnOnce(&mut Entry)) -> Option<Entry> {
        self.update_hashed(key, self.hash(key), change)
    }

    /// `update` with the key's `hash` computed already.
    pub(crate) fn update_hashed(
        &mut self,
        key: &RequestKey,
        hash: u64,
        change: impl FnOnce(&mut Entry),
    ) -> Option<Entry> {
        let position = self.position(key, hash)?;
        let mut entry = self.ring[position].entry();
        change(&mut entry);
        entry.key = *key;
        self.ring[position] = Stored::new(&entry, hash);
        Some(entry)
    }

    /// Start loading what looking up the key hashed `key_hash` and inserting it will read: its
    /// index slot and the index slot of the key the insert evicts. Prefetch for this window's next
    /// inserts: the index slot of the key evicted after this one (its ring slot was prefetched
    /// by the previous call) and the ring slot after that. See `Shard::warm_up`.
    pub fn warm_up(&self, key_hash: u64) {
        std::hint::black_box(*self.index.home_slot(key_hash));
        if self.ring.len() == self.capacity {
            let evicted = self.ring[self.head].index_hash();
            std::hint::black_box(*self.index.home_slot(evicted));
            let next = self.next(self.head);
            prefetch::prefetch_value(self.index.home_slot(self.ring[next].index_hash()));
            prefetch::prefetch_value(&self.ring[self.next(next)]);
        }
    }

    /// Where the index slot of a key is, computable without this window's shard lock
    /// (`Books::prefetch`): fixed for the window's life.
    pub(crate) fn key_locator(&self) -> KeyLocator {
        KeyLocator {
            slots: self.index.locator(),
            hasher: self.hasher.clone(),
        }
    }

    fn next(&self, position: usize) -> usize {
        if position + 1 == self.capacity {
            0
        } else {
            position + 1
        }
    }

    /// Remember a new request, forgetting the oldest one if the window is full.
    /// The key must not be remembered already.
    pub fn insert(&mut self, entry: Entry) {
        self.insert_hashed(entry, self.hash(&entry.key));
    }

    /// `insert` with the key's `hash` computed already.
    pub(crate) fn insert_hashed(&mut self, entry: Entry, hash: u64) {
        debug_assert!(self.get(&entry.key).is_none());
        let stored = Stored::new(&entry, hash);
        let position = if self.ring.len() < self.capacity {
            self.ring.push(stored);
            self.ring.len() - 1
        } else {
            let position = self.head;
            let evicted = self.ring[position].index_hash();
            let removed = self.index.remove(evicted, position as u32);
            debug_assert!(removed, "every ring position is indexed");
            self.ring[position] = stored;
            self.head = self.next(position);
            position
        };
        self.index.insert(hash, position as u32);
    }

    /// Remembered entries from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        let split = if self.ring.len() < self.capacity {
            0
        } else {
            self.head
        };
        self.ring[split..]
            .iter()
            .chain(self.ring[..split].iter())
            .map(Stored::entry)
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// The address of the index slot a key's lookup reads first, for prefetching.
#[derive(Debug, Clone)]
pub(crate) struct KeyLocator {
    slots: SlotLocator,
    hasher: foldhash::fast::RandomState,
}

impl KeyLocator {
    /// The address to prefetch before looking `key` up.
    pub(crate) fn address(&self, key: &RequestKey) -> usize {
        self.slots.home_slot_address(self.hasher.hash_one(key))
    }
}

/// A stable 64-bit fingerprint of a terminal request's content (not of its key): a fixed
/// multiply-xorshift mix of the operation's log encoding (`journal::codec`), eight bytes at a
/// time. It is kept in snapshots; the encoding is versioned with the log, so it is stable too.
pub fn fingerprint(op: &TerminalOp) -> u64 {
    let encoded = codec::encode_op(op);
    let mut state = encoded.as_bytes().len() as u64;
    for word in encoded.padded_words() {
        let mixed = (state ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        state = mixed ^ (mixed >> 29);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, HoldId, TerminalId};
    use crate::reason::Reason;

    fn entry(request_id: u64) -> Entry {
        Entry {
            key: RequestKey {
                terminal: TerminalId(1),
                request_id,
            },
            fingerprint: request_id,
            kind: 1,
            outcome: Outcome::declined(Reason::InsufficientFunds),
            at_us: 0,
            reversed: false,
        }
    }

    #[test]
    fn a_full_window_forgets_the_oldest_key_first() {
        let mut window = Window::new(3);
        for request_id in 1..=4 {
            window.insert(entry(request_id));
        }
        let key = |request_id| RequestKey {
            terminal: TerminalId(1),
            request_id,
        };
        assert!(window.get(&key(1)).is_none());
        for request_id in 2..=4 {
            assert_eq!(
                window.get(&key(request_id)).map(|e| e.fingerprint),
                Some(request_id)
            );
        }
        let order: Vec<u64> = window.iter().map(|e| e.key.request_id).collect();
        assert_eq!(order, vec![2, 3, 4]);
    }

    /// The definition, byte by byte: what snapshots written earlier hold.
    fn fingerprint_by_bytes(op: &TerminalOp) -> u64 {
        let encoded = codec::encode_op(op);
        let bytes = encoded.as_bytes();
        let mut state = bytes.len() as u64;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let mixed = (state ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            state = mixed ^ (mixed >> 29);
        }
        state
    }

    #[test]
    fn fingerprints_keep_their_definition() {
        let payer = AccountId(1_000_003);
        let ops = [
            TerminalOp::Purchase {
                payer,
                amount: 1234,
                currency: crate::ids::Currency(978),
                pin: Some(crate::ids::PinBlock([9, 8, 7, 6, 5, 4, 3, 2])),
                extras: crate::command::Extras {
                    product_details: true,
                    loyalty_points: 77,
                },
            },
            TerminalOp::Void { hold: HoldId(5) },
            TerminalOp::Refund {
                hold: HoldId(17),
                amount: 100,
            },
            TerminalOp::Reversal {
                payer,
                original_request_id: 3,
            },
        ];
        for op in &ops {
            assert_eq!(fingerprint(op), fingerprint_by_bytes(op), "{op:?}");
        }
        // And a value fixed here, so a change of encoding shows up too.
        assert_eq!(fingerprint(&ops[1]), 8_318_694_856_563_990_516);
    }

    #[test]
    fn fingerprints_differ_when_any_field_differs() {
        let base = TerminalOp::Refund {
            hold: HoldId(17),
            amount: 100,
        };
        assert_eq!(
            fingerprint(&base),
            fingerprint(&TerminalOp::Refund {
                hold: HoldId(17),
                amount: 100
            })
        );
        assert_ne!(
            fingerprint(&base),
            fingerprint(&TerminalOp::Refund {
                hold: HoldId(17),
                amount: 101
            })
        );
        assert_ne!(
            fingerprint(&base),
            fingerprint(&TerminalOp::Refund {
                hold: HoldId(18),
                amount: 100
            })
        );
        assert_ne!(
            fingerprint(&base),
            fingerprint(&TerminalOp::Increment {
                hold: HoldId(17),
                amount: 100
            })
        );
        let pay = |pin| TerminalOp::Purchase {
            payer: AccountId(1_000_000),
            amount: 5,
            currency: crate::ids::Currency(978),
            pin,
            extras: crate::command::Extras::default(),
        };
        let one = crate::ids::PinBlock([1, 0, 0, 0, 0, 0, 0, 0]);
        assert_ne!(
            fingerprint(&pay(None)),
            fingerprint(&pay(Some(one))),
            "no PIN is not the PIN 01 00.."
        );
        let reversal = TerminalOp::Reversal {
            payer: AccountId(1_000_000),
            original_request_id: 5,
        };
        assert_ne!(fingerprint(&reversal), fingerprint(&base));
    }
}
