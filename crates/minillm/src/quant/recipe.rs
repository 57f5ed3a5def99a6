//! Which type each matrix gets: llama.cpp's file types ("ftypes") and its per-tensor rules.
//!
//! A "Q4_K_M" file is not all q4_K. llama.cpp gives more bits where errors cost most: the output
//! layer (q6_K), the attention value matrices and the MLP down projections of some layers
//! (q6_K: the first and last eighth of the layers and every third one between), GPT-2's fused
//! q|k|v (q5_K). A row that is not whole 256-weight super-blocks cannot be a k-quant at all and
//! falls back to a 32-weight type of similar size: q4_K to q5_0, q5_K to q5_1, q6_K to q8_0.
//! Small models' widths (576, 896, 192) are not multiples of 256, so their "Q4_K_M" is mostly
//! q5_0 and q8_0. The rules here are llama.cpp's (`llama_tensor_get_type`) for dense models
//! without mixtures of experts, so `minillm quantize` and `llama-quantize` choose the same types.

use super::QuantType;
use crate::error::{Error, Result};

/// A file type: what `minillm quantize --type` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// One type for the matrices (f16, q8_0, q4_0, q4_1, q5_0, q5_1, q6_K), the output layer by
    /// llama.cpp's rule (q6_K for 4- to 6-bit types, else as the rest).
    Plain(QuantType),
    /// q4_K, with q6_K / q5_K where the rules above say.
    Q4KM,
    /// q5_K, with q6_K where the rules say.
    Q5KM,
}

/// What a matrix is in the model, as llama.cpp's rules tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The LM head, or the token embedding when it is the head (tied).
    Output,
    /// The token embedding of a model whose head is its own (untied): the base type, as
    /// llama.cpp gives it.
    Embedding,
    /// GPT-2's fused q|k|v.
    AttnQkv,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

/// `--type` with `--head-type` and `--pure`: how a model is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    pub file_type: FileType,
    /// The output layer's type whatever the rules say (llama-quantize's --output-tensor-type).
    pub head: Option<QuantType>,
    /// Every matrix, the output layer included, in the one type (llama-quantize's --pure); only
    /// the fallback for rows that are not whole blocks applies.
    pub pure: bool,
}

impl FileType {
    /// `q4_K_M`, `q5_K_M`, or a type's name.
    pub fn parse(name: &str) -> Result<FileType> {
        match name.to_ascii_lowercase().as_str() {
            "q4_k_m" => Ok(FileType::Q4KM),
            "q5_k_m" => Ok(FileType::Q5KM),
            _ => QuantType::parse(name).map(FileType::Plain),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::Plain(t) => t.name(),
            FileType::Q4KM => "q4_K_M",
            FileType::Q5KM => "q5_K_M",
        }
    }

