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
