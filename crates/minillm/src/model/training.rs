//! What training needs beside the model: gradients, the activations kept for backward, and
//! dropout's random stream. The forward pass that keeps its activations and the backward pass
//! that walks them in reverse live here, side by side.
//!
//! ```text
//! tokens -> wte + wpe -> [dropout] -> L x block -> ln_f -> . wte^T -> logits -> loss
//! block:  x -> ln_1 -> c_attn -> attention -> c_proj -> [dropout] -> + x
//!           -> ln_2 -> c_fc -> gelu -> c_proj -> [dropout] -> +
//! ```
//!
//! The LLaMA family walks the same path with its own parts: no wpe; RMSNorm for LayerNorm;
//! q|k|v_proj, then rotary positions on q and k, then grouped-query attention, then o_proj;
//! gate|up_proj, SwiGLU, down_proj; an untied head where the model has one.
//!
//! A model loaded to generate never builds one of these (see [`super::kv_cache`] for the path
//! inference takes): gradients and activations are allocated on first use, as llm.c does, so
//! only training and the tests that compare with PyTorch pay for them.

use super::activations::{Activations, BlockActs};
use super::gpt::opt;
use super::layers::attention::{self, Shape};
use super::layers::rope::Rope;
use super::layers::{dropout, embedding, linear, loss};
use super::params::BlockOffsets;
use super::{Gpt, ModelConfig};
use crate::error::{Error, Result};
use crate::kernels::matmul::{Stored, matmul};
use crate::kernels::vec::{add, add_bias, add_biased};
use crate::rng::Rng;
use std::ops::{Deref, DerefMut, Range};

/// A model being trained: the model itself (weights in f32) and what training adds to it.
pub struct Trainable {
    pub model: Gpt,
    /// d(loss)/d(params), in the parameters' layout; empty until the first [`Self::zero_grad`].
    pub grads: Vec<f32>,
    /// Dropout is applied only while training (evaluation turns it off).
    pub training: bool,
    acts: Option<Activations>,
    dropout_rng: Rng,
    dropout_seed: u64,
    /// The layout's [`backward_buckets`](super::params::Layout::backward_buckets), computed once.
    buckets: Vec<Range<usize>>,
}

/// Called by [`Trainable::backward_notify`] with each finished range of the gradients.
pub type Ready<'a> = &'a mut dyn FnMut(Range<usize>, &[f32]);

/// Bytes a training step's activations take for `config` at (B, T): what backward keeps and
/// the step's scratch, counted without allocating them (`minillm model info` states it).
pub fn activation_bytes(config: &ModelConfig, b: usize, t: usize) -> usize {
    Activations::bytes(config, b, t)
}

impl Deref for Trainable {
    type Target = Gpt;
    fn deref(&self) -> &Gpt {
        &self.model
    }
}

impl DerefMut for Trainable {
    fn deref_mut(&mut self) -> &mut Gpt {
        &mut self.model
    }
}

/// The line a user sees when training starts from weights of `weight_type` (16-bit or
/// quantized), which training widens to f32.
pub fn widening_note(weight_type: &str) -> String {
    format!("the weights are {weight_type}: widened to f32 for training")
}

impl Trainable {
    /// Prepares `model` for training, dropout's masks drawn from `seed`. Weights stored in 16
    /// bits or quantized are widened to f32 first (training updates them in f32); the returned
    /// note says so, for the caller to show.
    pub fn new(mut model: Gpt, seed: u64) -> (Trainable, Option<String>) {
        let note = model.widen().map(|from| widening_note(&from));
        let dropout_seed = seed ^ 0xD809_0D70;
        let buckets = model.layout.backward_buckets();
        let t = Trainable {
            model,
            grads: Vec::new(),
            training: true,
            acts: None,
            dropout_rng: Rng::new(dropout_seed),
            dropout_seed,
            buckets,
        };
        (t, note)
    }

    /// A new model with GPT-2's initialisation from `seed`, ready to train.
    pub fn init(config: super::ModelConfig, seed: u64) -> Result<Trainable> {
        Ok(Trainable::new(Gpt::new(config, seed)?, seed).0)
    }

    /// Starts a training step: gradients to zero (allocated on the first call).
    pub fn zero_grad(&mut self) {
        if self.grads.len() != self.model.params.len() {
            self.grads = vec![0.0; self.model.params.len()];
        } else {
            self.grads.fill(0.0);
        }
    }

    /// Gives the model back, without its training state.
    pub fn into_model(self) -> Gpt {
        self.model
    }

