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
    /// q = round(x / d), the rounding of llama.cpp's `quantize_row_q8_0`.
    pub fn quantize(&mut self, x: &[f32], m: usize, cols: usize) {
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
        let blocks = self
            .q
            .chunks_exact_mut(BLOCK)
            .zip(&mut self.scales)
            .zip(&mut self.offsets)
            .zip(&mut self.lane_sums);
        for ((((q, d), offset), lanes), x) in blocks.zip(x[..m * cols].chunks_exact(BLOCK)) {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            *d = amax / 127.0;
            let inverse = if *d != 0.0 { 1.0 / *d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in q.iter_mut().zip(x) {
                *q = (v * inverse).round() as i8;
                sum += *q as i32;
            }
            *offset = [-sum; LANES];
            for (lane, four) in lanes.iter_mut().zip(q.chunks_exact(BLOCK / LANES)) {
                *lane = *d * four.iter().map(|&q| q as i32).sum::<i32>() as f32;
            }
        }
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
