//! Fuzz the decoder: any bytes, split into arbitrary reads, must never panic; every frame
//! decoded must re-encode to exactly its bytes (canonical decoding); a fatal error consumes
//! nothing; a rejected frame is consumed. The same input also seeds a valid message of every
//! type, which must round trip.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::field::Entropy;
use wire::message::Message;
use wire::{Decoder, Frame};

fuzz_target!(|data: &[u8]| {
    decode_in_pieces(data);
    round_trip_samples(data);
});

fn decode_in_pieces(data: &[u8]) {
    // The first byte picks the read size, so partial frames are exercised too; the rest is the
    // byte stream.
    let Some((selector, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(*selector).max(1);
    let mut decoder = Decoder::new(1024);
    let mut buffer = BytesMut::new();
    for chunk in data.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            let before = buffer.clone();
            match decoder.decode(&mut buffer) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let consumed = before.len() - buffer.len();
                    let mut out = BytesMut::new();
                    frame.encode(&mut out);
                    assert_eq!(&out[..], &before[..consumed], "non-canonical decode");
                }
                Err(error) if error.closes_connection() => {
                    assert_eq!(buffer.len(), before.len());
                    return;
                }
                Err(_) => assert!(buffer.len() < before.len()),
            }
        }
    }
}

fn round_trip_samples(data: &[u8]) {
    let mut entropy = Entropy::new(data);
    let message = Message::sample(&mut entropy);
    let request_id = if Message::is_push_type(message.message_type()) { 0 } else { 7 };
    let frame = Frame { request_id, message };
    let mut bytes = BytesMut::new();
    frame.encode(&mut bytes);
    let decoded = Decoder::default().decode(&mut bytes);
    assert_eq!(decoded, Ok(Some(frame)));
}
