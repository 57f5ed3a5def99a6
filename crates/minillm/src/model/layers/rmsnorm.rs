//! RMSNorm over the channels of each position (the LLaMA family's norm): no centring and no
//! bias, y = x / sqrt(mean(x^2) + eps) * w. Cheaper than LayerNorm by one reduction, and what
//! Llama, Mistral and Qwen2 were trained with.

use crate::kernels::simd::multiversion;
use crate::kernels::vec::dot_inline;
use rayon::prelude::*;

/// out (N, C) and rstd (N) from inp (N, C); 1/rms is kept for backward.
pub fn forward(out: &mut [f32], rstd: &mut [f32], inp: &[f32], w: &[f32], eps: f32, c: usize) {
    out.par_chunks_mut(c)
        .zip(rstd.par_iter_mut())
        .zip(inp.par_chunks(c))
        .for_each(|((o, r), x)| *r = forward_row(o, x, w, eps));
}

multiversion! {
    fn forward_row(o: &mut [f32], x: &[f32], w: &[f32], eps: f32) -> f32 {
        let r = 1.0 / (dot_inline(x, x) / x.len() as f32 + eps).sqrt();
        for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
            *o = x * r * w;
        }
        r
    }
}

/// dinp += d/dinp (the input is the residual stream, whose gradient sums over branches);
/// dw += sum over rows of dout * x * rstd.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: &mut [f32],
    dw: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    rstd: &[f32],
    c: usize,
) {
    // As in LayerNorm: the weight's gradient (one thread, row order) beside the rows' pass.
    rayon::join(
        || {
            dinp.par_chunks_mut(c)
                .zip(dout.par_chunks(c))
                .zip(inp.par_chunks(c).zip(rstd.par_iter()))
                .for_each(|((dx, dy), (x, &r))| backward_row(dx, dy, x, w, r))
        },
        || param_grads(dw, dout, inp, rstd, c),
    );
}

multiversion! {
    /// With g = dy * w: dx += r * (g - x * r^2 * mean(g * x)), since d(r)/d(x_j) = -r^3 x_j / C.
    fn backward_row(dx: &mut [f32], dy: &[f32], x: &[f32], w: &[f32], r: f32) {
        let mut gx = 0.0f32;
        for ((&dy, &w), &x) in dy.iter().zip(w).zip(x) {
            gx += dy * w * x;
        }
        let k = r * r * gx / x.len() as f32;
        for (((dx, &dy), &w), &x) in dx.iter_mut().zip(dy).zip(w).zip(x) {
            *dx += r * (dy * w - x * k);
        }
    }
}

multiversion! {
    /// Rows in order, so the sum is deterministic.
    fn param_grads(dw: &mut [f32], dout: &[f32], inp: &[f32], rstd: &[f32], c: usize) {
        for ((dy, x), &r) in dout.chunks_exact(c).zip(inp.chunks_exact(c)).zip(rstd) {
            for ((dw, &dy), &x) in dw.iter_mut().zip(dy).zip(x) {
                *dw += dy * x * r;
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
        let mut rng = Rng::new(12);
        let x = random(&mut rng, n * c, 1.0);
        let w = random(&mut rng, c, 1.0);
        let r = random(&mut rng, n * c, 1.0);
        let (mut out, mut rstd) = (vec![0.0; n * c], vec![0.0; n]);
        forward(&mut out, &mut rstd, &x, &w, 1e-5, c);
        let (mut dx, mut dw) = (vec![0.0; n * c], vec![0.0; c]);
        backward(&mut dx, &mut dw, &r, &x, &w, &rstd, c);
        let mut run = |x: &[f32], w: &[f32]| {
            forward(&mut out, &mut rstd, x, w, 1e-5, c);
            weighted_sum(&out, &r)
        };
        check("x", &x, &dx, |v| run(v, &w));
        check("w", &w, &dw, |v| run(&x, v));
    }

    #[test]
    fn a_row_comes_out_with_unit_rms_times_the_weight() {
        let x = [3.0f32, -4.0, 0.0, 0.0];
        let (mut out, mut rstd) = ([0.0; 4], [0.0]);
        forward(&mut out, &mut rstd, &x, &[1.0, 2.0, 1.0, 1.0], 0.0, 4);
        // rms = sqrt((9 + 16) / 4) = 2.5
        assert_eq!(out, [1.2, -3.2, 0.0, 0.0]);
    }
}
