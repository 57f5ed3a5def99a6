//! Activations rounded to 8 bits, so that q8_0 and q4_0 weights multiply them in integers.
//!
//! Widening every weight to f32 costs more instructions than reading it: with f32 activations the
//! kernels were bound by that widening, not by memory. llama.cpp instead rounds the activation
//! row to q8_0 blocks once per product (its "vec_dot_type") and multiplies 8-bit integers: one
//! AVX-512 VNNI `vpdpbusd` multiplies 32 byte pairs and adds them in fours into 8 i32 lanes (AVX2
//! takes `vpmaddubsw` + `vpmaddwd`). A block's integer sum is exact; the scales are applied once
//! per block:
//!
//! sum_j w_j x_j ~ sum_blocks d_w * d_x * sum_j qw_j * qx_j
//!
//! which is exactly the dot product of the dequantized weights with the dequantized activations.
//! The rounding of x adds an error of at most d_x / 2 per value (see the tests' bound).

use super::formats::{GROUP, GroupBlocks, IntegerBlocks};
use super::{BLOCK, SUPER};

/// The integer kernels keep 8 partial sums per block (one ymm register of i32).
pub const LANES: usize = 8;

/// One row of 8-bit activations, in blocks of [`BLOCK`].
#[derive(Clone, Copy)]
pub struct Int8Row<'a> {
    /// The rounded values, q = round(x / d), in -127..=127.
    pub q: &'a [i8],
    /// d per block: the block's largest magnitude / 127, kept in f32 (llama.cpp rounds it to f16).
    pub scales: &'a [f32],
    /// -(sum of the block's q) in each of [`LANES`] lanes. q4_0 stores weights as w + 8 in
    /// 0..=15 (the unsigned operand the instructions want); its kernels start each block's lanes
    /// from these, which subtracts 8 * sum(q) once per block of x instead of 8 from every weight.
    pub offsets: &'a [[i32; LANES]],
    /// d * (the sum of q over four consecutive values), per block: lane l covers values
    /// 4l..4l + 4, where the integer kernels' lane l sums them. The formats with a minimum
    /// ([`GroupBlocks`]) subtract min * sum(x) per group of 16 (four lanes) with these.
    pub lane_sums: &'a [[f32; LANES]],
}

/// `m` rows of activations in 8 bits; the buffers grow once and are reused (no allocation per
/// product).
#[derive(Default)]
pub struct Int8Activations {
    cols: usize,
    q: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<[i32; LANES]>,
    lane_sums: Vec<[f32; LANES]>,
}

impl Int8Activations {
    /// Rounds `x` (m rows of `cols`, `cols` a multiple of 32) block by block: d = max|x| / 127,
    /// q = x / d rounded to the nearest integer, ties to even (as llama.cpp's SIMD
    /// `quantize_row_q8_0` does; its portable one rounds ties away from zero).
    pub fn quantize(&mut self, x: &[f32], m: usize, cols: usize) {
        self.quantize_by(quantizer().0, x, m, cols)
    }

    /// [`quantize`](Self::quantize) by a given implementation: tests hold each to the other.
    pub(crate) fn quantize_by(&mut self, quantize: Quantize, x: &[f32], m: usize, cols: usize) {
        assert!(
            cols.is_multiple_of(BLOCK) && x.len() >= m * cols,
            "activations of {} for {m} x {cols}",
            x.len()
        );
        let blocks = m * cols / BLOCK;
        self.cols = cols;
        self.q.resize(m * cols, 0);
        self.scales.resize(blocks, 0.0);
        self.offsets.resize(blocks, [0; LANES]);
        self.lane_sums.resize(blocks, [0.0; LANES]);
        let out = BlockBuffers {
            q: &mut self.q,
            scales: &mut self.scales,
            offsets: &mut self.offsets,
            lanes: &mut self.lane_sums,
        };
        quantize(&x[..m * cols], out);
    }

