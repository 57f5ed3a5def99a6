//! The inference path: the KV cache, and one pass that runs new tokens through the model into it.
//!
//! Position t's keys and values never change once computed (the causal mask keeps later tokens
//! out of them), so a decoder stores them and, for each new token, computes only that token's q,
//! k, v and attends over the stored rows. The cache has slots for several sequences of different
//! lengths. One pass takes any mix of new tokens: a prompt (prefill: many rows of one slot, in
//! chunks), several prompts side by side ([`Gpt::prefill_batch`]), or the next token of several
//! sequences (decoding: one row per slot). All run the same code, with the weights in the type
//! they are stored in ([`Weight`]): f32 through GEMM or the matrix-vector kernels, blocks
//! through the quantized kernels, several rows per pass over the weights; attention over the
//! cache is in `cache_attention.rs`. Nothing here keeps what training needs; buffers are sized
//! once, when the cache is made, for the slots and context it serves.
//!
//! For the LLaMA family the cache stores keys already turned to their positions (rotary), and
//! only the key/value heads: with grouped-query attention that is NH / NKV times less memory
//! than GPT-2's layout would take, and each query head reads its group's key/value head.

use super::cache_attention::{Geometry, Rows, attend_each, attend_rows, reserve_scores};
use super::gpt::{Gpt, Weight, opt};
use super::layers::linear;
use super::layers::rope::Rope;
use super::quantized::Matrix;
use crate::error::{Error, Result};
use crate::kernels::matmul::{Stored, matmul};
use crate::kernels::vec::{add_bias, add_into};
use crate::kernels::{SharedOut, matvec};
use crate::model::ModelConfig;
use crate::model::layers::Norm;
use std::ops::Range;

/// Most rows one pass takes: a longer prompt is prefilled in chunks of this many tokens, each
/// attending to the chunks before it through the cache. Enough rows for GEMM to run near its
/// best (64-row chunks prefilled GPT-2 small 30% slower than the whole prompt at once), few
/// enough that the scratch stays small beside the weights (11 MB for GPT-2 small).
const PASS_ROWS: usize = 256;
/// Rows whose logits one scoring pass returns (`eval`, `inspect`): each is a vocabulary wide.
const SCORE_ROWS: usize = 64;
/// From this many rows on, f32 products go through GEMM; below, through the matrix-vector
/// kernels (which read each weight once and beat GEMM's packing for a few rows). And from this
/// many rows of one sequence on, attention runs as two small GEMMs per head.
const GEMM_ROWS: usize = 16;
/// The same for a decoding step of a model whose f32 block matrices do not fit in a core's
/// cache: GEMM packs the whole matrix before multiplying, a second pass over memory, which up to
/// this many rows costs more than the matrix-vector kernels' slower arithmetic. GPT-2 small's
/// shape, a step of 16 sequences: 79 ms through GEMM, 50 ms through the matrix-vector kernels;
/// 32: 106 and 85 ms; 64: even. (The demo model's 0.4 MB matrices stay in cache: there GEMM
/// wins from 16 rows, a 62-token prompt 39k tokens/s against 31k.) Prefill keeps [`GEMM_ROWS`]:
/// there one product of several prompts' rows together beats one pass each.
const GEMM_ROWS_LARGE: usize = 64;
/// Bytes of an f32 matrix from which it counts as not fitting in cache (L2 is 2 MB a core here).
const LARGE_MATRIX: usize = 1 << 20;

/// From how many rows (sequences) of a decoding step `model`'s f32 products go through GEMM.
fn decode_gemm_rows(model: &Gpt) -> usize {
    let large = |w: Weight| matches!(w, Weight::F32(w) if 4 * w.len() >= LARGE_MATRIX);
    let layers = 0..model.config.n_layer;
    if layers.flat_map(|l| Matrix::ALL.map(|m| model.matrix(l, m))).any(large) {
        GEMM_ROWS_LARGE
    } else {
        GEMM_ROWS
    }
}

