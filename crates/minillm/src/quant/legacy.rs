//! q4_1, q5_0 and q5_1: blocks of 32 like q4_0, with a minimum (`_1`: w = d * u + m, so a block
//! whose weights are not centred on zero uses all 16 or 32 levels) or a fifth bit (`5_`: the
//! fifth bits of the 32 weights packed into one 32-bit word). llama.cpp calls them its legacy
//! types; hubs still carry them, and its Q4_K_M / Q5_K_M fall back to q5_0 / q5_1 for rows
//! that are not whole 256-weight super-blocks.
//!
//! | type | bytes | layout |
//! |---|---|---|
//! | q4_1 | 20 | f16 d, f16 m, 16 bytes of nibbles |
//! | q5_0 | 22 | f16 d, u32 fifth bits, 16 bytes of nibbles; w = d * (u - 16) |
//! | q5_1 | 24 | f16 d, f16 m, u32 fifth bits, 16 bytes of nibbles |
//!
//! As in q4_0, element j (j < 16) is the low nibble of byte j and element j + 16 its high
//! nibble; element i's fifth bit is bit i of the word.

use super::BLOCK;
use super::formats::{BlockFormat, GroupBlocks, half_at, put_half};

/// Writes the 32 values u (each below 32) as nibbles at `qs` and, if `qh` is given, their fifth
/// bits as a little-endian u32 there.
fn pack(u: &[u8; BLOCK], out: &mut [u8], qh: Option<usize>, qs: usize) {
    let mut high = 0u32;
    for j in 0..BLOCK / 2 {
        let (a, b) = (u[j], u[j + BLOCK / 2]);
        out[qs + j] = (a & 0x0f) | ((b & 0x0f) << 4);
        high |= (((a >> 4) & 1) as u32) << j | (((b >> 4) & 1) as u32) << (j + BLOCK / 2);
    }
    if let Some(at) = qh {
        out[at..at + 4].copy_from_slice(&high.to_le_bytes());
    }
}

/// The 32 values u back from `pack`'s bytes.
fn unpack(block: &[u8], qh: Option<usize>, qs: usize) -> [u8; BLOCK] {
    let high = qh.map_or(0, |at| u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes")));
    std::array::from_fn(|i| {
        let byte = block[qs + i % (BLOCK / 2)];
        let nibble = if i < BLOCK / 2 { byte & 0x0f } else { byte >> 4 };
        nibble | ((((high >> i) & 1) as u8) << 4)
    })
}

/// d and the minimum for `levels` levels between the block's min and max, and each u:
/// round((x - min) / d), clipped to the top level when `clip` (q4_1 clips, q5_1 does not need to).
fn with_minimum(x: &[f32], levels: u8, out: &mut [u8], qh: Option<usize>, clip: bool) {
    let (min, max) = x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let d = (max - min) / levels as f32;
    let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(out, 0, d);
    put_half(out, 2, min);
    let u: [u8; BLOCK] = std::array::from_fn(|j| {
        // (x - min) / d + 0.5 is at least 0.5: truncating it rounds to the nearest.
        let u = ((x[j] - min) * inverse + 0.5) as u8;
        if clip { u.min(levels) } else { u }
    });
    pack(&u, out, qh, if qh.is_some() { 8 } else { 4 });
}

/// q4_1/q5_1's weights: w = u * d + m, the values u at `qh`/`qs` as `pack` wrote them.
fn dequantize_with_minimum(block: &[u8], out: &mut [f32], qh: Option<usize>, qs: usize) {
    let (d, m) = (half_at(block, 0), half_at(block, 2));
    for (o, u) in out.iter_mut().zip(unpack(block, qh, qs)) {
        *o = u as f32 * d + m;
    }
}

/// q4_1/q5_1's u with one group scale d and min -m for the whole block.
fn groups_with_minimum(
    block: &[u8],
    u: &mut [u8],
    scale: &mut [f32],
    min: &mut [f32],
    qh: Option<usize>,
    qs: usize,
) {
    u.copy_from_slice(&unpack(block, qh, qs));
    scale.fill(half_at(block, 0));
    min.fill(-half_at(block, 2));
}

/// 4 bits and a minimum: d = (max - min) / 15, w = d * u + m.
pub struct Q4_1;

impl BlockFormat for Q4_1 {
    const BYTES: usize = 4 + BLOCK / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        with_minimum(x, 15, out, None, true)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_with_minimum(block, out, None, 4)
    }
}

impl GroupBlocks for Q4_1 {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        groups_with_minimum(block, u, scale, min, None, 4)
    }
}

/// 5 bits around zero, as q4_0 with twice the levels: the weight of largest magnitude m sets
/// d = m / -16, u = round(x / d) + 16 in 0..=31.
pub struct Q5_0;

impl BlockFormat for Q5_0 {
    const BYTES: usize = 2 + 4 + BLOCK / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let m = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = m / -16.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_half(out, 0, d);
        // x / d + 16.5 lies in [0.5, 32.5]; truncating rounds x / d + 16 to the nearest.
        let u: [u8; BLOCK] = std::array::from_fn(|j| ((x[j] * inverse + 16.5) as u8).min(31));
        pack(&u, out, Some(2), 6);
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = half_at(block, 0);
        for (o, u) in out.iter_mut().zip(unpack(block, Some(2), 6)) {
            *o = d * (u as i32 - 16) as f32;
        }
    }
}

impl GroupBlocks for Q5_0 {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        u.copy_from_slice(&unpack(block, Some(2), 6));
        let d = half_at(block, 0);
        scale.fill(d);
        min.fill(16.0 * d);
    }
}

/// 5 bits and a minimum: d = (max - min) / 31, w = d * u + m.
pub struct Q5_1;

impl BlockFormat for Q5_1 {
    const BYTES: usize = 4 + 4 + BLOCK / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        with_minimum(x, 31, out, Some(4), false)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_with_minimum(block, out, Some(4), 8)
    }
}

impl GroupBlocks for Q5_1 {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        groups_with_minimum(block, u, scale, min, Some(4), 8)
    }
}
