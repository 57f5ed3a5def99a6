//! GELU in GPT-2's tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

use crate::kernels::simd::{multiversion, tanh};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CHUNK: usize = 4096;

multiversion! {
    fn forward_chunk(out: &mut [f32], inp: &[f32]) {
        for (o, &x) in out.iter_mut().zip(inp) {
            let cube = 0.044715 * x * x * x;
            *o = 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + cube)));
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