pub struct KvCache {
    slots: usize,
    capacity: usize,
    c: usize,
    /// Width of a key or value row: the key/value heads side by side.
    kv: usize,
    vocab: usize,
    /// Keys and values, (layer, slot, key/value head, position, head size) each: a head's
    /// positions lie side by side, so attention streams them (with positions outermost, a head
    /// read pieces of 256 bytes 3 KB apart and ran at a quarter of the memory's speed).
    k: Vec<f32>,
    v: Vec<f32>,
    /// Rotary angles for every position the cache holds (rotary models only).
    rope: Option<Rope>,
    lens: Vec<usize>,
    /// Most rows in one pass, and most rows whose logits one pass returns.
    rows: usize,
    logit_rows: usize,
    /// From how many rows of a decoding step the model's f32 products go through GEMM
    /// ([`decode_gemm_rows`]).
    decode_gemm_rows: usize,
    // Scratch for one pass: allocated once.
    at: Vec<(usize, usize)>,
    x: Vec<f32>,
    ln: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    qkv: Vec<f32>,
    atty: Vec<f32>,
    proj: Vec<f32>,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    picked: Vec<f32>,
    logits: Vec<f32>,
}

/// What a cache holds, counted without making one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheShape {
    pub slots: usize,
    /// Positions each slot holds (at most the model's context).
    pub context: usize,
    /// Rows whose logits one pass returns: one per slot to generate, every row to score a text.
    pub logit_rows: usize,
}

impl CacheShape {
    /// For generating `slots` sequences of up to `context` tokens.
    pub fn generating(config: &ModelConfig, slots: usize, context: usize) -> CacheShape {
        let context = context.clamp(1, config.block_size);
        CacheShape { slots: slots.max(1), context, logit_rows: slots.max(1) }
    }

    /// For scoring one text of up to `context` tokens (every position's logits).
    pub fn scoring(config: &ModelConfig, context: usize) -> CacheShape {
        let context = context.clamp(1, config.block_size);
        CacheShape { slots: 1, context, logit_rows: SCORE_ROWS.min(context) }
    }

    fn rows(&self) -> usize {
        self.slots.max(PASS_ROWS.min(self.context)).max(self.logit_rows)
    }

    /// Bytes of the keys and values.
    pub fn kv_bytes(&self, config: &ModelConfig) -> usize {
        config.kv_bytes_per_position() * self.slots * self.context
    }

    /// Bytes of the scratch one pass works in: its rows' activations (x, ln, proj: C each;
    /// qkv, attention's output, the MLP's two widths; the norm's statistics; each row's slot and
    /// position), the logits with the rows they come from, and rotary angles per position.
    pub fn scratch_bytes(&self, config: &ModelConfig) -> usize {
        let (rows, c) = (self.rows(), config.n_embd);
        // (Each worker thread also keeps attention scores: `context` floats while decoding, a
        // chunk's rows x `context` while prefilling. Left out, so the figure does not depend on
        // the machine's core count; a short prompt makes them tiny.)
        let wide = config.qkv_width() + config.attn_width() + config.mlp_in_width() + config.mlp_width();
        let stats = 1 + usize::from(config.norm().has_mean());
        let per_row = 4 * (3 * c + wide + stats) + std::mem::size_of::<(usize, usize)>();
        let rope = Rope::floats(config, self.context);
        rows * per_row + 4 * self.logit_rows * (c + config.vocab_size) + 4 * rope
    }
}

impl KvCache {
    /// A cache for `slots` sequences of the model's full context.
    pub fn new(model: &Gpt, slots: usize) -> KvCache {
        KvCache::with_shape(model, CacheShape::generating(&model.config, slots, model.config.block_size))
    }

