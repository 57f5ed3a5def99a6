//! The k-quants: q4_K, q5_K and q6_K, the types most GGUF files on model hubs use.
//!
//! A super-block holds 256 weights in sub-blocks of 32 (q4_K, q5_K) or 16 (q6_K). Each
//! sub-block has its own scale (and, for q4_K/q5_K, its own minimum), stored in 6 or 8 bits
//! relative to one f16 scale per super-block: scales cost 0.375-0.5 bits per weight instead of
//! the 16 / 32 = 0.5 of q4_0's f16 per 32, yet every 32 weights still get their own.
//!
//! | type | bytes | bits/weight | layout |
//! |---|---|---|---|
//! | q4_K | 144 | 4.5 | f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) x 8, 128 bytes of nibbles |
//! | q5_K | 176 | 5.5 | as q4_K, then 32 bytes of fifth bits before the nibbles |
//! | q6_K | 210 | 6.5625 | 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales, f16 d |
//!
//! Weight i of q4_K/q5_K sub-block j is d * sc_j * u_i - dmin * m_j; of q6_K sub-block g,
//! d * sc_g * (u_i - 32).
//!
//! Quantizing searches, per sub-block, for the scale (and minimum) with the least weighted
//! squared error instead of taking max / levels: that search is why q4_K beats q4_0 at the same
//! size. The searches here make the same choices as llama.cpp's reference quantizer
//! (`make_qkx2_quants`, `make_qx_quants`), so files made here hold the bytes `llama-quantize`
//! writes (checked by the llama.cpp check script).

use super::formats::{BlockFormat, GROUP, GroupBlocks, half_at, put_half};

/// Weights per super-block (ggml's QK_K).
pub const SUPER: usize = 256;
const SUB: usize = 32;

/// Round half to even, the rounding of llama.cpp's `nearest_int` (an add of 1.5 * 2^23).
fn nearest(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// Sub-block j's 6-bit scale and min from q4_K/q5_K's 12 packed bytes: j < 4 in the low six
/// bits of bytes j and j + 4; j >= 4 in a nibble of byte j + 4 and the top two bits of bytes
/// j - 4 (scale) and j (min).
#[inline]
pub(super) fn scale_min(packed: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        ((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4), (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4))
    }
}

fn pack_scale_min(packed: &mut [u8; 12], j: usize, scale: u8, min: u8) {
    if j < 4 {
        packed[j] = scale;
        packed[j + 4] = min;
    } else {
        packed[j + 4] = (scale & 0x0f) | ((min & 0x0f) << 4);
        packed[j - 4] |= (scale >> 4) << 6;
        packed[j] |= (min >> 4) << 6;
    }
}

