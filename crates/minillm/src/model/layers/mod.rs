//! The layers of a GPT, one file each, `forward` and `backward` side by side.
//!
//! Shapes are written in (B, T, C) notation: B sequences, T positions, C channels; NH heads of
//! size hs (C / NH for GPT-2), NKV key/value heads; V the real vocabulary and Vp the padded one.
//! GPT-2 uses layernorm, gelu and learned positions; the LLaMA family rmsnorm, swiglu and rope;
//! both the embedding, linear, attention (grouped for the LLaMA family) and loss. Every `backward` accumulates
//! (`+=`) into parameter gradients, as in llm.c, so the caller zeroes them once per step. The
//! gradient of a layer's input is written (`=`), since each has one producer, except where the
//! input is the residual stream (LayerNorm), whose gradient sums over branches.

pub mod attention;
pub mod dropout;
pub mod embedding;
pub mod gelu;
pub mod layernorm;
pub mod linear;
pub mod loss;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;

/// The norm a model's blocks use.
#[derive(Clone, Copy, Debug)]
pub enum Norm {
    /// GPT-2's LayerNorm, with means and (optional) biases.
    Layer,
    /// The LLaMA family's RMSNorm, with its epsilon.
    Rms(f32),
}

impl Norm {
    /// Whether it keeps each row's mean for backward (LayerNorm does, RMSNorm has none).
    pub fn has_mean(self) -> bool {
        matches!(self, Norm::Layer)
    }

    /// out (N, C) = norm(inp); `mean` is unused (may be empty) for RMSNorm.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        self,
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        c: usize,
    ) {
        match self {
            Norm::Layer => layernorm::forward(out, mean, rstd, inp, w, b, c),
            Norm::Rms(eps) => rmsnorm::forward(out, rstd, inp, w, eps, c),
        }
    }

    /// dinp += d/dinp; dw (and db) += their gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        self,
        dinp: &mut [f32],
        (dw, db): (&mut [f32], Option<&mut [f32]>),
        dout: &[f32],
        inp: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) {
        match self {
            Norm::Layer => layernorm::backward(dinp, dw, db, dout, inp, w, mean, rstd, c),
            Norm::Rms(_) => rmsnorm::backward(dinp, dw, dout, inp, w, rstd, c),
        }
    }
}

/// The MLP's nonlinearity between its two products.
#[derive(Clone, Copy, Debug)]
pub enum Activation {
    /// GPT-2's GELU over 4C lanes.
    Gelu,
    /// The LLaMA family's SwiGLU: gate and up (2I lanes) to I.
    SwiGlu(usize),
}

impl Activation {
    pub fn forward(self, out: &mut [f32], inp: &[f32]) {
        match self {
            Activation::Gelu => gelu::forward(out, inp),
            Activation::SwiGlu(i) => swiglu::forward(out, inp, i),
        }
    }

    /// [`forward`](Self::forward) of inp + bias (row by row), leaving inp with the bias added:
    /// for GELU in the same pass.
    pub fn forward_biased(self, out: &mut [f32], inp: &mut [f32], bias: Option<&[f32]>) {
        match (self, bias) {
            (Activation::Gelu, Some(b)) => gelu::forward_biased(out, inp, b),
            (_, b) => {
                if let Some(b) = b {
                    crate::kernels::vec::add_bias(inp, b);
                }
                self.forward(out, inp)
            }
        }
    }

    /// dinp = d/dinp (overwritten).
    pub fn backward(self, dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
        match self {
            Activation::Gelu => gelu::backward(dinp, inp, dout),
            Activation::SwiGlu(i) => swiglu::backward(dinp, inp, dout, i),
        }
    }
}

#[cfg(test)]
pub mod gradcheck {
    //! Finite differences: the independent reference every backward is checked against.

    use crate::rng::Rng;

    pub fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (rng.normal() as f32) * scale).collect()
    }

    /// Checks `analytic` (the gradient of `loss` at `x`) against central differences at every
    /// element, in f64 around the f32 function. Fails on a wrong sign, a missing term or a
    /// wrong factor; tolerates f32 rounding.
    pub fn check(name: &str, x: &[f32], analytic: &[f32], mut loss: impl FnMut(&[f32]) -> f64) {
        assert_eq!(x.len(), analytic.len());
        let eps = 1e-2f32;
        let mut worst = 0.0f64;
        let scale = analytic.iter().fold(1e-3f64, |m, &g| m.max(g.abs() as f64));
        let mut xp = x.to_vec();
        for i in 0..x.len() {
            xp[i] = x[i] + eps;
            let up = loss(&xp);
            xp[i] = x[i] - eps;
            let down = loss(&xp);
            xp[i] = x[i];
            let numeric = (up - down) / (2.0 * eps as f64);
            let err = (numeric - analytic[i] as f64).abs() / scale;
            worst = worst.max(err);
            assert!(err < 2e-2, "{name}[{i}]: analytic {} vs numeric {numeric} (scale {scale})", analytic[i]);
        }
        assert!(worst.is_finite());
    }

    /// sum(out * r): a scalar loss whose gradient with respect to `out` is `r`.
    pub fn weighted_sum(out: &[f32], r: &[f32]) -> f64 {
        out.iter().zip(r).map(|(&o, &w)| o as f64 * w as f64).sum()
    }
}
