//! How well a model predicts held-out text: mean loss per token, perplexity and bits per byte.
//!
//! Perplexity (e^loss) depends on the tokenizer: a tokenizer with longer tokens has fewer, harder
//! predictions. Bits per byte divides the total loss by the text's length in bytes, so models
//! with different tokenizers can be compared on the same text.

use crate::error::{Error, Result};
use crate::model::kv_cache::{CacheShape, KvCache};
use crate::model::layers::loss::IGNORE;
use crate::model::{Gpt, Trainable};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Score {
    /// Tokens predicted (every token of the text but the first).
    pub tokens: usize,
    /// Bytes those tokens stand for.
    pub bytes: usize,
    /// Mean cross-entropy per token, in nats.
    pub loss: f64,
    pub perplexity: f64,
    pub bits_per_byte: f64,
}

/// Sums the loss (nats) over `windows` (inputs, targets of `t` tokens each), run `b` rows at a
/// time through the training forward with `inputs` and `targets` (b * t each): a training run's
/// validation. A short last batch repeats row 0 with nothing to score. Returns (sum, tokens
/// scored).
pub fn score_windows<'a>(
    model: &mut Trainable,
    windows: impl Iterator<Item = (&'a [u32], &'a [u32])>,
    (b, t): (usize, usize),
    inputs: &mut [u32],
    targets: &mut [u32],
) -> Result<(f64, usize)> {
    let training = std::mem::replace(&mut model.training, false);
    let mut windows = windows.peekable();
    let (mut sum, mut counted) = (0.0f64, 0usize);
    let mut run = || -> Result<()> {
        while windows.peek().is_some() {
            let mut rows = 0;
            for (r, (x, y)) in windows.by_ref().take(b).enumerate() {
                inputs[r * t..(r + 1) * t].copy_from_slice(x);
                targets[r * t..(r + 1) * t].copy_from_slice(y);
                rows = r + 1;
            }
            for r in rows..b {
                inputs.copy_within(0..t, r * t);
                targets[r * t..(r + 1) * t].fill(IGNORE);
            }
            let loss = model.forward(&inputs[..b * t], Some(&targets[..b * t]), (b, t))?.unwrap_or(f32::NAN);
            sum += loss as f64 * (rows * t) as f64;
            counted += rows * t;
        }
        Ok(())
    };
    let result = run();
    model.training = training;
    result.map(|()| (sum, counted))
}

/// Scores every token of `tokens` after the first, in windows of the model's full context (the
/// remainder as one shorter window), through the inference path with the weights as stored: for
/// a quantized model, the kernels and 8-bit activations generation uses. `bytes` is the length
/// of the scored text (for bits per byte).
pub fn evaluate(model: &Gpt, tokens: &[u32], bytes: usize) -> Result<Score> {
    at_least_two(tokens)?;
    let t = model.config.block_size.min(tokens.len() - 1);
    let mut cache = KvCache::with_shape(model, CacheShape::scoring(&model.config, t));
    let (mut sum, mut counted) = (0.0f64, 0usize);
    for start in (0..tokens.len() - 1).step_by(t) {
        let inputs = &tokens[start..(start + t).min(tokens.len() - 1)];
        let targets = &tokens[start + 1..];
        model.score(&mut cache, inputs, None, |i, logits| sum += surprise(logits, targets[i]))?;
        counted += inputs.len();
    }
    Ok(Score::new(sum, counted, bytes))
}

/// Scores `tokens` as llama.cpp's `llama-perplexity` does, so the two can be compared: chunks of
/// `n` tokens (the last partial one dropped), each chunk's first token replaced by the token
/// `tok` starts texts with where it has one, and only the second half of each chunk scored
/// (each prediction then has at least `n / 2` tokens of context).
pub fn evaluate_chunks(model: &Gpt, tokens: &[u32], n: usize, tok: &crate::Tokenizer) -> Result<Score> {
    if n < 4 || n > model.config.block_size {
        return Err(Error::Invalid(format!(
            "chunks of {n} tokens: choose 4 to the model's context of {}",
            model.config.block_size
        )));
    }
    if tokens.len() < n {
        return Err(Error::Invalid(format!("{} tokens do not fill one chunk of {n}", tokens.len())));
    }
    let mut cache = KvCache::with_shape(model, CacheShape::scoring(&model.config, n));
    let first = n / 2;
    let (mut sum, mut counted, mut bytes) = (0.0f64, 0usize, 0usize);
    let mut chunk = vec![0u32; n];
    for start in (0..=tokens.len() - n).step_by(n) {
        chunk.copy_from_slice(&tokens[start..start + n]);
        if let Some(bos) = tok.prefix() {
            chunk[0] = bos;
        }
        model.score(&mut cache, &chunk[..n - 1], None, |i, logits| {
            if i >= first {
                sum += surprise(logits, chunk[i + 1]);
                counted += 1;
            }
        })?;
        bytes += tok.decoded_len(&chunk[first + 1..]);
    }
    Ok(Score::new(sum, counted, bytes))
}