    /// Row `i` of the last [`quantize`](Self::quantize).
    pub fn row(&self, i: usize) -> Int8Row<'_> {
        let (k, blocks) = (self.cols, self.cols / BLOCK);
        Int8Row {
            q: &self.q[i * k..(i + 1) * k],
            scales: &self.scales[i * blocks..(i + 1) * blocks],
            offsets: &self.offsets[i * blocks..(i + 1) * blocks],
            lane_sums: &self.lane_sums[i * blocks..(i + 1) * blocks],
        }
    }
}

/// The buffers one [`Int8Activations::quantize`] fills, a block of 32 values at a time.
pub struct BlockBuffers<'a> {
    q: &'a mut [i8],
    scales: &'a mut [f32],
    offsets: &'a mut [[i32; LANES]],
    lanes: &'a mut [[f32; LANES]],
}

pub(crate) type Quantize = fn(&[f32], BlockBuffers);

/// The fastest way this CPU rounds activations (AVX-512: a block in two registers; the
/// portable loop calls a rounding function per value, which cost as much as the products in a
/// small model's prompt), and its name.
pub fn quantizer() -> (Quantize, &'static str) {
    static CHOSEN: std::sync::OnceLock<(Quantize, &str)> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                return (x86::quantize, "AVX-512");
            }
        }
        (quantize_portable, "portable")
    })
}

/// [`Int8Activations::quantize`]'s rounding, portably: the reference the SIMD one is tested
/// against, value for value.
pub fn quantize_portable(x: &[f32], out: BlockBuffers) {
    let blocks = out.q.chunks_exact_mut(BLOCK).zip(out.scales).zip(out.offsets).zip(out.lanes);
    for ((((q, d), offset), lanes), x) in blocks.zip(x.chunks_exact(BLOCK)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *d = amax / 127.0;
        let inverse = if *d != 0.0 { 1.0 / *d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (v * inverse).round_ties_even() as i8;
            sum += *q as i32;
        }
        *offset = [-sum; LANES];
        for (lane, four) in lanes.iter_mut().zip(q.chunks_exact(BLOCK / LANES)) {
            *lane = *d * four.iter().map(|&q| q as i32).sum::<i32>() as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK, BlockBuffers, LANES};
    use std::arch::x86_64::*;

    /// Handed out by [`quantizer`](super::quantizer) only after the features were detected.
    pub fn quantize(x: &[f32], out: BlockBuffers) {
        // SAFETY: see above.
        unsafe { quantize_v4(x, out) }
    }

    /// The portable loop's arithmetic in registers: the same maximum, the same d and inverse,
    /// the same products, rounded to nearest-even by the conversion (the default mode).
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn quantize_v4(x: &[f32], out: BlockBuffers) {
        let blocks = x.len() / BLOCK;
        assert!(
            out.q.len() >= blocks * BLOCK
                && out.scales.len() >= blocks
                && out.offsets.len() >= blocks
                && out.lanes.len() >= blocks,
            "buffers for {blocks} blocks"
        );
        let ones = _mm256_set1_epi8(1);
        // SAFETY: block b < blocks of x, q and the per-block buffers (checked above).
        unsafe {
            for b in 0..blocks {
                let (low, high) = (
                    _mm512_loadu_ps(x.as_ptr().add(b * BLOCK)),
                    _mm512_loadu_ps(x.as_ptr().add(b * BLOCK + 16)),
                );
                let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
                let d = amax / 127.0;
                let inverse = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
                let q_low = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(low, inverse)));
                let q_high = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(high, inverse)));
                let q = _mm256_set_m128i(q_high, q_low);
                _mm256_storeu_si256(out.q.as_mut_ptr().add(b * BLOCK) as *mut __m256i, q);
                // Lane l: the sum of q over values 4l..4l + 4 (one multiply-add by ones).
                let fours = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
                let mut sums = [0i32; LANES];
                _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, fours);
                *out.scales.get_unchecked_mut(b) = d;
                *out.offsets.get_unchecked_mut(b) = [-sums.iter().sum::<i32>(); LANES];
                _mm256_storeu_ps(
                    out.lanes.as_mut_ptr().add(b) as *mut f32,
                    _mm256_mul_ps(_mm256_cvtepi32_ps(fours), _mm256_set1_ps(d)),
                );
            }
        }
    }
}

