//! Products of a few rows with a large matrix: decoding, where each sequence contributes one row.
//!
//! With one to a few rows, a product does about one multiply-add per weight it reads, so its
//! speed is the speed at which the weights stream in from memory. GEMM libraries pack the
//! matrix into tiles first (a second pass over it), which costs more than the product here. These
//! kernels read every weight exactly once, in address order, each thread a contiguous part, and
//! use it for every row while it is in a register.

use super::SharedOut;
use super::batched;
use super::simd::multiversion;
use super::vec::add_into;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Below this many weights a product runs on the calling thread: waking others costs more.
const PARALLEL_MIN: usize = 1 << 16;
/// Rows of `w` folded into one pass over the output in [`times`].
const FOLD: usize = 8;
/// Floats per SIMD register on AVX-512 (two registers on AVX2).
const LANES: usize = 16;
/// Output columns handled together in [`times`], so a tile of each row stays in L1.
const TILE: usize = 1024;
/// Rows of `w` handled per task in [`times_transposed`].
const BLOCK: usize = 256;

thread_local! {
    /// Each thread's partial sums in [`times`]; grown once, then reused.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out (m x n) = x (m x k) . w (k x n) + bias`: the layout of HF's Conv1D weights.
///
/// The k rows of `w` are split into one contiguous range per thread; each thread adds its
/// range's contribution into its own partial output, and the partials are summed at the end.
pub fn times(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, (m, k, n): (usize, usize, usize)) {
    assert!(out.len() >= m * n && x.len() >= m * k && w.len() >= k * n, "matvec shapes");
    let out = &mut out[..m * n];
    match bias {
        Some(b) => out.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(&b[..n])),
        None => out.fill(0.0),
    }
    let threads = if k * n >= PARALLEL_MIN { rayon::current_num_threads().min(k / FOLD).max(1) } else { 1 };
    if threads == 1 {
        accumulate(out, x, w, 0..k, (m, k, n));
        return;
    }
    let range = |t: usize| t * k / threads..(t + 1) * k / threads;
    let mut run = |partials: &mut [f32]| {
        let partials = &mut partials[..(threads - 1) * m * n];
        rayon::join(
            || accumulate(out, x, w, range(0), (m, k, n)),
            || {
                partials.par_chunks_mut(m * n).enumerate().for_each(|(t, part)| {
                    part.fill(0.0);
                    accumulate(part, x, w, range(t + 1), (m, k, n));
                })
            },
        );
        for part in partials.chunks_exact(m * n) {
            add_into(out, part);
        }
    };
    // A thread waiting inside `join` may run another product: then the buffer is in use and
    // this call takes a fresh one.
    PARTIALS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < (threads - 1) * m * n {
                buf.resize((threads - 1) * m * n, 0.0);
            }
            run(&mut buf)
        }
        Err(_) => run(&mut vec![0.0; (threads - 1) * m * n]),
    });
}

multiversion! {
    /// out (m x n) += x[:, rows] . w[rows, :], by tiles of columns.
    fn accumulate(out: &mut [f32], x: &[f32], w: &[f32], rows: Range<usize>, shape: (usize, usize, usize)) {
        let (m, _, n) = shape;
        let mut i = rows.start;
        while i < rows.end {
            let fold = FOLD.min(rows.end - i);
            for j0 in (0..n).step_by(TILE) {
                let tile = (i, fold, j0, TILE.min(n - j0));
                let mut b = 0;
                while b + 2 <= m && fold == FOLD {
                    fold_row_pair(out, x, w, b, tile, shape);
                    b += 2;
                }
                for b in b..m {
                    fold_rows(out, x, w, b, tile, shape);
                }
            }
            i += fold;
        }
    }
}

