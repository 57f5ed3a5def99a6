//! LayerNorm over the channels of each position: y = (x - mean) / sqrt(var + 1e-5) * w + b.

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
    out.par_chunks_mut(c).zip(mean.par_iter_mut().zip(rstd.par_iter_mut())).zip(inp.par_chunks(c)).for_each(
        |((o, (m, s)), x)| {
            let mu = x.iter().sum::<f32>() / c as f32;
            let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
            let r = 1.0 / (var + EPS).sqrt();
            for i in 0..c {
                o[i] = (x[i] - mu) * r * w[i] + b.map_or(0.0, |b| b[i]);
            }
            (*m, *s) = (mu, r);
        },
    );
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
    dinp.par_chunks_mut(c)
        .zip(dout.par_chunks(c).zip(inp.par_chunks(c)))
        .zip(mean.par_iter().zip(rstd.par_iter()))
        .for_each(|((dx, (dy, x)), (&mu, &r))| {
            // dxhat = dy * w; dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            let (mut sum_d, mut sum_dx) = (0.0f32, 0.0f32);
            for i in 0..c {
                let d = dy[i] * w[i];
                sum_d += d;
                sum_dx += d * (x[i] - mu) * r;
            }
            let (mean_d, mean_dx) = (sum_d / c as f32, sum_dx / c as f32);
            for i in 0..c {
                let xhat = (x[i] - mu) * r;
                dx[i] += r * (dy[i] * w[i] - mean_d - xhat * mean_dx);
            }
        });
    // Parameter gradients sum over rows; done in row order so the result is deterministic.
    for ((dy, x), (&mu, &r)) in dout.chunks_exact(c).zip(inp.chunks_exact(c)).zip(mean.iter().zip(rstd)) {
        for i in 0..c {
            dw[i] += dy[i] * (x[i] - mu) * r;
        }
    }
    if let Some(db) = db {
        for dy in dout.chunks_exact(c) {
            crate::kernels::vec::axpy(db, 1.0, dy);
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
