//! The dot product of a row of blocks with a row of activations, in AVX-512 and AVX2, chosen at
//! run time; the portable references are [`BlockFormat::dot_reference`] and
//! [`activations::rows_reference`].
//!
//! f16 rows meet f32 activations: each half float is widened in registers and multiplied.
//! Every other type meets 8-bit activations ([`Int8Row`]): 32 integer products per block summed
//! in 8 lanes of i32 by one instruction (three without VNNI), then the block's scales applied
//! once. Weights are read once, as bytes, and never written out widened.
//!
//! The formats with a minimum or a fifth or sixth bit ([`GroupBlocks`](super::GroupBlocks)) share one kernel shape:
//! per 32 weights, the unsigned levels u (0..=63) are unpacked into a register, multiplied with
//! the activations in integers, and scale * sum(u x) - min * sum(x) is added per lane, with the
//! scale and min of each lane's group of 16 (k-quant scales are decoded once per super-block).

use super::activations::{self, Int8Row, LANES};
use super::formats::{BlockFormat, F16, Q4_0, Q8_0};
use super::{BLOCK, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, QuantType};

/// f16 row times f32 activations: `row` holds `x.len() / 32` blocks.
pub type Dot = fn(&[u8], &[f32]) -> f32;
/// q8_0 / q4_0 rows times 8-bit activations: `rows` holds R (1 to 4) consecutive rows of
/// `xs[0].q.len() / 32` blocks each, `xs` 1 to 4 rows of activations, and
/// `out[a * R + r]` (R = `out.len() / xs.len()`) gets row r times activation row a. Each weight
/// block is unpacked once for all the activation rows (prefill), each activation block loaded
/// once for all the weight rows.
pub type IntDot = fn(&[u8], &[Int8Row], &mut [f32]);

/// A kernel for one weight type: which kind of activations it takes follows from the type.
#[derive(Clone, Copy)]
pub enum Kernel {
    /// f16 weights, f32 activations.
    Float(Dot),
    /// Any other type: 8-bit activations.
    Int8(IntDot),
}

/// The fastest kernel this CPU runs for `ty`, and the instruction set it uses.
pub fn kernel(ty: QuantType) -> (Kernel, &'static str) {
    use std::sync::OnceLock;
    static CHOSEN: [OnceLock<(Kernel, &str)>; QuantType::ALL.len()] =
        [const { OnceLock::new() }; QuantType::ALL.len()];
    *CHOSEN[ty as usize].get_or_init(|| all_kernels(ty).pop().expect("the portable kernel is always there"))
}

/// The portable kernel for `ty`.
pub fn reference(ty: QuantType) -> Kernel {
    match ty {
        QuantType::F16 => Kernel::Float(F16::dot_reference),
        QuantType::Q8_0 => Kernel::Int8(activations::rows_reference::<Q8_0>),
        QuantType::Q4_0 => Kernel::Int8(activations::rows_reference::<Q4_0>),
        QuantType::Q4_1 => Kernel::Int8(activations::group_rows_reference::<Q4_1>),
        QuantType::Q5_0 => Kernel::Int8(activations::group_rows_reference::<Q5_0>),
        QuantType::Q5_1 => Kernel::Int8(activations::group_rows_reference::<Q5_1>),
        QuantType::Q4K => Kernel::Int8(activations::group_rows_reference::<Q4K>),
        QuantType::Q5K => Kernel::Int8(activations::group_rows_reference::<Q5K>),
        QuantType::Q6K => Kernel::Int8(activations::group_rows_reference::<Q6K>),
    }
}

