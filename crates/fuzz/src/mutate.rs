//! Mutations of a valid input: bit flips, interesting bytes, truncation, deletion,
//! duplication and splicing, huge protobuf lengths, and growth towards the request limit.

use carewoven_proto::MAX_REQUEST_BYTES;

use crate::rng::Rng;

const INTERESTING: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'.', b'"', b'\\', b'%', b'|'];

/// A varint that claims far more bytes than any input holds.
const HUGE_LENGTHS: [&[u8]; 4] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ],
    &[0xfe, 0xff, 0xff, 0xff, 0x07],
];

/// Apply one to four random mutations to `data`, keeping it within the request limit.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        mutate_once(rng, data);
    }
    data.truncate(MAX_REQUEST_BYTES);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    let at = |rng: &mut Rng| rng.below(len + 1);
    match rng.below(11) {
        0 | 1 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(&INTERESTING);
        }
        3 => {
            let n = at(rng);
            data.truncate(n);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = (from + rng.length(len - from)).min(len);
            data.drain(from..to);
        }
        5 => {
            let i = at(rng);
            let mut extra = Vec::new();
            let n = rng.length(32);
            rng.bytes(n, &mut extra);
            data.splice(i..i, extra);
        }
        6 if len > 0 => {
            // Duplicate a slice somewhere (repeated fields, doubled tokens).
            let from = rng.below(len);
            let to = (from + 1 + rng.below(len - from)).min(len);
            let chunk = data[from..to].to_vec();
            let i = at(rng);
            data.splice(i..i, chunk);
        }
        7 => {
            let i = at(rng);
            let huge = rng.pick(&HUGE_LENGTHS);
            data.splice(i..i, huge.iter().copied());
        }
        8 if len > 0 => {
            // Repeat a slice many times, towards the request limit.
            let from = rng.below(len);
            let to = (from + 1 + rng.below((len - from).min(64))).min(len);
            let chunk = data[from..to].to_vec();
            let times = 1 + rng.length(MAX_REQUEST_BYTES / chunk.len().max(1));
            let mut grown = Vec::with_capacity(chunk.len() * times);
            for _ in 0..times {
                grown.extend_from_slice(&chunk);
            }
            let i = at(rng);
            data.splice(i..i, grown);
        }
        9 if len > 1 => {
            let i = rng.below(len);
            let j = rng.below(len);
            data.swap(i, j);
        }
        _ => {
            let i = at(rng);
            data.insert(i, rng.byte());
        }
    }
}

/// Arbitrary bytes, of a length skewed towards small ones, up to the request limit.
pub fn arbitrary(rng: &mut Rng, out: &mut Vec<u8>) {
    let n = rng.length(MAX_REQUEST_BYTES);
    rng.bytes(n, out);
}

/// Printable ASCII noise (what survives an HTTP header or a URL), skewed short.
pub fn ascii(rng: &mut Rng, out: &mut Vec<u8>) {
    let n = rng.length(8 * 1024);
    out.extend((0..n).map(|_| 0x20 + (rng.byte() % 95)));
}
