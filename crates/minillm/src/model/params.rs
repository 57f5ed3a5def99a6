//! All parameters in one contiguous f32 buffer, with named views using HF GPT-2's names.
//!
//! Gradients and the optimizer's moments use the same layout, so zeroing, clipping, the AdamW
//! update, saving and loading are each one loop over a slice. Matrices are stored as HF stores
//! GPT-2's Conv1D weights, (in, out), so `y = x . W + b` is a plain row-major product and
//! checkpoints load without a transpose. `wte` has `padded_vocab_size` rows; the padding rows stay
//! zero and are not saved.

use super::config::ModelConfig;
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
}

/// Offsets of one transformer block's tensors; `None` when the model has no biases.
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
    pub wpe: Range<usize>,
    pub blocks: Vec<BlockOffsets>,
    pub ln_f_w: Range<usize>,
    pub ln_f_b: Option<Range<usize>>,
    pub total: usize,
}

impl Layout {
    pub fn new(config: &ModelConfig) -> Layout {
        Layout::without(config, |_| false)
    }

    /// The layout of the tensors `elsewhere` does not claim: a model whose matrices are kept as
    /// blocks has no f32 copy of them, and their ranges here are empty.
    pub fn without(config: &ModelConfig, elsewhere: impl Fn(&str) -> bool) -> Layout {
        let c = config.n_embd;
        let mut tensors = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| -> Range<usize> {
            let offset = tensors.last().map_or(0, |t: &TensorInfo| t.offset + t.len());
            if elsewhere(&name) {
                return offset..offset;
            }
            let info = TensorInfo { name, shape, offset };
            let r = info.range();
            tensors.push(info);
            r
        };
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
        let total = tensors.last().map_or(0, |t| t.offset + t.len());
        Layout { tensors, wte, wpe, blocks, ln_f_w, ln_f_b, total }
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Whether weight decay applies: matrices of the blocks, not biases, LayerNorms or embeddings.
pub fn is_decayed(name: &str) -> bool {
    name.starts_with("h.") && name.ends_with(".weight") && !name.contains(".ln_")
}

/// GPT-2's initialisation: weights normal(0, 0.02), the two residual projections of each block
/// scaled by 1/sqrt(2 * n_layer) so the residual stream does not grow with depth, biases zero,
/// LayerNorm weights one. Padding rows of `wte` stay zero.
pub fn init(config: &ModelConfig, layout: &Layout, seed: u64) -> Vec<f32> {
    let mut params = vec![0.0f32; layout.total];
    let mut rng = Rng::new(seed);
    let residual_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
    for t in &layout.tensors {
        let slice = &mut params[t.range()];
        if t.name.ends_with(".bias") {
            continue;
        }
        if t.name.contains("ln_") {
            slice.fill(1.0);
            continue;
        }
        let std = if t.name.ends_with("c_proj.weight") { residual_std } else { 0.02 };
        let n = if t.name == "wte.weight" { config.vocab_size * config.n_embd } else { slice.len() };
        for x in &mut slice[..n] {
            *x = (rng.normal() * std) as f32;
        }
    }
    params
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
    fn init_has_gpt2_statistics() {
        let config = ModelConfig::preset("d2").unwrap();
        let layout = Layout::new(&config);
        let p = init(&config, &layout, 1);
        let std = |r: Range<usize>| {
            let s = &p[r];
            (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        assert!((std(layout.blocks[0].fc_w.clone()) - 0.02).abs() < 0.001);
        assert!((std(layout.blocks[0].fc_proj_w.clone()) - 0.01).abs() < 0.001);
        assert!(p[layout.blocks[1].ln_2_w.clone()].iter().all(|&x| x == 1.0));
        assert_eq!(init(&config, &layout, 1), p);
    }
}
