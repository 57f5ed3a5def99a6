//! The KV cache: generating token by token without recomputing the past.
//!
//! Position t's keys and values never change once computed (the causal mask keeps later tokens
//! out of them), so a decoder stores them and, for each new token, computes only that token's q,
//! k, v and attends over the stored rows: one token's worth of work per step instead of the
//! whole window's. The cache has slots for several sequences of different lengths, decoded
//! together in one batched pass per step.

use super::gpt::{Gpt, opt};
use super::layers::{gelu, layernorm};
use super::quantized::Matrix;
use crate::error::{Error, Result};
use crate::kernels::matvec;
use crate::kernels::simd::{multiversion, softmax_inline};
use crate::kernels::vec::{axpy_inline, dot_inline};
use crate::quant::QMatrix;
use rayon::prelude::*;

pub struct KvCache {
    slots: usize,
    capacity: usize,
    c: usize,
    /// Keys and values, (layer, slot, position, C) each.
    k: Vec<f32>,
    v: Vec<f32>,
    lens: Vec<usize>,
    // Scratch for one decode step of up to `slots` tokens: allocated once.
    x: Vec<f32>,
    ln: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    proj: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    scores: Vec<f32>,
    logits: Vec<f32>,
}

impl KvCache {
    pub fn new(model: &Gpt, slots: usize) -> KvCache {
        let cfg = &model.config;
        let (c, t, l) = (cfg.n_embd, cfg.block_size, cfg.n_layer);
        let z = |n: usize| vec![0.0f32; n];
        KvCache {
            slots,
            capacity: t,
            c,
            k: z(l * slots * t * c),
            v: z(l * slots * t * c),
            lens: vec![0; slots],
            x: z(slots * c),
            ln: z(slots * c),
            mean: z(slots),
            rstd: z(slots),
            qkv: z(slots * 3 * c),
            atty: z(slots * c),
            proj: z(slots * c),
            fch: z(slots * 4 * c),
            fch_gelu: z(slots * 4 * c),
            scores: z(slots * cfg.n_head * t),
            logits: z(slots * cfg.vocab_size),
        }
    }

    /// Tokens stored for `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    pub fn is_empty(&self, slot: usize) -> bool {
        self.lens[slot] == 0
    }

    /// Forgets `slot`'s tokens, so it can hold a new sequence.
    pub fn clear(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }

    /// ln = LayerNorm(x) over the first `n` rows.
    fn normalize(&mut self, n: usize, w: &[f32], b: Option<&[f32]>) {
        let c = self.c;
        layernorm::forward(
            &mut self.ln[..n * c],
            &mut self.mean[..n],
            &mut self.rstd[..n],
            &self.x[..n * c],
            w,
            b,
            c,
        );
    }

    fn row(&self, layer: usize, slot: usize, pos: usize) -> usize {
        row_offset((self.slots, self.capacity, self.c), layer, slot, pos)
    }
}

multiversion! {
    /// y = softmax(q . k_t * scale over stored positions t) . v_t for one head, whose lanes
    /// start at `offset` in each stored row of `width` floats.
    fn attend(y: &mut [f32], scores: &mut [f32], q: &[f32], k: &[f32], v: &[f32], layout: (usize, usize), scale: f32) {
        let (width, offset) = layout;
        let hs = y.len();
        for (t, sc) in scores.iter_mut().enumerate() {
            *sc = dot_inline(q, &k[t * width + offset..][..hs]) * scale;
        }
        softmax_inline(scores);
        y.fill(0.0);
        for (t, &w) in scores.iter().enumerate() {
            axpy_inline(y, w, &v[t * width + offset..][..hs]);
        }
    }
}

/// Where the stored row of (layer, slot, pos) starts in `k` and `v`, for a cache of
/// (slots, capacity, C). (A function, so that code holding other fields mutably can use it.)
fn row_offset((slots, capacity, c): (usize, usize, usize), layer: usize, slot: usize, pos: usize) -> usize {
    ((layer * slots + slot) * capacity + pos) * c
}

/// `out (n x m) = x (n x k) . W + b`: through the quantized matrix when the model has one
/// (what makes a quantized model decode faster), else the f32 weights (HF's (k x m) layout).
fn project(
    q: Option<&QMatrix>,
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (n, k, m): (usize, usize, usize),
) {
    match q {
        Some(q) => q.times(out, x, b, n),
        None => matvec::times(out, x, w, b, (n, k, m)),
    }
}

