//! A model whose matrices are stored in blocks (f16, q8_0 or q4_0, see [`crate::quant`]).
//!
//! The blocks are the weights: a quantized or 16-bit model has no f32 copy of its matrices, so
//! it takes the memory its file says. Everything that runs the model (decoding, prefill, `eval`,
//! `inspect`, the lab) multiplies through the blocks ([`super::gpt::Weight`]), so a quantized
//! model is measured as it generates. Training widens the blocks to f32 first
//! ([`Gpt::widen`](super::Gpt::widen)). Quantizing a model is in `quantize.rs`.

use super::ModelConfig;
use super::params::BlockOffsets;
use crate::quant::QMatrix;
use std::ops::Range;

/// The four matrices of a block, in the order [`Quantized::blocks`] holds them (as blocks, one
/// row per output). For the LLaMA family, q|k|v_proj are one matrix and so are gate|up_proj.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matrix {
    /// attn.c_attn (3C x C); q|k|v_proj (W x C).
    Qkv = 0,
    /// attn.c_proj (C x C); o_proj (C x A).
    AttnProj = 1,
    /// mlp.c_fc (4C x C); gate|up_proj (2I x C).
    Fc = 2,
    /// mlp.c_proj (C x 4C); down_proj (C x I).
    FcProj = 3,
}

impl Matrix {
    /// Which block matrix an HF parameter name (GPT-2's without `transformer.`) is, or is part
    /// of, if any.
    pub fn of(name: &str) -> Option<(usize, Matrix)> {
        let (layer, part) = match name.strip_prefix("h.") {
            Some(rest) => rest.split_once('.')?,
            None => name.strip_prefix("model.layers.")?.split_once('.')?,
        };
        let m = match part {
            "attn.c_attn.weight" => Matrix::Qkv,
            "attn.c_proj.weight" => Matrix::AttnProj,
            "mlp.c_fc.weight" => Matrix::Fc,
            "mlp.c_proj.weight" => Matrix::FcProj,
            "self_attn.q_proj.weight" | "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => Matrix::Qkv,
            "self_attn.o_proj.weight" => Matrix::AttnProj,
            "mlp.gate_proj.weight" | "mlp.up_proj.weight" => Matrix::Fc,
            "mlp.down_proj.weight" => Matrix::FcProj,
            _ => return None,
        };
        Some((layer.parse().ok()?, m))
    }

    pub const ALL: [Matrix; 4] = [Matrix::Qkv, Matrix::AttnProj, Matrix::Fc, Matrix::FcProj];

    /// Its range in the parameter buffer, where HF's Conv1D stores it (in, out).
    pub(super) fn range(self, o: &BlockOffsets) -> &Range<usize> {
        match self {
            Matrix::Qkv => &o.attn_w,
            Matrix::AttnProj => &o.attn_proj_w,
            Matrix::Fc => &o.fc_w,
            Matrix::FcProj => &o.fc_proj_w,
        }
    }

    /// (inputs, outputs) for a model of `config`'s shape.
    pub fn shape(self, config: &ModelConfig) -> (usize, usize) {
        let c = config.n_embd;
        match self {
            Matrix::Qkv => (c, config.qkv_width()),
            Matrix::AttnProj => (config.attn_width(), c),
            Matrix::Fc => (c, config.mlp_in_width()),
            Matrix::FcProj => (config.mlp_width(), c),
        }
    }
}

/// The quantized matrices of a model; a `None` stays f32.
#[derive(Clone, Debug, Default)]
pub struct Quantized {
    /// Per block, indexed by [`Matrix`].
    pub blocks: Vec<[Option<QMatrix>; 4]>,
    /// The output layer (V x C): the token embedding when tied, else the model's `lm_head`.
    pub lm_head: Option<QMatrix>,
}

impl Quantized {
    /// A short description of the types, e.g. "q4_0 (LM head q8_0)".
    pub fn describe(&self) -> String {
        let mut types: Vec<&str> =
            self.blocks.iter().flatten().map(|m| m.as_ref().map_or("f32", |m| m.ty.name())).collect();
        types.dedup();
        let body = if types.len() == 1 { types[0].to_string() } else { "mixed".into() };
        let head = self.lm_head.as_ref().map_or("f32", |m| m.ty.name());
        if head == body { body } else { format!("{body} (LM head {head})") }
    }

    /// Bytes of the blocks.
    pub fn block_bytes(&self) -> usize {
        self.all().map(|m| m.bytes().len()).sum()
    }

    /// Whether the tensor `name` of a model shaped like `config` is kept here, not in f32.
    pub fn holds(&self, config: &ModelConfig, name: &str) -> bool {
        match Matrix::of(name) {
            Some((layer, m)) => self.blocks.get(layer).is_some_and(|b| b[m as usize].is_some()),
            None => name == config.head_name() && self.lm_head.is_some(),
        }
    }

    /// True when no matrix is in blocks.
    pub fn is_empty(&self) -> bool {
        self.lm_head.is_none() && self.blocks.iter().flatten().all(Option::is_none)
    }

    fn all(&self) -> impl Iterator<Item = &QMatrix> {
        self.blocks.iter().flatten().flatten().chain(&self.lm_head)
    }
}
