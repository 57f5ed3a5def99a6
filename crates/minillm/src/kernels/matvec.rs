//! Products of a few rows with a large matrix: decoding, where each sequence contributes one row.
//!
//! With one to a few rows, a product does about one multiply-add per weight it reads, so its
//! speed is the speed at which the weights stream in from memory. GEMM libraries pack the
//! matrix into tiles first (a second pass over it), which costs more than the product here. These
//! kernels read every weight exactly once, in address order, each thread a contiguous part, and
//! use it for every row while it is in a register.

use super::simd::multiversion;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Below this many weights a product runs on the calling thread: waking others costs more.
const PARALLEL_MIN: usize = 1 << 16;
/// Rows of `w` folded into one pass over the output in [`times`].
const FOLD: usize = 4;
/// Floats per SIMD register on AVX-512 (two registers on AVX2).
const LANES: usize = 16;
/// Output columns handled together in [`times`], so a tile of each row stays in L1.
const TILE: usize = 128;
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
            add(out, part);
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
                while b + 4 <= m {
                    fold_rows::<4>(out, x, w, b, tile, shape);
                    b += 4;
                }
                for b in b..m {
                    fold_rows::<1>(out, x, w, b, tile, shape);
                }
            }
            i += fold;
        }
    }
}

/// Adds rows i..i + fold of w, columns j0..j0 + len, into rows b0..b0 + B of out. Each weight
/// loaded into a register serves B rows of x; the B x FOLD multipliers stay in registers.
#[inline(always)]
fn fold_rows<const B: usize>(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b0: usize,
    (i, fold, j0, len): (usize, usize, usize, usize),
    (_, k, n): (usize, usize, usize),
) {
    let mut o: [&mut [f32]; B] = out
        .get_disjoint_mut(std::array::from_fn(|bb| (b0 + bb) * n + j0..(b0 + bb) * n + j0 + len))
        .expect("rows of out are disjoint");
    if fold < FOLD {
        for q in 0..fold {
            let wq = &w[(i + q) * n + j0..][..len];
            for (bb, o) in o.iter_mut().enumerate() {
                let a = x[(b0 + bb) * k + i + q];
                for (o, &wv) in o.iter_mut().zip(wq) {
                    *o = a.mul_add(wv, *o);
                }
            }
        }
        return;
    }
    let a: [[f32; FOLD]; B] = std::array::from_fn(|bb| std::array::from_fn(|q| x[(b0 + bb) * k + i + q]));
    let wr: [&[f32]; FOLD] = std::array::from_fn(|q| &w[(i + q) * n + j0..][..len]);
    let full = len / LANES * LANES;
    for j in (0..full).step_by(LANES) {
        // Fixed-size chunks: the compiler sees the lengths and keeps each in one register.
        let wc: [[f32; LANES]; FOLD] = std::array::from_fn(|q| lanes(wr[q], j));
        for (o, a) in o.iter_mut().zip(&a) {
            let oc: &mut [f32; LANES] = (&mut o[j..j + LANES]).try_into().expect("LANES");
            for l in 0..LANES {
                let mut acc = oc[l];
                for q in 0..FOLD {
                    acc = a[q].mul_add(wc[q][l], acc);
                }
                oc[l] = acc;
            }
        }
    }
    for j in full..len {
        for (o, a) in o.iter_mut().zip(&a) {
            for q in 0..FOLD {
                o[j] = a[q].mul_add(wr[q][j], o[j]);
            }
        }
    }
}

/// s[j..j + LANES] as an array.
#[inline(always)]
fn lanes(s: &[f32], j: usize) -> [f32; LANES] {
    s[j..j + LANES].try_into().expect("LANES")
}

multiversion! {
    fn add(out: &mut [f32], part: &[f32]) {
        for (o, &p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
}

/// Where tasks write disjoint columns of one output.
#[derive(Clone, Copy)]
struct Columns(*mut f32);
// SAFETY: every task writes only the columns of its own block (see `times_transposed`).
unsafe impl Send for Columns {}
unsafe impl Sync for Columns {}

impl Columns {
    /// (A method, so that closures capture the whole `Columns`, not its bare pointer field.)
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `out (m x n) = x (m x k) . w^T` where `w` is stored (n x k): output j is the dot product of
/// each row of x with row j of w. This is the LM head, whose weight is the token embedding.
pub fn times_transposed(out: &mut [f32], x: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) {
    assert!(out.len() >= m * n && x.len() >= m * k && w.len() >= k * n, "matvec shapes");
    let dst = Columns(out.as_mut_ptr());
    let blocks = n.div_ceil(BLOCK);
    let task = |blk: usize| {
        let rows = blk * BLOCK..((blk + 1) * BLOCK).min(n);
        // SAFETY: block `blk` writes out[b * n + j] only for j in its own `rows`; blocks are
        // disjoint and `out` holds m * n elements (asserted above).
        dots(dst.ptr(), x, w, rows, (m, k, n));
    };
    if k * n >= PARALLEL_MIN {
        (0..blocks).into_par_iter().for_each(task);
    } else {
        (0..blocks).for_each(task);
    }
}

multiversion! {
    /// out[b, j] = x[b] . w[j] for j in `rows`, four rows of w at a time.
    fn dots(out: *mut f32, x: &[f32], w: &[f32], rows: Range<usize>, shape: (usize, usize, usize)) {
        let (m, k, n) = shape;
        let mut j = rows.start;
        while j < rows.end {
            let four = 4.min(rows.end - j);
            let wr: [&[f32]; 4] = std::array::from_fn(|q| &w[(j + q.min(four - 1)) * k..][..k]);
            let store = |b: usize, sums: [f32; 4]| {
                for (q, &s) in sums.iter().enumerate().take(four) {
                    // SAFETY: the caller guarantees out holds m * n and j + q < n.
                    unsafe { *out.add(b * n + j + q) = s };
                }
            };
            let mut b = 0;
            while b + 4 <= m {
                let sums = dot_tile::<4>(std::array::from_fn(|bb| &x[(b + bb) * k..][..k]), wr);
                for (bb, s) in sums.into_iter().enumerate() {
                    store(b + bb, s);
                }
                b += 4;
            }
            for b in b..m {
                store(b, dot_tile::<1>([&x[b * k..][..k]], wr)[0]);
            }
            j += four;
        }
    }
}

/// The dot products of B rows of x with four rows of w: each chunk of x and of w loaded into a
/// register serves several products.
#[inline(always)]
fn dot_tile<const B: usize>(x: [&[f32]; B], w: [&[f32]; 4]) -> [[f32; 4]; B] {
    let k = w[0].len();
    let full = k / LANES * LANES;
    let mut acc = [[[0.0f32; LANES]; 4]; B];
    for c in (0..full).step_by(LANES) {
        let wc: [[f32; LANES]; 4] = std::array::from_fn(|q| lanes(w[q], c));
        for bb in 0..B {
            let xc = lanes(x[bb], c);
            for q in 0..4 {
                for l in 0..LANES {
                    acc[bb][q][l] = xc[l].mul_add(wc[q][l], acc[bb][q][l]);
                }
            }
        }
    }
    let mut sums = [[0.0f32; 4]; B];
    for bb in 0..B {
        for q in 0..4 {
            let mut s = 0.0;
            for &a in &acc[bb][q] {
                s += a;
            }
            for (a, b) in x[bb][full..].iter().zip(&w[q][full..]) {
                s += a * b;
            }
            sums[bb][q] = s;
        }
    }
    sums
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
        for &(m, k, n) in &[(1, 5, 3), (3, 37, 1030), (1, 300, 777), (8, 259, 600), (2, 1000, 70)] {
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