/// Adds rows i..i + fold of w, columns j0..j0 + len, into row b of out. For more than one row
/// of x, the caller runs this per row over the same tile of w, which stays in L1 meanwhile.
#[inline(always)]
fn fold_rows(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: usize,
    (i, fold, j0, len): (usize, usize, usize, usize),
    (_, k, n): (usize, usize, usize),
) {
    let o = &mut out[b * n + j0..][..len];
    let a = &x[b * k + i..][..fold];
    if fold < FOLD {
        for (q, &a) in a.iter().enumerate() {
            for (o, &wv) in o.iter_mut().zip(&w[(i + q) * n + j0..][..len]) {
                *o = a.mul_add(wv, *o);
            }
        }
        return;
    }
    let r = |q: usize| &w[(i + q) * n + j0..][..len];
    let (w0, w1, w2, w3, w4, w5, w6, w7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
    // A plain loop over equal-length slices with no reduction: the form the compiler's loop
    // vectorizer handles every time (fixed-size inner loops left it to fragile heuristics).
    for j in 0..len {
        o[j] = fold8(a, [w0[j], w1[j], w2[j], w3[j], w4[j], w5[j], w6[j], w7[j]], o[j]);
    }
}

/// acc + a . v, as two chains of four multiply-adds (half the latency of one chain of eight).
#[inline(always)]
fn fold8(a: &[f32], v: [f32; FOLD], acc: f32) -> f32 {
    let lo = a[3].mul_add(v[3], a[2].mul_add(v[2], a[1].mul_add(v[1], a[0].mul_add(v[0], acc))));
    let hi = a[7].mul_add(v[7], a[6].mul_add(v[6], a[5].mul_add(v[5], a[4] * v[4])));
    lo + hi
}

/// [`fold_rows`] for rows b and b + 1 of x at once (a full fold only): each weight loaded serves
/// both, which halves the loads per multiply-add when decoding several sequences.
#[inline(always)]
fn fold_row_pair(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: usize,
    (i, _, j0, len): (usize, usize, usize, usize),
    (_, k, n): (usize, usize, usize),
) {
    let (first, second) = out.split_at_mut((b + 1) * n);
    let (o, p) = (&mut first[b * n + j0..][..len], &mut second[j0..][..len]);
    let a = &x[b * k + i..][..FOLD];
    let c = &x[(b + 1) * k + i..][..FOLD];
    let r = |q: usize| &w[(i + q) * n + j0..][..len];
    let (w0, w1, w2, w3, w4, w5, w6, w7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
    for j in 0..len {
        let v = [w0[j], w1[j], w2[j], w3[j], w4[j], w5[j], w6[j], w7[j]];
        o[j] = fold8(a, v, o[j]);
        p[j] = fold8(c, v, p[j]);
    }
}

/// `out (m x n) = x (m x k) . w^T` where `w` is stored (n x k): output j is the dot product of
/// each row of x with row j of w. This is the LM head, whose weight is the token embedding.
pub fn times_transposed(out: &mut [f32], x: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) {
    assert!(out.len() >= m * n && x.len() >= m * k && w.len() >= k * n, "matvec shapes");
    if batched::available() {
        for (out, x) in
            out[..m * n].chunks_mut(batched::MAX_ROWS * n).zip(x[..m * k].chunks(batched::MAX_ROWS * k))
        {
            batched::times_transposed(out, x, w, (out.len() / n, k, n), k * n >= PARALLEL_MIN);
        }
        return;
    }
    let dst = SharedOut(out.as_mut_ptr());
    let blocks = n.div_ceil(BLOCK);
    let task = |blk: usize| {
        let rows = blk * BLOCK..((blk + 1) * BLOCK).min(n);
        // SAFETY: block `blk` writes out[b * n + j] only for j in its own `rows`, which lie in
        // 0..n; blocks are disjoint and `out` holds m * n elements (asserted above).
        unsafe { dots(dst.ptr(), x, w, rows, (m, k, n)) };
    };
    if k * n >= PARALLEL_MIN {
        (0..blocks).into_par_iter().for_each(task);
    } else {
        (0..blocks).for_each(task);
    }
}

multiversion! {
    /// out[b, j] = x[b] . w[j] for j in `rows`, four rows of w at a time; for more than one
    /// row of x, the four rows of w stay in L1 while each row of x passes over them.
    ///
    /// # Safety
    /// `out` must be valid for writes of m * n floats (`shape` = (m, k, n)), `rows` must lie
    /// within 0..n, and no one else may read or write out[b * n + j] for j in `rows` meanwhile.
    unsafe fn dots(out: *mut f32, x: &[f32], w: &[f32], rows: Range<usize>, shape: (usize, usize, usize)) {
        let (m, k, n) = shape;
        let mut j = rows.start;
        while j < rows.end {
            let four = 4.min(rows.end - j);
            let wr: [&[f32]; 4] = std::array::from_fn(|q| &w[(j + q.min(four - 1)) * k..][..k]);
            for b in 0..m {
                let sums = dot4(&x[b * k..][..k], wr);
                for (q, &s) in sums.iter().enumerate().take(four) {
                    // SAFETY: the caller guarantees out holds m * n, j + q < n, and that these
                    // elements are ours alone.
                    unsafe { *out.add(b * n + j + q) = s };
                }
            }
            j += four;
        }
    }
}

/// The dot products of `x` with four rows at once, so x is read once for all four. Thirty-two
/// lanes per row keep enough independent multiply-adds in flight to hide their latency.
#[inline(always)]
fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    const L: usize = 2 * LANES;
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; L], [0.0f32; L], [0.0f32; L], [0.0f32; L]);
    let full = x.len() / L * L;
    for c in (0..full).step_by(L) {
        // Fixed-size chunks: the compiler sees the lengths and vectorizes the lane loop.
        let chunk = |s: &[f32]| -> [f32; L] { s[c..c + L].try_into().expect("chunk of L") };
        let (xs, w0, w1, w2, w3) = (chunk(x), chunk(w[0]), chunk(w[1]), chunk(w[2]), chunk(w[3]));
        for l in 0..L {
            a0[l] = xs[l].mul_add(w0[l], a0[l]);
            a1[l] = xs[l].mul_add(w1[l], a1[l]);
            a2[l] = xs[l].mul_add(w2[l], a2[l]);
            a3[l] = xs[l].mul_add(w3[l], a3[l]);
        }
    }
    let tail = |acc: &[f32; L], w: &[f32]| {
        acc.iter().sum::<f32>() + x[full..].iter().zip(&w[full..]).map(|(a, b)| a * b).sum::<f32>()
    };
    [tail(&a0, w[0]), tail(&a1, w[1]), tail(&a2, w[2]), tail(&a3, w[3])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Sums in f64, the order that the kernels do not use.
    fn reference(x: &[f32], w: &[f32], (m, k, n): (usize, usize, usize), transposed: bool) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for b in 0..m {
            for j in 0..n {
                for i in 0..k {
                    let wij = if transposed { w[j * k + i] } else { w[i * n + j] };
                    out[b * n + j] += x[b * k + i] as f64 * wij as f64;
                }
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64], k: usize) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            // Random-sign sums of k unit products: rounding grows like sqrt(k) * eps.
            assert!((g as f64 - w).abs() < 1e-5 * (k as f64).sqrt() * (1.0 + w.abs()), "{i}: {g} vs {w}");
        }
    }

    #[test]
    fn both_layouts_match_a_float64_reference_on_awkward_shapes() {
        let mut rng = Rng::new(7);
        // Shapes that are not multiples of the fold, tile, block or lane counts, on one
        // thread and split across threads.
        for &(m, k, n) in &[
            (1, 5, 3),
            (3, 37, 1030),
            (1, 300, 777),
            (8, 259, 600),
            (2, 1000, 70),
            (5, 200, 96),
            (11, 90, 32),
            (4, 33, 101),
            (9, 70, 65),
        ] {
            let x = random(m * k, &mut rng);
            let w = random(k * n, &mut rng);
            let bias = random(n, &mut rng);
            let mut out = vec![f32::NAN; m * n];
            times(&mut out, &x, &w, Some(&bias), (m, k, n));
            let mut want = reference(&x, &w, (m, k, n), false);
            for (o, &b) in want.iter_mut().zip(bias.iter().cycle()) {
                *o += b as f64;
            }
            close(&out, &want, k);
            let mut out = vec![f32::NAN; m * n];
            times_transposed(&mut out, &x, &w, (m, k, n));
            close(&out, &reference(&x, &w, (m, k, n), true), k);
        }
    }
}
