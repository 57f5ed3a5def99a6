//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, over the flat
//! parameter buffer. Decay applies only where `decay[i]` (the blocks' matrices, see
//! [`crate::model::params::is_decayed`]).

use crate::model::params::{Layout, is_decayed};

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
    decay: Vec<bool>,
    step: u32,
}

impl AdamW {
    pub fn new(config: AdamWConfig, layout: &Layout) -> AdamW {
        let mut decay = vec![false; layout.total];
        for t in &layout.tensors {
            decay[t.range()].fill(is_decayed(&t.name));
        }
        AdamW { config, m: vec![0.0; layout.total], v: vec![0.0; layout.total], decay, step: 0 }
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

    /// One update of `params` from `grads`, at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.step += 1;
        let c = &self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        let step_size = lr / bias1;
        for i in 0..params.len() {
            let g = grads[i];
            if self.decay[i] {
                params[i] *= 1.0 - lr * c.weight_decay;
            }
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g;
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g * g;
            let denom = self.v[i].sqrt() / bias2_sqrt + c.eps;
            params[i] -= step_size * self.m[i] / denom;
        }
    }
}
