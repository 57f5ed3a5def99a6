//! Turning next-token probabilities into text: the samplers (greedy, temperature, top-k, top-p,
//! min-p, penalties, logit bias), log-probabilities, and the generation loop: the prompt in one
//! pass, then one batched [`decode_step`] at a time through the KV cache; [`TextStream`] turns the
//! tokens into text as they come, with stop strings.

pub mod stop;
mod text_stream;

pub use text_stream::TextStream;

use crate::constrain::Constraint;
use crate::error::Result;
use crate::model::kv_cache::{CacheShape, KvCache};
use crate::model::{Gpt, ModelConfig};
use crate::rng::Rng;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely one (0 = all).
    pub min_p: f32,
    /// CTRL / HF repetition penalty for tokens already in the text: positive logits are divided
    /// by it, negative ones multiplied (1 = off).
    pub repetition_penalty: f32,
    /// OpenAI's penalties: logit -= frequency * count + presence * (count > 0).
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Added to the logits of these token ids before anything else (OpenAI's `logit_bias`:
    /// -100 bans a token, +100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
        }
    }
}

/// Applies the repetition, frequency and presence penalties for the tokens in `history`.
pub fn apply_penalties(logits: &mut [f32], history: &[u32], config: &SamplerConfig) {
    let penalize =
        config.repetition_penalty != 1.0 || config.frequency_penalty != 0.0 || config.presence_penalty != 0.0;
    if !penalize {
        return;
    }
    let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for &id in history.iter().filter(|&&id| (id as usize) < logits.len()) {
        *counts.entry(id).or_default() += 1;
    }
    for (&id, &n) in &counts {
        let x = &mut logits[id as usize];
        if config.repetition_penalty != 1.0 {
            *x = if *x > 0.0 { *x / config.repetition_penalty } else { *x * config.repetition_penalty };
        }
        *x -= config.frequency_penalty * n as f32 + config.presence_penalty;
    }
}

/// ln sum_i e^(logits_i), in f64 and shifted by the largest logit so no exponential overflows:
/// the normaliser of softmax, which every log-probability subtracts.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln()
}

/// The distribution logits stand for (their softmax), in f64 so that tiny probabilities keep
/// their digits.
pub fn probabilities(logits: &[f32]) -> Vec<f64> {
    let log_z = log_sum_exp(logits);
    logits.iter().map(|&x| (x as f64 - log_z).exp()).collect()
}

/// ln softmax(logits)[id].
pub fn log_prob(logits: &[f32], id: u32) -> f64 {
    logits[id as usize] as f64 - log_sum_exp(logits)
}

/// A token's log-probability and the likeliest tokens at its position with theirs.
pub type Logprobs = (f32, Vec<(u32, f32)>);

/// Token `id`'s log-probability under `logits` and the `k` likeliest tokens with theirs, most
/// likely first (ties by id): what an API's `logprobs` / `top_logprobs` report.
pub fn logprob_and_top(logits: &[f32], id: u32, k: usize) -> Logprobs {
    let log_z = log_sum_exp(logits) as f32;
    let k = k.min(logits.len());
    let mut top = Vec::new();
    if k > 0 {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let rank = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        order.select_nth_unstable_by(k - 1, rank);
        order.truncate(k);
        order.sort_by(rank);
        top = order.into_iter().map(|t| (t, logits[t as usize] - log_z)).collect();
    }
    (logits[id as usize] - log_z, top)
}

/// The id of the largest logit: greedy decoding (the last of equal maxima).
pub fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

