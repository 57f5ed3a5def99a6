//! The dot product of a row of blocks with f32 activations, in AVX-512 and AVX2 (with FMA and
//! F16C for the scales), chosen at run time; [`BlockFormat::dot_reference`] elsewhere.
//!
//! Each kernel widens a block's integers to floats in registers (never to memory), multiplies
//! them by x, and adds scale * (block sum) into the running total, so weights are read once,
//! as bytes.

use super::formats::{BlockFormat, F16, Q4_0, Q8_0};
use super::{BLOCK, QuantType};

/// A row-times-vector kernel: `row` holds `x.len() / 32` blocks.
pub type Dot = fn(&[u8], &[f32]) -> f32;

/// The fastest kernel this CPU runs for `ty`, and the instruction set it uses.
pub fn kernel(ty: QuantType) -> (Dot, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |f: &str| match f {
            "avx512" => std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw"),
            _ => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
        };
        // The AVX-512 kernels also use F16C for the scales.
        if has("avx512") && has("avx2") {
            return (
                match ty {
                    QuantType::F16 => x86::f16_avx512,
                    QuantType::Q8_0 => x86::q8_0_avx512,
                    QuantType::Q4_0 => x86::q4_0_avx512,
                },
                "AVX-512",
            );
        }
        if has("avx2") {
            return (
                match ty {
                    QuantType::F16 => x86::f16_avx2,
                    QuantType::Q8_0 => x86::q8_0_avx2,
                    QuantType::Q4_0 => x86::q4_0_avx2,
                },
                "AVX2",
            );
        }
    }
    (reference(ty), "portable")
}

/// The portable kernel for `ty`.
pub fn reference(ty: QuantType) -> Dot {
    match ty {
        QuantType::F16 => F16::dot_reference,
        QuantType::Q8_0 => Q8_0::dot_reference,
        QuantType::Q4_0 => Q4_0::dot_reference,
    }
}

/// Every kernel this CPU can run for `ty`, with its name: for the tests.
pub fn all_kernels(ty: QuantType) -> Vec<(Dot, &'static str)> {
    let mut found = vec![(reference(ty), "portable")];
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        if avx2 {
            found.push((
                match ty {
                    QuantType::F16 => x86::f16_avx2,
                    QuantType::Q8_0 => x86::q8_0_avx2,
                    QuantType::Q4_0 => x86::q4_0_avx2,
                },
                "AVX2",
            ));
        }
        if avx2 && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            found.push((
                match ty {
                    QuantType::F16 => x86::f16_avx512,
                    QuantType::Q8_0 => x86::q8_0_avx512,
                    QuantType::Q4_0 => x86::q4_0_avx512,
                },
                "AVX-512",
            ));
        }
    }
    found
}

