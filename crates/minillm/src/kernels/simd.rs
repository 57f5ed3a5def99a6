//! Element-wise math written as plain loops, compiled for AVX-512 and AVX2 as well as the
//! baseline and chosen at run time, so the compiler vectorizes them on the CPU at hand.
//!
//! libm's `expf` and `tanhf` are scalar calls; a training step of a small model spends most
//! of its time in them. `exp` here is the Cephes single-precision algorithm (range reduction to
//! [-ln2/2, ln2/2] and a degree-6 polynomial, relative error about 2e-7) written without
//! branches or library calls, so it vectorizes; `tanh` is built on it.

/// Defines `pub fn name(args)` whose body is compiled three times (AVX-512, AVX2 + FMA,
/// baseline) and dispatched by what the CPU reports: a path runs only when the CPU has every
/// feature it was compiled for. `unsafe fn` is accepted too, for a body with obligations on its
/// caller (the caller's `# Safety` section says which); the dispatch adds none.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            unsafe fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { unsafe { imp($($arg),*) } }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { unsafe { imp($($arg),*) } }
                if $crate::kernels::simd::has_v4() {
                    // SAFETY: the CPU has the features v4 was compiled for; the caller keeps
                    // this function's contract.
                    return unsafe { v4($($arg),*) };
                }
                if $crate::kernels::simd::has_v3() {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            // SAFETY: the caller keeps this function's contract.
            unsafe { imp($($arg),*) }
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                if $crate::kernels::simd::has_v4() {
                    // SAFETY: the CPU has the features v4 was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if $crate::kernels::simd::has_v3() {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// Whether the CPU has every feature `multiversion!`'s AVX-512 path is compiled for.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_v4() -> bool {
    std::is_x86_feature_detected!("avx512f") && has_v3()
}

/// Whether the CPU has every feature `multiversion!`'s AVX2 path is compiled for.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_v3() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

pub(crate) use multiversion;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds a float to the nearest integer and leaves that integer in the
/// low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// e^x, to about 2e-7 relative error, for x in [-87, 88] (clamped outside).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let pow2 = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32);
    e * pow2
}

/// tanh(x) = 1 - 2 / (e^(2x) + 1), with absolute error about 1e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Largest element, with 16 lanes so it vectorizes (a plain fold is one serial chain).
#[inline(always)]
pub fn max_inline(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for c in chunks {
        for j in 0..16 {
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// Sum of the elements, with 16 accumulators so it vectorizes.
#[inline(always)]
pub fn sum_inline(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = row.chunks_exact(16);
    let mut sum: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..16 {
            acc[j] += c[j];
        }
    }
    for a in acc {
        sum += a;
    }
    sum
}

/// Softmax of `row` in place.
#[inline(always)]
pub fn softmax_inline(row: &mut [f32]) {
    let max = max_inline(row);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum_inline(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

multiversion! {
    /// Sum of `row`'s elements.
    pub fn sum(row: &[f32]) -> f32 {
        sum_inline(row)
    }
}

multiversion! {
    /// Softmax of `row` in place.
    pub fn softmax(row: &mut [f32]) {
        softmax_inline(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_libm() {
        let mut worst_exp = 0.0f64;
        let mut worst_tanh = 0.0f64;
        for i in -80_000..80_000 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((exp(x) as f64 - want) / want).abs());
            worst_tanh = worst_tanh.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        assert!(worst_tanh < 3e-7, "tanh absolute error {worst_tanh}");
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(0.0) == 1.0);
    }

    #[test]
    fn softmax_of_short_and_long_rows() {
        let mut row = [1.0f32, 2.0, 3.0];
        softmax(&mut row);
        let want = [0.090_030_57, 0.244_728_47, 0.665_240_96];
        for (a, b) in row.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
        let mut long: Vec<f32> = (0..100).map(|i| (i % 7) as f32 - 40.0 * (i == 93) as i32 as f32).collect();
        let want: Vec<f64> = {
            let m = long.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let e: Vec<f64> = long.iter().map(|&x| (x as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        softmax(&mut long);
        for (a, b) in long.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-7);
        }
        assert_eq!(max_inline(&[3.0, -1.0, 7.5, 2.0]), 7.5);
    }
}