    pub fn with_shape(model: &Gpt, shape: CacheShape) -> KvCache {
        let cfg = &model.config;
        let (c, l, t) = (cfg.n_embd, cfg.n_layer, shape.context);
        let kv = cfg.n_kv_head() * cfg.head_size();
        let (slots, rows) = (shape.slots, shape.rows());
        let means = usize::from(cfg.norm().has_mean());
        let z = |n: usize| vec![0.0f32; n];
        // Every worker's attention scores are sized now, so no pass allocates them.
        rayon::broadcast(|_| reserve_scores(t));
        KvCache {
            slots,
            capacity: t,
            c,
            kv,
            vocab: cfg.vocab_size,
            k: z(l * slots * t * kv),
            v: z(l * slots * t * kv),
            rope: Rope::of(cfg, t),
            lens: vec![0; slots],
            rows,
            logit_rows: shape.logit_rows,
            decode_gemm_rows: decode_gemm_rows(model),
            at: vec![(0, 0); rows],
            x: z(rows * c),
            ln: z(rows * c),
            mean: z(rows * means),
            rstd: z(rows),
            qkv: z(rows * cfg.qkv_width()),
            atty: z(rows * cfg.attn_width()),
            proj: z(rows * c),
            fch: z(rows * cfg.mlp_in_width()),
            fch_gelu: z(rows * cfg.mlp_width()),
            picked: z(shape.logit_rows * c),
            logits: z(shape.logit_rows * cfg.vocab_size),
        }
    }

    /// Tokens stored for `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    pub fn is_empty(&self, slot: usize) -> bool {
        self.lens[slot] == 0
    }

    /// Positions each slot holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets `slot`'s tokens, so it can hold a new sequence.
    pub fn clear(&mut self, slot: usize) {
        self.lens[slot] = 0;
    }

    /// ln = norm(x) over the first `n` rows.
    fn normalize(&mut self, norm: Norm, n: usize, w: &[f32], b: Option<&[f32]>) {
        let c = self.c;
        let means = self.mean.len().min(n);
        let (ln, mean, rstd) = (&mut self.ln[..n * c], &mut self.mean[..means], &mut self.rstd[..n]);
        norm.forward(ln, mean, rstd, &self.x[..n * c], w, b, c);
    }

    /// Checks a pass of `tokens`, cut into `runs` of (slot, count), before anything changes.
    fn check(&self, tokens: &[u32], runs: Runs, every_row: bool) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let n = tokens.len();
        let runs = runs.iter(n);
        let count = runs.clone().count();
        if n == 0 || runs.clone().map(|r| r.1).sum::<usize>() != n {
            return bad("nothing to run: every sequence needs at least one token".into());
        }
        if n > self.rows || (if every_row { n } else { count }) > self.logit_rows {
            return bad(format!("{n} tokens in one pass; this cache takes {}", self.rows));
        }
        for (i, (s, len)) in runs.clone().enumerate() {
            if s >= self.slots || runs.clone().take(i).any(|r| r.0 == s) {
                return bad(format!("slot {s} is out of range or listed twice"));
            }
            if self.lens[s] + len > self.capacity {
                return bad(format!("slot {s} is full: the context holds {} tokens", self.capacity));
            }
        }
        if let Some(&tok) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::UnknownToken { id: tok, vocab: self.vocab });
        }
        Ok(())
    }
}

/// Whose tokens a pass runs.
#[derive(Clone, Copy)]
enum Runs<'a> {
    /// The next token of each of these slots (decoding).
    Each(&'a [usize]),
    /// Every token for one slot (prefill, scoring).
    One(usize),
    /// (slot, tokens) for several slots' prompts, their rows one after another.
    Pieces(&'a [(usize, usize)]),
}

impl<'a> Runs<'a> {
    /// (slot, tokens) for each run, in the order of the pass's rows; `n` tokens in all. (An
    /// iterator, so that a decoding step builds no list.)
    fn iter(self, n: usize) -> impl Iterator<Item = (usize, usize)> + Clone + 'a {
        let (each, one, pieces): (&[usize], _, &[(usize, usize)]) = match self {
            Runs::Each(slots) => (slots, None, &[]),
            Runs::One(slot) => (&[], Some(slot), &[]),
            Runs::Pieces(pieces) => (&[], None, pieces),
        };
        each.iter().map(|&s| (s, 1)).chain(one.map(move |s| (s, n))).chain(pieces.iter().copied())
    }
}

