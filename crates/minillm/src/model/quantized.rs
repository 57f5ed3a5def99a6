//! A model whose matrices are stored in blocks (f16, q8_0, q4_K, ..., see [`crate::quant`]).
//!
//! The blocks are the weights: a quantized or 16-bit model has no f32 copy of its matrices, so
//! it takes the memory its file says. Everything that runs the model (decoding, prefill, `eval`,
//! `inspect`, the lab) multiplies through the blocks ([`super::gpt::Weight`]), so a quantized
//! model is measured as it generates. Training widens the blocks to f32 first
//! ([`Gpt::widen`](super::Gpt::widen)). Quantizing a model is in `quantize.rs`.

use super::params::BlockOffsets;
use super::{Arch, ModelConfig};
use crate::quant::recipe::Role;
use crate::quant::{QMatrix, QuantType};
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

    /// The tensors llama.cpp keeps this matrix as, top to bottom, by role and rows: one for
    /// GPT-2's, q | k | v and gate | up for the LLaMA family's.
    pub fn roles(self, config: &ModelConfig) -> Vec<(Role, usize)> {
        let c = config.n_embd;
        match (&config.arch, self) {
            (Arch::Llama(l), Matrix::Qkv) => {
                let (q, kv) = (config.n_head * l.head_dim, l.n_kv_head * l.head_dim);
                vec![(Role::AttnQ, q), (Role::AttnK, kv), (Role::AttnV, kv)]
            }
            (Arch::Llama(l), Matrix::Fc) => {
                vec![(Role::FfnGate, l.intermediate), (Role::FfnUp, l.intermediate)]
            }
            (_, Matrix::Qkv) => vec![(Role::AttnQkv, config.qkv_width())],
            (_, Matrix::AttnProj) => vec![(Role::AttnOutput, c)],
            (_, Matrix::Fc) => vec![(Role::FfnUp, config.mlp_in_width())],
            (_, Matrix::FcProj) => vec![(Role::FfnDown, c)],
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

/// A block matrix in blocks: row parts stacked, each a [`QMatrix`] of its own type. One part
/// when the whole matrix has one type; more when a fused matrix's parts differ (a Q4_K_M file's
/// v_proj is q6_K in some layers while q and k are q4_K). Adjacent parts of one type are
/// joined, so each product makes as few passes as the types allow.
#[derive(Clone, Debug, PartialEq)]
pub struct Stacked {
    parts: Vec<QMatrix>,
}

impl Stacked {
    /// Stacks `parts` (each with the same columns), joining neighbours of one type.
    pub fn new(parts: Vec<QMatrix>) -> crate::error::Result<Stacked> {
        let mut joined: Vec<QMatrix> = Vec::with_capacity(parts.len());
        for part in parts {
            match joined.last_mut() {
                Some(last) if last.ty == part.ty && last.cols == part.cols => *last = last.stacked(&part)?,
                _ => joined.push(part),
            }
        }
        assert!(
            !joined.is_empty() && joined.iter().all(|p| p.cols == joined[0].cols),
            "stacked parts' shapes"
        );
        Ok(Stacked { parts: joined })
    }

    pub fn parts(&self) -> &[QMatrix] {
        &self.parts
    }

    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    pub fn cols(&self) -> usize {
        self.parts[0].cols
    }

    /// The part holding rows `first..first + rows` whole, and the row where it starts.
    pub fn part_with(&self, first: usize, rows: usize) -> Option<(&QMatrix, usize)> {
        let mut start = 0;
        for p in &self.parts {
            if first >= start && first + rows <= start + p.rows {
                return Some((p, start));
            }
            start += p.rows;
        }
        None
    }

    /// `out (m x rows) = x (m x cols) . W^T + bias`, part by part.
    pub fn times(&self, out: &mut [f32], x: &[f32], bias: Option<&[f32]>, m: usize) {
        let n = self.rows();
        let mut first = 0;
        for p in &self.parts {
            p.times_into(&mut out[first..], n, x, bias.map(|b| &b[first..]), m);
            first += p.rows;
        }
    }

    /// The weights (rows x cols).
    pub fn dequantize(&self) -> Vec<f32> {
        self.parts.iter().flat_map(|p| p.dequantize()).collect()
    }

    /// Row `r`'s weights into `out`.
    pub fn dequantize_row(&self, mut r: usize, out: &mut [f32]) {
        for p in &self.parts {
            if r < p.rows {
                return p.dequantize_row(r, out);
            }
            r -= p.rows;
        }
        panic!("row past the matrix");
    }

    pub fn types(&self) -> impl Iterator<Item = QuantType> + '_ {
        self.parts.iter().map(|p| p.ty)
    }
}

impl From<QMatrix> for Stacked {
    fn from(m: QMatrix) -> Stacked {
        Stacked { parts: vec![m] }
    }
}

/// The quantized matrices of a model; a `None` stays f32.
#[derive(Clone, Debug, Default)]
pub struct Quantized {
    /// Per block, indexed by [`Matrix`].
    pub blocks: Vec<[Option<Stacked>; 4]>,
    /// The output layer (V x C): the token embedding when tied, else the model's `lm_head`.
    pub lm_head: Option<QMatrix>,
    /// The token embedding (V x C) of a model with an untied head; rows are read one token at
    /// a time.
    pub embedding: Option<QMatrix>,
}

impl Quantized {
    /// A short description of the types, e.g. "q4_0 (LM head q8_0)" or
    /// "q4_K, q6_K, q5_0 (LM head q8_0)": the block matrices' types by how many weights each
    /// holds.
    pub fn describe(&self) -> String {
        let (body, head) = self.types();
        if head == body { body } else { format!("{body} (LM head {head})") }
    }

    /// The block matrices' types, most weights first ("q4_K, q6_K, q5_0"), and the LM head's.
    pub fn types(&self) -> (String, &'static str) {
        let mut weights: Vec<(&str, usize)> = Vec::new();
        for m in self.blocks.iter().flatten() {
            let parts: Vec<(&str, usize)> = match m {
                Some(s) => s.parts().iter().map(|p| (p.ty.name(), p.rows * p.cols)).collect(),
                None => vec![("f32", 1)],
            };
            for (name, n) in parts {
                match weights.iter_mut().find(|w| w.0 == name) {
                    Some(w) => w.1 += n,
                    None => weights.push((name, n)),
                }
            }
        }
        weights.sort_by_key(|w| std::cmp::Reverse(w.1));
        let body = weights.iter().map(|w| w.0).collect::<Vec<_>>().join(", ");
        (body, self.lm_head.as_ref().map_or("f32", |m| m.ty.name()))
    }

    /// Bytes of the blocks.
    pub fn block_bytes(&self) -> usize {
        self.all().map(|m| m.bytes().len()).sum()
    }

    /// Whether the tensor `name` of a model shaped like `config` is kept here, not in f32.
    pub fn holds(&self, config: &ModelConfig, name: &str) -> bool {
        match Matrix::of(name) {
            Some((layer, m)) => self.blocks.get(layer).is_some_and(|b| b[m as usize].is_some()),
            None if name == config.head_name() => self.lm_head.is_some(),
            None => name == config.embedding_name() && self.embedding.is_some(),
        }
    }

    /// True when no matrix is in blocks.
    pub fn is_empty(&self) -> bool {
        self.lm_head.is_none()
            && self.embedding.is_none()
            && self.blocks.iter().flatten().all(Option::is_none)
    }

    fn all(&self) -> impl Iterator<Item = &QMatrix> {
        self.blocks
            .iter()
            .flatten()
            .flatten()
            .flat_map(Stacked::parts)
            .chain(&self.lm_head)
            .chain(&self.embedding)
    }
}