/// Scores the same windows as [`evaluate`] one token at a time: each window's first token
/// prefilled, then [`Gpt::decode`] through the KV cache, `batch` windows side by side. The
/// check that scoring a text in chunks computes what generating it token by token does.
pub fn evaluate_decoding(model: &Gpt, tokens: &[u32], batch: usize, bytes: usize) -> Result<Score> {
    at_least_two(tokens)?;
    let batch = batch.max(1);
    let (t, v) = (model.config.block_size.min(tokens.len() - 1), model.config.vocab_size);
    let starts: Vec<usize> = (0..tokens.len() - 1).step_by(t).collect();
    let mut cache = KvCache::with_shape(model, CacheShape::generating(&model.config, batch, t));
    let (mut sum, mut counted) = (0.0f64, 0usize);
    for group in starts.chunks(batch) {
        let lens: Vec<usize> = group.iter().map(|&s| t.min(tokens.len() - 1 - s)).collect();
        for (slot, &s) in group.iter().enumerate() {
            cache.clear(slot);
            sum += surprise(&model.prefill(&mut cache, slot, &tokens[s..s + 1])?, tokens[s + 1]);
            counted += 1;
        }
        // Only the text's last window can be shorter, and it is the group's last.
        for step in 1..lens[0] {
            let slots: Vec<usize> = (0..group.len()).filter(|&i| step < lens[i]).collect();
            let next: Vec<u32> = slots.iter().map(|&i| tokens[group[i] + step]).collect();
            let logits = model.decode(&mut cache, &slots, &next)?;
            for (row, &i) in logits.chunks_exact(v).zip(&slots) {
                sum += surprise(row, tokens[group[i] + step + 1]);
                counted += 1;
            }
        }
    }
    Ok(Score::new(sum, counted, bytes))
}

fn at_least_two(tokens: &[u32]) -> Result<()> {
    if tokens.len() < 2 {
        return Err(Error::Invalid(format!(
            "{} token(s): at least 2 are needed to score one prediction",
            tokens.len()
        )));
    }
    Ok(())
}

/// -ln softmax(logits)[target], in f64.
/// Each token of `tokens` after the first: its log-probability given the tokens before it, and
/// the `top` likeliest tokens at that position with theirs (what OpenAI's completions API returns
/// for a prompt with `echo` and `logprobs`, and what lm-evaluation-harness sums to score a
/// continuation). One pass through the inference path, the weights as stored; the text must
/// fit the model's context. Entry i is about token i + 1.
pub fn prompt_logprobs(model: &Gpt, tokens: &[u32], top: usize) -> Result<Vec<crate::sample::Logprobs>> {
    if tokens.len() < 2 {
        return Ok(Vec::new());
    }
    let t = tokens.len() - 1;
    if t > model.config.block_size {
        return Err(Error::TooLong { tokens: tokens.len(), context: model.config.block_size });
    }
    let mut cache = KvCache::with_shape(model, CacheShape::scoring(&model.config, t));
    let mut out = Vec::with_capacity(t);
    model.score(&mut cache, &tokens[..t], None, |i, logits| {
        out.push(crate::sample::logprob_and_top(logits, tokens[i + 1], top))
    })?;
    Ok(out)
}

fn surprise(logits: &[f32], target: u32) -> f64 {
    -crate::sample::log_prob(logits, target)
}

impl Score {
    fn new(sum: f64, tokens: usize, bytes: usize) -> Score {
        let loss = sum / tokens as f64;
        Score {
            tokens,
            bytes,
            loss,
            perplexity: loss.exp(),
            bits_per_byte: sum / std::f64::consts::LN_2 / bytes.max(1) as f64,
        }
    }
}
