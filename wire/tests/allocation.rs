//! The hot messages decode and encode without touching the heap: a counting allocator watches.

#[allow(dead_code)]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use wire::Decoder;

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn hot_messages_decode_and_encode_without_allocating() {
    let hot = [
        "purchase",
        "authorize",
        "capture",
        "purchase_reply",
        "authorize_reply",
        "echo",
    ];
    for (name, _, frame) in support::examples() {
        if !hot.contains(&name) {
            continue;
        }
        let mut bytes = BytesMut::with_capacity(4096);
        frame.encode(&mut bytes);
        let wire_bytes = bytes.clone();
        let mut out = BytesMut::with_capacity(4096);
        let mut decoder = Decoder::default();
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let decoded = decoder.decode(&mut bytes);
        if let Ok(Some(frame)) = &decoded {
            frame.encode(&mut out);
        }
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert!(matches!(decoded, Ok(Some(_))), "{name}");
        assert_eq!(out, wire_bytes, "{name}");
        assert_eq!(after - before, 0, "{name} allocated");
    }
}
