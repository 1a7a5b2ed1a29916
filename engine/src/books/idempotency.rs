//! The bounded window of recent terminal requests of one shard.
//!
//! A terminal that times out resends the same request id; the window answers it with the
//! original outcome instead of acting twice. A retry is recognised while its key is among the
//! last `capacity` keyed requests of its shard.
//!
//! The entries live in a ring in insertion order (fixed size, allocated as it fills, reused
//! oldest first) and a compact index maps a key's hash to its ring position: a
//! `hashbrown::HashTable<u32>` of 4-byte positions whose equality looks the key up in the
//! ring. The index never holds more than `capacity` positions, so it never grows after it is
//! sized; the ring costs 56 bytes an entry and the index about 5. (A map from key to entry
//! holding up to twice the window, as before, grew to about 1 GB over 64 shards and spent a
//! quarter of the server's CPU faulting in fresh pages while it grew.)

use std::hash::BuildHasher;

use hashbrown::HashTable;

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
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Window {
    /// An empty window of `capacity` entries (at least 1).
    pub fn new(capacity: u32) -> Window {
        let capacity = capacity.max(1) as usize;
        Window {
            capacity,
            ring: Vec::new(),
            head: 0,
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn position(&self, key: &RequestKey) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let ring = &self.ring;
        self.index
            .find(hash, |&position| ring[position as usize].key == *key)
            .map(|&position| position as usize)
    }

    /// The entry for a key, if still in the window.
    pub fn get(&self, key: &RequestKey) -> Option<Entry> {
        self.position(key).map(|position| self.ring[position].entry())
    }

    /// Change the remembered entry of a key (not its key); returns it as changed.
    pub fn update(&mut self, key: &RequestKey, change: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let position = self.position(key)?;
        let mut entry = self.ring[position].entry();
        change(&mut entry);
        entry.key = *key;
        self.ring[position] = Stored::new(&entry);
        Some(entry)
    }

    /// Remember a new request, forgetting the oldest one if the window is full.
    /// The key must not be remembered already.
    pub fn insert(&mut self, entry: Entry) {
        debug_assert!(self.get(&entry.key).is_none());
        let Window {
            capacity,
            ring,
            head,
            index,
            hasher,
        } = self;
        if index.capacity() < *capacity {
            index.reserve(*capacity - index.len(), |&position| {
                hasher.hash_one(ring[position as usize].key)
            });
        }
        let position = if ring.len() < *capacity {
            ring.push(Stored::new(&entry));
            ring.len() - 1
        } else {
            let position = *head;
            let evicted = ring[position].key;
            let found = index.find_entry(hasher.hash_one(evicted), |&candidate| {
                candidate as usize == position
            });
            if let Ok(found) = found {
                found.remove();
            }
            ring[position] = Stored::new(&entry);
            *head = (position + 1) % *capacity;
            position
        };
        let hash = hasher.hash_one(entry.key);
        index.insert_unique(hash, position as u32, |&candidate| {
            hasher.hash_one(ring[candidate as usize].key)
        });
        debug_assert!(index.len() <= *capacity);
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

/// A stable 64-bit fingerprint of a terminal request's content (not of its key): a fixed
/// multiply-xorshift mix of the operation's log encoding (`journal::codec`), eight bytes at a
/// time. It is kept in snapshots; the encoding is versioned with the log, so it is stable too.
pub fn fingerprint(op: &TerminalOp) -> u64 {
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
