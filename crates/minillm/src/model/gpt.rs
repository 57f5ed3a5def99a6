//! The GPT as it is stored: its configuration and its weights, in the type they came in.
//!
//! f32 tensors live in one flat buffer with HF's names ([`Layout`]); a matrix stored in
//! 16 bits or quantized lives in its blocks ([`QMatrix`], see `quantized.rs`) and has no f32
//! copy: its range in the flat buffer is empty. Inference reads a matrix through [`Weight`],
//! whichever way it is stored. Training state (gradients, activations for backward) is not
//! here: see [`super::training::Trainable`].

use super::config::ModelConfig;
use super::layers::loss::IGNORE;
use super::params::{Layout, init};
use super::quantized::Stacked;
use super::quantized::{Matrix, Quantized};
use crate::error::{Error, Result};
use crate::kernels::matmul::Stored;
use crate::kernels::vec::transpose;
use crate::quant::QMatrix;
use std::borrow::Cow;
use std::ops::Range;

pub struct Gpt {
    pub config: ModelConfig,
    pub layout: Layout,
    /// The f32 tensors, as `layout` places them.
    pub params: Vec<f32>,
    /// Matrices kept in a 16-bit or quantized type, when the model came that way.
    pub(super) quantized: Option<Quantized>,
}

/// One of the model's matrices, as stored.
#[derive(Clone, Copy)]
pub enum Weight<'a> {
    /// f32, as the checkpoint stores it: GPT-2's Conv1D (inputs x outputs), the LLaMA family's
    /// nn.Linear (outputs x inputs); for the LM head, (V x C).
    F32(&'a [f32]),
    /// Blocks, one row per output (GGUF's layout): the LM head.
    Blocks(&'a QMatrix),
    /// A block matrix in blocks, its row parts possibly of different types.
    Stacked(&'a Stacked),
}

impl<'a> Weight<'a> {
    /// The matrix in f32 as the model stores f32 matrices: the f32 weights themselves, or the
    /// blocks dequantized (one row per output).
    fn rows_f32(self) -> Cow<'a, [f32]> {
        match self {
            Weight::F32(w) => Cow::Borrowed(w),
            Weight::Blocks(q) => Cow::Owned(q.dequantize()),
            Weight::Stacked(s) => Cow::Owned(s.dequantize()),
        }
    }
}

pub(super) fn opt<'a>(buf: &'a [f32], r: &Option<Range<usize>>) -> Option<&'a [f32]> {
    r.as_ref().map(|r| &buf[r.clone()])
}

