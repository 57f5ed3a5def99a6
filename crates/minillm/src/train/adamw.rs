//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, over the flat
//! parameter buffer, or over one contiguous shard of it (ZeRO-1: in data-parallel training each
//! process keeps the moments of its own shard only). Decay applies only to the blocks' matrices
//! (see [`crate::model::params::is_decayed`]).

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
    /// The part of the parameters updated here (all of them but in sharded training).
    shard: Range<usize>,
    /// Each tensor's range within the shard and whether weight decay applies to it.
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

/// Each tensor's part of `shard`, relative to its start, and whether it is decayed.
fn tensors_within(layout: &Layout, shard: &Range<usize>) -> Vec<(Range<usize>, bool)> {
    let clip = |r: Range<usize>| r.start.max(shard.start) - shard.start..r.end.min(shard.end) - shard.start;
    layout
        .tensors
        .iter()
        .filter(|t| t.offset < shard.end && t.offset + t.len() > shard.start)
        .map(|t| (clip(t.range()), is_decayed(&t.name)))
        .collect()
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
        let (total, tensors) = (layout.total, tensors_within(layout, &(0..layout.total)));
        AdamW { config, m: vec![0.0; total], v: vec![0.0; total], shard: 0..total, tensors, step: 0 }
    }

    /// Keeps only `shard` of the parameters, which must lie within the current range: its part
    /// of the moments, its part of each tensor.
    pub fn shard(&mut self, layout: &Layout, shard: Range<usize>) {
        assert!(
            self.shard.start <= shard.start && shard.end <= self.shard.end,
            "a shard of the current range"
        );
        let keep = shard.start - self.shard.start..shard.end - self.shard.start;
        self.m = self.m[keep.clone()].to_vec();
        self.v = self.v[keep].to_vec();
        self.tensors = tensors_within(layout, &shard);
        self.shard = shard;
    }

    /// The range of the parameters this optimizer updates.
    pub fn range(&self) -> Range<usize> {
        self.shard.clone()
    }

    /// The moments (of the shard) and the step count, to save with a checkpoint.
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

    /// One update of `params` from `grads` (both the shard's, see [`range`](Self::range)), at
    /// learning rate `lr`: element-wise, so spread over threads without changing a bit of the
    /// result, and sharding changes none either.
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