/// The best (scale, min) for `x` with levels 0..=`top`, the error weighted by `w`: start from
/// (max - min) / top, then try `steps` + 1 other level spacings, each followed by the weighted
/// least-squares scale and min for the levels it picked, and keep the best. The min is never
/// above zero. Returns (scale, -min) with the levels in `levels`.
fn scale_and_min(
    x: &[f32],
    w: &[f32],
    top: u8,
    levels: &mut [u8],
    (first, step, steps): (f32, f32, i32),
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    min = min.min(0.0);
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let top_f = top as f32;
    // The levels for a spacing, from the current min (a better fit moves it for later trials).
    let level = |inverse: f32, x: f32, min: f32| nearest(inverse * (x - min)).clamp(0, top as i32) as u8;
    let mut inverse = top_f / (max - min);
    let mut scale = 1.0 / inverse;
    let mut best = 0.0f32;
    for i in 0..n {
        levels[i] = level(inverse, x[i], min);
        let diff = scale * levels[i] as f32 + min - x[i];
        best += w[i] * (diff * diff);
    }
    let mut trial = [0u8; SUB];
    for s in 0..=steps {
        inverse = (first + step * s as f32 + top_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            trial[i] = level(inverse, x[i], min);
            let l = trial[i] as f32;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * trial[i] as f32 + this_min - x[i];
                error += w[i] * (diff * diff);
            }
            if error < best {
                levels[..n].copy_from_slice(&trial[..n]);
                best = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// q4_K and q5_K's shared quantizer: per sub-block of 32, the weights |x| + rms(x) (large
/// weights matter more), the best scale and min; then the scales and mins as 6-bit fractions of
/// the largest of each, and every weight re-rounded with the stored (rounded) scale and min.
/// Returns the levels (0..=`top`) of the 256 weights, and writes d, dmin and the packed scales.
fn quantize_with_minimum(x: &[f32], out: &mut [u8], top: u8, search: (f32, f32, i32)) -> [u8; SUPER] {
    let mut levels = [0u8; SUPER];
    let mut scales = [0.0f32; SUPER / SUB];
    let mut mins = [0.0f32; SUPER / SUB];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..SUPER / SUB {
        let x = &x[j * SUB..(j + 1) * SUB];
        let sum_x2 = x.iter().fold(0.0f32, |s, &v| s + v * v);
        let rms = (sum_x2 / SUB as f32).sqrt();
        let w: [f32; SUB] = std::array::from_fn(|l| rms + x[l].abs());
        (scales[j], mins[j]) = scale_and_min(x, &w, top, &mut levels[j * SUB..(j + 1) * SUB], search);
        max_scale = max_scale.max(scales[j]);
        max_min = max_min.max(mins[j]);
    }
    let inverse_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inverse_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..SUPER / SUB {
        let six = |v: f32| (nearest(v) as u8).min(63);
        pack_scale_min(&mut packed, j, six(inverse_scale * scales[j]), six(inverse_min * mins[j]));
    }
    put_half(out, 0, max_scale / 63.0);
    put_half(out, 2, max_min / 63.0);
    out[4..16].copy_from_slice(&packed);
    let (d, dmin) = (half_at(out, 0), half_at(out, 2));
    for j in 0..SUPER / SUB {
        let (sc, m) = scale_min(&packed, j);
        let d = d * sc as f32;
        if d == 0.0 {
            continue; // the search's levels stay
        }
        let dm = dmin * m as f32;
        for i in j * SUB..(j + 1) * SUB {
            levels[i] = nearest((x[i] + dm) / d).clamp(0, top as i32) as u8;
        }
    }
    levels
}

/// q4_K/q5_K's scale and min per group of 16 (sub-block j covers groups 2j and 2j + 1).
fn groups_with_minimum(block: &[u8], scale: &mut [f32], min: &mut [f32]) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    for j in 0..SUPER / SUB {
        let (sc, m) = scale_min(&block[4..16], j);
        scale[2 * j..2 * j + 2].fill(d * sc as f32);
        min[2 * j..2 * j + 2].fill(dmin * m as f32);
    }
}

/// q4_K/q5_K's weights from their levels (`level(i)`), in llama.cpp's order of operations:
/// (d * sc) * u - (dmin * m), so the values are bit for bit its dequantization.
fn dequantize_with_minimum(block: &[u8], out: &mut [f32], level: impl Fn(usize) -> u8) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    for (j, out) in out.chunks_exact_mut(SUB).enumerate() {
        let (sc, m) = scale_min(&block[4..16], j);
        let (d, m) = (d * sc as f32, dmin * m as f32);
        for (l, o) in out.iter_mut().enumerate() {
            *o = d * level(j * SUB + l) as f32 - m;
        }
    }
}

/// Sub-block j's weights are the low (j even) or high (j odd) nibbles of the 32 bytes at
/// 32 * (j / 2) of q4_K/q5_K's nibbles.
fn nibble(qs: &[u8], i: usize) -> u8 {
    let (j, l) = (i / SUB, i % SUB);
    let byte = qs[SUB * (j / 2) + l];
    if j % 2 == 0 { byte & 0x0f } else { byte >> 4 }
}

/// 4-bit super-blocks: 8 sub-blocks of 32, each with a 6-bit scale and min.
pub struct Q4K;

impl BlockFormat for Q4K {
    const WEIGHTS: usize = SUPER;
    const BYTES: usize = 4 + 12 + SUPER / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let levels = quantize_with_minimum(x, out, 15, (-1.0, 0.1, 20));
        for half in 0..SUPER / 64 {
            for l in 0..SUB {
                out[16 + SUB * half + l] = levels[64 * half + l] | (levels[64 * half + SUB + l] << 4);
            }
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_with_minimum(block, out, |i| nibble(&block[16..], i))
    }
}

impl GroupBlocks for Q4K {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        for (i, u) in u.iter_mut().enumerate() {
            *u = nibble(&block[16..], i);
        }
        groups_with_minimum(block, scale, min);
    }
}

/// 5-bit super-blocks: q4_K plus a fifth bit per weight, bit j of byte l of the 32 high-bit
/// bytes for element l of sub-block j.
pub struct Q5K;

impl Q5K {
    fn level(block: &[u8], i: usize) -> u8 {
        let (j, l) = (i / SUB, i % SUB);
        nibble(&block[48..], i) | (((block[16 + l] >> j) & 1) << 4)
    }
}

impl BlockFormat for Q5K {
    const WEIGHTS: usize = SUPER;
    const BYTES: usize = 4 + 12 + SUPER / 8 + SUPER / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let levels = quantize_with_minimum(x, out, 31, (-0.5, 0.1, 15));
        out[16..48].fill(0);
        for (i, &level) in levels.iter().enumerate() {
            let (j, l) = (i / SUB, i % SUB);
            out[16 + l] |= (level >> 4) << j;
            let byte = &mut out[48 + SUB * (j / 2) + l];
            *byte = if j % 2 == 0 { level & 0x0f } else { *byte | ((level & 0x0f) << 4) };
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_with_minimum(block, out, |i| Q5K::level(block, i))
    }
}