/// Every kernel this CPU can run for `ty`, slowest first, with its instruction set's name; the
/// first is the portable reference.
pub fn all_kernels(ty: QuantType) -> Vec<(Kernel, &'static str)> {
    let mut found = vec![(reference(ty), "portable")];
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        let avx512 = avx2 && has!("avx512f") && has!("avx512bw");
        let vnni = avx512 && has!("avx512vnni") && has!("avx512vl");
        let (float, int) = (Kernel::Float, Kernel::Int8);
        match ty {
            QuantType::F16 if avx2 => found.push((float(x86::f16_avx2), "AVX2")),
            QuantType::Q8_0 if avx2 => found.push((int(x86::q8_0_avx2), "AVX2")),
            QuantType::Q4_0 if avx2 => found.push((int(x86::q4_0_avx2), "AVX2")),
            QuantType::Q4_1 if avx2 => found.push((int(x86::q4_1_avx2), "AVX2")),
            QuantType::Q5_0 if avx2 => found.push((int(x86::q5_0_avx2), "AVX2")),
            QuantType::Q5_1 if avx2 => found.push((int(x86::q5_1_avx2), "AVX2")),
            QuantType::Q4K if avx2 => found.push((int(x86::q4_k_avx2), "AVX2")),
            QuantType::Q5K if avx2 => found.push((int(x86::q5_k_avx2), "AVX2")),
            QuantType::Q6K if avx2 => found.push((int(x86::q6_k_avx2), "AVX2")),
            _ => {}
        }
        match ty {
            QuantType::F16 if avx512 => found.push((float(x86::f16_avx512), "AVX-512")),
            QuantType::Q8_0 if vnni => found.push((int(x86::q8_0_vnni), "AVX-512 VNNI")),
            QuantType::Q4_0 if vnni => found.push((int(x86::q4_0_vnni), "AVX-512 VNNI")),
            QuantType::Q4_1 if vnni => found.push((int(x86::q4_1_vnni), "AVX-512 VNNI")),
            QuantType::Q5_0 if vnni => found.push((int(x86::q5_0_vnni), "AVX-512 VNNI")),
            QuantType::Q5_1 if vnni => found.push((int(x86::q5_1_vnni), "AVX-512 VNNI")),
            QuantType::Q4K if vnni => found.push((int(x86::q4_k_vnni), "AVX-512 VNNI")),
            QuantType::Q5K if vnni => found.push((int(x86::q5_k_vnni), "AVX-512 VNNI")),
            QuantType::Q6K if vnni => found.push((int(x86::q6_k_vnni), "AVX-512 VNNI")),
            _ => {}
        }
    }
    found
}

