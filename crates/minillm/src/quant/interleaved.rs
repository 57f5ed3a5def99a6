//! q8_0 and q4_0 matrices repacked at load so that eight rows are multiplied in the lanes of one
//! register (llama.cpp's `q4_0_8x8` idea, in a layout of our own).
//!
//! In GGUF's layout a row's block is 32 contiguous weights: the kernel multiplies it with a
//! block of activations into 8 partial sums of that one row, then converts, scales and adds
//! them, three instructions for every 32 multiplications. Here a group of 8 rows stores each
//! block as 4-byte pieces side by side:
//!
//! ```text
//! group g, block k:  8 f16 scales (row 0..8) | piece 0 of rows 0..8 | piece 1 of rows 0..8 | ...
//! ```
//!
//! so one 32-byte load holds the same four weights of 8 rows. One VNNI instruction multiplies them
//! with four activations broadcast to every lane: lane r sums row r, the 8 lanes are the 8 rows'
//! dot products, and the scales are applied once per block for all 8 rows (the 8 weight scales are
//! one vector). A prompt's products are bound by instructions, so this is where they go faster.
//!
//! The weights become the unsigned operand the instruction wants: q4_0's stored nibbles are
//! w + 8, and q8_0's bytes are stored here as w + 128 (the top bit flipped). Each lane starts
//! from -8 * sum(q) or -128 * sum(q) of the activations' block, which takes the offset off. The
//! group's bytes are exactly as many as its 8 GGUF rows' (rows past the end are zeros), and
//! [`unpack`] gives the GGUF bytes back, so a repacked matrix replaces its plain copy.

use super::activations::Int8Row;
use super::{BLOCK, QuantType};

/// Rows per group: the lanes of one 256-bit register of i32.
pub const GROUP_ROWS: usize = 8;
/// Bytes of activations one instruction broadcasts, and of each row's weights beside them.
const PIECE: usize = 4;

/// Rows of activations the kernels take at once: each piece of weights, loaded and unpacked
/// once, serves all of them.
pub const ACTIVATION_ROWS: usize = 8;

/// The products of one group of [`GROUP_ROWS`] rows (`group`, all its blocks) with up to
/// [`ACTIVATION_ROWS`] rows of 8-bit activations: `out[a][r]` = row r times activation row a.
pub type GroupDot = fn(&[u8], &[Int8Row], &mut [[f32; GROUP_ROWS]]);

/// Whether `ty` has an interleaved layout.
pub fn packs(ty: QuantType) -> bool {
    matches!(ty, QuantType::Q8_0 | QuantType::Q4_0)
}

/// The interleaved kernel for `ty` this CPU runs, if it has one: 8-bit multiply-adds into i32
/// lanes (AVX-512 VNNI). Without them the plain layout's kernels are used: AVX2's pairwise
/// multiply would overflow 16 bits on q8_0's unsigned operand.
pub fn kernel(ty: QuantType) -> Option<GroupDot> {
    if !packs(ty) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vnni") && has!("avx512vl") && has!("f16c") && has!("fma") {
            return Some(if ty == QuantType::Q8_0 { x86::q8_0 } else { x86::q4_0 });
        }
    }
    None
}

/// The portable kernel, through the plain layout's reference: the SIMD ones are tested against it.
#[cfg(test)]
pub fn reference(ty: QuantType) -> GroupDot {
    fn dot<const Q8: bool>(group: &[u8], xs: &[Int8Row], out: &mut [[f32; GROUP_ROWS]]) {
        use super::activations::dot_reference;
        let ty = if Q8 { QuantType::Q8_0 } else { QuantType::Q4_0 };
        let cols = xs[0].q.len();
        let mut row = vec![0u8; ty.row_bytes(cols)];
        for r in 0..GROUP_ROWS {
            plain_row(ty, cols, group, r, &mut row);
            for (o, &x) in out.iter_mut().zip(xs) {
                o[r] = if Q8 {
                    dot_reference::<super::Q8_0>(&row, x)
                } else {
                    dot_reference::<super::Q4_0>(&row, x)
                };
            }
        }
    }
    match ty {
        QuantType::Q8_0 => dot::<true>,
        QuantType::Q4_0 => dot::<false>,
        other => panic!("{} has no interleaved layout", other.name()),
    }
}

/// Bytes of one group of [`GROUP_ROWS`] rows of `cols` weights.
pub fn group_bytes(ty: QuantType, cols: usize) -> usize {
    GROUP_ROWS * ty.row_bytes(cols)
}

