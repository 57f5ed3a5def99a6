//! A linear layer: out (N, OC) = inp (N, C) . W + b (OC). `w` is stored as the checkpoint
//! stores it: (C, OC) like HF's Conv1D (GPT-2, [`Stored::Normal`]) or (OC, C) like nn.Linear
//! (the LLaMA family, [`Stored::Transposed`]), so weights load without a transpose.

use crate::kernels::matmul::{Stored, matmul, matmul_threads};
use crate::kernels::simd::multiversion;
use rayon::prelude::*;

pub fn forward(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (n, c, oc): (usize, usize, usize),
    stored: Stored,
) {
    if let Some(b) = b {
        out[..n * oc].par_chunks_mut(oc).for_each(|row| row.copy_from_slice(b));
    }
    matmul(out, inp, Stored::Normal, w, stored, (n, c, oc), b.is_some());
}

/// Most multiply-adds per product for a backward's pair to take half the threads each.
const SMALL_PAIR: usize = 1 << 26;

/// dinp = dout . w^T (overwritten: an input gradient has one producer), and the parameter
/// gradients accumulate: dw += inp^T . dout, db += column sums of dout.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    (n, c, oc): (usize, usize, usize),
    stored: Stored,
) {
    // The two products and the bias's sums are independent: run them side by side.
    let back = match stored {
        Stored::Normal => Stored::Transposed,
        Stored::Transposed => Stored::Normal,
    };
    let bias_sums = || {
        if let Some(db) = db {
            // Columns split across threads; each sums its columns over rows, in row order.
            const COLS: usize = 256;
            db.par_chunks_mut(COLS)
                .enumerate()
                .for_each(|(j, cols)| column_sums(cols, &dout[..n * oc], j * COLS, oc));
        }
    };
    // The two products have the same size (n c oc multiply-adds each). Small ones run on half
    // the threads each rather than each splitting itself across all of them: 4% of a baby GPT's
    // step (n c oc <= 50M); at d6's shape with batch 4 x 256 (150M-600M) that was 4% slower.
    let threads = rayon::current_num_threads();
    let half = if n * c * oc <= SMALL_PAIR { (threads / 2).max(1) } else { threads };
    let weight_grads = || match stored {
        Stored::Normal => {
            matmul_threads(dw, inp, Stored::Transposed, dout, Stored::Normal, (c, n, oc), true, half)
        }
        Stored::Transposed => {
            matmul_threads(dw, dout, Stored::Transposed, inp, Stored::Normal, (oc, n, c), true, half)
        }
    };
    rayon::join(
        || matmul_threads(dinp, dout, Stored::Normal, w, back, (n, oc, c), false, half),
        || rayon::join(weight_grads, bias_sums),
    );
}

multiversion! {
    /// cols[i] += sum over rows of m[row, start + i], for a row-major m with `width` columns.
    fn column_sums(cols: &mut [f32], m: &[f32], start: usize, width: usize) {
        for row in m.chunks_exact(width) {
            for (c, &x) in cols.iter_mut().zip(&row[start..]) {
                *c += x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn gradients_match_finite_differences_in_both_layouts() {
        let (n, c, oc) = (4, 6, 5);
        for stored in [Stored::Normal, Stored::Transposed] {
            let mut rng = Rng::new(4);
            let x = random(&mut rng, n * c, 1.0);
            let w = random(&mut rng, c * oc, 1.0);
            let b = random(&mut rng, oc, 1.0);
            let r = random(&mut rng, n * oc, 1.0);
            let (mut dx, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c * oc], vec![0.0; oc]);
            backward(&mut dx, &mut dw, Some(&mut db), &r, &x, &w, (n, c, oc), stored);
            let mut out = vec![0.0; n * oc];
            let mut run = |x: &[f32], w: &[f32], b: &[f32]| {
                forward(&mut out, x, w, Some(b), (n, c, oc), stored);
                weighted_sum(&out, &r)
            };
            check("x", &x, &dx, |v| run(v, &w, &b));
            check("w", &w, &dw, |v| run(&x, v, &b));
            check("b", &b, &db, |v| run(&x, &w, v));
        }
    }

    #[test]
    fn a_transposed_weight_gives_the_same_product() {
        let (n, c, oc) = (3, 4, 5);
        let mut rng = Rng::new(5);
        let (x, w) = (random(&mut rng, n * c, 1.0), random(&mut rng, c * oc, 1.0));
        let wt = crate::kernels::vec::transpose(&w, c, oc);
        let (mut a, mut b) = (vec![0.0; n * oc], vec![0.0; n * oc]);
        forward(&mut a, &x, &w, None, (n, c, oc), Stored::Normal);
        forward(&mut b, &x, &wt, None, (n, c, oc), Stored::Transposed);
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6));
    }
}