impl GroupBlocks for Q5K {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        for (i, u) in u.iter_mut().enumerate() {
            *u = Q5K::level(block, i);
        }
        groups_with_minimum(block, scale, min);
    }
}

/// The best scale for `x` (16 values) with signed levels -32..=31, weighting each value's
/// squared error by x^2: max / -32 first, then 18 nearby spacings, each with its least-squares
/// scale; returns the scale and writes levels + 32.
fn signed_scale(x: &[f32], levels: &mut [u8]) -> f32 {
    const TOP: i32 = 32;
    let max = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    if max.abs() < 1e-15 {
        levels.fill(0);
        return 0.0;
    }
    let level = |inverse: f32, x: f32| nearest(inverse * x).clamp(-TOP, TOP - 1);
    let sums = |inverse: f32| {
        x.iter().fold((0.0f32, 0.0f32), |(lx, l2), &v| {
            let (l, w) = (level(inverse, v) as f32, v * v);
            (lx + w * v * l, l2 + w * l * l)
        })
    };
    let mut inverse = -(TOP as f32) / max;
    for (o, &v) in levels.iter_mut().zip(x) {
        *o = (level(inverse, v) + TOP) as u8;
    }
    let (sum_lx, sum_l2) = sums(inverse);
    let mut scale = if sum_l2 != 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for s in (-9..=9).filter(|&s| s != 0) {
        inverse = -(TOP as f32 + 0.1 * s as f32) / max;
        let (sum_lx, sum_l2) = sums(inverse);
        if sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2 {
            for (o, &v) in levels.iter_mut().zip(x) {
                *o = (level(inverse, v) + TOP) as u8;
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    scale
}

/// 6-bit super-blocks: 16 sub-blocks of 16 with int8 scales. Weight i (in the half
/// n = i / 128, quarter t = i % 128 / 32, position l = i % 32) has its low four bits in a nibble
/// of byte 64n + 32(t % 2) + l (low for t < 2) and its top two at bits 2t of byte 128 + 32n + l.
pub struct Q6K;

impl Q6K {
    fn level(block: &[u8], i: usize) -> u8 {
        let (n, t, l) = (i / 128, i % 128 / SUB, i % SUB);
        let byte = block[64 * n + SUB * (t % 2) + l];
        let low = if t < 2 { byte & 0x0f } else { byte >> 4 };
        low | (((block[128 + SUB * n + l] >> (2 * t)) & 3) << 4)
    }

    fn scale(block: &[u8], g: usize) -> f32 {
        block[192 + g] as i8 as f32
    }
}

impl BlockFormat for Q6K {
    const WEIGHTS: usize = SUPER;
    const BYTES: usize = SUPER / 2 + SUPER / 4 + SUPER / GROUP + 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let mut levels = [0u8; SUPER];
        let mut scales = [0.0f32; SUPER / GROUP];
        let mut max_scale = 0.0f32;
        for (g, s) in scales.iter_mut().enumerate() {
            *s = signed_scale(&x[g * GROUP..(g + 1) * GROUP], &mut levels[g * GROUP..(g + 1) * GROUP]);
            if s.abs() > max_scale.abs() {
                max_scale = *s;
            }
        }
        out[..Self::BYTES].fill(0);
        if max_scale.abs() < 1e-15 {
            return; // all zero: d = 0
        }
        let inverse = -128.0 / max_scale;
        put_half(out, 208, 1.0 / inverse);
        for (g, &s) in scales.iter().enumerate() {
            out[192 + g] = nearest(inverse * s).min(127) as i8 as u8;
        }
        let d = half_at(out, 208);
        for g in 0..SUPER / GROUP {
            let d = d * Q6K::scale(out, g);
            if d == 0.0 {
                continue;
            }
            for i in g * GROUP..(g + 1) * GROUP {
                levels[i] = (nearest(x[i] / d).clamp(-32, 31) + 32) as u8;
            }
        }
        for (i, &level) in levels.iter().enumerate() {
            let (n, t, l) = (i / 128, i % 128 / SUB, i % SUB);
            let low = &mut out[64 * n + SUB * (t % 2) + l];
            *low |= if t < 2 { level & 0x0f } else { (level & 0x0f) << 4 };
            out[128 + SUB * n + l] |= (level >> 4) << (2 * t);
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = half_at(block, 208);
        for (i, o) in out.iter_mut().enumerate() {
            *o = d * Q6K::scale(block, i / GROUP) * (Q6K::level(block, i) as i32 - 32) as f32;
        }
    }
}

impl GroupBlocks for Q6K {
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]) {
        for (i, u) in u.iter_mut().enumerate() {
            *u = Q6K::level(block, i);
        }
        let d = half_at(block, 208);
        for (g, (s, m)) in scale.iter_mut().zip(min.iter_mut()).enumerate() {
            *s = d * Q6K::scale(block, g);
            *m = 32.0 * *s;
        }
    }
}
