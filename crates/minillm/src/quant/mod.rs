//! Weight quantization in GGUF's block formats: fewer bytes per weight, so batch-1 decoding
//! (which reads every weight once per token) runs faster.
//!
//! A matrix is stored row by row (one row per output), each row cut into blocks along the input.
//! A block holds its own scale, so one outlier only coarsens its neighbours:
//!
//! | type | weights | block bytes | bits per weight | a block |
//! |---|---|---|---|---|
//! | f16  | 32 | 64 | 16  | 32 half floats |
//! | q8_0 | 32 | 34 | 8.5 | f16 scale d, then 32 int8 q; w = d * q |
//! | q4_0 | 32 | 18 | 4.5 | f16 scale d, then 16 bytes: w_j = d * (low nibble - 8), w_{j+16} = d * (high nibble - 8) |
//! | q4_1, q5_0, q5_1 | 32 | 20, 22, 24 | 5, 5.5, 6 | q4_0 with a minimum and/or a fifth bit ([`legacy`]) |
//! | q4_K, q5_K, q6_K | 256 | 144, 176, 210 | 4.5, 5.5, 6.5625 | super-blocks of sub-blocks with 6- or 8-bit scales ([`k_quants`]) |
//!
//! The bytes are exactly llama.cpp's (`block_q8_0`, `block_q4_K`, ...), so a matrix goes into a
//! GGUF file as it is.
//!
//! Each format is one [`BlockFormat`]: quantize and dequantize one block, and a portable
//! reference dot product beside the SIMD ones ([`simd`]: AVX-512 or AVX2, chosen at run time).
//! Every type but f16 is multiplied with activations rounded to 8 bits ([`activations`]), as in
//! llama.cpp: the result is the dot product of the dequantized row with the dequantized
//! activations up to float rounding, and within the activations' rounding of the f32 product;
//! the tests check both.

pub(crate) mod activations;
mod formats;
pub(crate) mod interleaved;
mod k_quants;
mod legacy;
mod matrix;
pub mod recipe;
pub(crate) mod simd;

pub use formats::{BlockFormat, F16, GROUP, GroupBlocks, IntegerBlocks, Q4_0, Q8_0};
pub use k_quants::{Q4K, Q5K, Q6K, SUPER};
pub use legacy::{Q4_1, Q5_0, Q5_1};
pub use matrix::{QMatrix, SharedBytes};
pub use recipe::{FileType, Recipe};

use crate::error::{Error, Result};

/// Weights per block of the 32-weight formats, and per sub-block of the k-quants.
pub const BLOCK: usize = 32;

/// How a matrix's weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

/// Calls `$body` with `$F` bound to the block format of `$ty`.
macro_rules! with_format {
    ($ty:expr, $F:ident => $body:expr) => {
        match $ty {
            $crate::quant::QuantType::F16 => {
                type $F = $crate::quant::F16;
                $body
            }
            $crate::quant::QuantType::Q8_0 => {
                type $F = $crate::quant::Q8_0;
                $body
            }
            $crate::quant::QuantType::Q4_0 => {
                type $F = $crate::quant::Q4_0;
                $body
            }
            $crate::quant::QuantType::Q4_1 => {
                type $F = $crate::quant::Q4_1;
                $body
            }
            $crate::quant::QuantType::Q5_0 => {
                type $F = $crate::quant::Q5_0;
                $body
            }
            $crate::quant::QuantType::Q5_1 => {
                type $F = $crate::quant::Q5_1;
                $body
            }
            $crate::quant::QuantType::Q4K => {
                type $F = $crate::quant::Q4K;
                $body
            }
            $crate::quant::QuantType::Q5K => {
                type $F = $crate::quant::Q5K;
                $body
            }
            $crate::quant::QuantType::Q6K => {
                type $F = $crate::quant::Q6K;
                $body
            }
        }
    };
}
pub(crate) use with_format;

impl QuantType {
    pub const ALL: [QuantType; 9] = [
        QuantType::F16,
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ];

    /// ggml's name: f16, q8_0, ..., q4_K.
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F16 => "f16",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_1 => "q4_1",
            QuantType::Q5_0 => "q5_0",
            QuantType::Q5_1 => "q5_1",
            QuantType::Q4K => "q4_K",
            QuantType::Q5K => "q5_K",
            QuantType::Q6K => "q6_K",
        }
    }

    /// A type by its name, in any case.
    pub fn parse(name: &str) -> Result<QuantType> {
        QuantType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            let names: Vec<&str> = QuantType::ALL.iter().map(|t| t.name()).collect();
            Error::Invalid(format!("unknown weight type '{name}': choose one of {}", names.join(", ")))
        })
    }

    /// Weights per block: 32, or 256 for the k-quants.
    pub fn block_weights(self) -> usize {
        with_format!(self, F => F::WEIGHTS)
    }

    /// Bytes of one block of [`block_weights`](Self::block_weights) weights.
    pub fn block_bytes(self) -> usize {
        with_format!(self, F => F::BYTES)
    }

    /// Bytes of one row of `cols` weights (a multiple of the block).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_weights() * self.block_bytes()
    }

    /// Storage per weight, scales included: 16, 8.5, 4.5, ... 6.5625.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_weights() as f64
    }

    /// The type's id in ggml (and GGUF).
    pub fn ggml_type(self) -> u32 {
        match self {
            QuantType::F16 => 1,
            QuantType::Q4_0 => 2,
            QuantType::Q4_1 => 3,
            QuantType::Q5_0 => 6,
            QuantType::Q5_1 => 7,
            QuantType::Q8_0 => 8,
            QuantType::Q4K => 12,
            QuantType::Q5K => 13,
            QuantType::Q6K => 14,
        }
    }

    pub fn from_ggml_type(code: u32) -> Option<QuantType> {
        QuantType::ALL.into_iter().find(|t| t.ggml_type() == code)
    }
}

#[cfg(test)]
mod tests;