    /// Runs the blocks over `tokens` (B, T). Returns the mean loss when `targets` are given
    /// ([`IGNORE`] skips a position); otherwise [`logits`](Self::logits) holds the logits.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        (b, t): (usize, usize),
    ) -> Result<Option<f32>> {
        self.model.check_input(tokens, targets, b, t)?;
        self.run_blocks(tokens, b, t);
        let (c, v, vp) =
            (self.model.config.n_embd, self.model.config.vocab_size, self.model.config.padded_vocab_size());
        let acts = self.acts.as_mut().expect("run_blocks allocated the activations");
        let last = acts.blocks.last().map_or(&acts.encoded, |k| &k.resid3);
        let p = &self.model.params;
        let l = &self.model.layout;
        self.model.config.norm().forward(
            &mut acts.lnf,
            &mut acts.lnf_mean,
            &mut acts.lnf_rstd,
            last,
            &p[l.ln_f_w.clone()],
            opt(p, &l.ln_f_b),
            c,
        );
        matmul(
            &mut acts.logits,
            &acts.lnf,
            Stored::Normal,
            &p[l.head().clone()],
            Stored::Transposed,
            (b * t, c, vp),
            false,
        );
        acts.has_targets = targets.is_some();
        Ok(targets.map(|targets| {
            acts.targets.copy_from_slice(targets);
            loss::forward(&mut acts.logits, &mut acts.losses, targets, v, vp)
        }))
    }

    /// Logits (B, T, Vp) of the last forward without targets; only the first V columns of each
    /// row are real.
    pub fn logits(&self) -> &[f32] {
        self.acts.as_ref().map_or(&[], |a| &a.logits[..a.b * a.t * self.model.config.padded_vocab_size()])
    }

    /// Attention probabilities (B, NH, T, T) of `layer` in the last forward, per query head:
    /// row i holds how much position i attends to each position, zero after i (the causal mask).
    pub fn attention(&self, layer: usize) -> Option<&[f32]> {
        self.acts.as_ref().and_then(|a| a.blocks.get(layer)).map(|k| k.att.as_slice())
    }

    /// The residual stream (B, T, C) of the last forward at `stage`: 0 is the embedding (token +
    /// position), `l` the stream after block `l` (1-based), up to `n_layer`.
    pub fn residual(&self, stage: usize) -> Option<&[f32]> {
        let acts = self.acts.as_ref()?;
        match stage {
            0 => Some(&acts.encoded),
            l => acts.blocks.get(l - 1).map(|k| k.resid3.as_slice()),
        }
    }

    fn run_blocks(&mut self, tokens: &[u32], b: usize, t: usize) {
        if self.acts.as_ref().is_none_or(|a| a.b != b || a.t != t) {
            self.acts = Some(Activations::new(&self.model.config, b, t));
        }
        let cfg = &self.model.config;
        let c = cfg.n_embd;
        let (norm, activation, stored) = (cfg.norm(), cfg.activation(), cfg.matrices_stored());
        let (w, a, m_in, m) = (cfg.qkv_width(), cfg.attn_width(), cfg.mlp_in_width(), cfg.mlp_width());
        let n = b * t;
        let drop = if self.training { cfg.dropout } else { 0.0 };
        let acts = self.acts.as_mut().expect("just allocated");
        let p = &self.model.params;
        let l = &self.model.layout;
        let rng = &mut self.dropout_rng;
        acts.tokens.copy_from_slice(tokens);
        let wpe = (!l.wpe.is_empty()).then(|| &p[l.wpe.clone()]);
        embedding::forward(&mut acts.encoded, tokens, &p[l.wte.clone()], wpe, t, c);
        if drop > 0.0 {
            dropout::fill_mask(&mut acts.encoded_mask, drop, rng);
            dropout::apply(&mut acts.encoded, &acts.encoded_mask);
        }
        let shape = cfg.attention_shape(b, t);
        for i in 0..cfg.n_layer {
            let (done, rest) = acts.blocks.split_at_mut(i);
            let input = done.last().map_or(&acts.encoded, |k| &k.resid3);
            let k = &mut rest[0];
            let o = &l.blocks[i];
            let (ln_1_w, ln_1_b) = (&p[o.ln_1_w.clone()], opt(p, &o.ln_1_b));
            norm.forward(&mut k.ln1, &mut k.ln1_mean, &mut k.ln1_rstd, input, ln_1_w, ln_1_b, c);
            linear::forward(&mut k.qkv, &k.ln1, &p[o.attn_w.clone()], opt(p, &o.attn_b), (n, c, w), stored);
            if let Some(rope) = &acts.rope {
                rotate_queries_and_keys(rope, &mut k.qkv, shape, false);
            }
            let att_mask = if drop > 0.0 {
                dropout::fill_mask(&mut k.att_mask, drop, rng);
                Some(k.att_mask.as_slice())
            } else {
                None
            };
            let scratch = attention::Scratch { tt: &mut acts.tt, heads: &mut acts.heads };
            attention::forward(&mut k.atty, &mut k.att, &k.qkv, att_mask, scratch, shape);
            // The output projections' and c_fc's biases are added by the pass after each product.
            let (proj_w, proj_b) = (&p[o.attn_proj_w.clone()], opt(p, &o.attn_proj_b));
            linear::forward(&mut k.attproj, &k.atty, proj_w, None, (n, a, c), stored);
            let mask = (drop > 0.0).then(|| {
                dropout::fill_mask(&mut k.attproj_mask, drop, rng);
                k.attproj_mask.as_slice()
            });
            residual(&mut k.resid2, input, &mut k.attproj, proj_b, mask);
            let (ln_2_w, ln_2_b) = (&p[o.ln_2_w.clone()], opt(p, &o.ln_2_b));
            norm.forward(&mut k.ln2, &mut k.ln2_mean, &mut k.ln2_rstd, &k.resid2, ln_2_w, ln_2_b, c);
            linear::forward(&mut k.fch, &k.ln2, &p[o.fc_w.clone()], None, (n, c, m_in), stored);
            activation.forward_biased(&mut k.fch_gelu, &mut k.fch, opt(p, &o.fc_b));
            let (down_w, down_b) = (&p[o.fc_proj_w.clone()], opt(p, &o.fc_proj_b));
            linear::forward(&mut k.fcproj, &k.fch_gelu, down_w, None, (n, m, c), stored);
            let mask = (drop > 0.0).then(|| {
                dropout::fill_mask(&mut k.fcproj_mask, drop, rng);
                k.fcproj_mask.as_slice()
            });
            residual(&mut k.resid3, &k.resid2, &mut k.fcproj, down_b, mask);
        }
    }

    /// Each position's loss -log p(target) from the last forward with targets (0 where the
    /// target is ignored), (B, T).
    pub fn token_losses(&self) -> &[f32] {
        self.acts.as_ref().filter(|a| a.has_targets).map_or(&[], |a| &a.losses[..a.b * a.t])
    }

    /// Accumulates d(loss)/d(params) into `grads` for the last forward, which must have had
    /// targets. Call [`zero_grad`](Self::zero_grad) first, once per step.
    pub fn backward(&mut self) -> Result<()> {
        self.backward_from(None, &mut |_, _| {})
    }

    /// [`backward`](Self::backward) for the objective sum_i `weights[i]` * loss_i over the
    /// positions of the last forward (one weight per position).
    pub fn backward_weighted(&mut self, weights: &[f32]) -> Result<()> {
        self.backward_from(Some(weights), &mut |_, _| {})
    }

    /// [`backward`](Self::backward), or [`backward_weighted`](Self::backward_weighted) with
    /// `weights`, calling `ready(range, grads)` as each of the layout's
    /// [`backward_buckets`](super::params::Layout::backward_buckets) is finished, in that order:
    /// data-parallel training starts reducing a layer's gradients while the layers below it are
    /// still being worked on.
    pub fn backward_notify(&mut self, weights: Option<&[f32]>, ready: Ready) -> Result<()> {
        self.backward_from(weights, ready)
    }

    /// Dropout's masks for micro-batch `index` of the run (counted over every step): drawn from
    /// a stream of their own, so a micro-batch gets the same masks whichever process of a
    /// data-parallel run computes it, and a resumed run the same as an uninterrupted one.
    pub fn dropout_for(&mut self, index: u64) {
        self.dropout_rng = Rng::new(self.dropout_seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }

    fn backward_from(&mut self, weights: Option<&[f32]>, ready: Ready) -> Result<()> {
        let acts = match self.acts.as_mut() {
            Some(a) if a.has_targets => a,
            _ => {
                return Err(Error::Invalid("backward needs a forward pass with targets first".into()));
            }
        };
        acts.has_targets = false; // the logits buffer is about to become their gradient
        let cfg = &self.model.config;
        let (b, t) = (acts.b, acts.t);
        let (c, v, vp) = (cfg.n_embd, cfg.vocab_size, cfg.padded_vocab_size());
        let n = b * t;
        let p = &self.model.params;
        let g = &mut self.grads;
        let l = &self.model.layout;
        let dropout_on = !acts.encoded_mask.is_empty() && self.training && cfg.dropout > 0.0;

        match weights {
            Some(w) if w.len() == n => loss::backward_weighted(&mut acts.logits, &acts.targets, w, v, vp),
            Some(w) => {
                acts.has_targets = true;
                return Err(Error::Invalid(format!("{} weights for {n} positions", w.len())));
            }
            None => loss::backward(&mut acts.logits, &acts.targets, v, vp),
        }
        // LM head: logits = lnf . head^T (the head is wte when tied)
        let d_lnf = &mut acts.d_a;
        matmul(d_lnf, &acts.logits, Stored::Normal, &p[l.head().clone()], Stored::Normal, (n, vp, c), false);
        matmul(
            &mut g[l.head().clone()],
            &acts.logits,
            Stored::Transposed,
            &acts.lnf,
            Stored::Normal,
            (vp, n, c),
            true,
        );
        let last = acts.blocks.last().map_or(&acts.encoded, |k| &k.resid3);
        acts.d_resid.fill(0.0);
        cfg.norm().backward(
            &mut acts.d_resid,
            param_pair(g, &l.ln_f_w, &l.ln_f_b),
            d_lnf,
            last,
            &p[l.ln_f_w.clone()],
            &acts.lnf_mean,
            &acts.lnf_rstd,
            c,
        );

        let buckets = &self.buckets;
        ready(buckets[0].clone(), &g[buckets[0].clone()]);

        let parts = Parts { shape: cfg.attention_shape(b, t), config: cfg, rope: acts.rope.as_ref() };
        for i in (0..cfg.n_layer).rev() {
            let (done, rest) = acts.blocks.split_at(i);
            let input = done.last().map_or(&acts.encoded, |k| &k.resid3);
            let k = &rest[0];
            let o = &l.blocks[i];
            let d = Scratch {
                a: &mut acts.d_a,
                b: &mut acts.d_b,
                qkv: &mut acts.d_qkv,
                fch: &mut acts.d_fch,
                fch_gelu: &mut acts.d_fch_gelu,
                heads: &mut acts.heads,
                tt: &mut acts.tt,
            };
            block_backward(&mut acts.d_resid, d, k, input, p, g, o, &parts, dropout_on);
            let done = &buckets[cfg.n_layer - i];
            ready(done.clone(), &g[done.clone()]);
        }
        if dropout_on {
            dropout::apply(&mut acts.d_resid, &acts.encoded_mask);
        }
        let (dwte, rest) = g.split_at_mut(l.wpe.start);
        let dwpe = (!l.wpe.is_empty()).then(|| &mut rest[..l.wpe.len()]);
        embedding::backward(&mut dwte[l.wte.clone()], dwpe, &acts.d_resid, &acts.tokens, t, c);
        let done = &buckets[cfg.n_layer + 1];
        ready(done.clone(), &g[done.clone()]);
        Ok(())
    }
}

