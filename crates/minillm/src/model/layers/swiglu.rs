//! The SwiGLU gate of the LLaMA family's MLP: h = silu(g) * u, silu(g) = g * sigmoid(g).
//!
//! The MLP is down(silu(gate(x)) * up(x)): the gate and up projections are one fused product
//! here, so each row of its output holds g (I lanes) then u (I lanes). Three matrices of width
//! I instead of GPT-2's two of width 4C; Llama sizes I near 8C/3 to keep the parameter count.

use crate::kernels::simd::{exp, multiversion};
use rayon::prelude::*;

const ROWS: usize = 16;

multiversion! {
    fn forward_rows(out: &mut [f32], gu: &[f32], i: usize) {
        for (o, row) in out.chunks_exact_mut(i).zip(gu.chunks_exact(2 * i)) {
            let (g, u) = row.split_at(i);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + exp(-g)) * u;
            }
        }
    }
}

multiversion! {
    /// dg = dh * u * silu'(g), silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g); du = dh * silu(g).
    fn backward_rows(dgu: &mut [f32], gu: &[f32], dout: &[f32], i: usize) {
        for ((d, row), dh) in dgu.chunks_exact_mut(2 * i).zip(gu.chunks_exact(2 * i)).zip(dout.chunks_exact(i)) {
            let (dg, du) = d.split_at_mut(i);
            let (g, u) = row.split_at(i);
            for j in 0..i {
                let s = 1.0 / (1.0 + exp(-g[j]));
                du[j] = dh[j] * g[j] * s;
                dg[j] = dh[j] * u[j] * s * (1.0 + g[j] * (1.0 - s));
            }
        }
    }
}

/// out (N, I) from gu (N, 2I).
pub fn forward(out: &mut [f32], gu: &[f32], i: usize) {
    out.par_chunks_mut(ROWS * i).zip(gu.par_chunks(ROWS * 2 * i)).for_each(|(o, x)| forward_rows(o, x, i));
}

/// dgu (N, 2I) from dout (N, I), overwritten.
pub fn backward(dgu: &mut [f32], gu: &[f32], dout: &[f32], i: usize) {
    dgu.par_chunks_mut(ROWS * 2 * i)
        .zip(gu.par_chunks(ROWS * 2 * i).zip(dout.par_chunks(ROWS * i)))
        .for_each(|(d, (x, dy))| backward_rows(d, x, dy, i));
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn gradients_match_finite_differences() {
        let (n, i) = (3, 5);
        let mut rng = Rng::new(13);
        let gu = random(&mut rng, n * 2 * i, 2.0);
        let r = random(&mut rng, n * i, 1.0);
        let mut dgu = vec![0.0; gu.len()];
        backward(&mut dgu, &gu, &r, i);
        let mut out = vec![0.0; n * i];
        check("gu", &gu, &dgu, |x| {
            forward(&mut out, x, i);
            weighted_sum(&out, &r)
        });
    }

    #[test]
    fn silu_gates_the_up_projection() {
        let mut out = [0.0f32; 2];
        forward(&mut out, &[0.0, 2.0, 5.0, 3.0], 2);
        let silu2 = 2.0 / (1.0 + (-2.0f32).exp());
        assert_eq!(out[0], 0.0);
        assert!((out[1] - silu2 * 3.0).abs() < 1e-6);
    }
}