impl Gpt {
    /// A new model with GPT-2's initialisation from `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Gpt> {
        config.validate()?;
        let layout = Layout::new(&config);
        let params = init(&config, &layout, seed)?;
        Gpt::from_params(config, params)
    }

    /// A model around existing f32 parameters laid out as [`Layout::new`] says.
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Gpt> {
        config.validate()?;
        let layout = Layout::new(&config);
        check_len(params.len(), layout.total)?;
        Ok(Gpt { config, layout, params, quantized: None })
    }

    /// A model whose matrices in `quantized` are kept as blocks; `params` holds the other
    /// tensors, laid out by [`Layout::without`] for those matrices.
    pub fn from_parts(config: ModelConfig, params: Vec<f32>, quantized: Quantized) -> Result<Gpt> {
        config.validate()?;
        let layout = Layout::without(&config, |name| quantized.holds(&config, name));
        check_len(params.len(), layout.total)?;
        let quantized = (!quantized.is_empty()).then_some(quantized);
        Ok(Gpt { config, layout, params, quantized })
    }

    pub(super) fn check_input(
        &self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
    ) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if b == 0 || t == 0 || tokens.len() != b * t {
            return bad(format!("{} tokens do not make a batch of {b} x {t}", tokens.len()));
        }
        if t > self.config.block_size {
            return Err(Error::TooLong { tokens: t, context: self.config.block_size });
        }
        let v = self.config.vocab_size as u32;
        if let Some(&tok) = tokens.iter().find(|&&x| x >= v) {
            return Err(Error::UnknownToken { id: tok, vocab: v as usize });
        }
        if let Some(targets) = targets {
            if targets.len() != tokens.len() {
                return bad(format!("{} targets for {} tokens", targets.len(), tokens.len()));
            }
            if let Some(&tok) = targets.iter().find(|&&x| x >= v && x != IGNORE) {
                return Err(Error::UnknownToken { id: tok, vocab: v as usize });
            }
        }
        Ok(())
    }

    /// Block `layer`'s matrix `m`, as stored.
    pub fn matrix(&self, layer: usize, m: Matrix) -> Weight<'_> {
        match self.quantized.as_ref().and_then(|q| q.blocks[layer][m as usize].as_ref()) {
            Some(q) => Weight::Stacked(q),
            None => Weight::F32(&self.params[m.range(&self.layout.blocks[layer]).clone()]),
        }
    }

    /// The output layer (V x C): the token embedding when tied (the first V rows of `wte`),
    /// else the model's own `lm_head`.
    pub fn head(&self) -> Weight<'_> {
        match self.quantized.as_ref().and_then(|q| q.lm_head.as_ref()) {
            Some(q) => Weight::Blocks(q),
            None => {
                let n = self.config.vocab_size * self.config.n_embd;
                Weight::F32(&self.params[self.layout.head().clone()][..n])
            }
        }
    }

    /// The token embedding (V x C): the head's matrix when tied.
    fn embedding(&self) -> Weight<'_> {
        if self.layout.lm_head.is_some() {
            if let Some(q) = self.quantized.as_ref().and_then(|q| q.embedding.as_ref()) {
                return Weight::Blocks(q);
            }
            let n = self.config.vocab_size * self.config.n_embd;
            return Weight::F32(&self.params[self.layout.wte.clone()][..n]);
        }
        self.head()
    }

    /// Block `layer`'s matrix `m` in f32, in the layout the model stores f32 matrices in (see
    /// [`Weight::F32`]): the stored weights, or the weights the blocks stand for.
    pub fn matrix_f32(&self, layer: usize, m: Matrix) -> Cow<'_, [f32]> {
        match self.matrix(layer, m) {
            // GPT-2 keeps f32 matrices (in, out): blocks, one row per output, are transposed.
            Weight::Stacked(s) if self.config.matrices_stored() == Stored::Normal => {
                Cow::Owned(transpose(&s.dequantize(), s.rows(), s.cols()))
            }
            w => w.rows_f32(),
        }
    }

    /// The output layer (V x C) in f32, without padding rows.
    pub fn head_f32(&self) -> Cow<'_, [f32]> {
        self.head().rows_f32()
    }

    /// The token embedding (V x C) in f32, without padding rows.
    pub fn embedding_f32(&self) -> Cow<'_, [f32]> {
        self.embedding().rows_f32()
    }

    /// The tensor HF calls `name` (GPT-2's without `transformer.`) in f32, as [`Layout::new`]
    /// shapes it (the embedding and head without padding rows); `None` for a name the model does
    /// not have.
    pub fn tensor_f32(&self, name: &str) -> Option<Cow<'_, [f32]>> {
        match name {
            "wte.weight" | "model.embed_tokens.weight" => return Some(self.embedding_f32()),
            "lm_head.weight" if self.layout.lm_head.is_some() => return Some(self.head_f32()),
            _ => {}
        }
        if let Some((layer, m)) = Matrix::of(name).filter(|(layer, _)| *layer < self.config.n_layer) {
            return Some(self.matrix_f32(layer, m));
        }
        self.layout.get(name).map(|t| Cow::Borrowed(&self.params[t.range()]))
    }

    /// Token `id`'s embedding into `out` (C).
    pub fn embed(&self, id: u32, out: &mut [f32]) {
        let c = self.config.n_embd;
        match self.embedding() {
            Weight::F32(w) => out.copy_from_slice(&w[id as usize * c..][..c]),
            Weight::Blocks(q) => q.dequantize_row(id as usize, out),
            Weight::Stacked(s) => s.dequantize_row(id as usize, out),
        }
    }

    /// Every parameter in f32, in [`Layout::new`]'s full layout: the buffer itself, or (for a
    /// model with blocks) a new one with the weights the blocks stand for.
    pub fn full_params(&self) -> Cow<'_, [f32]> {
        if self.quantized.is_none() {
            return Cow::Borrowed(&self.params);
        }
        let layout = Layout::new(&self.config);
        let mut params = vec![0.0f32; layout.total];
        for t in &layout.tensors {
            if let Some(own) = self.layout.get(&t.name) {
                params[t.range()].copy_from_slice(&self.params[own.range()]);
            }
        }
        for layer in 0..self.config.n_layer {
            for m in Matrix::ALL {
                if let Cow::Owned(w) = self.matrix_f32(layer, m) {
                    params[m.range(&layout.blocks[layer]).clone()].copy_from_slice(&w);
                }
            }
        }
        if let Cow::Owned(wte) = self.embedding_f32() {
            params[layout.wte.start..][..wte.len()].copy_from_slice(&wte);
        }
        if let (Some(at), Cow::Owned(head)) = (&layout.lm_head, self.head_f32()) {
            params[at.start..][..head.len()].copy_from_slice(&head);
        }
        Cow::Owned(params)
    }

    /// Turns every 16-bit or quantized matrix into f32, in the full layout (what training
    /// needs). Returns the type the weights had, if any was widened.
    pub fn widen(&mut self) -> Option<String> {
        self.quantized.as_ref()?;
        let from = self.weight_type();
        self.params = self.full_params().into_owned();
        self.layout = Layout::new(&self.config);
        self.quantized = None;
        Some(from)
    }

    /// Bytes the weights take as stored: the f32 buffer and every matrix's blocks.
    pub fn weight_bytes(&self) -> usize {
        4 * self.params.len() + self.quantized.as_ref().map_or(0, Quantized::block_bytes)
    }
}

fn check_len(given: usize, needed: usize) -> Result<()> {
    if given != needed {
        return Err(Error::Invalid(format!("{given} parameters given, the configuration needs {needed}")));
    }
    Ok(())
}