/// GGUF rows (`rows` x `cols` of `ty`) in the interleaved layout, the last group padded with
/// zero rows.
pub fn pack(ty: QuantType, rows: usize, cols: usize, plain: &[u8]) -> Vec<u8> {
    use rayon::prelude::*;
    let row_bytes = ty.row_bytes(cols);
    let mut packed = vec![0u8; rows.div_ceil(GROUP_ROWS) * group_bytes(ty, cols)];
    let per_block = GROUP_ROWS * ty.block_bytes();
    packed.par_chunks_mut(group_bytes(ty, cols)).zip(plain.par_chunks(GROUP_ROWS * row_bytes)).for_each(
        |(group, rows)| {
            for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
                for (k, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
                    let out = &mut group[k * per_block..(k + 1) * per_block];
                    out[2 * r..2 * r + 2].copy_from_slice(&block[..2]);
                    for (p, piece) in block[2..].chunks_exact(PIECE).enumerate() {
                        let at = 2 * GROUP_ROWS + (p * GROUP_ROWS + r) * PIECE;
                        for (o, &b) in out[at..at + PIECE].iter_mut().zip(piece) {
                            *o = if ty == QuantType::Q8_0 { b ^ 0x80 } else { b };
                        }
                    }
                }
            }
        },
    );
    packed
}

/// Row `r` (within its group) of a group, in GGUF's bytes, into `out` (one row's bytes).
fn plain_row(ty: QuantType, cols: usize, group: &[u8], r: usize, out: &mut [u8]) {
    let per_block = GROUP_ROWS * ty.block_bytes();
    for (k, block) in out[..ty.row_bytes(cols)].chunks_exact_mut(ty.block_bytes()).enumerate() {
        let from = &group[k * per_block..(k + 1) * per_block];
        block[..2].copy_from_slice(&from[2 * r..2 * r + 2]);
        for (p, piece) in block[2..].chunks_exact_mut(PIECE).enumerate() {
            let at = 2 * GROUP_ROWS + (p * GROUP_ROWS + r) * PIECE;
            for (o, &b) in piece.iter_mut().zip(&from[at..at + PIECE]) {
                *o = if ty == QuantType::Q8_0 { b ^ 0x80 } else { b };
            }
        }
    }
}

/// Row `r` of an interleaved matrix dequantized into `out` (`cols`) by the format's
/// `dequantize`, a block at a time on the stack: a token's embedding, with no allocation.
pub fn dequantize_row(
    ty: QuantType,
    cols: usize,
    packed: &[u8],
    r: usize,
    dequantize: fn(&[u8], &mut [f32]),
    out: &mut [f32],
) {
    let (size, bytes) = (group_bytes(ty, cols), ty.block_bytes());
    let group = &packed[r / GROUP_ROWS * size..][..size];
    let mut block = [0u8; 2 + BLOCK];
    for (k, out) in out[..cols].chunks_exact_mut(BLOCK).enumerate() {
        let one = &mut block[..bytes];
        plain_row(ty, BLOCK, &group[k * GROUP_ROWS * bytes..], r % GROUP_ROWS, one);
        dequantize(one, out);
    }
}

/// Row `r` of an interleaved matrix, in GGUF's bytes, into `out` (one row's bytes).
pub fn row(ty: QuantType, cols: usize, packed: &[u8], r: usize, out: &mut [u8]) {
    let size = group_bytes(ty, cols);
    plain_row(ty, cols, &packed[r / GROUP_ROWS * size..][..size], r % GROUP_ROWS, out)
}

