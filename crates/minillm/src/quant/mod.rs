//! Weight quantization in GGUF's block formats: fewer bytes per weight, so batch-1 decoding
//! (which reads every weight once per token) runs faster.
//!
//! A matrix is stored row by row (one row per output), each row cut into blocks of 32 weights
//! along the input. A block holds its own scale, so one outlier only coarsens its 32 neighbours:
//!
//! | type | block bytes | bits per weight | a block |
//! |---|---|---|---|
//! | f16  | 64 | 16  | 32 half floats |
//! | q8_0 | 34 | 8.5 | f16 scale d, then 32 int8 q; w = d * q |
//! | q4_0 | 18 | 4.5 | f16 scale d, then 16 bytes: w_j = d * (low nibble - 8), w_{j+16} = d * (high nibble - 8) |
//!
//! The bytes are exactly llama.cpp's (`block_q8_0`, `block_q4_0`), so a matrix goes into a GGUF
//! file as it is.
//!
//! Each format is one [`BlockFormat`]: quantize and dequantize one block, and a portable
//! reference dot product beside the SIMD ones ([`simd`]: AVX-512 or AVX2, chosen at run time).
//! q8_0 and q4_0 rows are multiplied with activations rounded to 8 bits ([`activations`]), as in
//! llama.cpp: the result is the dot product of the dequantized row with the dequantized
//! activations up to float rounding, and within the activations' rounding of the f32 product;
//! the tests check both.

pub(crate) mod activations;
mod formats;
mod matrix;
pub(crate) mod simd;

pub use formats::{BlockFormat, F16, IntegerBlocks, Q4_0, Q8_0};
pub use matrix::QMatrix;

use crate::error::{Error, Result};

/// Weights per block, in every format here.
pub const BLOCK: usize = 32;

/// How a matrix's weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantType {
    F16,
    Q8_0,
    Q4_0,
}

impl QuantType {
    pub const ALL: [QuantType; 3] = [QuantType::F16, QuantType::Q8_0, QuantType::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            QuantType::F16 => "f16",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
        }
    }

    pub fn parse(name: &str) -> Result<QuantType> {
        QuantType::ALL
            .into_iter()
            .find(|t| t.name() == name.to_ascii_lowercase())
            .ok_or_else(|| Error::Invalid(format!("unknown weight type '{name}': choose f16, q8_0 or q4_0")))
    }

    /// Bytes of one block of [`BLOCK`] weights.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::F16 => F16::BYTES,
            QuantType::Q8_0 => Q8_0::BYTES,
            QuantType::Q4_0 => Q4_0::BYTES,
        }
    }

    /// Bytes of one row of `cols` weights (a multiple of [`BLOCK`]).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / BLOCK * self.block_bytes()
    }

    /// Storage per weight, scales included: 16, 8.5 or 4.5.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / BLOCK as f64
    }

    /// The type's id in ggml (and GGUF).
    pub fn ggml_type(self) -> u32 {
        match self {
            QuantType::F16 => 1,
            QuantType::Q8_0 => 8,
            QuantType::Q4_0 => 2,
        }
    }

    pub fn from_ggml_type(code: u32) -> Option<QuantType> {
        QuantType::ALL.into_iter().find(|t| t.ggml_type() == code)
    }
}

#[cfg(test)]
mod tests;
