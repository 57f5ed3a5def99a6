//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, over the flat
//! parameter buffer. Decay applies only where `decay[i]` (the blocks' matrices, see
//! [`crate::model::params::is_decayed`]).

use crate::kernels::simd::multiversion;
use crate::model::params::{Layout, is_decayed};
use rayon::prelude::*;
use std::ops::Range;

#[derive(Clone, Debug)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

pub struct AdamW {
    pub config: AdamWConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Each tensor's range and whether weight decay applies to it.
    tensors: Vec<(Range<usize>, bool)>,
    step: u32,
}

/// The constants of one update.
#[derive(Clone, Copy)]
struct Update {
    decay_factor: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bias2_sqrt: f32,
}

multiversion! {
    fn update(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], u: Update) {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *p *= u.decay_factor;
            *m = u.beta1 * *m + (1.0 - u.beta1) * g;
            *v = u.beta2 * *v + (1.0 - u.beta2) * g * g;
            *p -= u.step_size * *m / ((*v).sqrt() / u.bias2_sqrt + u.eps);
        }
    }
}

impl AdamW {
    pub fn new(config: AdamWConfig, layout: &Layout) -> AdamW {
        let tensors = layout.tensors.iter().map(|t| (t.range(), is_decayed(&t.name))).collect();
        AdamW { config, m: vec![0.0; layout.total], v: vec![0.0; layout.total], tensors, step: 0 }
    }

    /// The moments and the step count, to save with a checkpoint.
    pub fn state(&self) -> (&[f32], &[f32], u32) {
        (&self.m, &self.v, self.step)
    }

    /// Restores [`state`](Self::state); the lengths must match the layout.
    pub fn set_state(&mut self, m: Vec<f32>, v: Vec<f32>, step: u32) -> crate::Result<()> {
        if m.len() != self.m.len() || v.len() != self.v.len() {
            return Err(crate::Error::Invalid(
                "optimizer state does not match the model's parameters".into(),
            ));
        }
        (self.m, self.v, self.step) = (m, v, step);
        Ok(())
    }

    /// One update of `params` from `grads`, at learning rate `lr`: element-wise, so spread over
    /// threads without changing a bit of the result.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.step += 1;
        let c = &self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let base = Update {
            decay_factor: 1.0,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            step_size: lr / bias1,
            bias2_sqrt: (1.0 - c.beta2.powi(self.step as i32)).sqrt(),
        };
        const CHUNK: usize = 1 << 14;
        for (range, decayed) in &self.tensors {
            let u = Update { decay_factor: if *decayed { 1.0 - lr * c.weight_decay } else { 1.0 }, ..base };
            params[range.clone()]
                .par_chunks_mut(CHUNK)
                .zip(self.m[range.clone()].par_chunks_mut(CHUNK))
                .zip(self.v[range.clone()].par_chunks_mut(CHUNK))
                .zip(grads[range.clone()].par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| update(p, m, v, g, u));
        }
    }
}
