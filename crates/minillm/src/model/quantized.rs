//! A model whose matrices are quantized (q8_0, q4_0 or f16 blocks, see [`crate::quant`]).
//!
//! The blocks are what decoding reads: one token's step multiplies each matrix by a vector, so
//! its speed is set by the bytes per weight. The flat f32 parameter buffer holds the *dequantized*
//! weights, so everything else (prefill, `eval`, `inspect`, export) computes with exactly the
//! weights the blocks stand for, and a quantized model is measured as it is. Training such a
//! model trains those f32 weights and drops the blocks (they would no longer match).

use super::Gpt;
use super::params::{BlockOffsets, Layout};
use crate::error::Result;
use crate::quant::{QMatrix, QuantType};
use std::ops::Range;

/// The four matrices of a block, in the order [`Quantized::blocks`] holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matrix {
    /// attn.c_attn: (3C x C) as stored here, output rows first.
    Qkv = 0,
    /// attn.c_proj: (C x C).
    AttnProj = 1,
    /// mlp.c_fc: (4C x C).
    Fc = 2,
    /// mlp.c_proj: (C x 4C).
    FcProj = 3,
}

impl Matrix {
    /// Which block matrix an HF parameter name (without `transformer.`) is, if any.
    pub fn of(name: &str) -> Option<(usize, Matrix)> {
        let rest = name.strip_prefix("h.")?;
        let (layer, part) = rest.split_once('.')?;
        let m = match part {
            "attn.c_attn.weight" => Matrix::Qkv,
            "attn.c_proj.weight" => Matrix::AttnProj,
            "mlp.c_fc.weight" => Matrix::Fc,
            "mlp.c_proj.weight" => Matrix::FcProj,
            _ => return None,
        };
        Some((layer.parse().ok()?, m))
    }

    pub const ALL: [Matrix; 4] = [Matrix::Qkv, Matrix::AttnProj, Matrix::Fc, Matrix::FcProj];

    /// Its range in the parameter buffer, where HF's Conv1D stores it (in, out).
    fn range(self, o: &BlockOffsets) -> &Range<usize> {
        match self {
            Matrix::Qkv => &o.attn_w,
            Matrix::AttnProj => &o.attn_proj_w,
            Matrix::Fc => &o.fc_w,
            Matrix::FcProj => &o.fc_proj_w,
        }
    }

    /// (inputs, outputs) for width `c`.
    pub fn shape(self, c: usize) -> (usize, usize) {
        match self {
            Matrix::Qkv => (c, 3 * c),
            Matrix::AttnProj => (c, c),
            Matrix::Fc => (c, 4 * c),
            Matrix::FcProj => (4 * c, c),
        }
    }
}

/// The quantized matrices of a model; a `None` stays f32.
#[derive(Clone, Debug, Default)]
pub struct Quantized {
    /// Per block, indexed by [`Matrix`].
    pub blocks: Vec<[Option<QMatrix>; 4]>,
    /// The token embedding, which is also the output layer (tied): (V x C).
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

    /// Bytes of the weights as stored: blocks, plus 4 per weight left in f32.
    pub fn bytes(&self, model: &Gpt) -> usize {
        let quantized: usize = self.all().map(|m| m.bytes().len()).sum();
        let left = model.params.len() - self.all().map(|m| m.rows * m.cols).sum::<usize>();
        quantized + 4 * left
    }

    fn all(&self) -> impl Iterator<Item = &QMatrix> {
        self.blocks.iter().flatten().flatten().chain(&self.lm_head)
    }
}

impl Gpt {
    /// Quantizes every block's four matrices to `ty` and the token embedding (the LM head) to
    /// `head` (`None` keeps it f32); position embeddings, LayerNorms and biases stay f32, as in
    /// llama.cpp. Matrices whose rows are not whole blocks of 32 stay f32 too.
    pub fn quantize(&mut self, ty: QuantType, head: Option<QuantType>) -> Result<()> {
        let q = self.quantized_as(ty, head)?;
        self.set_quantized(q);
        Ok(())
    }

    /// The matrices as [`Gpt::quantize`] would make them, without changing the model: the
    /// model's own blocks where they already have that type (no second rounding), else new ones
    /// from the f32 weights.
    pub fn quantized_as(&self, ty: QuantType, head: Option<QuantType>) -> Result<Quantized> {
        let c = self.config.n_embd;
        let block = crate::quant::BLOCK;
        let own = |m: Option<&QMatrix>, want: QuantType| m.filter(|m| m.ty == want).cloned();
        let mut q = Quantized::default();
        for (layer, o) in self.layout.blocks.iter().enumerate() {
            let mut four: [Option<QMatrix>; 4] = Default::default();
            for m in Matrix::ALL {
                let (inputs, outputs) = m.shape(c);
                let existing = self.quantized.as_ref().and_then(|q| q.blocks[layer][m as usize].as_ref());
                four[m as usize] = match own(existing, ty) {
                    Some(kept) => Some(kept),
                    None if inputs.is_multiple_of(block) => {
                        let w = transpose(&self.params[m.range(o).clone()], inputs, outputs);
                        Some(QMatrix::quantize(ty, &w, outputs, inputs)?)
                    }
                    None => None,
                };
            }
            q.blocks.push(four);
        }
        if let Some(head) = head.filter(|_| c.is_multiple_of(block)) {
            let existing = self.quantized.as_ref().and_then(|q| q.lm_head.as_ref());
            q.lm_head = match own(existing, head) {
                Some(kept) => Some(kept),
                None => {
                    let wte = &self.params[self.layout.wte.clone()][..self.config.vocab_size * c];
                    Some(QMatrix::quantize(head, wte, self.config.vocab_size, c)?)
                }
            };
        }
        Ok(q)
    }

    /// Takes `q` as the model's matrices (shapes as [`Gpt::quantize`] makes them) and writes the
    /// weights they stand for into the parameter buffer.
    pub fn set_quantized(&mut self, q: Quantized) {
        let c = self.config.n_embd;
        let layout: &Layout = &self.layout;
        for (o, four) in layout.blocks.iter().zip(&q.blocks) {
            for m in Matrix::ALL {
                if let Some(matrix) = &four[m as usize] {
                    let (inputs, outputs) = m.shape(c);
                    let w = transpose(&matrix.dequantize(), outputs, inputs);
                    self.params[m.range(o).clone()].copy_from_slice(&w);
                }
            }
        }
        if let Some(head) = &q.lm_head {
            let n = self.config.vocab_size * c;
            let start = self.layout.wte.start;
            self.params[start..start + n].copy_from_slice(&head.dequantize());
        }
        self.quantized = (q.lm_head.is_some() || q.blocks.iter().flatten().any(Option::is_some)).then_some(q);
    }

    /// The quantized matrices, if the model has any.
    pub fn quantized(&self) -> Option<&Quantized> {
        self.quantized.as_ref()
    }

    /// "f32", or the quantized types.
    pub fn weight_type(&self) -> String {
        self.quantized.as_ref().map_or("f32".into(), Quantized::describe)
    }
}

/// (rows, cols) row-major to (cols, rows) row-major.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for (col, &x) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            out[col * rows + r] = x;
        }
    }
    out
}
