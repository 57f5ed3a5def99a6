//! The dot product of a row of blocks with a row of activations, in AVX-512 and AVX2, chosen at
//! run time; the portable references are [`BlockFormat::dot_reference`] and
//! [`activations::rows_reference`].
//!
//! f16 rows meet f32 activations: each half float is widened in registers and multiplied.
//! q8_0 and q4_0 rows meet 8-bit activations ([`Int8Row`]): 32 integer products per block summed
//! in 8 lanes of i32 by one instruction (three without VNNI), then the block's two scales applied
//! once. Weights are read once, as bytes, and never written out widened.

use super::activations::{self, Int8Row, LANES};
use super::formats::{BlockFormat, F16, Q4_0, Q8_0};
use super::{BLOCK, QuantType};

/// f16 row times f32 activations: `row` holds `x.len() / 32` blocks.
pub type Dot = fn(&[u8], &[f32]) -> f32;
/// q8_0 / q4_0 rows times 8-bit activations: `rows` holds `out.len()` (1 to 4) consecutive rows
/// of `x.q.len() / 32` blocks each, whose products go to `out`.
pub type IntDot = fn(&[u8], Int8Row, &mut [f32]);

/// A kernel for one weight type: which kind of activations it takes follows from the type.
#[derive(Clone, Copy)]
pub enum Kernel {
    /// f16 weights, f32 activations.
    Float(Dot),
    /// q8_0 or q4_0 weights, 8-bit activations.
    Int8(IntDot),
}

/// The fastest kernel this CPU runs for `ty`, and the instruction set it uses.
pub fn kernel(ty: QuantType) -> (Kernel, &'static str) {
    use std::sync::OnceLock;
    static CHOSEN: [OnceLock<(Kernel, &str)>; 3] = [const { OnceLock::new() }; 3];
    *CHOSEN[ty as usize].get_or_init(|| all_kernels(ty).pop().expect("the portable kernel is always there"))
}

/// The portable kernel for `ty`.
pub fn reference(ty: QuantType) -> Kernel {
    match ty {
        QuantType::F16 => Kernel::Float(F16::dot_reference),
        QuantType::Q8_0 => Kernel::Int8(activations::rows_reference::<Q8_0>),
        QuantType::Q4_0 => Kernel::Int8(activations::rows_reference::<Q4_0>),
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
            _ => {}
        }
        match ty {
            QuantType::F16 if avx512 => found.push((float(x86::f16_avx512), "AVX-512")),
            QuantType::Q8_0 if vnni => found.push((int(x86::q8_0_vnni), "AVX-512 VNNI")),
            QuantType::Q4_0 if vnni => found.push((int(x86::q4_0_vnni), "AVX-512 VNNI")),
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
    use super::{BLOCK, Int8Row, LANES, f16_table};
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

    /// The integer kernels are compiled for 1 to 4 rows at a time; `out`'s length picks one.
    macro_rules! safe_rows {
        ($($name:ident => $imp:ident),*) => {$(
            pub fn $name(rows: &[u8], x: Int8Row, out: &mut [f32]) {
                unsafe {
                    match out.len() {
                        1 => out.copy_from_slice(&$imp::<1>(rows, x)),
                        2 => out.copy_from_slice(&$imp::<2>(rows, x)),
                        3 => out.copy_from_slice(&$imp::<3>(rows, x)),
                        4 => out.copy_from_slice(&$imp::<4>(rows, x)),
                        n => panic!("the integer kernels take 1 to 4 rows, not {n}"),
                    }
                }
            }
        )*};
    }
    safe_rows!(q8_0_avx2 => q8_0_v3, q4_0_avx2 => q4_0_v3, q8_0_vnni => q8_0_v4, q4_0_vnni => q4_0_v4);

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

    /// For each of R consecutive rows: sum over blocks of d_w * d_x * (the block's integer sum),
    /// where `$sum` makes a block's sum in 8 lanes from its address `$block` and index `$k`.
    /// The R rows share each block of activations (loaded once) and keep one accumulator each,
    /// so consecutive multiply-adds do not wait on each other.
    macro_rules! blocks {
        ($rows:expr, $x:expr, $bytes:expr, |$block:ident, $k:ident| $sum:expr) => {{
            let (rows, x) = ($rows, $x);
            let blocks = x.q.len() / BLOCK;
            let stride = blocks * $bytes;
            assert!(
                rows.len() >= R * stride && x.scales.len() >= blocks && x.offsets.len() >= blocks,
                "{} bytes for {R} rows of {} inputs",
                rows.len(),
                x.q.len()
            );
            let table = f16_table();
            let mut acc = [_mm256_setzero_ps(); R];
            // SAFETY: block k < blocks of row r < R lies inside rows; the activations' block k,
            // its scale and offsets inside x.
            unsafe {
                for $k in 0..blocks {
                    let dx = _mm256_broadcast_ss(x.scales.get_unchecked($k));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let $block = rows.as_ptr().add(r * stride + $k * $bytes);
                        let s: __m256i = $sum;
                        let dw = table.get_unchecked(std::ptr::read_unaligned($block as *const u16) as usize);
                        let d = _mm256_mul_ps(_mm256_broadcast_ss(dw), dx);
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, *acc);
                    }
                }
            }
            acc.map(|a| sum8(a))
        }};
    }

    /// The q8_0 and q4_0 kernels for one instruction set. q8_0: w * q = |w| * (q with w's
    /// sign), making the unsigned operand. q4_0: the stored nibbles (w + 8) are the unsigned
    /// operand as they are; the lanes start from the activations' offsets, which take the 8 off.
    macro_rules! int_kernels {
        ($q8:ident, $q4:ident, $features:literal, $products:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $q8<const R: usize>(rows: &[u8], x: Int8Row) -> [f32; R] {
                blocks!(rows, x, 34, |block, k| {
                    let w = _mm256_loadu_si256(block.add(2) as *const __m256i);
                    let q = _mm256_loadu_si256(x.q.as_ptr().add(k * BLOCK) as *const __m256i);
                    $products!(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(q, w))
                })
            }

            #[target_feature(enable = $features)]
            unsafe fn $q4<const R: usize>(rows: &[u8], x: Int8Row) -> [f32; R] {
                const _: () = assert!(LANES == 8);
                let mask = _mm256_set1_epi8(0x0f);
                blocks!(rows, x, 18, |block, k| {
                    // Elements 0..16 are the low nibbles, 16..32 the high ones.
                    let bytes = _mm_loadu_si128(block.add(2) as *const __m128i);
                    let w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), mask);
                    let q = _mm256_loadu_si256(x.q.as_ptr().add(k * BLOCK) as *const __m256i);
                    let offset = _mm256_loadu_si256(x.offsets.as_ptr().add(k) as *const __m256i);
                    $products!(offset, w, q)
                })
            }
        };
    }
    int_kernels!(q8_0_v3, q4_0_v3, "avx2,fma,f16c", avx2);
    int_kernels!(q8_0_v4, q4_0_v4, "avx2,fma,f16c,avx512f,avx512vnni,avx512vl", vnni);
}
