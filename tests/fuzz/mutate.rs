//! The mutations: bit flips, boundary values (bytes, integers and floats of every width, and
//! numbers in text), truncation, splicing with another seed, and chunks deleted, repeated or
//! inserted. A case is its seed and a stack of one to four mutations, drawn from a generator
//! seeded by the target's name and the case's number, so every case can be replayed alone.

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The generator of case `index` of `target`.
pub fn case_rng(target: &str, index: u64) -> StdRng {
    // FNV-1a of the name, mixed with the index: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in target.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(hash ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Integers and floats that break arithmetic, in the widths binary formats use.
const BOUNDARY_U32: [u32; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x0001_0000,
];
const BOUNDARY_F32: [f32; 8] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN,
    -0.0,
    f32::MIN_POSITIVE,
    1e-45,
];
const BOUNDARY_F64: [f64; 6] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MAX,
    -0.0,
    5e-324,
];
/// What a number in a text file (CSV, TOML, JSON) can be replaced with.
const BOUNDARY_TEXT: [&str; 16] = [
    "0",
    "-1",
    "-0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-1e309",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e-320",
    "0.",
    "",
    "2147483647",
];

/// A mutant of `seeds[which]`, `others` being what it may be spliced with.
pub fn mutate(rng: &mut StdRng, seed: &[u8], others: &[Vec<u8>], text: bool) -> Vec<u8> {
    let mut data = seed.to_vec();
    let stack = rng.random_range(1..=4);
    for _ in 0..stack {
        let choice = rng.random_range(0..if text { 9 } else { 8 });
        match choice {
            0 => flip_bits(rng, &mut data),
            1 => boundary_bytes(rng, &mut data),
            2 => boundary_number(rng, &mut data),
            3 => truncate(rng, &mut data),
            4 => splice(rng, &mut data, others),
            5 => delete_chunk(rng, &mut data),
            6 => repeat_chunk(rng, &mut data),
            7 => insert_random(rng, &mut data),
            _ => boundary_text(rng, &mut data),
        }
    }
    data
}

fn position(rng: &mut StdRng, data: &[u8]) -> Option<usize> {
    (!data.is_empty()).then(|| rng.random_range(0..data.len()))
}

fn chunk(rng: &mut StdRng, data: &[u8]) -> Option<(usize, usize)> {
    let start = position(rng, data)?;
    // Mostly short chunks, sometimes long ones.
    let most = (data.len() - start).min(if rng.random_bool(0.8) { 16 } else { 4096 });
    Some((start, rng.random_range(1..=most.max(1))))
}

fn flip_bits(rng: &mut StdRng, data: &mut [u8]) {
    for _ in 0..rng.random_range(1..=8) {
        if let Some(at) = position(rng, data) {
            data[at] ^= 1 << rng.random_range(0..8);
        }
    }
}

fn boundary_bytes(rng: &mut StdRng, data: &mut [u8]) {
    for _ in 0..rng.random_range(1..=4) {
        if let Some(at) = position(rng, data) {
            data[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.random_range(0..5)];
        }
    }
}

/// Overwrites 2, 4 or 8 bytes with a boundary integer or float, little- or big-endian.
fn boundary_number(rng: &mut StdRng, data: &mut [u8]) {
    let bytes: Vec<u8> = match rng.random_range(0..4) {
        0 => (BOUNDARY_U32[rng.random_range(0..BOUNDARY_U32.len())] as u16)
            .to_le_bytes()
            .to_vec(),
        1 => BOUNDARY_U32[rng.random_range(0..BOUNDARY_U32.len())]
            .to_le_bytes()
            .to_vec(),
        2 => BOUNDARY_F32[rng.random_range(0..BOUNDARY_F32.len())]
            .to_le_bytes()
            .to_vec(),
        _ => BOUNDARY_F64[rng.random_range(0..BOUNDARY_F64.len())]
            .to_le_bytes()
            .to_vec(),
    };
    let bytes: Vec<u8> = if rng.random_bool(0.3) {
        bytes.into_iter().rev().collect()
    } else {
        bytes
    };
    if data.len() < bytes.len() {
        return;
    }
    let at = rng.random_range(0..=data.len() - bytes.len());
    data[at..at + bytes.len()].copy_from_slice(&bytes);
}

/// Replaces a number written in text with a boundary value.
fn boundary_text(rng: &mut StdRng, data: &mut Vec<u8>) {
    let is_number = |b: u8| b.is_ascii_digit() || b == b'.';
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| is_number(data[i]) && (i == 0 || !is_number(data[i - 1])))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[rng.random_range(0..starts.len())];
    let end = (start..data.len())
        .find(|&i| !is_number(data[i]))
        .unwrap_or(data.len());
    let value = BOUNDARY_TEXT[rng.random_range(0..BOUNDARY_TEXT.len())];
    data.splice(start..end, value.bytes());
}

fn truncate(rng: &mut StdRng, data: &mut Vec<u8>) {
    let keep = if data.is_empty() {
        0
    } else {
        rng.random_range(0..data.len())
    };
    data.truncate(keep);
}

/// This mutant's start with another seed's end.
fn splice(rng: &mut StdRng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    if others.is_empty() {
        return;
    }
    let other = &others[rng.random_range(0..others.len())];
    let cut = rng.random_range(0..=data.len());
    let from = rng.random_range(0..=other.len());
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

fn delete_chunk(rng: &mut StdRng, data: &mut Vec<u8>) {
    if let Some((at, len)) = chunk(rng, data) {
        data.drain(at..at + len);
    }
}

fn repeat_chunk(rng: &mut StdRng, data: &mut Vec<u8>) {
    if let Some((at, len)) = chunk(rng, data) {
        let copy = data[at..at + len].to_vec();
        for _ in 0..rng.random_range(1..=4) {
            data.splice(at..at, copy.iter().copied());
        }
    }
}

fn insert_random(rng: &mut StdRng, data: &mut Vec<u8>) {
    let at = rng.random_range(0..=data.len());
    let bytes: Vec<u8> = (0..rng.random_range(1..=32))
        .map(|_| rng.random())
        .collect();
    data.splice(at..at, bytes);
}

/// Sets some 4-byte-aligned f32 slots to NaN, ±∞ or extremes: for raw network outputs.
pub fn poison_floats(rng: &mut StdRng, data: &mut [u8]) {
    let slots = data.len() / 4;
    if slots == 0 {
        return;
    }
    let count = if rng.random_bool(0.1) {
        slots
    } else {
        rng.random_range(1..=8)
    };
    for _ in 0..count {
        let slot = rng.random_range(0..slots);
        let value = BOUNDARY_F32[rng.random_range(0..BOUNDARY_F32.len())];
        data[slot * 4..slot * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }
}
