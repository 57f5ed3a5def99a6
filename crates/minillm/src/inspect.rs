//! Looking inside: what the model predicts after a text, how surprised it was by each token of
//! the text, and where one attention head looks. `minillm inspect` prints it; the lab reads the
//! same JSON.

use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::tokenizer::Tokenizer;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Token {
    pub id: u32,
    /// The token's bytes as text (a token that splits a character shows U+FFFD).
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub id: u32,
    pub text: String,
    /// From the softmax over the whole real vocabulary (padding excluded).
    pub prob: f64,
}

#[derive(Debug, Serialize)]
pub struct AttentionMap {
    pub layer: usize,
    /// `None` (JSON null): the mean over the layer's heads.
    pub head: Option<usize>,
    /// weights[i][j]: how much token i attends to token j; each row sums to 1, zero for j > i.
    pub weights: Vec<Vec<f32>>,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub tokens: Vec<Token>,
    /// The most likely next tokens after the whole text, most likely first.
    pub next: Vec<Candidate>,
    /// Which attention map was asked for, if any.
    pub attention: Option<AttentionMap>,
    /// -log2 p(token i | tokens before it), in bits; null for the first token, which has no
    /// context to be predicted from.
    pub surprisal: Vec<Option<f64>>,
    /// residual_norms[s][i]: the length (L2 norm) of token i's residual stream at stage s: 0 is
    /// the embedding, s the stream after block s. How much each layer writes into the stream.
    pub residual_norms: Vec<Vec<f32>>,
}

/// Which attention map to return: a layer, and a head or the mean over heads.
#[derive(Clone, Copy, Debug)]
pub struct Which {
    pub layer: usize,
    pub head: Option<usize>,
}

/// Runs `ids` (at most the model's context) through the model once and reads off the top
/// `top_k` next tokens, the surprisal of each token, and optionally one attention map.
pub fn inspect(
    model: &mut Gpt,
    tok: &Tokenizer,
    ids: &[u32],
    top_k: usize,
    attention: Option<Which>,
) -> Result<Inspection> {
    let cfg = &model.config;
    let (t, v, vp, nh) = (ids.len(), cfg.vocab_size, cfg.padded_vocab_size(), cfg.n_head);
    if t == 0 {
        return Err(Error::Invalid("the text is empty: nothing to inspect".into()));
    }
    if t > cfg.block_size {
        return Err(Error::Invalid(format!(
            "the text is {t} tokens but the model's context holds {}; shorten it",
            cfg.block_size
        )));
    }
    if let Some(w) = attention
        && (w.layer >= cfg.n_layer || w.head.is_some_and(|h| h >= nh))
    {
        return Err(Error::Invalid(format!(
            "the model has {} layer(s) of {} head(s), counted from 0; there is no layer {}{}",
            cfg.n_layer,
            nh,
            w.layer,
            w.head.map_or(String::new(), |h| format!(" head {h}"))
        )));
    }
    let training = std::mem::replace(&mut model.training, false);
    let run = model.forward(ids, None, (1, t));
    model.training = training;
    run?;
    let rows: Vec<Vec<f64>> = model.logits().chunks_exact(vp).map(|row| softmax(&row[..v])).collect();
    let mut surprisal = vec![None];
    surprisal.extend(ids[1..].iter().zip(&rows).map(|(&next, probs)| Some(-probs[next as usize].log2())));
    let last = &rows[t - 1];
    let mut order: Vec<u32> = (0..v as u32).collect();
    // Sort ids by their probability (never the probabilities themselves), ties by id.
    order.sort_unstable_by(|&a, &b| last[b as usize].total_cmp(&last[a as usize]).then(a.cmp(&b)));
    let next = order
        .iter()
        .take(top_k)
        .map(|&id| Candidate { id, text: tok.token_text(id), prob: last[id as usize] })
        .collect();
    let attention = attention.map(|w| {
        let att = model.attention(w.layer).expect("the forward above ran every layer");
        let heads: Vec<usize> = w.head.map_or((0..nh).collect(), |h| vec![h]);
        let weights = (0..t)
            .map(|i| {
                (0..t)
                    .map(|j| {
                        heads.iter().map(|&h| att[(h * t + i) * t + j]).sum::<f32>() / heads.len() as f32
                    })
                    .collect()
            })
            .collect();
        AttentionMap { layer: w.layer, head: w.head, weights }
    });
    let (c, n_layer) = (model.config.n_embd, model.config.n_layer);
    let residual_norms = (0..=n_layer)
        .map(|stage| {
            let stream = model.residual(stage).expect("the forward above ran every layer");
            stream[..t * c].chunks_exact(c).map(|x| x.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
        })
        .collect();
    let tokens = ids.iter().map(|&id| Token { id, text: tok.token_text(id) }).collect();
    Ok(Inspection { tokens, next, attention, surprisal, residual_norms })
}

/// Probabilities from logits, in f64 so that tiny ones keep their digits.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let mut p: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    p
}
