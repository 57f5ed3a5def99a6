//! How well a model predicts held-out text: mean loss per token, perplexity and bits per byte.
//!
//! Perplexity (e^loss) depends on the tokenizer: a tokenizer with longer tokens has fewer, harder
//! predictions. Bits per byte divides the total loss by the text's length in bytes, so models
//! with different tokenizers can be compared on the same text.

use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::model::kv_cache::KvCache;
use crate::model::layers::loss::IGNORE;
use crate::train::data::windows;
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
/// time through `inputs` and `targets` (b * t each); a short last batch repeats row 0 with
/// nothing to score. Returns (sum, tokens scored).
pub fn score_windows<'a>(
    model: &mut Gpt,
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

/// Scores every token of `tokens` after the first: windows of the model's full context, `batch`
/// at a time, and the remainder as one shorter window. `bytes` is the length of the scored text
/// (for bits per byte).
pub fn evaluate(model: &mut Gpt, tokens: &[u32], batch: usize, bytes: usize) -> Result<Score> {
    if tokens.len() < 2 {
        return Err(Error::Invalid(format!(
            "{} token(s): at least 2 are needed to score one prediction",
            tokens.len()
        )));
    }
    let t = model.config.block_size.min(tokens.len() - 1);
    let b = batch.max(1);
    let full = (tokens.len() - 1) / t;
    let (mut inputs, mut targets) = (vec![0u32; b * t], vec![0u32; b * t]);
    let (mut sum, mut counted) = score_windows(model, windows(tokens, t), (b, t), &mut inputs, &mut targets)?;
    let rest = tokens.len() - 1 - full * t;
    if rest > 0 {
        let start = full * t;
        let tail = (&tokens[start..start + rest], &tokens[start + 1..]);
        let (s, n) = score_windows(model, std::iter::once(tail), (1, rest), &mut inputs, &mut targets)?;
        sum += s;
        counted += n;
    }
    Ok(Score::new(sum, counted, bytes))
}

/// Scores the same windows as [`evaluate`], through the path generation takes: each window's
/// first token prefilled, then one token at a time through the KV cache ([`Gpt::decode`]),
/// `batch` windows side by side. For a quantized model that path runs the block kernels with
/// activations rounded to 8 bits, where [`evaluate`] runs the f32 forward on the dequantized
/// weights: this is the perplexity of what the model generates with.
pub fn evaluate_decoding(model: &mut Gpt, tokens: &[u32], batch: usize, bytes: usize) -> Result<Score> {
    if tokens.len() < 2 {
        return Err(Error::Invalid(format!(
            "{} token(s): at least 2 are needed to score one prediction",
            tokens.len()
        )));
    }
    let training = std::mem::replace(&mut model.training, false);
    let score = decode_windows(model, tokens, batch.max(1), bytes);
    model.training = training;
    score
}

fn decode_windows(model: &mut Gpt, tokens: &[u32], batch: usize, bytes: usize) -> Result<Score> {
    let (t, v) = (model.config.block_size.min(tokens.len() - 1), model.config.vocab_size);
    let starts: Vec<usize> = (0..tokens.len() - 1).step_by(t).collect();
    let mut cache = KvCache::new(model, batch);
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

/// -ln softmax(logits)[target], in f64.
fn surprise(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let total: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + total.ln() - logits[target as usize] as f64
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
