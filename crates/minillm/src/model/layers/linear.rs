//! A linear layer stored like HF's Conv1D: out (N, OC) = inp (N, C) . w (C, OC) + b (OC).

use crate::kernels::matmul::{Stored, matmul};
use crate::kernels::simd::multiversion;
use rayon::prelude::*;

pub fn forward(
    out: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (n, c, oc): (usize, usize, usize),
) {
    match b {
        Some(b) => {
            out[..n * oc].par_chunks_mut(oc).for_each(|row| row.copy_from_slice(b));
            matmul(out, inp, Stored::Normal, w, Stored::Normal, (n, c, oc), true);
        }
        None => matmul(out, inp, Stored::Normal, w, Stored::Normal, (n, c, oc), false),
    }
}

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
) {
    // The two products are independent: run them side by side.
    let shape_in = (n, oc, c);
    let shape_w = (c, n, oc);
    rayon::join(
        || matmul(dinp, dout, Stored::Normal, w, Stored::Transposed, shape_in, false),
        || matmul(dw, inp, Stored::Transposed, dout, Stored::Normal, shape_w, true),
    );
    if let Some(db) = db {
        // Columns split across threads; each sums its columns over rows, in row order.
        const COLS: usize = 256;
        db.par_chunks_mut(COLS)
            .enumerate()
            .for_each(|(j, cols)| column_sums(cols, &dout[..n * oc], j * COLS, oc));
    }
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
    fn gradients_match_finite_differences() {
        let (n, c, oc) = (4, 6, 5);
        let mut rng = Rng::new(4);
        let x = random(&mut rng, n * c, 1.0);
        let w = random(&mut rng, c * oc, 1.0);
        let b = random(&mut rng, oc, 1.0);
        let r = random(&mut rng, n * oc, 1.0);
        let (mut dx, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c * oc], vec![0.0; oc]);
        backward(&mut dx, &mut dw, Some(&mut db), &r, &x, &w, (n, c, oc));
        let mut out = vec![0.0; n * oc];
        let mut run = |x: &[f32], w: &[f32], b: &[f32]| {
            forward(&mut out, x, w, Some(b), (n, c, oc));
            weighted_sum(&out, &r)
        };
        check("x", &x, &dx, |v| run(v, &w, &b));
        check("w", &w, &dw, |v| run(&x, v, &b));
        check("b", &b, &db, |v| run(&x, &w, v));
    }
}
