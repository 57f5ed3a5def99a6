//! The shape of a GPT: presets, the depth dial, and the arithmetic of parameters, memory and
//! FLOPs that `minillm model info` prints.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Context length: the most positions the model can attend over.
    pub block_size: usize,
    /// Real vocabulary size; softmax, loss and sampling only ever see these ids.
    pub vocab_size: usize,
    /// Dropout probability for embeddings, attention weights and residual branches (training only).
    pub dropout: f32,
    /// Biases in linear layers and LayerNorms (GPT-2 has them).
    pub bias: bool,
}

/// Names accepted by [`ModelConfig::preset`], with a one-line description.
pub const PRESETS: &[(&str, &str)] = &[
    ("gpt2", "GPT-2 small: 12 layers, 12 heads, 768 wide, context 1024"),
    ("gpt2-medium", "GPT-2 medium: 24 layers, 16 heads, 1024 wide"),
    ("gpt2-large", "GPT-2 large: 36 layers, 20 heads, 1280 wide"),
    ("gpt2-xl", "GPT-2 XL: 48 layers, 25 heads, 1600 wide"),
    ("baby", "nanoGPT's CPU shakespeare_char model: 4 layers, 4 heads, 128 wide, context 64, 65 chars"),
    ("dN", "the depth dial, e.g. d6: N layers, N heads of 64, 64N wide, context 256"),
];

impl ModelConfig {
    fn gpt2_shape(n_layer: usize, n_head: usize, n_embd: usize) -> ModelConfig {
        ModelConfig { n_layer, n_head, n_embd, block_size: 1024, vocab_size: 50257, dropout: 0.0, bias: true }
    }

    /// One dial, as in nanochat: depth `d` gives d layers and d heads of width 64.
    pub fn depth(d: usize, vocab_size: usize) -> ModelConfig {
        let d = d.max(1);
        ModelConfig {
            n_layer: d,
            n_head: d,
            n_embd: 64 * d,
            block_size: 256,
            vocab_size,
            dropout: 0.0,
            bias: true,
        }
    }

    pub fn preset(name: &str) -> Result<ModelConfig> {
        let config = match name {
            "gpt2" => Self::gpt2_shape(12, 12, 768),
            "gpt2-medium" => Self::gpt2_shape(24, 16, 1024),
            "gpt2-large" => Self::gpt2_shape(36, 20, 1280),
            "gpt2-xl" => Self::gpt2_shape(48, 25, 1600),
            "baby" => ModelConfig {
                n_layer: 4,
                n_head: 4,
                n_embd: 128,
                block_size: 64,
                vocab_size: 65,
                dropout: 0.0,
                bias: true,
            },
            d if d.starts_with('d') && d[1..].parse::<usize>().is_ok_and(|n| (1..=64).contains(&n)) => {
                Self::depth(d[1..].parse().expect("checked"), 50257)
            }
            _ => {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                return Err(Error::Invalid(format!(
                    "unknown preset '{name}': choose one of {}",
                    names.join(", ")
                )));
            }
        };
        Ok(config)
    }

    /// Checks the shape is usable, saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.n_layer == 0
            || self.n_head == 0
            || self.n_embd == 0
            || self.block_size == 0
            || self.vocab_size == 0
        {
            return bad(format!("every size must be at least 1: {self:?}"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_embd {} is not divisible by n_head {}", self.n_embd, self.n_head));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// The vocabulary rounded up to a multiple of 64, so the LM head's matrix product runs on
    /// whole SIMD tiles (50257 -> 50304). The extra rows are never seen by softmax or loss.
    pub fn padded_vocab_size(&self) -> usize {
        self.vocab_size.div_ceil(64) * 64
    }

    /// Exact number of parameters (the LM head is tied to the token embedding, and padding rows
    /// are not counted).
    pub fn num_params(&self) -> usize {
        let c = self.n_embd;
        let b = usize::from(self.bias);
        let per_layer = 2 * (c + b * c) // two LayerNorms
            + c * 3 * c + b * 3 * c      // attention: fused q, k, v
            + c * c + b * c              // attention: output projection
            + c * 4 * c + b * 4 * c      // MLP: up
            + 4 * c * c + b * c; // MLP: down
        self.vocab_size * c + self.block_size * c + self.n_layer * per_layer + c + b * c
    }

    /// Parameters that take part in matrix products per token (all but position embeddings,
    /// LayerNorms and biases): the `N` of the 6N FLOPs-per-token rule.
    pub fn matmul_params(&self) -> usize {
        let c = self.n_embd;
        self.n_layer * 12 * c * c + self.vocab_size * c
    }

    /// Forward FLOPs for one token at context `t`: 2 per multiply-add in the matrix products,
    /// plus attention's scores and weighted sum over `t` positions (PaLM, appendix B).
    pub fn forward_flops_per_token(&self, t: usize) -> u64 {
        (2 * self.matmul_params() + 4 * self.n_layer * t * self.n_embd) as u64
    }

    /// Training FLOPs for one token: the forward pass and a backward pass of twice its cost.
    pub fn train_flops_per_token(&self, t: usize) -> u64 {
        3 * self.forward_flops_per_token(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_presets_have_the_published_parameter_counts() {
        for (name, published) in [
            ("gpt2", 124_439_808),
            ("gpt2-medium", 354_823_168),
            ("gpt2-large", 774_030_080),
            ("gpt2-xl", 1_557_611_200),
        ] {
            assert_eq!(ModelConfig::preset(name).unwrap().num_params(), published, "{name}");
        }
        assert_eq!(ModelConfig::preset("gpt2").unwrap().padded_vocab_size(), 50304);
    }

    #[test]
    fn bad_shapes_and_names_are_explained() {
        assert!(ModelConfig::preset("gpt3").unwrap_err().to_string().contains("gpt2-medium"));
        let mut c = ModelConfig::preset("baby").unwrap();
        c.n_head = 3;
        assert!(c.validate().unwrap_err().to_string().contains("divisible"));
        assert_eq!(ModelConfig::preset("d6").unwrap().n_embd, 384);
    }
}