/// out = a + dropout(branch + bias): a residual connection, adding the bias of the product that
/// made `branch` (left in `branch`, as the layer's output); one pass without dropout.
fn residual(out: &mut [f32], a: &[f32], branch: &mut [f32], bias: Option<&[f32]>, mask: Option<&[f32]>) {
    match (bias, mask) {
        (Some(b), None) => add_biased(out, a, branch, b),
        (bias, mask) => {
            if let Some(b) = bias {
                add_bias(branch, b);
            }
            if let Some(m) = mask {
                dropout::apply(branch, m);
            }
            add(out, a, branch);
        }
    }
}

/// The gradient slices of a weight and its optional bias, which are adjacent in the layout.
fn param_pair<'a>(
    g: &'a mut [f32],
    w: &Range<usize>,
    b: &Option<Range<usize>>,
) -> (&'a mut [f32], Option<&'a mut [f32]>) {
    match b {
        Some(b) => {
            debug_assert_eq!(w.end, b.start);
            let (gw, gb) = g[w.start..b.end].split_at_mut(w.len());
            (gw, Some(gb))
        }
        None => (&mut g[w.clone()], None),
    }
}

struct Scratch<'a> {
    a: &'a mut [f32],
    b: &'a mut [f32],
    qkv: &'a mut [f32],
    fch: &'a mut [f32],
    fch_gelu: &'a mut [f32],
    heads: &'a mut [f32],
    tt: &'a mut [f32],
}

