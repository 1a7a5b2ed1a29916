//! The wire codec's hot path: decoding a purchase frame and encoding the common reply.
//! Target (issue 3): >= 20 M purchase decodes per second on one core (< 50 ns each).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use wire::messages::reply::HoldReply;
use wire::messages::terminal::Purchase;
use wire::types::{AccountNumber, HoldId, PayerRef};
use wire::{Decoder, Frame, Message, PinBlock, Reply, Request};

fn purchase_frame() -> BytesMut {
    let purchase = Purchase {
        payer: PayerRef::Account(AccountNumber(1001)),
        amount_minor: 250,
        currency: 978,
        pin: PinBlock::from_digits("1234").ok(),
        loyalty_points: 3,
        product: None,
    };
    let mut bytes = BytesMut::new();
    Frame {
        request_id: 42,
        message: Message::Request(Request::Purchase(purchase)),
    }
    .encode(&mut bytes);
    bytes
}

fn decode_purchase(criterion: &mut Criterion) {
    let frame = purchase_frame();
    let mut decoder = Decoder::default();
    let mut buffer = BytesMut::with_capacity(4096);
    // Ids are bare (no group) so they read exactly `decode_purchase` and `encode_reply`.
    // Each iteration appends the frame's bytes (as a socket read would) and decodes it.
    criterion.bench_function("decode_purchase", |bencher| {
        bencher.iter(|| {
            buffer.extend_from_slice(black_box(&frame));
            let decoded = decoder.decode(&mut buffer);
            debug_assert!(matches!(decoded, Ok(Some(_))));
            black_box(decoded)
        })
    });
}

fn encode_reply(criterion: &mut Criterion) {
    let reply = Frame {
        request_id: 42,
        message: Message::Reply(Reply::Purchase(HoldReply {
            code: 0,
            reason: 0,
            hold_id: HoldId(9002),
            amount_minor: 250,
        })),
    };
    let mut out = BytesMut::with_capacity(4096);
    criterion.bench_function("encode_reply", |bencher| {
        bencher.iter(|| {
            out.clear();
            black_box(&reply).encode(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, decode_purchase, encode_reply);
criterion_main!(benches);
