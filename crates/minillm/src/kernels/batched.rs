//! The LM head's product for 1 to 8 rows of x (decoding one or several sequences): w stored
//! one output per row (the token embedding), out[b][j] = x[b] . w[j]. One row takes the same
//! path, so a sequence's logits are the same bits whatever else shares its step.
//!
//! Two rows of w at a time: 16 of their weights are loaded into registers once and multiplied
//! there with every row of x, the 16 sums stay in registers across the whole input, and the
//! lines a few rows ahead are requested from memory meanwhile. On GPT-2 small's shape at batch
//! 8 this made decoding 13% faster than [`matvec`](super::matvec)'s `dots` (nearly all of it
//! the prefetching: at batch 8 the product is no longer bound by memory alone, and the CPU's
//! own prefetcher leaves it waiting). The Conv1D layout stays in `matvec::times`: the same
//! register blocking over strips of its columns reads w in 128-byte pieces a row apart, and
//! was a third slower (measured). AVX-512 only; elsewhere `matvec` runs.

use super::SharedOut;
use rayon::prelude::*;
use std::ops::Range;

/// Rows of x one pass over the weights serves.
pub const MAX_ROWS: usize = 8;
/// Rows of w per task in the transposed layout.
const ROWS_PER_TASK: usize = 64;

/// Whether this CPU runs these kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::simd::has_v4()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out (m x n) = x (m x k) . w^T`, w stored (n x k), for m <= [`MAX_ROWS`]: the LM head. Call
/// only where [`available`].
pub fn times_transposed(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
    parallel: bool,
) {
    assert!(
        available()
            && (1..=MAX_ROWS).contains(&m)
            && out.len() >= m * n
            && x.len() >= m * k
            && w.len() >= k * n,
        "batched product shapes"
    );
    let dst = SharedOut(out.as_mut_ptr());
    let task = |t: usize| {
        let rows: Range<usize> = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n);
        // SAFETY: as in `times`, for the task's own rows of w (columns of out).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::dots(dst, x, w, (m, k, n), rows)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (rows, dst);
    };
    let tasks = n.div_ceil(ROWS_PER_TASK);
    if parallel {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MAX_ROWS, SharedOut};
    /// Rows of w ahead whose lines are requested while a pair is multiplied.
    const AHEAD: usize = 4;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The lanes of a 16-float register that hold columns `from..end` (at most 16).
    fn mask(from: usize, end: usize) -> __mmask16 {
        let n = end.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    }

    /// Calls `$body` with `$M` the const generic for `$m` in 1..=8.
    macro_rules! rows {
        ($m:expr, $f:ident::<M>($($arg:expr),*)) => {
            match $m {
                1 => $f::<1>($($arg),*),
                2 => $f::<2>($($arg),*),
                3 => $f::<3>($($arg),*),
                4 => $f::<4>($($arg),*),
                5 => $f::<5>($($arg),*),
                6 => $f::<6>($($arg),*),
                7 => $f::<7>($($arg),*),
                8 => $f::<8>($($arg),*),
                m => panic!("batched kernels take 1 to {MAX_ROWS} rows, not {m}"),
            }
        };
    }

    /// out[b][j] = x[b] . w[j] for j in `rows` (w stored n x k), two rows of w at a time, each
    /// 16 of their weights loaded once for every row of x.
    ///
    /// # Safety
    /// AVX-512F; out holds m * n floats of which this call alone touches columns `rows`.
    pub unsafe fn dots(
        out: SharedOut,
        x: &[f32],
        w: &[f32],
        (m, k, n): (usize, usize, usize),
        rows: Range<usize>,
    ) {
        unsafe { rows!(m, dots_of::<M>(out.ptr(), x, w, (k, n), rows)) }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn dots_of<const M: usize>(
        out: *mut f32,
        x: &[f32],
        w: &[f32],
        (k, n): (usize, usize),
        rows: Range<usize>,
    ) {
        // SAFETY: rows j, j + 1 < rows.end <= n of w (the second repeats the first past the
        // end, and is not written), columns c < k with masks past k; x holds M * k, out M * n
        // with these columns ours (asserted by the caller).
        unsafe {
            for j in rows.clone().step_by(2) {
                let second = (j + 1).min(rows.end - 1);
                let (r0, r1) = (w.as_ptr().add(j * k), w.as_ptr().add(second * k));
                let mut acc = [[_mm512_setzero_ps(); 2]; M];
                for c in (0..k).step_by(16) {
                    let lanes = mask(c, k);
                    let (w0, w1) =
                        (_mm512_maskz_loadu_ps(lanes, r0.add(c)), _mm512_maskz_loadu_ps(lanes, r1.add(c)));
                    // The next pair's line at this column: a pair ahead in flight from memory.
                    _mm_prefetch(r0.wrapping_add(AHEAD * k + c) as *const i8, _MM_HINT_T0);
                    _mm_prefetch(r1.wrapping_add(AHEAD * k + c) as *const i8, _MM_HINT_T0);
                    for (b, acc) in acc.iter_mut().enumerate() {
                        let xb = _mm512_maskz_loadu_ps(lanes, x.as_ptr().add(b * k + c));
                        acc[0] = _mm512_fmadd_ps(xb, w0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(xb, w1, acc[1]);
                    }
                }
                for (b, acc) in acc.iter().enumerate() {
                    *out.add(b * n + j) = _mm512_reduce_add_ps(acc[0]);
                    if second != j {
                        *out.add(b * n + second) = _mm512_reduce_add_ps(acc[1]);
                    }
                }
            }
        }
    }
}