/// Draws the next token from `logits` (the real vocabulary only), given the tokens so far.
/// Order: logit bias, penalties, temperature, top-k, top-p, min-p, then a draw from what remains.
pub fn sample(logits: &[f32], history: &[u32], config: &SamplerConfig, rng: &mut Rng) -> u32 {
    let logits = adjusted(logits, history, config);
    if config.temperature <= 0.0 {
        return argmax(&logits);
    }
    let whole_vocabulary =
        (config.top_k == 0 || config.top_k >= logits.len()) && config.top_p >= 1.0 && config.min_p <= 0.0;
    if whole_vocabulary {
        // Nothing is cut, so nothing needs sorting: one pass for the maximum, one to draw (a full
        // sort of GPT-2's 50,257 logits would cost milliseconds per token).
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weight = |x: f32| (((x - max) / config.temperature) as f64).exp();
        let total: f64 = logits.iter().map(|&x| weight(x)).sum();
        let mut r = rng.uniform() * total;
        for (id, &x) in logits.iter().enumerate() {
            r -= weight(x);
            if r <= 0.0 {
                return id as u32;
            }
        }
        return argmax(&logits);
    }
    let (ids, probs) = kept(&logits, config);
    let mut r = rng.uniform() * probs.iter().sum::<f64>();
    for (&id, &p) in ids.iter().zip(&probs) {
        r -= p;
        if r <= 0.0 {
            return id;
        }
    }
    ids[ids.len() - 1]
}

/// The distribution [`sample`] draws from: every token it could pick with its probability
/// (summing to 1), most likely first. What the lab's bars show; the sampler and the bars share
/// every step but the draw.
pub fn distribution(logits: &[f32], history: &[u32], config: &SamplerConfig) -> Vec<(u32, f64)> {
    let logits = adjusted(logits, history, config);
    if config.temperature <= 0.0 {
        return vec![(argmax(&logits), 1.0)];
    }
    let (ids, probs) = kept(&logits, config);
    let total: f64 = probs.iter().sum();
    ids.into_iter().zip(probs).map(|(id, p)| (id, p / total)).collect()
}

/// The logits after the logit bias and the penalties.
fn adjusted(logits: &[f32], history: &[u32], config: &SamplerConfig) -> Vec<f32> {
    let mut logits = logits.to_vec();
    for &(id, bias) in &config.logit_bias {
        if let Some(x) = logits.get_mut(id as usize) {
            *x += bias;
        }
    }
    apply_penalties(&mut logits, history, config);
    logits
}

/// The tokens that survive top-k, top-p and min-p at the temperature (most likely first), with
/// their probabilities after temperature and top-k (not yet renormalised over the survivors).
fn kept(logits: &[f32], config: &SamplerConfig) -> (Vec<u32>, Vec<f64>) {
    // Sort indices, never the values themselves, so each probability keeps its token id.
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    if config.top_k > 0 && config.top_k < ids.len() {
        ids.select_nth_unstable_by(config.top_k - 1, by_logit); // the k best, unordered: cheap
        ids.truncate(config.top_k);
    }
    ids.sort_unstable_by(by_logit);
    let max = logits[ids[0] as usize];
    let mut probs: Vec<f64> =
        ids.iter().map(|&i| (((logits[i as usize] - max) / config.temperature) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    let mut keep = probs.len();
    if config.top_p < 1.0 {
        let mut mass = 0.0;
        keep = probs
            .iter()
            .position(|&p| {
                mass += p;
                mass >= config.top_p as f64
            })
            .map_or(keep, |i| i + 1);
    }
    if config.min_p > 0.0 {
        let floor = probs[0] * config.min_p as f64;
        keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
    }
    ids.truncate(keep);
    probs.truncate(keep);
    (ids, probs)
}

/// Bytes per vocabulary entry the sampling of one sequence holds at a step: the logits kept
/// between steps (f32), the adjusted logits (f32), the candidate ids (u32) and their
/// probabilities (f64).
const SAMPLER_BYTES_PER_TOKEN: usize = 4 + 4 + 4 + 8;

/// What generating takes, in bytes: `model info` and the lab's model card state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GenerationMemory {
    /// The weights as stored.
    pub weights: usize,
    /// Keys and values of every layer for every position of every sequence.
    pub kv_cache: usize,
    /// One pass's activations and logits, and what the sampler sorts.
    pub working: usize,
    pub total: usize,
}

impl GenerationMemory {
    /// For `batch` sequences of up to `context` tokens with weights of `weight_bytes` as stored
    /// (the program and tokenizer come on top).
    pub fn new(config: &ModelConfig, weight_bytes: usize, batch: usize, context: usize) -> GenerationMemory {
        let shape = CacheShape::generating(config, batch, context);
        let kv_cache = shape.kv_bytes(config);
        let working = shape.scratch_bytes(config) + shape.slots * SAMPLER_BYTES_PER_TOKEN * config.vocab_size;
        GenerationMemory {
            weights: weight_bytes,
            kv_cache,
            working,
            total: weight_bytes + kv_cache + working,
        }
    }
}

/// Appends up to `max_new` tokens to `prompt`, calling `on_token` with each and the model's
/// logits it was drawn from (it returns false to stop, e.g. at a stop string), and stopping
/// early at any token of `stop` (the end tokens, which are not appended). The model sees the last `block_size` tokens: once the cache is full, the
/// window slides (the last `block_size` tokens are prefilled again for each further token).
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
    config: &SamplerConfig,
    rng: &mut Rng,
    stop: &[u32],
    mut on_token: impl FnMut(u32, &[f32]) -> bool,
) -> Result<Vec<u32>> {
    let prompts = [prompt.to_vec()];
    let rngs = std::slice::from_mut(rng);
    let mut out =
        generate_batch(model, &prompts, max_new, config, rngs, stop, &mut [], |_, id, l| on_token(id, l))?;
    Ok(out.pop().expect("one continuation per prompt"))
}

