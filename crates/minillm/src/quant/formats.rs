//! The block trait and the first three formats (f16, q8_0, q4_0): how one block of weights
//! becomes bytes and back, and the portable dot product of a row of blocks with f32
//! activations. q4_1, q5_0 and q5_1 are in `legacy.rs`, the k-quants in `k_quants.rs`.

use super::BLOCK;
use half::f16;

/// One way of storing blocks of [`WEIGHTS`](Self::WEIGHTS) weights.
pub trait BlockFormat {
    /// Weights per block: 32, or 256 for the k-quants' super-blocks.
    const WEIGHTS: usize = BLOCK;
    /// Bytes per block.
    const BYTES: usize;

    /// Writes the block for `x` (`WEIGHTS` long) into `out` (`BYTES` long).
    fn quantize(x: &[f32], out: &mut [u8]);

    /// The weights a block stands for, into `out` (`WEIGHTS` long), computed as llama.cpp and
    /// the `gguf` package compute them (same operations in the same order, so equal bits).
    fn dequantize(block: &[u8], out: &mut [f32]);

    /// sum_i w_i * x_i over a row of blocks, portably: each block dequantized, then multiplied
    /// in order. The reference the SIMD kernels are tested against.
    fn dot_reference(row: &[u8], x: &[f32]) -> f32 {
        let mut w = [0.0f32; super::SUPER];
        let w = &mut w[..Self::WEIGHTS];
        let mut sum = 0.0f32;
        for (block, xs) in row.chunks_exact(Self::BYTES).zip(x.chunks_exact(Self::WEIGHTS)) {
            Self::dequantize(block, w);
            sum += w.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>();
        }
        sum
    }
}

/// A format whose block is one scale times small integers (q8_0, q4_0): the weights can be
/// multiplied with 8-bit activations in integer arithmetic, the scales applied once per block.
pub trait IntegerBlocks: BlockFormat {
    /// The block's integers into `out`; returns its scale d (weight j = d * out[j]).
    fn integers(block: &[u8], out: &mut [i8; BLOCK]) -> f32;
}

/// A format whose weights are, per group of [`GROUP`] weights, a scale times small unsigned
/// integers minus an offset: w_i = scale_g * u_i - min_g (q4_1, q5_0, q5_1 and the k-quants).
/// The kernels multiply u with 8-bit activations in integers and apply scale and min once per
/// group: sum_i w_i x_i = sum_g scale_g * sum(u x) - min_g * sum(x).
pub trait GroupBlocks: BlockFormat {
    /// The block's u (`WEIGHTS`, each 0..=63) and each group's scale and min (`WEIGHTS / GROUP`).
    fn groups(block: &[u8], u: &mut [u8], scale: &mut [f32], min: &mut [f32]);
}

/// Weights per group of [`GroupBlocks`]: q6_K's sub-blocks, the smallest of any format here.
pub const GROUP: usize = 16;

/// The f16 at `at` in a block, as f32.
pub(super) fn half_at(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

pub(super) fn put_half(out: &mut [u8], at: usize, v: f32) {
    out[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn dequantize_integers<F: IntegerBlocks>(block: &[u8], out: &mut [f32]) {
    let mut q = [0i8; BLOCK];
    let d = F::integers(block, &mut q);
    for (o, q) in out.iter_mut().zip(q) {
        *o = q as f32 * d;
    }
}

fn scale(block: &[u8]) -> f32 {
    half_at(block, 0)
}

/// Half precision: 32 f16 per block, no scale.
pub struct F16;

impl BlockFormat for F16 {
    const BYTES: usize = 2 * BLOCK;

    fn quantize(x: &[f32], out: &mut [u8]) {
        for (o, &v) in out.chunks_exact_mut(2).zip(x) {
            o.copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(block.chunks_exact(2)) {
            *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
        }
    }
}

/// 8-bit: d = max|x| / 127, q = round(x / d), stored as f16 d and 32 int8.
pub struct Q8_0;

impl BlockFormat for Q8_0 {
    const BYTES: usize = 2 + BLOCK;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (o, &v) in out[2..].iter_mut().zip(x) {
            *o = (v * inverse).round() as i8 as u8;
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_integers::<Self>(block, out)
    }
}

impl IntegerBlocks for Q8_0 {
    fn integers(block: &[u8], out: &mut [i8; BLOCK]) -> f32 {
        for (o, &q) in out.iter_mut().zip(&block[2..]) {
            *o = q as i8;
        }
        scale(block)
    }
}

/// 4-bit: the weight of largest magnitude m sets d = m / -8, so it maps to -8 exactly and
/// q = round(x / d) + 8 lies in 0..=15 (its mirror image, +8, is clipped to 7). Element j sits in
/// the low nibble of byte j, element j + 16 in the high nibble.
pub struct Q4_0;

impl BlockFormat for Q4_0 {
    const BYTES: usize = 2 + BLOCK / 2;

    fn quantize(x: &[f32], out: &mut [u8]) {
        let m = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = m / -8.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        // x / d + 8.5 lies in [0.5, 16.5]; truncating it rounds x / d + 8 to the nearest.
        let nibble = |v: f32| ((v * inverse + 8.5) as u8).min(15);
        for j in 0..BLOCK / 2 {
            out[2 + j] = nibble(x[j]) | (nibble(x[j + BLOCK / 2]) << 4);
        }
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        dequantize_integers::<Self>(block, out)
    }
}

impl IntegerBlocks for Q4_0 {
    fn integers(block: &[u8], out: &mut [i8; BLOCK]) -> f32 {
        for (j, &b) in block[2..].iter().enumerate() {
            out[j] = (b & 0x0f) as i8 - 8;
            out[j + BLOCK / 2] = (b >> 4) as i8 - 8;
        }
        scale(block)
    }
}
