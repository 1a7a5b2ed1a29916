//! The bounded window of recent terminal requests of one shard.
//!
//! A terminal that times out resends the same request id; the window answers it with the
//! original outcome instead of acting twice. A retry is recognised while its key is among the
//! last `capacity` keyed requests of its shard.
//!
//! The entries live in a ring in insertion order (fixed size, allocated as it fills, reused
//! oldest first) and a `RingIndex` maps a key's hash to its ring position. Its entries expire
//! as the ring overwrites their positions, so it never grows after it is sized and evicting
//! needs no work there; the ring costs 56 bytes an entry and the index 32 (cache-line buckets
//! of seven slots, sized for two live entries each and rounded up to a power of two: up to 64
//! bytes an entry for a window just above a power of two). (A map
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
}

impl Stored {
    fn new(entry: &Entry) -> Stored {
        Stored {
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
        self.ring[position] = Stored::new(&entry);
        Some(entry)
    }

    /// Start loading what looking up the key hashed `key_hash` and inserting it will read: its
    /// index bucket, and the ring slots this insert and the next overwrite (the index needs
    /// nothing for the entry evicted). See `Shard::warm_up`.
    pub fn warm_up(&self, key_hash: u64) {
        std::hint::black_box(self.index.home_slot(key_hash).first_slot());
        if self.ring.len() == self.capacity {
            // The ring slots this insert and the next overwrite (evicting reads nothing else).
            prefetch::prefetch_value(&self.ring[self.head]);
            prefetch::prefetch_value(&self.ring[self.next(self.head)]);
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
        let stored = Stored::new(&entry);
        // The index numbers inserts as the ring takes them: the position it gives is the
        // ring's next (while it fills) or its oldest entry's, which the index forgets now.
        let position = self.index.insert(hash) as usize;
        if self.ring.len() < self.capacity {
            debug_assert_eq!(position, self.ring.len());
            self.ring.push(stored);
        } else {
            debug_assert_eq!(position, self.head);
            self.ring[position] = stored;
            self.head = self.next(position);
        }
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

    #[test]
    fn windows_of_any_size_remember_exactly_their_last_keys() {
        // One entry, sizes that are not powers of two, and one big enough for its index's
        // buckets to overflow now and then; a key updated in place stays found.
        for capacity in [1u32, 5, 7, 1_000] {
            let mut window = Window::new(capacity);
            let key = |request_id| RequestKey {
                terminal: TerminalId(1),
                request_id,
            };
            let inserts = u64::from(capacity) * 3 + 2;
            for request_id in 1..=inserts {
                window.insert(entry(request_id));
                if request_id % 4 == 0 {
                    let updated = window.update(&key(request_id), |entry| entry.reversed = true);
                    assert!(updated.is_some_and(|entry| entry.reversed));
                }
                let oldest = request_id.saturating_sub(u64::from(capacity)) + 1;
                for probe in [1, oldest.saturating_sub(1), oldest, request_id, request_id + 1] {
                    let found = window.get(&key(probe)).map(|e| e.fingerprint);
                    let remembered = probe >= oldest && probe <= request_id && probe > 0;
                    assert_eq!(
                        found,
                        remembered.then_some(probe),
                        "capacity {capacity}, key {probe}"
                    );
                }
            }
            assert_eq!(window.len(), capacity as usize);
        }
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