/// Every f16 bit pattern's f32 value (256 KB). Looking a block's scale up is one load, which
/// the load ports do; converting it with F16C would take three vector instructions per block
/// and row, on the ports the products need (llama.cpp keeps the same table).
fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|bits| half::f16::from_bits(bits).to_f32()).collect())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Safe wrappers are handed out only by `all_kernels`, after the CPU was checked for the
    //! features each one is compiled with. Helpers are macros, not closures: a closure does not
    //! inherit its function's target features, and its intrinsics would not inline.
    use super::{BLOCK, BlockFormat, Int8Row, LANES, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0, f16_table};
    use std::arch::x86_64::*;

    // SAFETY (the wrappers): only returned after the features were detected (see the module
    // doc); lengths are checked inside.
    macro_rules! safe {
        ($($name:ident => $imp:ident),*) => {$(
            pub fn $name(row: &[u8], x: &[f32]) -> f32 {
                unsafe { $imp(row, x) }
            }
        )*};
    }
    safe!(f16_avx2 => f16_v3, f16_avx512 => f16_v4);

    /// The kernel instantiated for `r` weight rows and `a` activation rows.
    macro_rules! pick {
        ($imp:ident, $rows:expr, $xs:expr, $out:expr, $r:expr, $a:expr; $(($R:literal, $A:literal)),*) => {
            match ($r, $a) {
                $(($R, $A) => put::<$R, $A>($out, unsafe { $imp::<$R, $A>($rows, $xs) }),)*
                (r, a) => panic!("the integer kernels take 1 to 4 rows and 1 to 4 activation rows, not {r} x {a}"),
            }
        };
    }

    /// The integer kernels are compiled for 1 to 4 weight rows times 1 to 4 activation rows;
    /// the lengths of `xs` and `out` pick one.
    macro_rules! safe_rows {
        ($($name:ident => $imp:ident),*) => {$(
            pub fn $name(rows: &[u8], xs: &[Int8Row], out: &mut [f32]) {
                let a = xs.len();
                let r = if a == 0 { 0 } else { out.len() / a };
                assert!(r * a == out.len(), "{} outputs for {a} activation rows", out.len());
                pick!($imp, rows, xs, out, r, a; (1, 1), (2, 1), (3, 1), (4, 1), (1, 2), (2, 2), (3, 2), (4, 2),
                      (1, 3), (2, 3), (3, 3), (4, 3), (1, 4), (2, 4), (3, 4), (4, 4))
            }
        )*};
    }

    fn put<const R: usize, const A: usize>(out: &mut [f32], sums: [[f32; R]; A]) {
        for (o, s) in out.chunks_exact_mut(R).zip(&sums) {
            o.copy_from_slice(s);
        }
    }
    safe_rows!(q8_0_avx2 => q8_0_v3, q4_0_avx2 => q4_0_v3, q8_0_vnni => q8_0_v4, q4_0_vnni => q4_0_v4);
    safe_rows!(q4_1_avx2 => q4_1_v3, q5_0_avx2 => q5_0_v3, q5_1_avx2 => q5_1_v3,
               q4_k_avx2 => q4_k_v3, q5_k_avx2 => q5_k_v3, q6_k_avx2 => q6_k_v3,
               q4_1_vnni => q4_1_v4, q5_0_vnni => q5_0_v4, q5_1_vnni => q5_1_v4,
               q4_k_vnni => q4_k_v4, q5_k_vnni => q5_k_v4, q6_k_vnni => q6_k_v4);

    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    fn check(row: &[u8], x: &[f32], bytes: usize) -> usize {
        let blocks = x.len() / BLOCK;
        assert!(
            x.len().is_multiple_of(BLOCK) && row.len() >= blocks * bytes,
            "row of {} bytes for {} inputs",
            row.len(),
            x.len()
        );
        blocks
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_v3(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 64);
        let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        // SAFETY (all kernels): block k lies inside row and its 32 inputs inside x (checked).
        unsafe {
            let (w, xs) = (row.as_ptr(), x.as_ptr());
            for k in 0..blocks * 2 {
                let (w, xs) = (w.add(k * 32), xs.add(k * 16));
                a = _mm256_fmadd_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(w as *const __m128i)),
                    _mm256_loadu_ps(xs),
                    a,
                );
                b = _mm256_fmadd_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(w.add(16) as *const __m128i)),
                    _mm256_loadu_ps(xs.add(8)),
                    b,
                );
            }
        }
        sum8(_mm256_add_ps(a, b))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn f16_v4(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 64);
        let (mut a, mut b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        unsafe {
            for k in 0..blocks {
                let (w, xs) = (row.as_ptr().add(k * 64), x.as_ptr().add(k * BLOCK));
                a = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256(w as *const __m256i)),
                    _mm512_loadu_ps(xs),
                    a,
                );
                b = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256(w.add(32) as *const __m256i)),
                    _mm512_loadu_ps(xs.add(16)),
                    b,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a, b))
    }

    /// 32 products of unsigned bytes `u` with signed bytes `s`, added in groups of four to the
    /// eight i32 lanes of `init`: one VNNI instruction...
    macro_rules! vnni {
        ($init:expr, $u:expr, $s:expr) => {
            _mm256_dpbusd_epi32($init, $u, $s)
        };
    }
    /// ...or, in AVX2, pairs to i16 (no overflow: |u| <= 128 and |s| <= 127 here), then to i32.
    macro_rules! avx2 {
        ($init:expr, $u:expr, $s:expr) => {
            _mm256_add_epi32($init, _mm256_madd_epi16(_mm256_maddubs_epi16($u, $s), _mm256_set1_epi16(1)))
        };
    }

    /// For each of R consecutive rows and A rows of activations: sum over blocks of
    /// d_w * d_x * (the block's integer sum). Per block, `$load` prepares the weight block at
    /// `$block` once (its bytes unpacked), and `$sum` makes its integer sum with activation
    /// row a's block `$q` (lanes starting from `$off`) in 8 lanes. The activations' blocks are
    /// loaded once for the R rows; each (row, activation) pair keeps its own accumulator, so
    /// consecutive multiply-adds do not wait on each other.
    macro_rules! blocks {
        ($rows:expr, $xs:expr, $bytes:expr, |$block:ident| $load:expr, |$w:ident, $q:ident, $off:ident| $sum:expr) => {{
            let (rows, xs) = ($rows, $xs);
            let blocks = xs[0].q.len() / BLOCK;
            let stride = blocks * $bytes;
            assert!(
                xs.len() >= A && rows.len() >= R * stride,
                "{} bytes for {R} rows of {} inputs",
                rows.len(),
                xs[0].q.len()
            );
            for x in &xs[..A] {
                assert!(x.q.len() == blocks * BLOCK && x.scales.len() >= blocks && x.offsets.len() >= blocks);
            }
            let table = f16_table();
            let mut acc = [[_mm256_setzero_ps(); R]; A];
            // SAFETY: block k < blocks of row r < R lies inside rows; activation row a's block
            // k, its scale and offsets inside xs[a] (all checked above).
            unsafe {
                for k in 0..blocks {
                    let mut q = [_mm256_setzero_si256(); A];
                    let mut off = [_mm256_setzero_si256(); A];
                    let mut dx = [_mm256_setzero_ps(); A];
                    for a in 0..A {
                        let x = xs.get_unchecked(a);
                        q[a] = _mm256_loadu_si256(x.q.as_ptr().add(k * BLOCK) as *const __m256i);
                        off[a] = _mm256_loadu_si256(x.offsets.as_ptr().add(k) as *const __m256i);
                        dx[a] = _mm256_broadcast_ss(x.scales.get_unchecked(k));
                    }
                    for r in 0..R {
                        let $block = rows.as_ptr().add(r * stride + k * $bytes);
                        let $w = $load;
                        let dw = _mm256_broadcast_ss(
                            table.get_unchecked(std::ptr::read_unaligned($block as *const u16) as usize),
                        );
                        for a in 0..A {
                            let ($q, $off) = (q[a], off[a]);
                            let s: __m256i = $sum;
                            acc[a][r] =
                                _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, dx[a]), acc[a][r]);
                        }
                    }
                }
            }
            acc.map(|row| row.map(|a| sum8(a)))
        }};
    }

    /// The q8_0 and q4_0 kernels for one instruction set. q8_0: w * q = |w| * (q with w's
    /// sign), making the unsigned operand. q4_0: the stored nibbles (w + 8) are the unsigned
    /// operand as they are; the lanes start from the activations' offsets, which take the 8 off.
    macro_rules! int_kernels {
        ($q8:ident, $q4:ident, $features:literal, $products:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $q8<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                blocks!(
                    rows,
                    xs,
                    Q8_0::BYTES,
                    |block| _mm256_loadu_si256(block.add(2) as *const __m256i),
                    |w, q, _off| {
                        $products!(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(q, w))
                    }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q4<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                const _: () = assert!(LANES == 8);
                let mask = _mm256_set1_epi8(0x0f);
                blocks!(
                    rows,
                    xs,
                    Q4_0::BYTES,
                    |block| {
                        // Elements 0..16 are the low nibbles, 16..32 the high ones.
                        let bytes = _mm_loadu_si128(block.add(2) as *const __m128i);
                        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), mask)
                    },
                    |w, q, off| $products!(off, w, q)
                )
            }
        };
    }
    int_kernels!(q8_0_v3, q4_0_v3, "avx2,fma,f16c", avx2);
    int_kernels!(q8_0_v4, q4_0_v4, "avx2,fma,f16c,avx512f,avx512vnni,avx512vl", vnni);

    /// The f16 at byte `$at` of the block at `$p`, through the table.
    macro_rules! half {
        ($table:expr, $p:expr, $at:expr) => {
            *$table.get_unchecked(std::ptr::read_unaligned($p.add($at) as *const u16) as usize)
        };
    }

    /// For each of R rows and A activation rows, the [`GroupBlocks`](super::GroupBlocks) sum.
    /// Per block of row r, `$header` fills `$sc` and `$mn` (scale and min per group of 16);
    /// per 32 weights (chunk `$c`), `$unpack` makes the register of levels u. With `$uniform`,
    /// both groups of a chunk share a scale (only q6_K's differ), which saves building a
    /// two-valued register. The activations' lane sums (d_x * sum of four q) take the min off.
    macro_rules! group_blocks {
        ($rows:expr, $xs:expr, $F:ty, $uniform:expr, $products:ident,
         |$block:ident, $table:ident, $sc:ident, $mn:ident| $header:block,
         |$b:ident, $c:ident| $unpack:block) => {{
            const W: usize = <$F>::WEIGHTS;
            const BYTES: usize = <$F>::BYTES;
            const C: usize = W / BLOCK;
            let (rows, xs) = ($rows, $xs);
            let blocks = xs[0].q.len() / W;
            let stride = blocks * BYTES;
            assert!(
                xs.len() >= A && rows.len() >= R * stride,
                "{} bytes for {R} rows of {} inputs",
                rows.len(),
                xs[0].q.len()
            );
            for x in &xs[..A] {
                assert!(
                    x.q.len() == blocks * W && x.scales.len() >= blocks * C && x.lane_sums.len() >= blocks * C
                );
            }
            let $table = f16_table();
            let mut acc = [[_mm256_setzero_ps(); R]; A];
            // SAFETY: block k < blocks of row r < R lies inside rows; activation row a's chunk
            // k * C + c, its scale and lane sums inside xs[a] (all checked above).
            unsafe {
                for k in 0..blocks {
                    for r in 0..R {
                        let $block = rows.as_ptr().add(r * stride + k * BYTES);
                        let mut $sc = [0.0f32; 16];
                        let mut $mn = [0.0f32; 16];
                        $header
                        for $c in 0..C {
                            let u: __m256i = {
                                let $b = $block;
                                $unpack
                            };
                            let (scale, min) = if $uniform {
                                (_mm256_set1_ps($sc[2 * $c]), _mm256_set1_ps($mn[2 * $c]))
                            } else {
                                (
                                    _mm256_set_m128(_mm_set1_ps($sc[2 * $c + 1]), _mm_set1_ps($sc[2 * $c])),
                                    _mm256_set_m128(_mm_set1_ps($mn[2 * $c + 1]), _mm_set1_ps($mn[2 * $c])),
                                )
                            };
                            let at = k * C + $c;
                            for a in 0..A {
                                let x = xs.get_unchecked(a);
                                let q = _mm256_loadu_si256(x.q.as_ptr().add(at * BLOCK) as *const __m256i);
                                let dx = _mm256_broadcast_ss(x.scales.get_unchecked(at));
                                let lanes = _mm256_loadu_ps(x.lane_sums.as_ptr().add(at) as *const f32);
                                let s = $products!(_mm256_setzero_si256(), u, q);
                                acc[a][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(scale, dx), acc[a][r]);
                                acc[a][r] = _mm256_fnmadd_ps(min, lanes, acc[a][r]);
                            }
                        }
                    }
                }
            }
            acc.map(|row| row.map(|a| sum8(a)))
        }};
    }

    /// 16 bytes of nibbles at `$p`: elements 0..16 the low nibbles, 16..32 the high ones.
    macro_rules! nibbles {
        ($p:expr) => {{
            let bytes = _mm_loadu_si128($p as *const __m128i);
            _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(0x0f))
        }};
    }

    /// 0x10 in byte i where bit i of the little-endian u32 at `$p` is set: q5_0/q5_1's fifth bits.
    macro_rules! fifth_bits {
        ($p:expr) => {{
            let word = _mm256_set1_epi32(std::ptr::read_unaligned($p as *const i32));
            // Byte i takes byte i / 8 of the word (the shuffle works within 128-bit halves).
            let spread = _mm256_shuffle_epi8(
                word,
                _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
            );
            let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            _mm256_and_si256(set, _mm256_set1_epi8(0x10))
        }};
    }

    /// The nibbles of q4_K/q5_K chunk `$c`: low (even) or high (odd) halves of 32 bytes at `$p`.
    macro_rules! k_nibbles {
        ($p:expr, $c:expr) => {{
            let bytes = _mm256_loadu_si256($p.add(32 * ($c / 2)) as *const __m256i);
            let shifted = if $c % 2 == 0 { bytes } else { _mm256_srli_epi16(bytes, 4) };
            _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
        }};
    }

    /// q4_K/q5_K's eight 6-bit (scale, min) pairs times d and dmin, per group of 16.
    macro_rules! k_scales {
        ($block:expr, $table:expr, $sc:expr, $mn:expr) => {{
            let (d, dmin) = (half!($table, $block, 0), half!($table, $block, 2));
            let packed = std::slice::from_raw_parts($block.add(4), 12);
            for j in 0..8 {
                let (s, m) = super::super::k_quants::scale_min(packed, j);
                $sc[2 * j] = d * s as f32;
                $mn[2 * j] = dmin * m as f32;
            }
        }};
    }

    macro_rules! group_kernels {
        ($features:literal, $products:ident, $q4_1:ident, $q5_0:ident, $q5_1:ident, $q4_k:ident, $q5_k:ident, $q6_k:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $q4_1<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q4_1,
                    true,
                    $products,
                    |block, table, sc, mn| {
                        sc[0] = half!(table, block, 0);
                        mn[0] = -half!(table, block, 2);
                    },
                    |b, _c| { nibbles!(b.add(4)) }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q5_0<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q5_0,
                    true,
                    $products,
                    |block, table, sc, mn| {
                        sc[0] = half!(table, block, 0);
                        mn[0] = 16.0 * sc[0];
                    },
                    |b, _c| { _mm256_or_si256(nibbles!(b.add(6)), fifth_bits!(b.add(2))) }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q5_1<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q5_1,
                    true,
                    $products,
                    |block, table, sc, mn| {
                        sc[0] = half!(table, block, 0);
                        mn[0] = -half!(table, block, 2);
                    },
                    |b, _c| { _mm256_or_si256(nibbles!(b.add(8)), fifth_bits!(b.add(4))) }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q4_k<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q4K,
                    true,
                    $products,
                    |block, table, sc, mn| { k_scales!(block, table, sc, mn) },
                    |b, c| { k_nibbles!(b.add(16), c) }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q5_k<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q5K,
                    true,
                    $products,
                    |block, table, sc, mn| { k_scales!(block, table, sc, mn) },
                    |b, c| {
                        // Bit c of each of the 32 high-bit bytes, moved to 0x10.
                        let high = _mm256_loadu_si256(b.add(16) as *const __m256i);
                        let bit = _mm256_and_si256(
                            _mm256_srl_epi16(high, _mm_cvtsi32_si128(c as i32)),
                            _mm256_set1_epi8(1),
                        );
                        _mm256_or_si256(k_nibbles!(b.add(48), c), _mm256_slli_epi16(bit, 4))
                    }
                )
            }

            #[target_feature(enable = $features)]
            unsafe fn $q6_k<const R: usize, const A: usize>(rows: &[u8], xs: &[Int8Row]) -> [[f32; R]; A] {
                group_blocks!(
                    rows,
                    xs,
                    Q6K,
                    false,
                    $products,
                    |block, table, sc, mn| {
                        let d = half!(table, block, 208);
                        for g in 0..16 {
                            sc[g] = d * *block.add(192 + g) as i8 as f32;
                            mn[g] = 32.0 * sc[g];
                        }
                    },
                    |b, c| {
                        let (n, t) = (c / 4, c % 4);
                        let low = _mm256_loadu_si256(b.add(64 * n + 32 * (t % 2)) as *const __m256i);
                        let low = if t < 2 { low } else { _mm256_srli_epi16(low, 4) };
                        let high = _mm256_loadu_si256(b.add(128 + 32 * n) as *const __m256i);
                        let high = _mm256_and_si256(
                            _mm256_srl_epi16(high, _mm_cvtsi32_si128(2 * t as i32)),
                            _mm256_set1_epi8(3),
                        );
                        _mm256_or_si256(
                            _mm256_and_si256(low, _mm256_set1_epi8(0x0f)),
                            _mm256_slli_epi16(high, 4),
                        )
                    }
                )
            }
        };
    }
    group_kernels!("avx2,fma,f16c", avx2, q4_1_v3, q5_0_v3, q5_1_v3, q4_k_v3, q5_k_v3, q6_k_v3);
    group_kernels!(
        "avx2,fma,f16c,avx512f,avx512vnni,avx512vl",
        vnni,
        q4_1_v4,
        q5_0_v4,
        q5_1_v4,
        q4_k_v4,
        q5_k_v4,
        q6_k_v4
    );
}
