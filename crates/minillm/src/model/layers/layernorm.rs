//! LayerNorm over the channels of each position: y = (x - mean) / sqrt(var + 1e-5) * w + b.

use crate::kernels::simd::{multiversion, sum_inline};
use crate::kernels::vec::dot_inline;
use rayon::prelude::*;

pub const EPS: f32 = 1e-5;

/// out (N, C), mean (N), rstd (N) from inp (N, C); mean and 1/std are kept for backward.
pub fn forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    c: usize,
) {
    out.par_chunks_mut(c)
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .zip(inp.par_chunks(c))
        .for_each(|((o, (m, s)), x)| (*m, *s) = forward_row(o, x, w, b));
}

multiversion! {
    fn forward_row(o: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>) -> (f32, f32) {
        let c = x.len() as f32;
        let mu = sum_inline(x) / c;
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x - mu; // centred values, reused for the variance
        }
        let r = 1.0 / (dot_inline(o, o) / c + EPS).sqrt();
        match b {
            Some(b) => o.iter_mut().zip(w).zip(b).for_each(|((o, &w), &b)| *o = *o * r * w + b),
            None => o.iter_mut().zip(w).for_each(|(o, &w)| *o = *o * r * w),
        }
        (mu, r)
    }
}

/// dinp += d/dx, dw += sum over rows of dout * xhat, db += sum over rows of dout.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) {
    // The parameters' gradients sum over every row, in row order, on one thread: beside the
    // rows' pass rather than after it.
    rayon::join(
        || {
            dinp.par_chunks_mut(c)
                .zip(dout.par_chunks(c).zip(inp.par_chunks(c)))
                .zip(mean.par_iter().zip(rstd.par_iter()))
                .for_each(|((dx, (dy, x)), (&mu, &r))| backward_row(dx, dy, x, w, mu, r))
        },
        || param_grads(dw, db, dout, inp, mean, rstd, c),
    );
}

multiversion! {
    /// dxhat = dy * w; dx += r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    fn backward_row(dx: &mut [f32], dy: &[f32], x: &[f32], w: &[f32], mu: f32, r: f32) {
        let c = x.len() as f32;
        // Two sums over the row, in 16 lanes so they vectorize.
        let (mut sum_d, mut sum_dx) = ([0.0f32; 16], [0.0f32; 16]);
        let chunks = dy.chunks_exact(16).zip(w.chunks_exact(16)).zip(x.chunks_exact(16));
        for ((dy, w), x) in chunks {
            for j in 0..16 {
                let d = dy[j] * w[j];
                sum_d[j] += d;
                sum_dx[j] += d * (x[j] - mu) * r;
            }
        }
        let tail = dy.len() / 16 * 16;
        for i in tail..dy.len() {
            let d = dy[i] * w[i];
            sum_d[0] += d;
            sum_dx[0] += d * (x[i] - mu) * r;
        }
        let (mean_d, mean_dx) = (sum_inline(&sum_d) / c, sum_inline(&sum_dx) / c);
        for (((dx, &dy), &w), &x) in dx.iter_mut().zip(dy).zip(w).zip(x) {
            *dx += r * (dy * w - mean_d - (x - mu) * r * mean_dx);
        }
    }
}

multiversion! {
    /// Parameter gradients sum over rows, in row order so the result is deterministic.
    fn param_grads(dw: &mut [f32], db: Option<&mut [f32]>, dout: &[f32], inp: &[f32], mean: &[f32], rstd: &[f32], c: usize) {
        for ((dy, x), (&mu, &r)) in dout.chunks_exact(c).zip(inp.chunks_exact(c)).zip(mean.iter().zip(rstd)) {
            for ((dw, &dy), &x) in dw.iter_mut().zip(dy).zip(x) {
                *dw += dy * (x - mu) * r;
            }
        }
        if let Some(db) = db {
            for dy in dout.chunks_exact(c) {
                for (db, &dy) in db.iter_mut().zip(dy) {
                    *db += dy;
                }
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
        let (n, c) = (3, 8);
        let mut rng = Rng::new(2);
        let x = random(&mut rng, n * c, 1.0);
        let w = random(&mut rng, c, 1.0);
        let b = random(&mut rng, c, 1.0);
        let r = random(&mut rng, n * c, 1.0);
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        forward(&mut out, &mut mean, &mut rstd, &x, &w, Some(&b), c);
        let (mut dx, mut dw, mut db) = (vec![0.0; n * c], vec![0.0; c], vec![0.0; c]);
        backward(&mut dx, &mut dw, Some(&mut db), &r, &x, &w, &mean, &rstd, c);
        let mut run = |x: &[f32], w: &[f32], b: &[f32]| {
            forward(&mut out, &mut mean, &mut rstd, x, w, Some(b), c);
            weighted_sum(&out, &r)
        };
        check("x", &x, &dx, |v| run(v, &w, &b));
        check("w", &w, &dw, |v| run(&x, v, &b));
        check("b", &b, &db, |v| run(&x, &w, v));
    }
}