    /// The type of the matrices no rule singles out.
    pub fn base(self) -> QuantType {
        match self {
            FileType::Plain(t) => t,
            FileType::Q4KM => QuantType::Q4K,
            FileType::Q5KM => QuantType::Q5K,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`).
    pub fn ggml_file_type(self) -> u32 {
        match self {
            FileType::Plain(QuantType::F16) => 1,
            FileType::Plain(QuantType::Q4_0) => 2,
            FileType::Plain(QuantType::Q4_1) => 3,
            FileType::Plain(QuantType::Q8_0) => 7,
            FileType::Plain(QuantType::Q5_0) => 8,
            FileType::Plain(QuantType::Q5_1) => 9,
            FileType::Plain(QuantType::Q4K) => 14, // Q4_K_S, the nearest
            FileType::Q4KM => 15,
            FileType::Plain(QuantType::Q5K) => 16, // Q5_K_S
            FileType::Q5KM => 17,
            FileType::Plain(QuantType::Q6K) => 18,
        }
    }
}

/// llama.cpp's choice of layers that get more bits: the first and last eighth, and every third
/// layer between.
fn more_bits(layer: usize, layers: usize) -> bool {
    let (layer, layers) = (layer as i64, layers as i64);
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

impl Recipe {
    /// The recipe for `--type NAME` with `head` and `pure`; q4_K and q5_K alone are llama.cpp's
    /// `_S` mixtures, whose rules are not these, so they need `--pure`.
    pub fn new(file_type: FileType, head: Option<QuantType>, pure: bool) -> Result<Recipe> {
        if let FileType::Plain(t @ (QuantType::Q4K | QuantType::Q5K)) = file_type
            && !pure
        {
            return Err(Error::Invalid(format!(
                "{} alone is llama.cpp's {}_S mixture, which minillm does not make; choose {}_M, or --pure for {} everywhere",
                t.name(),
                t.name(),
                t.name(),
                t.name()
            )));
        }
        Ok(Recipe { file_type, head, pure })
    }

    /// Every matrix in `ty`, the output layer included.
    pub fn pure(ty: QuantType) -> Recipe {
        Recipe { file_type: FileType::Plain(ty), head: None, pure: true }
    }

    /// The type of matrix `role` of layer `layer` (of `layers`) whose rows hold `cols` weights;
    /// `None` keeps it f32 (rows that are not whole blocks of 32).
    pub fn tensor_type(&self, role: Role, layer: usize, layers: usize, cols: usize) -> Option<QuantType> {
        use QuantType::*;
        let base = self.file_type.base();
        let chosen = match (role, self.head) {
            (Role::Output, Some(head)) => head,
            _ if self.pure || base == F16 => base,
            (Role::Output, None) if !cols.is_multiple_of(base.block_weights()) => Q8_0,
            (Role::Output, None) if base != Q8_0 => Q6K,
            (Role::Output, None) => base,
            (Role::AttnV | Role::FfnDown, _)
                if matches!(self.file_type, FileType::Q4KM | FileType::Q5KM) && more_bits(layer, layers) =>
            {
                Q6K
            }
            (Role::AttnQkv, _) if self.file_type == FileType::Q4KM => Q5K,
            (Role::AttnQkv, _) if self.file_type == FileType::Q5KM => Q6K,
            _ => base,
        };
        let fitted = if cols.is_multiple_of(chosen.block_weights()) {
            chosen
        } else {
            match chosen {
                Q4K => Q5_0,
                Q5K => Q5_1,
                Q6K => Q8_0,
                other => other,
            }
        };
        cols.is_multiple_of(fitted.block_weights()).then_some(fitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantType::*;

    fn types(recipe: &Recipe, role: Role, layers: usize, cols: usize) -> Vec<QuantType> {
        (0..layers).map(|l| recipe.tensor_type(role, l, layers, cols).unwrap()).collect()
    }

    #[test]
    fn q4_k_m_gives_more_bits_where_llama_cpp_does() {
        let r = Recipe::new(FileType::Q4KM, None, false).unwrap();
        // A Llama-7B shape (4096 wide, 32 layers): v and down in q6_K in layers 0-3, 28-31 and
        // every third from 6.
        let more: Vec<usize> = (0..32).filter(|&l| more_bits(l, 32)).collect();
        assert_eq!(more, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        let v = types(&r, Role::AttnV, 32, 4096);
        assert!(v.iter().enumerate().all(|(l, &t)| t == if more.contains(&l) { Q6K } else { Q4K }));
        assert_eq!(types(&r, Role::FfnDown, 32, 11008), v);
        assert!(types(&r, Role::AttnQ, 32, 4096).iter().all(|&t| t == Q4K));
        assert_eq!(r.tensor_type(Role::Output, 0, 32, 4096), Some(Q6K));
        // SmolLM2-135M (576 wide, MLP 1536): 576 is not whole super-blocks, 1536 is.
        assert!(types(&r, Role::AttnQ, 30, 576).iter().all(|&t| t == Q5_0));
        let v = types(&r, Role::AttnV, 30, 576);
        assert!(v.iter().enumerate().all(|(l, &t)| t == if more_bits(l, 30) { Q8_0 } else { Q5_0 }));
        let down = types(&r, Role::FfnDown, 30, 1536);
        assert!(down.iter().enumerate().all(|(l, &t)| t == if more_bits(l, 30) { Q6K } else { Q4K }));
        assert_eq!(r.tensor_type(Role::Output, 0, 30, 576), Some(Q8_0));
        // GPT-2's fused q|k|v: q5_K (768 = 3 super-blocks).
        assert_eq!(r.tensor_type(Role::AttnQkv, 5, 12, 768), Some(Q5K));
        // Rows not whole blocks of 32 stay f32.
        assert_eq!(r.tensor_type(Role::AttnQ, 0, 2, 48), None);
    }

    #[test]
    fn plain_types_pure_and_head_overrides() {
        let q5km = Recipe::new(FileType::Q5KM, None, false).unwrap();
        assert_eq!(q5km.tensor_type(Role::AttnQkv, 1, 12, 768), Some(Q6K));
        assert_eq!(q5km.tensor_type(Role::AttnQ, 1, 12, 896), Some(Q5_1));
        let q4 = Recipe::new(FileType::Plain(Q4_0), None, false).unwrap();
        assert_eq!(q4.tensor_type(Role::Output, 0, 12, 768), Some(Q6K));
        assert_eq!(q4.tensor_type(Role::Output, 0, 12, 64), Some(Q8_0));
        assert_eq!(q4.tensor_type(Role::AttnV, 0, 12, 768), Some(Q4_0));
        let q8 = Recipe::new(FileType::Plain(Q8_0), None, false).unwrap();
        assert_eq!(q8.tensor_type(Role::Output, 0, 12, 768), Some(Q8_0));
        let f16 = Recipe::new(FileType::Plain(F16), None, false).unwrap();
        assert_eq!(f16.tensor_type(Role::Output, 0, 12, 768), Some(F16));
        assert_eq!(Recipe::pure(Q4_0).tensor_type(Role::Output, 0, 12, 768), Some(Q4_0));
        let head = Recipe::new(FileType::Q4KM, Some(Q8_0), false).unwrap();
        assert_eq!(head.tensor_type(Role::Output, 0, 12, 768), Some(Q8_0));
        assert_eq!(Recipe::pure(Q4K).tensor_type(Role::AttnV, 0, 12, 576), Some(Q5_0));
        let err = Recipe::new(FileType::Plain(Q4K), None, false).unwrap_err().to_string();
        assert!(err.contains("q4_K_S mixture") && err.contains("--pure"), "{err}");
        assert_eq!(FileType::parse("Q4_K_M").unwrap(), FileType::Q4KM);
        assert_eq!(FileType::parse("q6_k").unwrap(), FileType::Plain(Q6K));
        assert!(FileType::parse("q3_K_M").is_err());
    }
}
