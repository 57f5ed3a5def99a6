//! GELU in GPT-2's tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

use crate::kernels::simd::{multiversion, tanh};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CHUNK: usize = 4096;

#[inline(always)]
fn gelu(x: f32) -> f32 {
    let cube = 0.044715 * x * x * x;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + cube)))
}

multiversion! {
    fn forward_chunk(out: &mut [f32], inp: &[f32]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            *o = gelu(x);
        }
    }
}

multiversion! {
    fn forward_biased_chunk(out: &mut [f32], inp: &mut [f32], bias: &[f32]) {
        let width = bias.len();
        for (o, x) in out.chunks_exact_mut(width).zip(inp.chunks_exact_mut(width)) {
            for ((o, x), &b) in o.iter_mut().zip(x.iter_mut()).zip(bias) {
                *x += b;
                *o = gelu(*x);
            }
        }
    }
}

multiversion! {
    fn backward_chunk(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
        for ((dx, &x), &dy) in dinp.iter_mut().zip(inp).zip(dout) {
            let th = tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
            let sech2 = 1.0 - th * th;
            let slope = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            *dx = (0.5 * (1.0 + th) + 0.5 * x * sech2 * slope) * dy;
        }
    }
}

pub fn forward(out: &mut [f32], inp: &[f32]) {
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| forward_chunk(o, x));
}

/// inp (N, OC) += bias row by row, and out = gelu(inp), in one pass: the layer before leaves its
/// bias to this pass, which reads its output anyway (copying the bias into that output first
/// cost a pass over it and the product's read of it).
pub fn forward_biased(out: &mut [f32], inp: &mut [f32], bias: &[f32]) {
    let per = CHUNK.div_ceil(bias.len()) * bias.len();
    out.par_chunks_mut(per).zip(inp.par_chunks_mut(per)).for_each(|(o, x)| forward_biased_chunk(o, x, bias));
}

/// dinp = gelu'(inp) * dout (overwritten)
pub fn backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| backward_chunk(dx, x, dy));
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_biased_forward_adds_the_bias_then_applies_gelu() {
        let (n, w) = (300, 29); // more rows than one chunk, an odd width
        let mut rng = Rng::new(5);
        let x = random(&mut rng, n * w, 2.0);
        let b = random(&mut rng, w, 1.0);
        let mut want_x = x.clone();
        crate::kernels::vec::add_bias(&mut want_x, &b);
        let mut want = vec![0.0; n * w];
        forward(&mut want, &want_x);
        let (mut got, mut got_x) = (vec![0.0; n * w], x);
        forward_biased(&mut got, &mut got_x, &b);
        assert_eq!((got, got_x), (want, want_x));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(3);
        let x = random(&mut rng, 50, 2.0);
        let r = random(&mut rng, 50, 1.0);
        let mut dx = vec![0.0; 50];
        backward(&mut dx, &x, &r);
        let mut out = vec![0.0; 50];
        check("x", &x, &dx, |v| {
            forward(&mut out, v);
            weighted_sum(&out, &r)
        });
        forward(&mut out, &[0.0, 1.0, -3.0]);
        assert!((out[1] - 0.841_192).abs() < 1e-5 && out[0] == 0.0 && out[2].abs() < 0.01);
    }
}
