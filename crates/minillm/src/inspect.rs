//! Looking inside: what the model predicts after a text, how surprised it was by each token of
//! the text, and where one attention head looks. `minillm inspect` prints it; the lab reads the
//! same JSON.

use crate::error::{Error, Result};
use crate::model::Gpt;
use crate::model::kv_cache::{CacheShape, KvCache, Probe};
use crate::sample::probabilities;
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
    /// `None` (JSON null): the mean over the layer's (query) heads.
    pub head: Option<usize>,
    /// With grouped-query attention, the key/value head the chosen query head reads, and the
    /// query heads that share it (`first..=last`); absent when every head has its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_head: Option<KvHead>,
    /// weights[i][j]: how much token i attends to token j; each row sums to 1, zero for j > i.
    pub weights: Vec<Vec<f32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KvHead {
    pub index: usize,
    pub first: usize,
    pub last: usize,
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
    /// The logits (V) after the whole text, for a sampler to draw from.
    #[serde(skip)]
    pub logits: Vec<f32>,
}

/// Which attention map to return: a layer, and a head or the mean over heads.
#[derive(Clone, Copy, Debug)]
pub struct Which {
    pub layer: usize,
    pub head: Option<usize>,
}

/// Runs `ids` (at most the model's context) through the model once, on the inference path with
/// the weights as stored, and reads off the top `top_k` next tokens, the surprisal of each
/// token, and optionally one attention map.
pub fn inspect(
    model: &Gpt,
    tok: &Tokenizer,
    ids: &[u32],
    top_k: usize,
    attention: Option<Which>,
) -> Result<Inspection> {
    let cfg = &model.config;
    let (t, nh) = (ids.len(), cfg.n_head);
    check_length(cfg, t)?;
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
    let mut cache = KvCache::with_shape(model, CacheShape::scoring(cfg, t));
    let mut probe = Probe::new(attention.map(|w| w.layer), t);
    let mut surprisal = vec![None];
    let (mut last, mut last_logits) = (Vec::new(), Vec::new());
    // Every position but the last needs one log-probability, not the whole distribution.
    model.score(&mut cache, ids, Some(&mut probe), |i, logits| match ids.get(i + 1) {
        Some(&next) => surprisal.push(Some(-crate::sample::log_prob(logits, next) / std::f64::consts::LN_2)),
        None => (last, last_logits) = (probabilities(logits), logits.to_vec()),
    })?;
    let v = last.len();
    let mut order: Vec<u32> = (0..v as u32).collect();
    // Sort ids by their probability (never the probabilities themselves), ties by id.
    order.sort_unstable_by(|&a, &b| last[b as usize].total_cmp(&last[a as usize]).then(a.cmp(&b)));
    let next = order
        .iter()
        .take(top_k)
        .map(|&id| Candidate { id, text: tok.token_text(id), prob: last[id as usize] })
        .collect();
    let attention = attention.map(|w| {
        let att = &probe.attention;
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
        let group = nh / cfg.n_kv_head();
        let kv_head = w.head.filter(|_| group > 1).map(|h| {
            let index = h / group;
            KvHead { index, first: index * group, last: index * group + group - 1 }
        });
        AttentionMap { layer: w.layer, head: w.head, kv_head, weights }
    });
    let residual_norms = probe.norms;
    let tokens = ids.iter().map(|&id| Token { id, text: tok.token_text(id) }).collect();
    Ok(Inspection { tokens, next, attention, surprisal, residual_norms, logits: last_logits })
}

/// Every head's attention in every layer over `ids`: (layers, heads, T, T), row i of a map
/// showing how position i spreads its attention (zero after i). One pass over the text per layer.
pub fn attention_maps(model: &Gpt, ids: &[u32]) -> Result<Vec<f32>> {
    let cfg = &model.config;
    let t = ids.len();
    check_length(cfg, t)?;
    let mut maps = Vec::with_capacity(cfg.n_layer * cfg.n_head * t * t);
    for layer in 0..cfg.n_layer {
        let mut cache = KvCache::with_shape(model, CacheShape::scoring(cfg, t));
        let mut probe = Probe::new(Some(layer), t);
        model.score(&mut cache, ids, Some(&mut probe), |_, _| {})?;
        maps.extend_from_slice(&probe.attention);
    }
    Ok(maps)
}

/// A text to look inside must have a token and fit the context.
fn check_length(cfg: &crate::model::ModelConfig, t: usize) -> Result<()> {
    if t == 0 {
        return Err(Error::Invalid("the text is empty: nothing to inspect".into()));
    }
    if t > cfg.block_size {
        return Err(Error::TooLong { tokens: t, context: cfg.block_size });
    }
    Ok(())
}