/// The gradient reaching a residual branch's output: `d_resid` itself, or (with dropout) a copy
/// in `scratch` with the dropped positions zeroed.
fn through_dropout<'a>(d_resid: &'a [f32], scratch: &'a mut [f32], mask: &[f32], on: bool) -> &'a [f32] {
    if !on {
        return d_resid;
    }
    scratch.copy_from_slice(d_resid);
    dropout::apply(scratch, mask);
    scratch
}

/// What a block's backward needs to know about the model beside its tensors.
struct Parts<'a> {
    shape: Shape,
    config: &'a ModelConfig,
    rope: Option<&'a Rope>,
}

/// Turns the queries and keys of qkv (B, T, W) to their positions (backward: back again).
fn rotate_queries_and_keys(rope: &Rope, qkv: &mut [f32], s: Shape, inverse: bool) {
    let t = s.t;
    rope.rotate_rows(qkv, (s.qkv_width(), (s.nh + s.nkv) * s.hs), |r| r % t, inverse);
}

/// One block in reverse. `d_resid` holds d(loss)/d(block output) and leaves holding
/// d(loss)/d(block input): the residual connections pass it through, the branches add to it.
/// Input gradients of the layers are written, not accumulated, so no scratch is zeroed.
#[allow(clippy::too_many_arguments)]
fn block_backward(
    d_resid: &mut [f32],
    d: Scratch,
    k: &BlockActs,
    input: &[f32],
    p: &[f32],
    g: &mut [f32],
    o: &BlockOffsets,
    parts: &Parts,
    dropout_on: bool,
) {
    let (s, cfg) = (parts.shape, parts.config);
    let (n, c) = (s.b * s.t, cfg.n_embd);
    let (w, a, m_in, m) = (cfg.qkv_width(), cfg.attn_width(), cfg.mlp_in_width(), cfg.mlp_width());
    let (norm, activation, stored) = (cfg.norm(), cfg.activation(), cfg.matrices_stored());
    // resid3 = resid2 + dropout(fcproj): the MLP branch gets d_resid through the mask.
    let d_fcproj = through_dropout(d_resid, d.a, &k.fcproj_mask, dropout_on);
    let gp = param_pair(g, &o.fc_proj_w, &o.fc_proj_b);
    let w_down = &p[o.fc_proj_w.clone()];
    linear::backward(d.fch_gelu, gp.0, gp.1, d_fcproj, &k.fch_gelu, w_down, (n, m, c), stored);
    activation.backward(d.fch, &k.fch, d.fch_gelu);
    let gp = param_pair(g, &o.fc_w, &o.fc_b);
    linear::backward(&mut d.b[..n * c], gp.0, gp.1, d.fch, &k.ln2, &p[o.fc_w.clone()], (n, c, m_in), stored);
    let w_ln = &p[o.ln_2_w.clone()];
    let gp = param_pair(g, &o.ln_2_w, &o.ln_2_b);
    norm.backward(d_resid, gp, &d.b[..n * c], &k.resid2, w_ln, &k.ln2_mean, &k.ln2_rstd, c);

    // resid2 = input + dropout(attproj): the attention branch.
    let d_attproj = through_dropout(d_resid, d.a, &k.attproj_mask, dropout_on);
    let gp = param_pair(g, &o.attn_proj_w, &o.attn_proj_b);
    let w_o = &p[o.attn_proj_w.clone()];
    linear::backward(&mut d.b[..n * a], gp.0, gp.1, d_attproj, &k.atty, w_o, (n, a, c), stored);
    let mask = dropout_on.then_some(k.att_mask.as_slice());
    let scratch = attention::Scratch { tt: d.tt, heads: d.heads };
    attention::backward(d.qkv, &d.b[..n * a], &k.qkv, &k.att, mask, scratch, s);
    if let Some(rope) = parts.rope {
        rotate_queries_and_keys(rope, d.qkv, s, true);
    }
    let gp = param_pair(g, &o.attn_w, &o.attn_b);
    linear::backward(d.a, gp.0, gp.1, d.qkv, &k.ln1, &p[o.attn_w.clone()], (n, c, w), stored);
    let gp = param_pair(g, &o.ln_1_w, &o.ln_1_b);
    let w_ln = &p[o.ln_1_w.clone()];
    norm.backward(d_resid, gp, d.a, input, w_ln, &k.ln1_mean, &k.ln1_rstd, c);
}