/// What a pass can record on the way, for looking inside (`inspect`, the lab).
#[derive(Debug, Default)]
pub struct Probe {
    /// Whose attention to keep: this layer's, for every head.
    pub layer: Option<usize>,
    /// Positions recorded: the text's length.
    pub t: usize,
    /// The probed layer's attention (NH, T, T) for positions 0..T of the slot: row i holds how
    /// much position i attends to each position, zero after i.
    pub attention: Vec<f32>,
    /// norms[s][i]: the L2 norm of position i's residual stream at stage s (0 the embedding,
    /// s after block s).
    pub norms: Vec<Vec<f32>>,
}

impl Probe {
    /// A probe for a text of `t` tokens, keeping `layer`'s attention if given.
    pub fn new(layer: Option<usize>, t: usize) -> Probe {
        Probe { layer, t, ..Probe::default() }
    }

    fn record_norms(&mut self, stage: usize, x: &[f32], at: &[(usize, usize)], c: usize) {
        if self.norms.len() <= stage {
            self.norms.resize(stage + 1, Vec::new());
        }
        let norms = &mut self.norms[stage];
        for (row, &(_, pos)) in x.chunks_exact(c).zip(at) {
            if norms.len() <= pos {
                norms.resize(pos + 1, 0.0);
            }
            norms[pos] = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        }
    }
}

/// Where the stored row of (layer, slot, key/value head, pos) starts in `k` and `v`, for a cache
/// of (slots, key/value heads, capacity, head size). (A function, so that code holding other
/// fields mutably can use it.)
pub(super) fn row_offset(
    (slots, heads, capacity, hs): (usize, usize, usize, usize),
    layer: usize,
    slot: usize,
    head: usize,
    pos: usize,
) -> usize {
    (((layer * slots + slot) * heads + head) * capacity + pos) * hs
}

/// The passes that prefill prompts of these lengths together: each a list of (prompt, range of
/// its tokens). A prompt is cut as its own prefill cuts it (chunks of `rows`); a pass holds at
/// most one chunk of each prompt, in order, and either only chunks of [`GEMM_ROWS`] or more
/// (at most `rows` in all) or only shorter ones (fewer than [`GEMM_ROWS`] in all, so that the
/// products stay on the kernels a short prompt alone takes), and fewer than [`GEMM_ROWS`]
/// chunks, whose logits go through the LM head's few-row path as one alone would. (Attention's
/// choice depends on each chunk's own length, whatever shares its pass.)
fn plan_passes(lens: &[usize], rows: usize) -> Vec<Vec<(usize, Range<usize>)>> {
    let chunk = |i: usize, start: usize| start..(start + rows).min(lens[i]);
    let mut next = vec![0; lens.len()];
    let mut passes = Vec::new();
    loop {
        let pending = |i: usize, next: &[usize]| next[i] < lens[i];
        let long = (0..lens.len()).any(|i| pending(i, &next) && chunk(i, next[i]).len() >= GEMM_ROWS);
        let limit = if long { rows } else { rows.min(GEMM_ROWS - 1) };
        let (mut pass, mut total) = (Vec::new(), 0);
        for i in 0..lens.len() {
            let span = chunk(i, next[i]);
            let fits = total + span.len() <= limit && pass.len() < GEMM_ROWS - 1;
            if pending(i, &next) && (span.len() >= GEMM_ROWS) == long && fits {
                total += span.len();
                next[i] = span.end;
                pass.push((i, span));
            }
        }
        if pass.is_empty() {
            return passes;
        }
        passes.push(pass);
    }
}

