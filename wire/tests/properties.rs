//! Property tests for the codec: round trips of random messages of every type, and decoding
//! of random bytes, truncations and bit flips never panics (and stays canonical).

#[allow(dead_code)]
mod support;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use wire::field::Entropy;
use wire::message::Message;
use wire::{Decoder, Frame};

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out
}

/// A valid frame of `message_type` with a request id (0 for pushes, which require it).
fn sample_frame(message_type: u8, request_id: u64, entropy: &mut Entropy<'_>) -> Frame {
    let message = Message::sample_of(message_type, entropy).expect("defined type");
    let request_id = if Message::is_push_type(message_type) {
        0
    } else {
        request_id
    };
    Frame { request_id, message }
}

/// Decodes everything in `bytes` until it waits or must close; never panics. Every frame it
/// yields must re-encode to exactly the bytes it came from (decoding is canonical).
fn decode_all(bytes: &[u8]) {
    let mut buffer = BytesMut::from(bytes);
    let mut decoder = Decoder::default();
    loop {
        let before = buffer.clone();
        match decoder.decode(&mut buffer) {
            Ok(None) => return,
            Ok(Some(frame)) => {
                let consumed = before.len() - buffer.len();
                assert_eq!(&encode(&frame)[..], &before[..consumed], "non-canonical decode");
            }
            Err(error) if error.closes_connection() => {
                assert_eq!(buffer.len(), before.len(), "fatal errors consume nothing");
                return;
            }
            Err(_) => assert!(buffer.len() < before.len(), "rejected frames are consumed"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_type_round_trips(seed in vec(any::<u8>(), 0..600), request_id in any::<u64>()) {
        let mut entropy = Entropy::new(&seed);
        for spec in Message::specs() {
            let frame = sample_frame(spec.message_type, request_id, &mut entropy);
            let bytes = encode(&frame);
            let mut buffer = bytes.clone();
            let decoded = Decoder::default().decode(&mut buffer);
            prop_assert_eq!(decoded, Ok(Some(frame.clone())), "{}", spec.name);
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(encode(&frame), bytes);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..5000)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        message_type in any::<u8>(),
        body in vec(any::<u8>(), 0..200),
    ) {
        // Random bytes rarely form a plausible header; this aims every type's body parser.
        let mut bytes = ((12 + body.len()) as u32).to_le_bytes().to_vec();
        let flags = u8::from(Message::is_push_type(message_type));
        bytes.extend_from_slice(&[1, message_type, flags, 0]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&body);
        decode_all(&bytes);
    }

    #[test]
    fn truncations_wait_and_bit_flips_never_panic(seed in vec(any::<u8>(), 0..300), pick in any::<u16>()) {
        let mut entropy = Entropy::new(&seed);
        let specs: Vec<_> = Message::specs().collect();
        let spec = specs[usize::from(pick) % specs.len()];
        let bytes = encode(&sample_frame(spec.message_type, 7, &mut entropy));
        check_truncations_and_flips(&bytes);
    }
}

fn check_truncations_and_flips(bytes: &[u8]) {
    for length in 0..bytes.len() {
        let mut buffer = BytesMut::from(&bytes[..length]);
        assert_eq!(
            Decoder::default().decode(&mut buffer),
            Ok(None),
            "truncated to {length}"
        );
    }
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        decode_all(&flipped);
    }
}

#[test]
fn every_golden_frame_survives_every_truncation_and_bit_flip() {
    for (_, _, frame) in support::examples() {
        check_truncations_and_flips(&encode(&frame));
    }
}
