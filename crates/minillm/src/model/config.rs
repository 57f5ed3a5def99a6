//! The shape of a model: GPT-2's, or the LLaMA family's (Llama, Mistral, Qwen2); presets, the
//! depth dial, and the arithmetic of parameters, memory and FLOPs that `minillm model info`
//! prints.

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
    /// GPT-2, or a LLaMA-family shape with what it adds.
    #[serde(default)]
    pub arch: Arch,
}

/// The architecture family.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Arch {
    /// LayerNorm, learned positions, GELU MLP 4x wide, tied head.
    #[default]
    Gpt2,
    /// RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention.
    Llama(LlamaShape),
}

/// What a LLaMA-family model has beyond GPT-2's sizes (`n_head` counts query heads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaShape {
    /// The HF model type it is read from and written as.
    pub family: Family,
    /// Key/value heads: fewer than `n_head` is grouped-query attention (`n_head` a multiple).
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// The SwiGLU MLP's width (gate and up project to it, down from it).
    pub intermediate: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub norm_eps: f64,
    /// Biases on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    /// The output layer is the token embedding (else a separate `lm_head`).
    pub tied_head: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
}

impl Family {
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
        }
    }
}

/// How rotary frequencies are stretched for contexts longer than the model was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_context: usize },
}

/// Names accepted by [`ModelConfig::preset`], with a one-line description.
pub const PRESETS: &[(&str, &str)] = &[
    ("gpt2", "GPT-2 small: 12 layers, 12 heads, 768 wide, context 1024"),
    ("gpt2-medium", "GPT-2 medium: 24 layers, 16 heads, 1024 wide"),
    ("gpt2-large", "GPT-2 large: 36 layers, 20 heads, 1280 wide"),
    ("gpt2-xl", "GPT-2 XL: 48 layers, 25 heads, 1600 wide"),
    ("baby", "nanoGPT's CPU shakespeare_char model: 4 layers, 4 heads, 128 wide, context 64, 65 chars"),
    ("dN", "the depth dial, e.g. d6: N layers, N heads of 64, 64N wide, context 256"),
    (
        "llama-dN",
        "the depth dial, LLaMA-shaped: N layers, 2N heads of 32 sharing N KV heads, 64N wide, context 256",
    ),
    ("smollm2-135m", "SmolLM2-135M: Llama, 30 layers, 9 heads (3 KV), 576 wide, context 8192"),
    ("smollm2-360m", "SmolLM2-360M: Llama, 32 layers, 15 heads (5 KV), 960 wide, context 8192"),
    ("qwen2.5-0.5b", "Qwen2.5-0.5B: Qwen2, 24 layers, 14 heads (2 KV), 896 wide, context 32768"),
    ("tinyllama-1.1b", "TinyLlama-1.1B: Llama, 22 layers, 32 heads (4 KV), 2048 wide, context 2048"),
    ("llama-3.2-1b", "Llama-3.2-1B: 16 layers, 32 heads (8 KV), 2048 wide, context 131072"),
    ("llama-2-7b", "Llama-2-7B: 32 layers, 32 heads, 4096 wide, context 4096"),
    ("mistral-7b", "Mistral-7B v0.3: 32 layers, 32 heads (8 KV), 4096 wide, context 32768"),
    ("llama-2-70b", "Llama-2-70B: 80 layers, 64 heads (8 KV), 8192 wide, context 4096"),
];

/// The largest shape minillm accepts from a file or a flag, per size: far above any published
/// model's (Llama 3.1 405B has 126 layers, width 16384, vocabulary 128256, context 131072), low
/// enough that a corrupt or hostile config.json is refused before it is allocated.
pub struct Limits {
    pub layers: usize,
    pub heads: usize,
    pub width: usize,
    pub mlp_width: usize,
    pub context: usize,
    pub vocabulary: usize,
    pub parameters: usize,
}

pub const LIMITS: Limits = Limits {
    layers: 1024,
    heads: 1024,
    width: 1 << 16,
    mlp_width: 1 << 20,
    context: 1 << 22,
    vocabulary: 1 << 24,
    parameters: 1 << 40,
};

impl ModelConfig {
    fn gpt2_shape(n_layer: usize, n_head: usize, n_embd: usize) -> ModelConfig {
        ModelConfig {
            n_layer,
            n_head,
            n_embd,
            block_size: 1024,
            vocab_size: 50257,
            dropout: 0.0,
            bias: true,
            arch: Arch::Gpt2,
        }
    }