/// x += y (the residual connection).
fn add_into(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

impl Gpt {
    /// Runs `prompt` through the model in one pass into an empty `slot` and returns the logits
    /// (V) for the token after it.
    pub fn prefill(&mut self, cache: &mut KvCache, slot: usize, prompt: &[u32]) -> Result<Vec<f32>> {
        if slot >= cache.slots || !cache.is_empty(slot) {
            return Err(Error::Invalid(format!("slot {slot} is not a free slot of the cache")));
        }
        let t = prompt.len();
        if t == 0 {
            return Err(Error::Invalid("the prompt is empty".into()));
        }
        let logits = self.logits_at(prompt, (1, t), &[t - 1])?;
        let c = self.config.n_embd;
        for layer in 0..self.config.n_layer {
            let qkv = self.block_qkv(layer);
            for pos in 0..t {
                let at = cache.row(layer, slot, pos);
                cache.k[at..at + c].copy_from_slice(&qkv[pos * 3 * c + c..][..c]);
                cache.v[at..at + c].copy_from_slice(&qkv[pos * 3 * c + 2 * c..][..c]);
            }
        }
        cache.lens[slot] = t;
        Ok(logits)
    }

    /// One step for several sequences at once: `tokens[i]` is the next token of `slots[i]`.
    /// Returns logits (slots.len(), V), row i for slots[i].
    pub fn decode<'c>(&self, cache: &'c mut KvCache, slots: &[usize], tokens: &[u32]) -> Result<&'c [f32]> {
        let cfg = &self.config;
        let (c, nh, v) = (cfg.n_embd, cfg.n_head, cfg.vocab_size);
        let hs = c / nh;
        let n = slots.len();
        if n != tokens.len() || n == 0 || n > cache.slots {
            return Err(Error::Invalid(format!(
                "{n} slots for {} tokens (the cache has {})",
                tokens.len(),
                cache.slots
            )));
        }
        for (&s, &tok) in slots.iter().zip(tokens) {
            if s >= cache.slots || slots.iter().filter(|&&o| o == s).count() > 1 {
                return Err(Error::Invalid(format!("slot {s} is out of range or listed twice")));
            }
            if cache.lens[s] >= cache.capacity {
                return Err(Error::Invalid(format!(
                    "slot {s} is full: the context holds {} tokens",
                    cache.capacity
                )));
            }
            if tok as usize >= v {
                return Err(Error::Invalid(format!("token id {tok} is outside the vocabulary of {v}")));
            }
        }
        let p = &self.params;
        let l = &self.layout;
        let (wte, wpe) = (&p[l.wte.clone()], &p[l.wpe.clone()]);
        for (i, (&s, &tok)) in slots.iter().zip(tokens).enumerate() {
            let pos = cache.lens[s];
            for ((x, &a), &b) in
                cache.x[i * c..(i + 1) * c].iter_mut().zip(&wte[tok as usize * c..]).zip(&wpe[pos * c..])
            {
                *x = a + b;
            }
        }
        let scale = 1.0 / (hs as f32).sqrt();
        for (layer, o) in l.blocks.iter().enumerate() {
            let kc = &mut *cache;
            kc.normalize(n, &p[o.ln_1_w.clone()], opt(p, &o.ln_1_b));
            let q = |m: Matrix| self.quantized.as_ref().and_then(|q| q.blocks[layer][m as usize].as_ref());
            project(
                q(Matrix::Qkv),
                &mut kc.qkv,
                &kc.ln,
                &p[o.attn_w.clone()],
                opt(p, &o.attn_b),
                (n, c, 3 * c),
            );
            for (i, &s) in slots.iter().enumerate() {
                let at = kc.row(layer, s, kc.lens[s]);
                kc.k[at..at + c].copy_from_slice(&kc.qkv[i * 3 * c + c..][..c]);
                kc.v[at..at + c].copy_from_slice(&kc.qkv[i * 3 * c + 2 * c..][..c]);
            }
            // Every (sequence, head) pair attends independently: one task each.
            let (cache_k, cache_v, qkv, lens) = (&kc.k, &kc.v, &kc.qkv, &kc.lens);
            let geometry = (kc.slots, kc.capacity, c);
            kc.atty[..n * c]
                .par_chunks_mut(hs)
                .zip(kc.scores.par_chunks_mut(kc.capacity))
                .enumerate()
                .for_each(|(task, (y, scores))| {
                    let (i, h) = (task / nh, task % nh);
                    let (s, base) = (slots[i], row_offset(geometry, layer, slots[i], 0));
                    let q = &qkv[i * 3 * c + h * hs..][..hs];
                    let span = base..base + (lens[s] + 1) * c;
                    attend(
                        y,
                        &mut scores[..=lens[s]],
                        q,
                        &cache_k[span.clone()],
                        &cache_v[span],
                        (c, h * hs),
                        scale,
                    );
                });
            project(
                q(Matrix::AttnProj),
                &mut kc.proj,
                &kc.atty,
                &p[o.attn_proj_w.clone()],
                opt(p, &o.attn_proj_b),
                (n, c, c),
            );
            add_into(&mut kc.x[..n * c], &kc.proj[..n * c]);
            kc.normalize(n, &p[o.ln_2_w.clone()], opt(p, &o.ln_2_b));
            project(q(Matrix::Fc), &mut kc.fch, &kc.ln, &p[o.fc_w.clone()], opt(p, &o.fc_b), (n, c, 4 * c));
            gelu::forward(&mut kc.fch_gelu[..n * 4 * c], &kc.fch[..n * 4 * c]);
            project(
                q(Matrix::FcProj),
                &mut kc.proj,
                &kc.fch_gelu,
                &p[o.fc_proj_w.clone()],
                opt(p, &o.fc_proj_b),
                (n, 4 * c, c),
            );
            add_into(&mut kc.x[..n * c], &kc.proj[..n * c]);
        }
        let kc = &mut *cache;
        kc.normalize(n, &p[l.ln_f_w.clone()], opt(p, &l.ln_f_b));
        match self.quantized.as_ref().and_then(|q| q.lm_head.as_ref()) {
            Some(head) => head.times(&mut kc.logits, &kc.ln, None, n),
            None => matvec::times_transposed(&mut kc.logits, &kc.ln, &wte[..v * c], (n, c, v)),
        }
        for &s in slots {
            kc.lens[s] += 1;
        }
        Ok(&kc.logits[..n * v])
    }
}
