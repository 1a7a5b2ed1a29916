//! Cache-line prefetch: start loading a line now, without waiting for it.
//!
//! A purchase on a large book is bound by memory latency, not instructions (DESIGN.md, "Cache
//! misses"): its payer's line and its window slot are almost never in cache. The server knows
//! the next requests of a batch before it executes the current one, so it asks for their lines
//! early (`Books::prefetch`) and they arrive while the current one runs. Inside a shard, each
//! payment prefetches what the shard's next payment will read first (the ring slot and index
//! slot it will evict, the hold it will prune).
//!
//! A plain read cannot do this: it would have to happen under the shard's lock, and a locked
//! instruction waits for every earlier read to complete. A prefetch is only a hint: it
//! cannot fault, writes nothing, and is not ordered with the lock, so the addresses it gets may
//! be stale or even unmapped.

/// Start loading the cache line holding `address` into every cache level. Any address is
/// sound, including a stale or unmapped one.
#[inline(always)]
pub(crate) fn prefetch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` is unsafe only because it requires the `sse` target feature,
        // which is part of the x86_64 baseline: every x86_64 CPU has it and rustc enables it on
        // every x86_64 target. PREFETCHT0 makes no architectural memory access: it cannot fault
        // whatever the address (tests below prefetch null and unmapped addresses) and writes
        // nothing, so no Rust value is read or changed.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance::<i8>(address)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Start loading every cache line `value` occupies (a value of 56 or 88 bytes may span two).
#[inline(always)]
pub(crate) fn prefetch_value<T>(value: &T) {
    prefetch_bytes(address_of(value), std::mem::size_of::<T>());
}

/// Start loading every cache line of the `bytes` bytes at `start` (any addresses, as for
/// `prefetch`: a slot not yet written may be prefetched).
#[inline(always)]
pub(crate) fn prefetch_bytes(start: usize, bytes: usize) {
    let first = start & !(LINE_BYTES - 1);
    let lines = ((start - first).saturating_add(bytes.max(1) - 1)) / LINE_BYTES + 1;
    for line in 0..lines {
        prefetch(first.wrapping_add(line * LINE_BYTES));
    }
}

/// A cache line.
const LINE_BYTES: usize = 64;

/// The address of `value`, for `prefetch`.
pub(crate) fn address_of<T>(value: &T) -> usize {
    std::ptr::from_ref(value).addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_can_be_prefetched() {
        let line = [7u64; 8];
        prefetch(address_of(&line));
        prefetch_value(&line);
        // Null, the top of the address space, an unaligned kernel address, a freed heap block.
        let freed = address_of(&*Box::new(1u64));
        for address in [0, 1, usize::MAX, 0xffff_8000_0000_0123, freed] {
            prefetch(address);
            // A slot spanning the end of the address space: its lines wrap, nothing overflows.
            prefetch_bytes(address, 88);
        }
        assert_eq!(line, [7; 8], "a prefetch changes nothing");
    }
}
