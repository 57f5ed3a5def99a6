//! Quantizing a model's matrices into blocks, and taking blocks made elsewhere as its own.

use super::Gpt;
use super::params::Layout;
use super::quantized::{Matrix, Quantized, Stacked};
use crate::error::Result;
use crate::kernels::matmul::Stored;
use crate::kernels::vec::transpose;
use crate::quant::recipe::Role;
use crate::quant::{QMatrix, QuantType, Recipe};
use std::borrow::Cow;

impl Gpt {
    /// Quantizes every block's four matrices (and an untied model's token embedding) to `ty` and
    /// the LM head (the token embedding when tied) to `head` (`None` keeps it f32); position
    /// embeddings, norms and biases stay f32. Matrices whose rows are not whole blocks stay f32.
    pub fn quantize(&mut self, ty: QuantType, head: Option<QuantType>) -> Result<()> {
        let q = self.quantized_as(ty, head)?;
        self.set_quantized(q);
        Ok(())
    }

    /// The matrices as [`Gpt::quantize`] would make them, without changing the model.
    pub fn quantized_as(&self, ty: QuantType, head: Option<QuantType>) -> Result<Quantized> {
        // Pure: every matrix in `ty`, but the head in `head` when given (else dropped to f32).
        let mut q = self.quantized_with(&Recipe { head, ..Recipe::pure(ty) })?;
        if head.is_none() {
            q.lm_head = None;
        }
        Ok(q)
    }

    /// The matrices with each tensor's type chosen by `recipe` (llama.cpp's rules, see
    /// [`crate::quant::recipe`]). A tensor the model already holds in the chosen type keeps its
    /// blocks (no second rounding); others are quantized from the f32 weights.
    pub fn quantized_with(&self, recipe: &Recipe) -> Result<Quantized> {
        let c = self.config.n_embd;
        let layers = self.config.n_layer;
        let mut q = Quantized::default();
        for layer in 0..layers {
            let mut four: [Option<Stacked>; 4] = Default::default();
            for m in Matrix::ALL {
                let (inputs, outputs) = m.shape(&self.config);
                let existing = self.quantized.as_ref().and_then(|q| q.blocks[layer][m as usize].as_ref());
                let types: Vec<(Option<QuantType>, usize)> = m
                    .roles(&self.config)
                    .into_iter()
                    .map(|(role, rows)| (recipe.tensor_type(role, layer, layers, inputs), rows))
                    .collect();
                if types.iter().any(|t| t.0.is_none()) {
                    continue; // rows that are not whole blocks of 32 stay f32
                }
                let mut rows_f32: Option<Cow<[f32]>> = None;
                let mut parts = Vec::new();
                let mut first = 0;
                for (ty, rows) in types {
                    let ty = ty.expect("checked above");
                    let kept = existing.and_then(|s| s.part_with(first, rows)).filter(|(p, _)| p.ty == ty);
                    parts.push(match kept {
                        Some((p, start)) => {
                            let rb = ty.row_bytes(inputs);
                            let at = (first - start) * rb;
                            QMatrix::from_bytes(ty, rows, inputs, p.bytes()[at..at + rows * rb].to_vec())?
                        }
                        None => {
                            let all = rows_f32.get_or_insert_with(|| {
                                let w = self.matrix_f32(layer, m);
                                match self.config.matrices_stored() {
                                    Stored::Transposed => w,
                                    Stored::Normal => Cow::Owned(transpose(&w, inputs, outputs)),
                                }
                            });
                            QMatrix::quantize(
                                ty,
                                &all[first * inputs..(first + rows) * inputs],
                                rows,
                                inputs,
                            )?
                        }
                    });
                    first += rows;
                }
                four[m as usize] = Some(Stacked::new(parts)?);
            }
            q.blocks.push(four);
        }
        let (own, v) = (self.quantized.as_ref(), self.config.vocab_size);
        let head = recipe.tensor_type(Role::Output, 0, layers, c);
        q.lm_head = table(head, own.and_then(|q| q.lm_head.as_ref()), (v, c), || self.head_f32())?;
        if self.config.head_name() != self.config.embedding_name() {
            let ty = recipe.tensor_type(Role::Embedding, 0, layers, c);
            q.embedding = table(ty, own.and_then(|q| q.embedding.as_ref()), (v, c), || self.embedding_f32())?;
        }
        Ok(q)
    }

    /// Takes `q` as the model's matrices (shapes as [`Gpt::quantize`] makes them): they are
    /// kept as blocks, and the f32 buffer keeps only the tensors `q` does not hold.
    pub fn set_quantized(&mut self, q: Quantized) {
        let layout = Layout::without(&self.config, |name| q.holds(&self.config, name));
        let mut params = Vec::with_capacity(layout.total);
        for t in &layout.tensors {
            // As stored, or dequantized if the model held it in blocks that `q` does not keep;
            // the embedding's padding rows are zeros.
            params.extend_from_slice(&self.tensor_f32(&t.name).expect("a tensor of the model"));
            params.resize(t.offset + t.len(), 0.0);
        }
        self.layout = layout;
        self.params = params;
        self.quantized = (!q.is_empty()).then_some(q);
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

/// A table (V x C) in `ty` (`None`: f32): the model's own blocks when they already have that
/// type (no second rounding), else quantized from its `weights`.
fn table<'a>(
    ty: Option<QuantType>,
    own: Option<&QMatrix>,
    (rows, cols): (usize, usize),
    weights: impl FnOnce() -> Cow<'a, [f32]>,
) -> Result<Option<QMatrix>> {
    let Some(ty) = ty else { return Ok(None) };
    match own.filter(|m| m.ty == ty) {
        Some(kept) => Ok(Some(kept.clone())),
        None => QMatrix::quantize(ty, &weights(), rows, cols).map(Some),
    }
}
