//! minillm: build a GPT-style language model end to end on a CPU, and see every part work.
//!
//! The path data walks, one module per arrow:
//!
//! ```text
//! bytes of text -> tokenizer (pre-tokenizer -> byte-level BPE) -> token ids
//! ```
//!
//! - [`corpus`]: the built-in training text, generated deterministically (no download).
//! - [`tokenizer`]: byte-level BPE (GPT-2 exact), its training, and the file formats.
//! - [`rng`]: the seeded random number generator every stage shares.
//! - [`fsutil`]: atomic writes, so nothing a user owns is ever half-written.

pub mod chat;
pub mod corpus;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod inspect;
pub mod io;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod rng;
pub mod sample;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
pub use tokenizer::{SpecialTokens, Tokenizer};