impl Int8Row<'_> {
    /// The values the row stands for, d * q: what the integer kernels multiply the weights with.
    #[cfg(test)]
    pub fn dequantize(&self) -> Vec<f32> {
        self.q
            .chunks_exact(BLOCK)
            .zip(self.scales)
            .flat_map(|(q, &d)| q.iter().map(move |&q| q as f32 * d))
            .collect()
    }
}

/// sum over blocks of d_w * d_x * (integer dot product of the block), portably: the reference
/// the SIMD integer kernels are tested against.
pub fn dot_reference<F: IntegerBlocks>(row: &[u8], x: Int8Row) -> f32 {
    let mut w = [0i8; BLOCK];
    let mut sum = 0.0f32;
    for ((block, q), &dx) in row.chunks_exact(F::BYTES).zip(x.q.chunks_exact(BLOCK)).zip(x.scales) {
        let dw = F::integers(block, &mut w);
        let ints: i32 = w.iter().zip(q).map(|(&a, &b)| a as i32 * b as i32).sum();
        sum += dw * dx * ints as f32;
    }
    sum
}

/// sum over groups of d_x * (scale * (integer dot product of u and q) - min * sum(q)),
/// portably: the reference for the SIMD kernels of the [`GroupBlocks`] formats.
pub fn group_dot_reference<F: GroupBlocks>(row: &[u8], x: Int8Row) -> f32 {
    let (mut u, mut scale, mut min) = ([0u8; SUPER], [0.0f32; SUPER / GROUP], [0.0f32; SUPER / GROUP]);
    let groups = F::WEIGHTS / GROUP;
    let mut sum = 0.0f32;
    for (b, block) in row.chunks_exact(F::BYTES).enumerate() {
        F::groups(block, &mut u[..F::WEIGHTS], &mut scale[..groups], &mut min[..groups]);
        for g in 0..groups {
            let at = b * F::WEIGHTS + g * GROUP;
            let dx = x.scales[at / BLOCK];
            let q = &x.q[at..at + GROUP];
            let ints: i32 =
                u[g * GROUP..(g + 1) * GROUP].iter().zip(q).map(|(&u, &q)| u as i32 * q as i32).sum();
            let qsum: i32 = q.iter().map(|&q| q as i32).sum();
            sum += dx * (scale[g] * ints as f32 - min[g] * qsum as f32);
        }
    }
    sum
}

/// `dot` for each of R consecutive rows in `rows` and each row of activations in `xs`, into
/// `out[a * R + r]`: the [`IntDot`] shape, for a format of `bytes` per `weights`.
///
/// [`IntDot`]: super::simd::IntDot
fn each_row(
    rows: &[u8],
    xs: &[Int8Row],
    out: &mut [f32],
    (weights, bytes): (usize, usize),
    dot: impl Fn(&[u8], Int8Row) -> f32,
) {
    let r = out.len() / xs.len().max(1);
    let row_bytes = xs[0].q.len() / weights * bytes;
    assert!(r * xs.len() == out.len() && rows.len() >= r * row_bytes, "{} bytes for {r} rows", rows.len());
    for (outs, &x) in out.chunks_exact_mut(r).zip(xs) {
        for (o, row) in outs.iter_mut().zip(rows.chunks_exact(row_bytes)) {
            *o = dot(row, x);
        }
    }
}

/// [`dot_reference`] in the [`IntDot`](super::simd::IntDot) shape.
pub fn rows_reference<F: IntegerBlocks>(rows: &[u8], xs: &[Int8Row], out: &mut [f32]) {
    each_row(rows, xs, out, (F::WEIGHTS, F::BYTES), dot_reference::<F>)
}

/// [`group_dot_reference`] in the [`IntDot`](super::simd::IntDot) shape.
pub fn group_rows_reference<F: GroupBlocks>(rows: &[u8], xs: &[Int8Row], out: &mut [f32]) {
    each_row(rows, xs, out, (F::WEIGHTS, F::BYTES), group_dot_reference::<F>)
}