/// Several continuations decoded together, one cache slot each, in one batched pass per step:
/// continuation i continues `prompts[i]` drawing with `rngs[i]`, so it is the same text
/// [`generate`] gives for that prompt and generator. `on_token(i, id, logits)` sees each new
/// token; returning false ends that continuation, as `stop` and `max_new` do; the others go on.
/// `constraints` is empty, or holds one per prompt: then each continuation draws only tokens its
/// constraint allows (and `on_token` sees the logits with the others at -inf).
#[allow(clippy::too_many_arguments)] // each is one knob of the loop; a struct would only rename them
pub fn generate_batch(
    model: &Gpt,
    prompts: &[Vec<u32>],
    max_new: usize,
    config: &SamplerConfig,
    rngs: &mut [Rng],
    stop: &[u32],
    constraints: &mut [Constraint],
    mut on_token: impl FnMut(usize, u32, &[f32]) -> bool,
) -> Result<Vec<Vec<u32>>> {
    assert_eq!(prompts.len(), rngs.len(), "one generator per prompt");
    assert!(
        constraints.is_empty() || constraints.len() == prompts.len(),
        "one constraint per prompt, or none"
    );
    let cfg = &model.config;
    // The cache holds what this call can need: the longest prompt and what follows it, up to
    // the model's context (beyond which the window slides).
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let shape = CacheShape::generating(cfg, prompts.len(), longest.saturating_add(max_new));
    let mut cache = KvCache::with_shape(model, shape);
    let window = cache.capacity();
    let mut ids: Vec<Vec<u32>> = prompts.to_vec();
    let windows: Vec<(usize, &[u32])> =
        prompts.iter().enumerate().map(|(slot, p)| (slot, &p[p.len().saturating_sub(window)..])).collect();
    let mut logits = model.prefill_batch(&mut cache, &windows)?;
    let mut live: Vec<usize> = (0..prompts.len()).collect();
    let mut failed = None;
    for _ in 0..max_new {
        live.retain(|&i| {
            let mut constraint = constraints.get_mut(i);
            if let Some(Err(e)) = constraint.as_mut().map(|c| c.restrict(&mut logits[i])) {
                failed = Some(e);
                return false;
            }
            let id = sample(&logits[i], &ids[i], config, &mut rngs[i]);
            if stop.contains(&id) {
                return false;
            }
            if let Some(Err(e)) = constraint.map(|c| c.accept(id)) {
                failed = Some(e);
                return false;
            }
            ids[i].push(id);
            on_token(i, id, &logits[i])
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if live.is_empty() {
            break;
        }
        // `live` is ascending, so each continuing sequence meets its own ids and logits.
        let mut rest = live.iter().peekable();
        let mut step: Vec<Continuing> = (ids.iter().zip(logits.iter_mut()).enumerate())
            .filter(|(i, _)| rest.next_if_eq(&i).is_some())
            .map(|(slot, (ids, logits))| Continuing { slot, ids, logits })
            .collect();
        decode_step(model, &mut cache, &mut step)?;
    }
    Ok(ids)
}

/// One sequence's part in a [`decode_step`]: its cache slot, every token it has (the newest,
/// not yet in the cache, last) and where its next-token logits go.
pub struct Continuing<'a> {
    pub slot: usize,
    pub ids: &'a [u32],
    pub logits: &'a mut [f32],
}

/// One step of batched decoding, for [`generate_batch`] and the server alike: every sequence's
/// newest token runs through the model in one pass, and each gets its next-token logits. A
/// sequence whose cache window is full slides instead: its last window of tokens is prefilled
/// again into its cleared slot.
pub fn decode_step(model: &Gpt, cache: &mut KvCache, seqs: &mut [Continuing]) -> Result<()> {
    let window = cache.capacity();
    let (mut slots, mut tokens, mut which) = (Vec::new(), Vec::new(), Vec::new());
    for (k, s) in seqs.iter_mut().enumerate() {
        let newest = *s.ids.last().expect("a continuing sequence has tokens");
        if cache.len(s.slot) < window {
            slots.push(s.slot);
            tokens.push(newest);
            which.push(k);
        } else {
            cache.clear(s.slot);
            let logits = model.prefill(cache, s.slot, &s.ids[s.ids.len() - window..])?;
            s.logits.copy_from_slice(&logits);
        }
    }
    if !slots.is_empty() {
        let rows = model.decode(cache, &slots, &tokens)?;
        for (&k, row) in which.iter().zip(rows.chunks_exact(model.config.vocab_size)) {
            seqs[k].logits.copy_from_slice(row);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_the_softmax_normaliser_without_overflow() {
        let logits = [1.0f32, 2.0, 3.0];
        let naive = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&logits) - naive).abs() < 1e-12);
        let total: f64 = (0..3).map(|i| log_prob(&logits, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // e^1000 overflows f64; shifted by the maximum it does not.
        let big = [1000.0f32, 1000.0];
        assert!((log_sum_exp(&big) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert!((log_prob(&big, 0) + 2f64.ln()).abs() < 1e-12);
    }

    fn draws(logits: &[f32], config: SamplerConfig) -> [u32; 4] {
        let mut rng = Rng::new(1);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[sample(logits, &[], &config, &mut rng) as usize] += 1;
        }
        counts
    }

    /// Logits whose probabilities are 0.5, 0.3, 0.15, 0.05 (token 2 most likely, and so on).
    fn four() -> Vec<f32> {
        [0.15f32, 0.3, 0.5, 0.05].iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn distribution_is_what_sample_draws_from() {
        let logits = four();
        let close = |d: Vec<(u32, f64)>, want: &[(u32, f64)]| {
            assert_eq!(d.len(), want.len(), "{d:?}");
            for ((id, p), (wid, wp)) in d.iter().zip(want) {
                assert!(id == wid && (p - wp).abs() < 1e-6, "{d:?} vs {want:?}");
            }
        };
        let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
        close(distribution(&logits, &[], &greedy), &[(2, 1.0)]);
        close(
            distribution(&logits, &[], &SamplerConfig::default()),
            &[(2, 0.5), (1, 0.3), (0, 0.15), (3, 0.05)],
        );
        for cut in [
            SamplerConfig { top_k: 2, ..Default::default() },
            SamplerConfig { top_p: 0.75, ..Default::default() },
            SamplerConfig { min_p: 0.5, ..Default::default() },
        ] {
            close(distribution(&logits, &[], &cut), &[(2, 0.625), (1, 0.375)]);
        }
        // Temperature 2 takes square roots of the probabilities before renormalising.
        let hot = SamplerConfig { temperature: 2.0, ..Default::default() };
        let roots: Vec<f64> = [0.5f64, 0.3, 0.15, 0.05].iter().map(|p| p.sqrt()).collect();
        let z: f64 = roots.iter().sum();
        close(
            distribution(&logits, &[], &hot),
            &[(2, roots[0] / z), (1, roots[1] / z), (0, roots[2] / z), (3, roots[3] / z)],
        );
        // And the draws follow it.
        let mixed = SamplerConfig { temperature: 0.7, top_p: 0.9, ..Default::default() };
        let d = distribution(&logits, &[], &mixed);
        let c = draws(&logits, mixed);
        for (id, count) in c.iter().enumerate() {
            let p = d.iter().find(|e| e.0 == id as u32).map_or(0.0, |e| e.1);
            assert!((*count as f64 / 4000.0 - p).abs() < 0.03, "{c:?} vs {d:?}");
        }
    }

    #[test]
    fn greedy_temperature_and_top_k() {
        let logits = four();
        let mut rng = Rng::new(1);
        let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
        assert_eq!(sample(&logits, &[], &greedy, &mut rng), 2);
        let cold = SamplerConfig { temperature: 0.01, ..Default::default() };
        assert!((0..100).all(|_| sample(&logits, &[], &cold, &mut rng) == 2));
        let c = draws(&logits, SamplerConfig { top_k: 2, ..Default::default() });
        assert_eq!((c[0], c[3]), (0, 0), "{c:?}");
        assert!((c[2] as f64 / 4000.0 - 0.625).abs() < 0.03, "{c:?}"); // 0.5 / (0.5 + 0.3)
        let c = draws(&logits, SamplerConfig::default());
        assert!((c[3] as f64 / 4000.0 - 0.05).abs() < 0.015, "{c:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p_and_min_p_cuts_relative_to_the_best() {
        let logits = four();
        let c = draws(&logits, SamplerConfig { top_p: 0.75, ..Default::default() });
        assert!(c[0] == 0 && c[3] == 0 && c[1] > 0 && c[2] > 0, "{c:?}"); // 0.5 + 0.3 reaches 0.75
        let c = draws(&logits, SamplerConfig { top_p: 0.85, ..Default::default() });
        assert!(c[3] == 0 && c[0] > 0, "{c:?}"); // needs 0.5 + 0.3 + 0.15
        let c = draws(&logits, SamplerConfig { min_p: 0.5, ..Default::default() });
        assert!(c[0] == 0 && c[3] == 0 && c[1] > 0, "{c:?}"); // keeps p >= 0.25
    }

    #[test]
    fn penalties_match_hand_computed_values() {
        let mut logits = [2.0f32, -1.0, 0.5, 1.0];
        let rep = SamplerConfig { repetition_penalty: 2.0, ..Default::default() };
        apply_penalties(&mut logits, &[0, 1, 1], &rep);
        assert_eq!(logits, [1.0, -2.0, 0.5, 1.0]);
        let mut logits = [1.0f32, 1.0, 1.0, 1.0];
        let openai = SamplerConfig { frequency_penalty: 0.5, presence_penalty: 1.0, ..Default::default() };
        apply_penalties(&mut logits, &[0, 0, 2], &openai);
        assert_eq!(logits, [-1.0, 1.0, -0.5, 1.0]);
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let logits = four();
        let ban = SamplerConfig { logit_bias: vec![(2, -100.0)], temperature: 0.0, ..Default::default() };
        assert_eq!(sample(&logits, &[], &ban, &mut Rng::new(1)), 1);
        let c = draws(&logits, SamplerConfig { logit_bias: vec![(3, 100.0)], ..Default::default() });
        assert_eq!(c[3], 4000, "{c:?}");
        let c =
            draws(&logits, SamplerConfig { logit_bias: vec![(2, -100.0), (9, 5.0)], ..Default::default() });
        assert_eq!(c[2], 0, "{c:?}"); // and an id outside the vocabulary is ignored
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let logits = four();
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50).map(|_| sample(&logits, &[], &SamplerConfig::default(), &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