/// `out (n x m) = x (n x k) . W + b`, W as stored: f32 (k x m) or, `transposed`, (m x k),
/// through GEMM if `gemm`; or blocks.
fn project(
    w: Weight,
    out: &mut [f32],
    x: &[f32],
    b: Option<&[f32]>,
    (n, k, m): (usize, usize, usize),
    (stored, gemm): (Stored, bool),
) {
    let (out, x) = (&mut out[..n * m], &x[..n * k]);
    match w {
        Weight::Blocks(q) => q.times(out, x, b, n),
        Weight::Stacked(s) => s.times(out, x, b, n),
        Weight::F32(w) if gemm => linear::forward(out, x, w, b, (n, k, m), stored),
        Weight::F32(w) if stored == Stored::Normal => matvec::times(out, x, w, b, (n, k, m)),
        Weight::F32(w) => {
            matvec::times_transposed(out, x, w, (n, k, m));
            if let Some(b) = b {
                add_bias(out, b);
            }
        }
    }
}

/// `logits (n x V) = x (n x C) . E^T`: the LM head, tied to the embedding E (V x C); f32
/// through GEMM if `gemm`.
fn head(w: Weight, out: &mut [f32], x: &[f32], (n, c, v): (usize, usize, usize), gemm: bool) {
    let (out, x) = (&mut out[..n * v], &x[..n * c]);
    match w {
        Weight::Blocks(q) => q.times(out, x, None, n),
        Weight::Stacked(s) => s.times(out, x, None, n),
        Weight::F32(e) if gemm => matmul(out, x, Stored::Normal, e, Stored::Transposed, (n, c, v), false),
        Weight::F32(e) => matvec::times_transposed(out, x, e, (n, c, v)),
    }
}

impl Gpt {
    /// Runs `prompt` into an empty `slot`, in chunks, and returns the logits (V) for the token
    /// after it: [`prefill_batch`](Gpt::prefill_batch) with one prompt.
    pub fn prefill(&self, cache: &mut KvCache, slot: usize, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut logits = self.prefill_batch(cache, &[(slot, prompt)])?;
        Ok(logits.pop().expect("one prompt, one row of logits"))
    }

