//! All parameters in one contiguous f32 buffer, with named views using HF's names.
//!
//! Gradients and the optimizer's moments use the same layout, so zeroing, clipping, the AdamW
//! update, saving and loading are each one loop over a slice. Matrices are stored as the HF
//! checkpoint stores them, so they load without a transpose: GPT-2's Conv1D weights (in, out),
//! the LLaMA family's nn.Linear weights (out, in). The embedding (and an untied LM head) has
//! `padded_vocab_size` rows; the padding rows stay zero and are not saved.
//!
//! A LLaMA block's q, k and v projections are three tensors side by side in the buffer, so
//! together they are one (q + 2 kv, C) matrix and one product computes all three; the same for
//! gate and up. GPT-2's c_attn is fused in the checkpoint already.

use super::config::{Arch, LlamaShape, ModelConfig};
use crate::error::Result;
use crate::rng::Rng;
use std::ops::Range;

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// HF GPT-2 name without the `transformer.` prefix, e.g. `h.0.attn.c_attn.weight`.
    pub name: String,
    /// Shape in the buffer (for `wte`, with the padded vocabulary).
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl TensorInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }

    /// The shape files store: the buffer's, with a vocabulary-row tensor's padding rows left
    /// out (see [`has_vocabulary_rows`]).
    pub fn saved_shape(&self, config: &ModelConfig) -> Vec<usize> {
        let mut shape = self.shape.clone();
        if has_vocabulary_rows(&self.name) {
            shape[0] = config.vocab_size;
        }
        shape
    }
}

/// Offsets of one transformer block's tensors; `None` when the model has no such bias. Named
/// after GPT-2's tensors; for the LLaMA family: `ln_1` is input_layernorm, `attn` q|k|v_proj,
/// `attn_proj` o_proj, `ln_2` post_attention_layernorm, `fc` gate|up_proj, `fc_proj` down_proj.
#[derive(Clone, Debug)]
pub struct BlockOffsets {
    pub ln_1_w: Range<usize>,
    pub ln_1_b: Option<Range<usize>>,
    pub attn_w: Range<usize>,
    pub attn_b: Option<Range<usize>>,
    pub attn_proj_w: Range<usize>,
    pub attn_proj_b: Option<Range<usize>>,
    pub ln_2_w: Range<usize>,
    pub ln_2_b: Option<Range<usize>>,
    pub fc_w: Range<usize>,
    pub fc_b: Option<Range<usize>>,
    pub fc_proj_w: Range<usize>,
    pub fc_proj_b: Option<Range<usize>>,
}

/// Where every tensor lives in the flat buffer.
#[derive(Clone, Debug)]
pub struct Layout {
    pub tensors: Vec<TensorInfo>,
    pub wte: Range<usize>,
    /// Learned positions (GPT-2); empty for rotary models.
    pub wpe: Range<usize>,
    pub blocks: Vec<BlockOffsets>,
    pub ln_f_w: Range<usize>,
    pub ln_f_b: Option<Range<usize>>,
    /// An untied output layer (Vp, C); `None` when the head is the embedding.
    pub lm_head: Option<Range<usize>>,
    pub total: usize,
}

impl Layout {
    pub fn new(config: &ModelConfig) -> Layout {
        Layout::without(config, |_| false)
    }

    /// The layout of the tensors `elsewhere` does not claim: a model whose matrices are kept as
    /// blocks has no f32 copy of them, and their ranges here are empty.
    pub fn without(config: &ModelConfig, elsewhere: impl Fn(&str) -> bool) -> Layout {
        let mut tensors = Vec::new();
        let add = |name: String, shape: Vec<usize>| -> Range<usize> {
            let offset = tensors.last().map_or(0, |t: &TensorInfo| t.offset + t.len());
            if elsewhere(&name) {
                return offset..offset;
            }
            let info = TensorInfo { name, shape, offset };
            let r = info.range();
            tensors.push(info);
            r
        };
        let mut layout = match &config.arch {
            Arch::Gpt2 => Layout::gpt2(config, add),
            Arch::Llama(l) => Layout::llama(config, l, add),
        };
        layout.tensors = tensors;
        layout.total = layout.tensors.last().map_or(0, |t| t.offset + t.len());
        layout
    }

