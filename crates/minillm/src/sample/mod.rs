//! Turning next-token probabilities into text: a sampler (temperature, top-k) and a generation
//! loop: the prompt in one pass, then one token at a time through the KV cache.
//!
//! This is the plain version the training loop and the demo need; the other samplers, stop
//! strings and streaming belong to the generation stage.

use crate::error::Result;
use crate::model::Gpt;
use crate::model::kv_cache::KvCache;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
}

/// Draws the next token from `logits` (the real vocabulary only).
pub fn sample(logits: &[f32], config: SamplerConfig, rng: &mut Rng) -> u32 {
    let argmax = || logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
    if config.temperature <= 0.0 {
        return argmax();
    }
    // Sort indices, never the values themselves, so each probability keeps its token id.
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    if config.top_k > 0 && config.top_k < ids.len() {
        ids.select_nth_unstable_by(config.top_k - 1, |&a, &b| {
            logits[b as usize].total_cmp(&logits[a as usize])
        });
        ids.truncate(config.top_k);
    }
    let max = ids.iter().map(|&i| logits[i as usize]).fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> =
        ids.iter().map(|&i| (((logits[i as usize] - max) / config.temperature) as f64).exp()).collect();
    let mut r = rng.uniform() * weights.iter().sum::<f64>();
    for (&id, &w) in ids.iter().zip(&weights) {
        r -= w;
        if r <= 0.0 {
            return id;
        }
    }
    *ids.last().unwrap_or(&0)
}

/// Appends up to `max_new` tokens to `prompt`, calling `on_token` with each, and stopping early
/// at `stop`. The model sees the last `block_size` tokens: once the cache is full, the window
/// slides (the last `block_size` tokens are prefilled again for each further token).
pub fn generate(
    model: &mut Gpt,
    prompt: &[u32],
    max_new: usize,
    config: SamplerConfig,
    rng: &mut Rng,
    stop: Option<u32>,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>> {
    let mut ids = prompt.to_vec();
    let window = model.config.block_size;
    let mut cache = KvCache::new(model, 1);
    let mut logits = model.prefill(&mut cache, 0, &ids[ids.len().saturating_sub(window)..])?;
    for _ in 0..max_new {
        let next = sample(&logits, config, rng);
        if Some(next) == stop {
            break;
        }
        ids.push(next);
        on_token(next);
        if cache.len(0) < window {
            logits.copy_from_slice(model.decode(&mut cache, &[0], &[next])?);
        } else {
            cache.clear(0);
            logits = model.prefill(&mut cache, 0, &ids[ids.len() - window..])?;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_and_temperature() {
        let logits = [0.0, 3.0, 1.0, 2.9];
        let mut rng = Rng::new(1);
        assert_eq!(sample(&logits, SamplerConfig { temperature: 0.0, top_k: 0 }, &mut rng), 1);
        let top2 = SamplerConfig { temperature: 1.0, top_k: 2 };
        let mut counts = [0; 4];
        for _ in 0..2000 {
            counts[sample(&logits, top2, &mut rng) as usize] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0), "{counts:?}");
        assert!(counts[1] > 900 && counts[3] > 800, "{counts:?}"); // e^3 : e^2.9 ~ 52 : 48
        let cold = SamplerConfig { temperature: 0.01, top_k: 0 };
        assert!((0..100).all(|_| sample(&logits, cold, &mut rng) == 1));
    }
}
