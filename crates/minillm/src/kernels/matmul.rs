//! Matrix products, borrowed from the `gemm` crate (its AVX-512 kernels match MKL on this kind
//! of CPU). All matrices are row-major f32 slices; a transposed operand is read through strides,
//! never copied.

use gemm::{Parallelism, gemm};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Products in flight. The `gemm` crate allocates its packing buffers on every call (the only
/// allocations a training step makes); this lets the allocation test tell them from ours.
pub(crate) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How an operand is stored: `Normal` is row-major as named (A is m x k), `Transposed` means
/// the slice holds the transpose row-major (A stored as k x m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Normal,
    Transposed,
}

/// `out (m x n) = A (m x k) . B (k x n)`, or `out += A . B` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    out: &mut [f32],
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    shape: (usize, usize, usize),
    accumulate: bool,
) {
    matmul_threads(out, a, a_stored, b, b_stored, shape, accumulate, rayon::current_num_threads());
}

/// [`matmul`] split across at most `threads` threads (fewer for products that run beside
/// others, such as a linear layer's backward pair). The result does not depend on it: the gemm
/// crate's threads split the output, never a sum.
#[allow(clippy::too_many_arguments)]
pub fn matmul_threads(
    out: &mut [f32],
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    // (column stride, row stride) of each operand, in elements.
    let (a_cs, a_rs) = match a_stored {
        Stored::Normal => (1, k as isize),
        Stored::Transposed => (m as isize, 1),
    };
    let (b_cs, b_rs) = match b_stored {
        Stored::Normal => (1, n as isize),
        Stored::Transposed => (k as isize, 1),
    };
    let work = m * n * k;
    let parallelism = match threads {
        t if t > 1 && work >= 1 << 18 => Parallelism::Rayon(t),
        _ => Parallelism::None,
    };
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and
    // `out` does not alias `a` or `b` (it is a unique borrow).
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
}

/// A strided matrix inside a slice: element (i, j) is at `offset + i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View {
    /// A dense row-major block of `rows` rows spaced `row_stride` apart.
    pub fn rows(offset: usize, rows: usize, cols: usize, row_stride: usize) -> View {
        View { offset, rows, cols, row_stride, col_stride: 1 }
    }

    /// The transpose, reading the same elements.
    pub fn t(self) -> View {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < len
    }
}

/// `out = scale * A . B` (or `out += scale * A . B` when `accumulate`) on strided views, on the
/// calling thread: for many small products run in parallel, such as attention per head.
#[allow(clippy::too_many_arguments)]
pub fn matmul_view(
    out: &mut [f32],
    o: View,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    scale: f32,
    accumulate: bool,
) {
    assert!(av.rows == o.rows && bv.cols == o.cols && av.cols == bv.rows, "matmul_view shapes");
    assert!(o.fits(out.len()) && av.fits(a.len()) && bv.fits(b.len()), "matmul_view bounds");
    if o.rows == 0 || o.cols == 0 {
        return;
    }
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `fits` keeps every reachable element inside its slice; `out` is a unique borrow.
    unsafe {
        gemm(
            o.rows,
            o.cols,
            av.cols,
            out.as_mut_ptr().add(o.offset),
            o.col_stride as isize,
            o.row_stride as isize,
            accumulate,
            a.as_ptr().add(av.offset),
            av.col_stride as isize,
            av.row_stride as isize,
            b.as_ptr().add(bv.offset),
            bv.col_stride as isize,
            bv.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn naive(a: &[f32], at: Stored, b: &[f32], bt: Stored, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
        let get_a = |i: usize, p: usize| {
            if at == Stored::Normal { a[i * k + p] } else { a[p * m + i] }
        };
        let get_b = |p: usize, j: usize| {
            if bt == Stored::Normal { b[p * n + j] } else { b[j * k + p] }
        };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| get_a(i, p) as f64 * get_b(p, j) as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn every_layout_matches_the_naive_product() {
        let mut rng = Rng::new(3);
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 64, 33), (128, 96, 80)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32 - 0.5).collect();
            for at in [Stored::Normal, Stored::Transposed] {
                for bt in [Stored::Normal, Stored::Transposed] {
                    let want = naive(&a, at, &b, bt, (m, k, n));
                    let mut out = vec![1.0; m * n];
                    matmul(&mut out, &a, at, &b, bt, (m, k, n), false);
                    let mut acc = vec![1.0; m * n];
                    matmul(&mut acc, &a, at, &b, bt, (m, k, n), true);
                    for i in 0..m * n {
                        assert!((out[i] - want[i]).abs() < 1e-4, "{m}x{k}x{n} {at:?} {bt:?}");
                        assert!((acc[i] - want[i] - 1.0).abs() < 1e-4);
                    }
                }
            }
        }
    }

    #[test]
    fn strided_views_match_the_naive_product() {
        let mut rng = Rng::new(4);
        let (m, k, n) = (5, 3, 4);
        // A lives in columns 2..5 of a 5 x 7 buffer; B is read transposed from a 4 x 3 buffer.
        let abuf: Vec<f32> = (0..35).map(|_| rng.uniform() as f32).collect();
        let bbuf: Vec<f32> = (0..12).map(|_| rng.uniform() as f32).collect();
        let a: Vec<f32> = (0..m * k).map(|i| abuf[(i / k) * 7 + 2 + i % k]).collect();
        let want = naive(&a, Stored::Normal, &bbuf, Stored::Transposed, (m, k, n));
        let mut out = vec![0.0; 2 * m * n];
        let o = View::rows(1, m, n, 2 * n);
        let (av, bv) = (View::rows(2, m, k, 7), View::rows(0, n, k, k).t());
        matmul_view(&mut out, o, &abuf, av, &bbuf, bv, 0.5, false);
        for i in 0..m {
            for j in 0..n {
                assert!((out[1 + i * 2 * n + j] - 0.5 * want[i * n + j]).abs() < 1e-5);
            }
        }
        assert_eq!(out[0], 0.0);
    }
}