    /// A LLaMA-family shape: (layers, heads, KV heads, width, MLP width, context, vocabulary).
    fn llama_shape(
        family: Family,
        (n_layer, n_head, n_kv_head, n_embd, intermediate, block_size, vocab_size): (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
        ),
        rope_theta: f64,
        tied_head: bool,
    ) -> ModelConfig {
        ModelConfig {
            n_layer,
            n_head,
            n_embd,
            block_size,
            vocab_size,
            dropout: 0.0,
            bias: false,
            arch: Arch::Llama(LlamaShape {
                family,
                n_kv_head,
                head_dim: n_embd / n_head,
                intermediate,
                rope_theta,
                rope_scaling: None,
                norm_eps: if family == Family::Qwen2 { 1e-6 } else { 1e-5 },
                qkv_bias: family == Family::Qwen2,
                tied_head,
            }),
        }
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
            arch: Arch::Gpt2,
        }
    }

    /// The depth dial for the LLaMA family: d layers, 64d wide like GPT-2's dial, in 2d heads of
    /// 32 that share d key/value heads (grouped-query attention, two query heads per KV head), a
    /// SwiGLU MLP 8/3 as wide (rounded up to 64, so it has GPT-2's MLP parameters), a tied head,
    /// rotary positions with theta 10000, context 256.
    pub fn llama_depth(d: usize, vocab_size: usize) -> ModelConfig {
        let d = d.max(1);
        let c = 64 * d;
        let shape = (d, 2 * d, d, c, (8 * c / 3).div_ceil(64) * 64, 256, vocab_size);
        Self::llama_shape(Family::Llama, shape, 1e4, true)
    }

    pub fn preset(name: &str) -> Result<ModelConfig> {
        let dial = |s: &str| s.parse::<usize>().ok().filter(|n| (1..=64).contains(n));
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
                arch: Arch::Gpt2,
            },
            "smollm2-135m" => Self::llama_shape(Family::Llama, (30, 9, 3, 576, 1536, 8192, 49152), 1e5, true),
            "smollm2-360m" => {
                Self::llama_shape(Family::Llama, (32, 15, 5, 960, 2560, 8192, 49152), 1e5, true)
            }
            "qwen2.5-0.5b" => {
                Self::llama_shape(Family::Qwen2, (24, 14, 2, 896, 4864, 32768, 151936), 1e6, true)
            }
            "tinyllama-1.1b" => {
                Self::llama_shape(Family::Llama, (22, 32, 4, 2048, 5632, 2048, 32000), 1e4, false)
            }
            "llama-3.2-1b" => {
                let mut c =
                    Self::llama_shape(Family::Llama, (16, 32, 8, 2048, 8192, 131072, 128256), 5e5, true);
                if let Arch::Llama(l) = &mut c.arch {
                    l.rope_scaling = Some(RopeScaling::Llama3 {
                        factor: 32.0,
                        low_freq_factor: 1.0,
                        high_freq_factor: 4.0,
                        original_context: 8192,
                    });
                }
                c
            }
            "llama-2-7b" => {
                Self::llama_shape(Family::Llama, (32, 32, 32, 4096, 11008, 4096, 32000), 1e4, false)
            }
            "mistral-7b" => {
                Self::llama_shape(Family::Mistral, (32, 32, 8, 4096, 14336, 32768, 32768), 1e6, false)
            }
            "llama-2-70b" => {
                Self::llama_shape(Family::Llama, (80, 64, 8, 8192, 28672, 4096, 32000), 1e4, false)
            }
            d if d.strip_prefix('d').and_then(dial).is_some() => {
                Self::depth(dial(&d[1..]).expect("checked"), 50257)
            }
            d if d.strip_prefix("llama-d").and_then(dial).is_some() => {
                Self::llama_depth(dial(&d[7..]).expect("checked"), 50257)
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

    /// Checks the shape is usable and within [`LIMITS`], saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        // Checked before anything is allocated: a size read from a file must not make minillm
        // ask for terabytes. The limits are far above any published model's.
        let mut sizes = vec![
            ("n_layer (layers)", self.n_layer, LIMITS.layers),
            ("n_head (attention heads)", self.n_head, LIMITS.heads),
            ("n_embd (width)", self.n_embd, LIMITS.width),
            ("block_size (context)", self.block_size, LIMITS.context),
            ("vocab_size (vocabulary)", self.vocab_size, LIMITS.vocabulary),
        ];
        if let Arch::Llama(l) = &self.arch {
            sizes.push(("num_key_value_heads", l.n_kv_head, LIMITS.heads));
            sizes.push(("head_dim", l.head_dim, LIMITS.width));
            sizes.push(("intermediate_size (MLP width)", l.intermediate, LIMITS.mlp_width));
        }
        for (name, value, limit) in sizes {
            if value == 0 || value > limit {
                return bad(format!("{name} is {value}; it must be at least 1 and at most {limit}"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_embd {} is not divisible by n_head {}", self.n_embd, self.n_head));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.num_params() > LIMITS.parameters {
            return bad(format!(
                "the shape has {} parameters; minillm takes at most {} (4 bytes each in training)",
                self.num_params(),
                LIMITS.parameters
            ));
        }
        if let Arch::Llama(l) = &self.arch {
            if !self.n_head.is_multiple_of(l.n_kv_head) {
                return bad(format!(
                    "n_head {} is not a multiple of num_key_value_heads {}",
                    self.n_head, l.n_kv_head
                ));
            }
            if l.head_dim % 2 != 0 {
                return bad(format!("head_dim {} must be even (rotary positions turn pairs)", l.head_dim));
            }
        }
        Ok(())
    }

    /// The transformers class that runs this shape (`config.json`'s `architectures`).
    pub fn hf_architecture(&self) -> &'static str {
        match &self.arch {
            Arch::Gpt2 => "GPT2LMHeadModel",
            Arch::Llama(l) => match l.family {
                Family::Llama => "LlamaForCausalLM",
                Family::Mistral => "MistralForCausalLM",
                Family::Qwen2 => "Qwen2ForCausalLM",
            },
        }
    }

    /// The architecture's name in training configs: `gpt2` or `llama` (Mistral and Qwen2 shapes
    /// are LLaMA-family too).
    pub fn arch_name(&self) -> &'static str {
        match self.arch {
            Arch::Gpt2 => "gpt2",
            Arch::Llama(_) => "llama",
        }
    }

    /// An error naming the architecture when it is not GPT-2's, for what (`what`) handles
    /// GPT-2 only so far.
    pub fn require_gpt2(&self, what: &str) -> Result<()> {
        match &self.arch {
            Arch::Gpt2 => Ok(()),
            Arch::Llama(l) => Err(Error::Invalid(format!(
                "this is a {} model (LLaMA family); {what} handles GPT-2-architecture models only, so far",
                l.family.model_type()
            ))),
        }
    }

    /// Query, key and value widths of one layer's attention: (n_head, n_kv_head) x head size.
    pub fn head_size(&self) -> usize {
        match &self.arch {
            Arch::Gpt2 => self.n_embd / self.n_head,
            Arch::Llama(l) => l.head_dim,
        }
    }

    /// Key/value heads (the KV cache stores these): `n_head` unless attention is grouped.
    pub fn n_kv_head(&self) -> usize {
        match &self.arch {
            Arch::Gpt2 => self.n_head,
            Arch::Llama(l) => l.n_kv_head,
        }
    }

    /// Width of a fused q | k | v row: the query heads, then the key and the value heads.
    pub fn qkv_width(&self) -> usize {
        (self.n_head + 2 * self.n_kv_head()) * self.head_size()
    }

    /// Width of attention's output before its projection: the query heads side by side.
    pub fn attn_width(&self) -> usize {
        self.n_head * self.head_size()
    }

    /// The MLP's hidden width: GPT-2's 4C, or the LLaMA family's intermediate size.
    pub fn mlp_width(&self) -> usize {
        match &self.arch {
            Arch::Gpt2 => 4 * self.n_embd,
            Arch::Llama(l) => l.intermediate,
        }
    }

    /// Width of the MLP's first product: 4C, or gate and up side by side (2I).
    pub fn mlp_in_width(&self) -> usize {
        match &self.arch {
            Arch::Gpt2 => 4 * self.n_embd,
            Arch::Llama(l) => 2 * l.intermediate,
        }
    }

    /// The name of the output layer's tensor: the embedding when the head is tied.
    pub fn head_name(&self) -> &'static str {
        match &self.arch {
            Arch::Gpt2 => "wte.weight",
            Arch::Llama(l) if l.tied_head => "model.embed_tokens.weight",
            Arch::Llama(_) => "lm_head.weight",
        }
    }

    /// The name of the token embedding's tensor.
    pub fn embedding_name(&self) -> &'static str {
        match &self.arch {
            Arch::Gpt2 => "wte.weight",
            Arch::Llama(_) => "model.embed_tokens.weight",
        }
    }

    /// The blocks' norm.
    pub(crate) fn norm(&self) -> super::layers::Norm {
        match &self.arch {
            Arch::Gpt2 => super::layers::Norm::Layer,
            Arch::Llama(l) => super::layers::Norm::Rms(l.norm_eps as f32),
        }
    }

    /// The MLP's nonlinearity.
    pub(crate) fn activation(&self) -> super::layers::Activation {
        match &self.arch {
            Arch::Gpt2 => super::layers::Activation::Gelu,
            Arch::Llama(l) => super::layers::Activation::SwiGlu(l.intermediate),
        }
    }

    /// Attention's sizes for a batch of (B, T).
    pub(crate) fn attention_shape(&self, b: usize, t: usize) -> super::layers::attention::Shape {
        let (nh, nkv, hs) = (self.n_head, self.n_kv_head(), self.head_size());
        super::layers::attention::Shape { b, t, nh, nkv, hs }
    }

    /// How the block matrices are stored: (in, out) for GPT-2's Conv1D, (out, in) for the
    /// LLaMA family's nn.Linear (as their checkpoints store them).
    pub(crate) fn matrices_stored(&self) -> crate::kernels::matmul::Stored {
        use crate::kernels::matmul::Stored;
        match &self.arch {
            Arch::Gpt2 => Stored::Normal,
            Arch::Llama(_) => Stored::Transposed,
        }
    }

    /// The vocabulary rounded up to a multiple of 64, so the LM head's matrix product runs on
    /// whole SIMD tiles (50257 -> 50304). The extra rows are never seen by softmax or loss.
    pub fn padded_vocab_size(&self) -> usize {
        self.vocab_size.div_ceil(64) * 64
    }

    /// Exact number of parameters (a tied LM head is counted once, padding rows not at all), as
    /// HF transformers counts them.
    pub fn num_params(&self) -> usize {
        if let Arch::Llama(l) = &self.arch {
            let c = self.n_embd;
            let head = if l.tied_head { 0 } else { self.vocab_size * c };
            return self.vocab_size * c + self.n_layer * self.llama_block_params(l) + c + head;
        }
        let c = self.n_embd;
        let b = usize::from(self.bias);
        let per_layer = 2 * (c + b * c) // two LayerNorms
            + c * 3 * c + b * 3 * c      // attention: fused q, k, v
            + c * c + b * c              // attention: output projection
            + c * 4 * c + b * 4 * c      // MLP: up
            + 4 * c * c + b * c; // MLP: down
        self.vocab_size * c + self.block_size * c + self.n_layer * per_layer + c + b * c
    }

    /// One LLaMA block's parameters: (attention, MLP, norms).
    pub fn llama_block_parts(&self, l: &LlamaShape) -> (usize, usize, usize) {
        let (c, q, kv) = (self.n_embd, self.n_head * l.head_dim, l.n_kv_head * l.head_dim);
        let attention = c * q + 2 * c * kv + q * c + usize::from(l.qkv_bias) * (q + 2 * kv);
        (attention, 3 * c * l.intermediate, 2 * c)
    }

    fn llama_block_params(&self, l: &LlamaShape) -> usize {
        let (attention, mlp, norms) = self.llama_block_parts(l);
        attention + mlp + norms
    }

    /// Parameters that take part in matrix products per token (all but position embeddings,
    /// norms and biases): the `N` of the 6N FLOPs-per-token rule.
    pub fn matmul_params(&self) -> usize {
        let c = self.n_embd;
        match &self.arch {
            Arch::Gpt2 => self.n_layer * 12 * c * c + self.vocab_size * c,
            Arch::Llama(l) => {
                let (q, kv) = (self.n_head * l.head_dim, l.n_kv_head * l.head_dim);
                self.n_layer * (2 * c * q + 2 * c * kv + 3 * c * l.intermediate) + self.vocab_size * c
            }
        }
    }

    /// Forward FLOPs for one token at context `t`: 2 per multiply-add in the matrix products,
    /// plus attention's scores and weighted sum over `t` positions (PaLM, appendix B).
    pub fn forward_flops_per_token(&self, t: usize) -> u64 {
        (2 * self.matmul_params() + 4 * self.n_layer * t * self.n_head * self.head_size()) as u64
    }

    /// Bytes of keys and values one position takes in an f32 KV cache, over all layers.
    pub fn kv_bytes_per_position(&self) -> usize {
        2 * self.n_layer * self.n_kv_head() * self.head_size() * 4
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