    /// Runs several prompts, each into its own free slot, and returns each one's logits (V)
    /// for the token after it, in order: what [`prefill`](Gpt::prefill) returns for each alone,
    /// bit for bit, in fewer passes over the weights. Every prompt is checked before anything
    /// runs, so a refusal leaves every slot as it was.
    ///
    /// Each prompt is cut into the same chunks its own prefill would use, and a pass takes
    /// chunks of several prompts side by side, so every row meets the same kernels as alone:
    /// chunks long enough for GEMM (16 rows) go through it together (up to a pass's rows),
    /// shorter ones through the matrix-vector kernels together (fewer than 16 rows in all).
    pub fn prefill_batch(&self, cache: &mut KvCache, prompts: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>> {
        for (i, &(slot, prompt)) in prompts.iter().enumerate() {
            if slot >= cache.slots || !cache.is_empty(slot) || prompts[..i].iter().any(|p| p.0 == slot) {
                return Err(Error::Invalid(format!("slot {slot} is not a free slot of the cache")));
            }
            if prompt.is_empty() {
                return Err(Error::Invalid("the prompt is empty".into()));
            }
            if prompt.len() > cache.capacity {
                return Err(Error::TooLong { tokens: prompt.len(), context: cache.capacity });
            }
            if let Some(&tok) = prompt.iter().find(|&&t| t as usize >= cache.vocab) {
                return Err(Error::UnknownToken { id: tok, vocab: cache.vocab });
            }
        }
        let lens: Vec<usize> = prompts.iter().map(|p| p.1.len()).collect();
        let mut logits = vec![Vec::new(); prompts.len()];
        let (mut tokens, mut pieces) = (Vec::new(), Vec::new());
        for pass in plan_passes(&lens, cache.rows) {
            tokens.clear();
            pieces.clear();
            for &(i, ref span) in &pass {
                tokens.extend_from_slice(&prompts[i].1[span.clone()]);
                pieces.push((prompts[i].0, span.len()));
            }
            self.pass(cache, &tokens, Runs::Pieces(&pieces), false, None)?;
            for (row, (i, span)) in pass.into_iter().enumerate() {
                if span.end == lens[i] {
                    logits[i] = cache.logits[row * cache.vocab..(row + 1) * cache.vocab].to_vec();
                }
            }
        }
        Ok(logits)
    }

    /// One step for several sequences at once: `tokens[i]` is the next token of `slots[i]`.
    /// Returns logits (slots.len(), V), row i for slots[i].
    pub fn decode<'c>(&self, cache: &'c mut KvCache, slots: &[usize], tokens: &[u32]) -> Result<&'c [f32]> {
        if slots.len() != tokens.len() {
            return Err(Error::Invalid(format!("{} slots for {} tokens", slots.len(), tokens.len())));
        }
        let n = self.pass(cache, tokens, Runs::Each(slots), false, None)?;
        Ok(&cache.logits[..n * cache.vocab])
    }

    /// Runs `tokens` into slot 0 of `cache` (emptied first) and hands `each(i, logits)` the
    /// logits (V) after every position i: scoring a text, token by token, in one pass per chunk.
    /// `probe` records attention and residual norms on the way.
    pub fn score(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        mut probe: Option<&mut Probe>,
        mut each: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        cache.clear(0);
        if tokens.len() > cache.capacity {
            return Err(Error::TooLong { tokens: tokens.len(), context: cache.capacity });
        }
        let step = cache.rows.min(cache.logit_rows);
        for (chunk_index, chunk) in tokens.chunks(step).enumerate() {
            let n = self.pass(cache, chunk, Runs::One(0), true, probe.as_deref_mut())?;
            for (r, row) in cache.logits[..n * cache.vocab].chunks_exact(cache.vocab).enumerate() {
                each(chunk_index * step + r, row);
            }
        }
        Ok(())
    }

    /// The pass: every run's tokens through the blocks into the cache, then the LM head for the
    /// last row of each run (or every row). Returns how many rows of `cache.logits` it wrote.
    fn pass(
        &self,
        kc: &mut KvCache,
        tokens: &[u32],
        runs: Runs,
        every_row: bool,
        mut probe: Option<&mut Probe>,
    ) -> Result<usize> {
        let cfg = &self.config;
        let (c, nh, v, hs) = (cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.head_size());
        let (w_qkv, a, m_in, m, kvw) =
            (cfg.qkv_width(), cfg.attn_width(), cfg.mlp_in_width(), cfg.mlp_width(), kc.kv);
        let (norm, activation, stored) = (cfg.norm(), cfg.activation(), cfg.matrices_stored());
        let (nkv, group) = (cfg.n_kv_head(), nh / cfg.n_kv_head());
        let g = Geometry { nh, hs, group, qkv: w_qkv, out: a };
        kc.check(tokens, runs, every_row)?;
        let n = tokens.len();
        let gemm_rows = match runs {
            Runs::Each(_) => kc.decode_gemm_rows,
            _ => GEMM_ROWS,
        };
        let kernels = (stored, n >= gemm_rows);
        let p = &self.params;
        let l = &self.layout;
        let wpe = (!l.wpe.is_empty()).then(|| &p[l.wpe.clone()]);
        let mut row = 0;
        for (s, len) in runs.iter(n) {
            for pos in kc.lens[s]..kc.lens[s] + len {
                kc.at[row] = (s, pos);
                let x = &mut kc.x[row * c..(row + 1) * c];
                self.embed(tokens[row], x);
                if let Some(wpe) = wpe {
                    add_into(x, &wpe[pos * c..(pos + 1) * c]);
                }
                row += 1;
            }
        }
        if let Some(probe) = probe.as_deref_mut() {
            probe.record_norms(0, &kc.x[..n * c], &kc.at[..n], c);
        }
        let scale = 1.0 / (hs as f32).sqrt();
        for (layer, o) in l.blocks.iter().enumerate() {
            kc.normalize(norm, n, &p[o.ln_1_w.clone()], opt(p, &o.ln_1_b));
            let w = |m: Matrix| self.matrix(layer, m);
            project(w(Matrix::Qkv), &mut kc.qkv, &kc.ln, opt(p, &o.attn_b), (n, c, w_qkv), kernels);
            if let Some(rope) = &kc.rope {
                let at = &kc.at;
                rope.rotate_rows(&mut kc.qkv[..n * w_qkv], (w_qkv, a + kvw), |r| at[r].1, false);
            }
            let geometry = (kc.slots, nkv, kc.capacity, hs);
            for (r, &(s, pos)) in kc.at[..n].iter().enumerate() {
                let (k, v) = kc.qkv[r * w_qkv + a..][..2 * kvw].split_at(kvw);
                for (j, (k, v)) in k.chunks_exact(hs).zip(v.chunks_exact(hs)).enumerate() {
                    let at = row_offset(geometry, layer, s, j, pos);
                    kc.k[at..at + hs].copy_from_slice(k);
                    kc.v[at..at + hs].copy_from_slice(v);
                }
            }
            // A probe on this layer gets each (head, position)'s probabilities in its own row of
            // the (NH, T, T) map.
            let record = probe.as_deref_mut().filter(|p| p.layer == Some(layer)).map(|p| {
                p.attention.resize(nh * p.t * p.t, 0.0);
                (SharedOut(p.attention.as_mut_ptr()), p.t)
            });
            let (cache_k, cache_v, qkv, at) = (&kc.k, &kc.v, &kc.qkv, &kc.at);
            let rows = Rows { qkv, k: cache_k, v: cache_v, at, geometry, layer, g, scale, record };
            if runs.iter(n).all(|(_, len)| len < GEMM_ROWS) {
                // Decoding, or short prompts: one task per (row, head) across all of them.
                attend_each(&mut kc.atty[..n * a], 0, rows);
            } else {
                let mut first = 0;
                for (_, len) in runs.iter(n) {
                    let atty = &mut kc.atty[first * a..(first + len) * a];
                    if len < GEMM_ROWS {
                        attend_each(atty, first, rows);
                    } else {
                        // Many rows of one sequence (prefill): per head, two small GEMMs instead.
                        attend_rows(atty, first, rows);
                    }
                    first += len;
                }
            }
            let bias = opt(p, &o.attn_proj_b);
            project(w(Matrix::AttnProj), &mut kc.proj, &kc.atty, bias, (n, a, c), kernels);
            add_into(&mut kc.x[..n * c], &kc.proj[..n * c]);
            kc.normalize(norm, n, &p[o.ln_2_w.clone()], opt(p, &o.ln_2_b));
            project(w(Matrix::Fc), &mut kc.fch, &kc.ln, opt(p, &o.fc_b), (n, c, m_in), kernels);
            activation.forward(&mut kc.fch_gelu[..n * m], &kc.fch[..n * m_in]);
            let bias = opt(p, &o.fc_proj_b);
            project(w(Matrix::FcProj), &mut kc.proj, &kc.fch_gelu, bias, (n, m, c), kernels);
            add_into(&mut kc.x[..n * c], &kc.proj[..n * c]);
            if let Some(probe) = probe.as_deref_mut() {
                probe.record_norms(layer + 1, &kc.x[..n * c], &kc.at[..n], c);
            }
        }
        for (s, len) in runs.iter(n) {
            kc.lens[s] += len;
        }
        kc.normalize(norm, n, &p[l.ln_f_w.clone()], opt(p, &l.ln_f_b));
        if every_row {
            head(self.head(), &mut kc.logits, &kc.ln, (n, c, v), n >= gemm_rows);
            return Ok(n);
        }
        let (mut end, mut count) = (0, 0);
        for (i, (_, len)) in runs.iter(n).enumerate() {
            end += len;
            kc.picked[i * c..(i + 1) * c].copy_from_slice(&kc.ln[(end - 1) * c..end * c]);
            count += 1;
        }
        head(self.head(), &mut kc.logits, &kc.picked, (count, c, v), count >= gemm_rows);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prompt is cut where its own prefill cuts it, its chunks in order in separate
    /// passes, and no pass mixes chunks that take GEMM with chunks that do not.
    #[test]
    fn passes_keep_each_prompts_chunks_and_kernels() {
        for (lens, rows) in [
            (vec![16; 8], 256),
            (vec![3, 1, 40, 7, 300, 16, 5, 520, 2], 256),
            (vec![3, 1, 6], 8),
            (vec![1; 40], 40),
            (vec![15, 15, 14, 600], 256),
        ] {
            let passes = plan_passes(&lens, rows);
            let mut seen = vec![0; lens.len()];
            for pass in &passes {
                let long = pass[0].1.len() >= GEMM_ROWS;
                let total: usize = pass.iter().map(|(_, s)| s.len()).sum();
                assert!(pass.iter().all(|(_, s)| (s.len() >= GEMM_ROWS) == long), "{lens:?}: {pass:?}");
                assert!(total <= if long { rows } else { rows.min(GEMM_ROWS - 1) }, "{lens:?}: {pass:?}");
                assert!(pass.len() < GEMM_ROWS);
                for (i, span) in pass {
                    assert!(pass.iter().filter(|(j, _)| j == i).count() == 1);
                    assert_eq!(span.start, seen[*i]);
                    assert_eq!(*span, span.start..(span.start + rows).min(lens[*i]));
                    seen[*i] = span.end;
                }
            }
            assert_eq!(seen, lens);
            if lens == [16; 8] {
                assert_eq!(passes.len(), 1, "eight 16-token prompts fill one pass");
            }
        }
    }

    /// What `model info` states is what a cache allocates, buffer by buffer.
    #[test]
    fn counted_bytes_equal_allocated_bytes() {
        let mut llama = ModelConfig::preset("smollm2-135m").unwrap();
        (llama.n_layer, llama.vocab_size, llama.block_size) = (2, 300, 512);
        for config in [ModelConfig::preset("d2").unwrap(), llama] {
            counted_bytes_equal_allocated_bytes_for(config);
        }
    }

    fn counted_bytes_equal_allocated_bytes_for(config: ModelConfig) {
        let model = Gpt::new(config, 1).unwrap();
        for shape in [
            CacheShape::generating(&model.config, 3, 40),
            CacheShape::generating(&model.config, 1, 256),
            CacheShape::scoring(&model.config, 100),
        ] {
            let kc = KvCache::with_shape(&model, shape);
            let floats = [&kc.x, &kc.ln, &kc.mean, &kc.rstd, &kc.qkv, &kc.atty, &kc.proj, &kc.fch]
                .iter()
                .chain([&&kc.fch_gelu, &&kc.picked, &&kc.logits])
                .map(|v| v.len())
                .sum::<usize>()
                + kc.rope.as_ref().map_or(0, Rope::allocated_floats);
            let scratch = 4 * floats + kc.at.len() * std::mem::size_of::<(usize, usize)>();
            assert_eq!(shape.scratch_bytes(&model.config), scratch, "{shape:?}");
            assert_eq!(shape.kv_bytes(&model.config), 4 * (kc.k.len() + kc.v.len()), "{shape:?}");
        }
    }
}
