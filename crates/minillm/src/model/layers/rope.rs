//! Rotary position embeddings, in HF's convention: each head's lanes are two halves (x1, x2),
//! and position p turns the pair (x1[i], x2[i]) by the angle p * f_i:
//!
//! ```text
//! y1 = x1 cos - x2 sin        y2 = x2 cos + x1 sin        f_i = theta^(-2i / hs), i < hs/2
//! ```
//!
//! Applied to queries and keys (not values), the score q_m . k_n then depends on positions only
//! through m - n: attention sees relative positions, and no position table limits the context.
//! The turn is a rotation, so backward is the rotation by -p * f_i. `rope_scaling` stretches the
//! frequencies for contexts longer than training saw ("linear": every f_i / factor; "llama3":
//! low frequencies / factor, high ones kept, a smooth blend between).

use crate::model::config::{Arch, LlamaShape, ModelConfig, RopeScaling};
use rayon::prelude::*;

/// cos and sin of every (position, frequency) for positions 0..n, computed once.
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The frequencies f_i after `rope_scaling`, in f64 (HF computes them in f32; the two agree to
/// f32 rounding at the positions tests compare).
pub fn frequencies(l: &LlamaShape) -> Vec<f64> {
    let hs = l.head_dim as f64;
    let base: Vec<f64> = (0..l.head_dim / 2).map(|i| l.rope_theta.powf(-((2 * i) as f64) / hs)).collect();
    match l.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context }) => {
            let old = original_context as f64;
            let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl Rope {
    /// The tables for positions 0..`positions`.
    pub fn new(l: &LlamaShape, positions: usize) -> Rope {
        let freqs = frequencies(l);
        let half = freqs.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &freqs {
                let (s, c) = (p as f64 * f).sin_cos();
                cos.push(c as f32);
                sin.push(s as f32);
            }
        }
        Rope { half, cos, sin }
    }

    /// The tables a model of `config` needs for `positions` positions: none for GPT-2.
    pub fn of(config: &ModelConfig, positions: usize) -> Option<Rope> {
        match &config.arch {
            Arch::Gpt2 => None,
            Arch::Llama(l) => Some(Rope::new(l, positions)),
        }
    }

    /// Floats [`Rope::of`] allocates, counted without allocating them.
    pub fn floats(config: &ModelConfig, positions: usize) -> usize {
        match &config.arch {
            Arch::Gpt2 => 0,
            Arch::Llama(l) => positions * l.head_dim,
        }
    }

    #[cfg(test)]
    pub fn allocated_floats(&self) -> usize {
        self.cos.len() + self.sin.len()
    }

    /// Turns every head in `x` (heads side by side, hs lanes each) to position `pos`; backward
    /// (`inverse`) turns the other way.
    pub fn rotate(&self, x: &mut [f32], pos: usize, inverse: bool) {
        let h = self.half;
        let (cos, sin) = (&self.cos[pos * h..][..h], &self.sin[pos * h..][..h]);
        let sign = if inverse { -1.0 } else { 1.0 };
        for head in x.chunks_exact_mut(2 * h) {
            let (x1, x2) = head.split_at_mut(h);
            for i in 0..h {
                let (a, b, s) = (x1[i], x2[i], sign * sin[i]);
                x1[i] = a * cos[i] - b * s;
                x2[i] = b * cos[i] + a * s;
            }
        }
    }

    /// Turns the first `lanes` of every row of `rows` (width `width`), row r at position
    /// `pos(r)`: the queries and keys of a fused q | k | v tensor.
    pub fn rotate_rows(
        &self,
        rows: &mut [f32],
        (width, lanes): (usize, usize),
        pos: impl Fn(usize) -> usize + Sync,
        inverse: bool,
    ) {
        rows.par_chunks_mut(width)
            .enumerate()
            .for_each(|(r, row)| self.rotate(&mut row[..lanes], pos(r), inverse));
    }
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::model::config::Family;
    use crate::rng::Rng;

    fn shape(scaling: Option<RopeScaling>) -> LlamaShape {
        LlamaShape {
            family: Family::Llama,
            n_kv_head: 1,
            head_dim: 8,
            intermediate: 4,
            rope_theta: 10000.0,
            rope_scaling: scaling,
            norm_eps: 1e-5,
            qkv_bias: false,
            tied_head: true,
        }
    }

    #[test]
    fn backward_is_the_transpose_of_forward() {
        let rope = Rope::new(&shape(None), 5);
        let mut rng = Rng::new(3);
        let (x, r) = (random(&mut rng, 16, 1.0), random(&mut rng, 16, 1.0));
        let mut dx = r.clone();
        rope.rotate(&mut dx, 4, true);
        check("x", &x, &dx, |v| {
            let mut y = v.to_vec();
            rope.rotate(&mut y, 4, false);
            weighted_sum(&y, &r)
        });
    }

    #[test]
    fn scores_depend_only_on_the_distance() {
        let rope = Rope::new(&shape(None), 20);
        let mut rng = Rng::new(4);
        let (q, k) = (random(&mut rng, 8, 1.0), random(&mut rng, 8, 1.0));
        let score = |m: usize, n: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            rope.rotate(&mut a, m, false);
            rope.rotate(&mut b, n, false);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((score(7, 3) - score(15, 11)).abs() < 1e-5);
        assert!((score(7, 3) - score(7, 4)).abs() > 1e-3);
    }

    #[test]
    fn scaling_stretches_the_frequencies_as_hf_does() {
        let plain = frequencies(&shape(None));
        assert_eq!(plain[0], 1.0);
        assert!((plain[1] - 0.1).abs() < 1e-12); // 10000^(-2/8)
        let linear = frequencies(&shape(Some(RopeScaling::Linear { factor: 4.0 })));
        assert!(plain.iter().zip(&linear).all(|(p, l)| (p / 4.0 - l).abs() < 1e-15));
        // Llama 3 with an original context of 64: wavelengths 2 pi / f = 6.3, 63, 628, 6283.
        // Below 64 / 4 = 16 kept, above 64 / 1 divided by 8, between blended.
        let llama3 = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 64,
        };
        let f = frequencies(&shape(Some(llama3)));
        assert_eq!(f[0], plain[0]);
        let smooth = (64.0 / (2.0 * std::f64::consts::PI / plain[1]) - 1.0) / 3.0;
        assert!((f[1] - ((1.0 - smooth) * plain[1] / 8.0 + smooth * plain[1])).abs() < 1e-15);
        assert_eq!((f[2], f[3]), (plain[2] / 8.0, plain[3] / 8.0));
    }
}
