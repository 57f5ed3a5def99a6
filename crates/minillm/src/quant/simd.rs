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
    use super::{BLOCK, BlockFormat, Int8Row, LANES, Q4_0, Q8_0, f16_table};
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
}
