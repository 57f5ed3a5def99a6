//! Quantizing a model's matrices into blocks, and taking blocks made elsewhere as its own.

use super::Gpt;
use super::params::Layout;
use super::quantized::{Matrix, Quantized};
use crate::error::Result;
use crate::kernels::matmul::Stored;
use crate::kernels::vec::transpose;
use crate::quant::{QMatrix, QuantType};
use std::borrow::Cow;

impl Gpt {
    /// Quantizes every block's four matrices to `ty` and the LM head (the token embedding when
    /// tied) to `head` (`None` keeps it f32); position embeddings, an untied model's embedding,
    /// norms and biases stay f32, as in llama.cpp. Matrices whose rows are not whole blocks of
    /// 32 stay f32 too.
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
        for layer in 0..self.config.n_layer {
            let mut four: [Option<QMatrix>; 4] = Default::default();
            for m in Matrix::ALL {
                let (inputs, outputs) = m.shape(&self.config);
                let existing = self.quantized.as_ref().and_then(|q| q.blocks[layer][m as usize].as_ref());
                four[m as usize] = match own(existing, ty) {
                    Some(kept) => Some(kept),
                    None if inputs.is_multiple_of(block) => {
                        let w = self.matrix_f32(layer, m);
                        let rows = match self.config.matrices_stored() {
                            Stored::Transposed => w,
                            Stored::Normal => Cow::Owned(transpose(&w, inputs, outputs)),
                        };
                        Some(QMatrix::quantize(ty, &rows, outputs, inputs)?)
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
                None => Some(QMatrix::quantize(head, &self.head_f32(), self.config.vocab_size, c)?),
            };
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