/// The GGUF bytes of the first `rows` rows of an interleaved matrix.
pub fn unpack(ty: QuantType, rows: usize, cols: usize, packed: &[u8]) -> Vec<u8> {
    let row_bytes = ty.row_bytes(cols);
    let mut plain = vec![0u8; rows * row_bytes];
    for (r, out) in plain.chunks_exact_mut(row_bytes).enumerate() {
        row(ty, cols, packed, r, out);
    }
    plain
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Handed out by [`kernel`](super::kernel) only after the CPU was checked for the features
    //! they are compiled with.
    use super::super::{BlockFormat, Q4_0, Q8_0};
    use super::{ACTIVATION_ROWS, BLOCK, GROUP_ROWS, Int8Row, PIECE};
    use std::arch::x86_64::*;

    /// For each of A activation rows, the 8 rows' sums over blocks of d_w * d_x * (integer sum
    /// of the block), lane r for row r. `$piece` multiplies piece p of the block at `$at`
    /// (32 bytes: 4 weights of each of the 8 rows) into the lanes `$s` with activation row
    /// `$x`'s block `$q`; each lane starts from the activations' offset shifted by `$shift`.
    macro_rules! groups {
        ($group:expr, $xs:expr, $bytes:expr, $shift:expr, |$s:ident, $at:ident, $q:ident| $pieces:block) => {{
            let (group, xs) = ($group, $xs);
            let blocks = xs[0].q.len() / BLOCK;
            let per_block = GROUP_ROWS * $bytes;
            assert!(group.len() >= blocks * per_block, "{} bytes for a group of {blocks} blocks", group.len());
            for x in &xs[..A] {
                assert!(x.q.len() == blocks * BLOCK && x.scales.len() >= blocks && x.offsets.len() >= blocks);
            }
            let mut acc = [_mm256_setzero_ps(); A];
            // SAFETY: block k < blocks lies inside group; activation row a's block k, its scale
            // and offsets inside xs[a] (all checked above).
            unsafe {
                for k in 0..blocks {
                    let $at = group.as_ptr().add(k * per_block);
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128($at as *const __m128i));
                    let mut $s = [_mm256_setzero_si256(); A];
                    let mut $q = [std::ptr::null::<i8>(); A];
                    for a in 0..A {
                        let x = xs.get_unchecked(a);
                        $s[a] = _mm256_slli_epi32(
                            _mm256_loadu_si256(x.offsets.as_ptr().add(k) as *const __m256i),
                            $shift,
                        );
                        $q[a] = x.q.as_ptr().add(k * BLOCK);
                    }
                    $pieces
                    for a in 0..A {
                        let dx = _mm256_broadcast_ss(xs.get_unchecked(a).scales.get_unchecked(k));
                        acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps($s[a]), _mm256_mul_ps(dw, dx), acc[a]);
                    }
                }
            }
            acc.map(|v| {
                let mut lanes = [0.0f32; GROUP_ROWS];
                // SAFETY: 8 f32 lanes into an array of 8.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
                lanes
            })
        }};
    }

    /// Four activations (bytes `$at` of `$q`) in every lane.
    macro_rules! four {
        ($q:expr, $at:expr) => {
            _mm256_set1_epi32(std::ptr::read_unaligned($q.add($at) as *const i32))
        };
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
    unsafe fn q8_0_groups<const A: usize>(group: &[u8], xs: &[Int8Row]) -> [[f32; GROUP_ROWS]; A] {
        groups!(group, xs, Q8_0::BYTES, 7, |s, at, q| {
            for p in 0..BLOCK / PIECE {
                let w = _mm256_loadu_si256(at.add(2 * GROUP_ROWS + 32 * p) as *const __m256i);
                for a in 0..A {
                    s[a] = _mm256_dpbusd_epi32(s[a], w, four!(q[a], PIECE * p));
                }
            }
        })
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
    unsafe fn q4_0_groups<const A: usize>(group: &[u8], xs: &[Int8Row]) -> [[f32; GROUP_ROWS]; A] {
        let mask = _mm256_set1_epi8(0x0f);
        groups!(group, xs, Q4_0::BYTES, 3, |s, at, q| {
            // Piece p's bytes hold weights 4p..4p + 4 (low nibbles) and 16 + 4p.. (high).
            for p in 0..BLOCK / 2 / PIECE {
                let w = _mm256_loadu_si256(at.add(2 * GROUP_ROWS + 32 * p) as *const __m256i);
                let (low, high) =
                    (_mm256_and_si256(w, mask), _mm256_and_si256(_mm256_srli_epi16(w, 4), mask));
                for a in 0..A {
                    s[a] = _mm256_dpbusd_epi32(s[a], low, four!(q[a], PIECE * p));
                    s[a] = _mm256_dpbusd_epi32(s[a], high, four!(q[a], BLOCK / 2 + PIECE * p));
                }
            }
        })
    }

    macro_rules! safe {
        ($($name:ident => $imp:ident),*) => {$(
            pub fn $name(group: &[u8], xs: &[Int8Row], out: &mut [[f32; GROUP_ROWS]]) {
                assert!(out.len() == xs.len(), "{} outputs for {} activation rows", out.len(), xs.len());
                // SAFETY: returned by `kernel` only after the features were detected.
                let sums: &[[f32; GROUP_ROWS]] = match xs.len() {
                    1 => &unsafe { $imp::<1>(group, xs) },
                    2 => &unsafe { $imp::<2>(group, xs) },
                    3 => &unsafe { $imp::<3>(group, xs) },
                    4 => &unsafe { $imp::<4>(group, xs) },
                    5 => &unsafe { $imp::<5>(group, xs) },
                    6 => &unsafe { $imp::<6>(group, xs) },
                    7 => &unsafe { $imp::<7>(group, xs) },
                    8 => &unsafe { $imp::<8>(group, xs) },
                    a => panic!("the interleaved kernels take 1 to {ACTIVATION_ROWS} activation rows, not {a}"),
                };
                out.copy_from_slice(sums);
            }
        )*};
    }
    safe!(q8_0 => q8_0_groups, q4_0 => q4_0_groups);
}