    fn gpt2(config: &ModelConfig, mut add: impl FnMut(String, Vec<usize>) -> Range<usize>) -> Layout {
        let c = config.n_embd;
        let wte = add("wte.weight".into(), vec![config.padded_vocab_size(), c]);
        let wpe = add("wpe.weight".into(), vec![config.block_size, c]);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = |s: &str| format!("h.{i}.{s}");
            let mut pair = |name: &str, w_shape: Vec<usize>, b_len: usize| {
                let w = add(p(&format!("{name}.weight")), w_shape);
                let b = config.bias.then(|| add(p(&format!("{name}.bias")), vec![b_len]));
                (w, b)
            };
            let (ln_1_w, ln_1_b) = pair("ln_1", vec![c], c);
            let (attn_w, attn_b) = pair("attn.c_attn", vec![c, 3 * c], 3 * c);
            let (attn_proj_w, attn_proj_b) = pair("attn.c_proj", vec![c, c], c);
            let (ln_2_w, ln_2_b) = pair("ln_2", vec![c], c);
            let (fc_w, fc_b) = pair("mlp.c_fc", vec![c, 4 * c], 4 * c);
            let (fc_proj_w, fc_proj_b) = pair("mlp.c_proj", vec![4 * c, c], c);
            blocks.push(BlockOffsets {
                ln_1_w,
                ln_1_b,
                attn_w,
                attn_b,
                attn_proj_w,
                attn_proj_b,
                ln_2_w,
                ln_2_b,
                fc_w,
                fc_b,
                fc_proj_w,
                fc_proj_b,
            });
        }
        let ln_f_w = add("ln_f.weight".into(), vec![c]);
        let ln_f_b = config.bias.then(|| add("ln_f.bias".into(), vec![c]));
        Layout { tensors: Vec::new(), wte, wpe, blocks, ln_f_w, ln_f_b, lm_head: None, total: 0 }
    }

    /// HF's `LlamaForCausalLM` names (Mistral and Qwen2 use the same).
    fn llama(
        config: &ModelConfig,
        l: &LlamaShape,
        mut add: impl FnMut(String, Vec<usize>) -> Range<usize>,
    ) -> Layout {
        let c = config.n_embd;
        let (q, kv) = (config.n_head * l.head_dim, l.n_kv_head * l.head_dim);
        let wte = add("model.embed_tokens.weight".into(), vec![config.padded_vocab_size(), c]);
        let wpe = wte.end..wte.end;
        let join = |a: Range<usize>, b: Range<usize>| a.start..b.end;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            let ln_1_w = add(p("input_layernorm.weight"), vec![c]);
            let attn_w = join(
                add(p("self_attn.q_proj.weight"), vec![q, c]),
                join(
                    add(p("self_attn.k_proj.weight"), vec![kv, c]),
                    add(p("self_attn.v_proj.weight"), vec![kv, c]),
                ),
            );
            let attn_b = l.qkv_bias.then(|| {
                let q_b = add(p("self_attn.q_proj.bias"), vec![q]);
                join(
                    q_b,
                    join(
                        add(p("self_attn.k_proj.bias"), vec![kv]),
                        add(p("self_attn.v_proj.bias"), vec![kv]),
                    ),
                )
            });
            let attn_proj_w = add(p("self_attn.o_proj.weight"), vec![c, q]);
            let ln_2_w = add(p("post_attention_layernorm.weight"), vec![c]);
            let fc_w = join(
                add(p("mlp.gate_proj.weight"), vec![l.intermediate, c]),
                add(p("mlp.up_proj.weight"), vec![l.intermediate, c]),
            );
            let fc_proj_w = add(p("mlp.down_proj.weight"), vec![c, l.intermediate]);
            blocks.push(BlockOffsets {
                ln_1_w,
                ln_1_b: None,
                attn_w,
                attn_b,
                attn_proj_w,
                attn_proj_b: None,
                ln_2_w,
                ln_2_b: None,
                fc_w,
                fc_b: None,
                fc_proj_w,
                fc_proj_b: None,
            });
        }
        let ln_f_w = add("model.norm.weight".into(), vec![c]);
        let lm_head =
            (!l.tied_head).then(|| add("lm_head.weight".into(), vec![config.padded_vocab_size(), c]));
        Layout { tensors: Vec::new(), wte, wpe, blocks, ln_f_w, ln_f_b: None, lm_head, total: 0 }
    }

    /// The output layer's rows (Vp, C): an untied head, or the embedding.
    pub fn head(&self) -> &Range<usize> {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// The parameter ranges whose gradients backward finishes, in the order it finishes them:
    /// everything after the blocks (final norm, untied head), each block from the last to the
    /// first, then the embeddings (a tied head's gradient is complete only after the embedding's
    /// backward adds to it). Contiguous, covering `0..total`: data-parallel training reduces each
    /// one while backward works on the next.
    pub fn backward_buckets(&self) -> Vec<Range<usize>> {
        let starts: Vec<usize> = self.blocks.iter().map(|b| b.ln_1_w.start).collect();
        let blocks_end = self.ln_f_w.start;
        let mut buckets = Vec::with_capacity(self.blocks.len() + 2);
        buckets.push(blocks_end..self.total);
        for (i, &start) in starts.iter().enumerate().rev() {
            buckets.push(start..starts.get(i + 1).copied().unwrap_or(blocks_end));
        }
        buckets.push(0..starts.first().copied().unwrap_or(blocks_end));
        buckets
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Whether weight decay applies: matrices of the blocks, not biases, norms, embeddings or head.
pub fn is_decayed(name: &str) -> bool {
    let in_block = name.starts_with("h.") || name.starts_with("model.layers.");
    in_block && name.ends_with(".weight") && !is_norm(name)
}

fn is_norm(name: &str) -> bool {
    name.contains("ln_") || name.ends_with("norm.weight")
}

/// Whether the tensor has a row per vocabulary id (the embedding, an untied head): the buffer
/// pads it to `padded_vocab_size` rows, a checkpoint holds `vocab_size`.
pub fn has_vocabulary_rows(name: &str) -> bool {
    matches!(name, "wte.weight" | "model.embed_tokens.weight" | "lm_head.weight")
}

/// GPT-2's initialisation, for both families: weights normal(0, 0.02), the two residual
/// projections of each block (c_proj; o_proj and down_proj) scaled by 1/sqrt(2 * n_layer) so
/// the residual stream does not grow with depth, biases zero, norm weights one. Padding rows of
/// the embedding and head stay zero. (HF initialises Llama without the residual scaling; with
/// it, deep models trained from scratch here start better, as GPT-2's paper found.)
pub fn init(config: &ModelConfig, layout: &Layout, seed: u64) -> Result<Vec<f32>> {
    let mut params = crate::memory::zeroed(layout.total, "the parameters")?;
    let mut rng = Rng::new(seed);
    let residual_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
    for t in &layout.tensors {
        let slice = &mut params[t.range()];
        if t.name.ends_with(".bias") {
            continue;
        }
        if is_norm(&t.name) {
            slice.fill(1.0);
            continue;
        }
        let residual = ["c_proj.weight", "o_proj.weight", "down_proj.weight"];
        let std = if residual.iter().any(|r| t.name.ends_with(r)) { residual_std } else { 0.02 };
        let n = if has_vocabulary_rows(&t.name) { config.vocab_size * config.n_embd } else { slice.len() };
        for x in &mut slice[..n] {
            *x = (rng.normal() * std) as f32;
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_the_buffer_with_hf_names() {
        let config = ModelConfig::preset("gpt2").unwrap();
        let layout = Layout::new(&config);
        let padding = (config.padded_vocab_size() - config.vocab_size) * config.n_embd;
        assert_eq!(layout.total, config.num_params() + padding);
        assert_eq!(layout.get("h.11.mlp.c_proj.weight").unwrap().shape, [3072, 768]);
        assert_eq!(layout.tensors.len(), 2 + 12 * 12 + 2);
        assert!(is_decayed("h.3.attn.c_attn.weight") && !is_decayed("h.3.ln_1.weight"));
        assert!(!is_decayed("wte.weight") && !is_decayed("h.0.mlp.c_fc.bias"));
    }

    #[test]
    fn llama_layout_has_hf_names_and_fuses_q_k_v_and_gate_up() {
        let config = ModelConfig::preset("tinyllama-1.1b").unwrap();
        let layout = Layout::new(&config);
        let padding = 2 * (config.padded_vocab_size() - config.vocab_size) * config.n_embd;
        assert_eq!(layout.total, config.num_params() + padding);
        assert_eq!(layout.get("model.layers.3.self_attn.k_proj.weight").unwrap().shape, [256, 2048]);
        assert_eq!(layout.get("model.layers.3.mlp.down_proj.weight").unwrap().shape, [2048, 5632]);
        let b = &layout.blocks[3];
        assert_eq!(b.attn_w.len(), (2048 + 2 * 256) * 2048);
        assert_eq!(b.fc_w.len(), 2 * 5632 * 2048);
        assert!(layout.wpe.is_empty() && layout.lm_head.is_some() && layout.head() != &layout.wte);
        assert!(is_decayed("model.layers.0.mlp.up_proj.weight"));
        assert!(!is_decayed("model.layers.0.input_layernorm.weight") && !is_decayed("lm_head.weight"));
        let qwen = ModelConfig::preset("qwen2.5-0.5b").unwrap();
        let layout = Layout::new(&qwen);
        let o = &layout.blocks[0];
        assert_eq!(o.attn_w.end, o.attn_b.as_ref().unwrap().start, "q|k|v weights, then their biases");
        assert_eq!(layout.head(), &layout.wte);
    }

    #[test]
    fn init_has_gpt2_statistics() {
        let config = ModelConfig::preset("d2").unwrap();
        let layout = Layout::new(&config);
        let p = init(&config, &layout, 1).unwrap();
        let std = |r: Range<usize>| {
            let s = &p[r];
            (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        assert!((std(layout.blocks[0].fc_w.clone()) - 0.02).abs() < 0.001);
        assert!((std(layout.blocks[0].fc_proj_w.clone()) - 0.01).abs() < 0.001);
        assert!(p[layout.blocks[1].ln_2_w.clone()].iter().all(|&x| x == 1.0));
        assert_eq!(init(&config, &layout, 1).unwrap(), p);
    }
}