/// Every f16 bit pattern's f32 value (256 KB). Looking a block's scale up is one load, which
/// the load ports do; converting it with F16C would take three instructions on the same ports
/// that widen the weights, and those ports are what limits the kernels (llama.cpp keeps the same
/// table).
fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|bits| half::f16::from_bits(bits).to_f32()).collect())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Safe wrappers are handed out only by `kernel` / `all_kernels`, after the CPU was checked
    //! for the features each one is compiled with. Helpers are macros, not closures: a closure
    //! does not inherit its function's target features, and its intrinsics would not inline.
    use super::{BLOCK, f16_table};
    use std::arch::x86_64::*;

    macro_rules! safe {
        ($($name:ident => $imp:ident),*) => {$(
            pub fn $name(row: &[u8], x: &[f32]) -> f32 {
                // SAFETY: only returned after the features were detected (see the module doc);
                // lengths are checked inside.
                unsafe { $imp(row, x) }
            }
        )*};
    }
    safe!(f16_avx2 => f16_v3, q8_0_avx2 => q8_0_v3, q4_0_avx2 => q4_0_v3,
          f16_avx512 => f16_v4, q8_0_avx512 => q8_0_v4, q4_0_avx512 => q4_0_v4);

    /// A block's f16 scale (its first two bytes) as f32, from the table, in all lanes.
    macro_rules! scale256 {
        ($table:expr, $block:expr) => {
            _mm256_set1_ps(*$table.get_unchecked(std::ptr::read_unaligned($block as *const u16) as usize))
        };
    }
    macro_rules! scale512 {
        ($table:expr, $block:expr) => {
            _mm512_set1_ps(*$table.get_unchecked(std::ptr::read_unaligned($block as *const u16) as usize))
        };
    }
    /// Eight int8 at `p` as eight f32 (AVX2), sixteen (AVX-512).
    macro_rules! i8x8 {
        ($p:expr) => {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64($p as *const __m128i)))
        };
    }
    macro_rules! i8x16 {
        ($v:expr) => {
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32($v))
        };
    }

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

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0_v3(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 34);
        let table = f16_table();
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        unsafe {
            for k in 0..blocks {
                let (block, xs) = (row.as_ptr().add(k * 34), x.as_ptr().add(k * BLOCK));
                let s0 = _mm256_fmadd_ps(
                    i8x8!(block.add(10)),
                    _mm256_loadu_ps(xs.add(8)),
                    _mm256_mul_ps(i8x8!(block.add(2)), _mm256_loadu_ps(xs)),
                );
                let s1 = _mm256_fmadd_ps(
                    i8x8!(block.add(26)),
                    _mm256_loadu_ps(xs.add(24)),
                    _mm256_mul_ps(i8x8!(block.add(18)), _mm256_loadu_ps(xs.add(16))),
                );
                let d = scale256!(table, block);
                acc0 = _mm256_fmadd_ps(d, s0, acc0);
                acc1 = _mm256_fmadd_ps(d, s1, acc1);
            }
        }
        sum8(_mm256_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0_v3(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 18);
        let table = f16_table();
        let (mask, eight) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(8));
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        unsafe {
            for k in 0..blocks {
                let (block, xs) = (row.as_ptr().add(k * 18), x.as_ptr().add(k * BLOCK));
                let bytes = _mm_loadu_si128(block.add(2) as *const __m128i);
                let lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight); // elements 0..16
                let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight); // 16..32
                let (l1, h1) = (_mm_srli_si128(lo, 8), _mm_srli_si128(hi, 8));
                let s0 = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(l1)),
                    _mm256_loadu_ps(xs.add(8)),
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(xs)),
                );
                let s1 = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h1)),
                    _mm256_loadu_ps(xs.add(24)),
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(xs.add(16))),
                );
                let d = scale256!(table, block);
                acc0 = _mm256_fmadd_ps(d, s0, acc0);
                acc1 = _mm256_fmadd_ps(d, s1, acc1);
            }
        }
        sum8(_mm256_add_ps(acc0, acc1))
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

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn q8_0_v4(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 34);
        let table = f16_table();
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        unsafe {
            for k in 0..blocks {
                let (block, xs) = (row.as_ptr().add(k * 34), x.as_ptr().add(k * BLOCK));
                let q0 = i8x16!(_mm_loadu_si128(block.add(2) as *const __m128i));
                let q1 = i8x16!(_mm_loadu_si128(block.add(18) as *const __m128i));
                // The block's sum first, scaled once: three multiply-adds per block, not four.
                let s =
                    _mm512_fmadd_ps(q1, _mm512_loadu_ps(xs.add(16)), _mm512_mul_ps(q0, _mm512_loadu_ps(xs)));
                if k % 2 == 0 {
                    acc0 = _mm512_fmadd_ps(scale512!(table, block), s, acc0);
                } else {
                    acc1 = _mm512_fmadd_ps(scale512!(table, block), s, acc1);
                }
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn q4_0_v4(row: &[u8], x: &[f32]) -> f32 {
        let blocks = check(row, x, 18);
        let table = f16_table();
        let (mask, eight) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(8));
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        unsafe {
            for k in 0..blocks {
                let (block, xs) = (row.as_ptr().add(k * 18), x.as_ptr().add(k * BLOCK));
                let bytes = _mm_loadu_si128(block.add(2) as *const __m128i);
                let lo = i8x16!(_mm_sub_epi8(_mm_and_si128(bytes, mask), eight));
                let hi = i8x16!(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight));
                let s =
                    _mm512_fmadd_ps(hi, _mm512_loadu_ps(xs.add(16)), _mm512_mul_ps(lo, _mm512_loadu_ps(xs)));
                if k % 2 == 0 {
                    acc0 = _mm512_fmadd_ps(scale512!(table, block), s, acc0);
                } else {
                    acc1 = _mm512_fmadd_ps(scale512!(table, block), s, acc1);
                }
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}
