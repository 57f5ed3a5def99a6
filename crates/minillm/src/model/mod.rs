//! The GPT: configuration, the flat parameter buffer, the layers, the model as stored, the
//! inference path through the KV cache, and what training adds.

pub(crate) mod activations;
mod cache_attention;
pub mod config;
pub mod gpt;
pub mod kv_cache;
pub(crate) mod layers;
pub mod params;
mod quantize;
pub mod quantized;
pub mod training;

pub use config::{Arch, ModelConfig};
pub use gpt::{Gpt, Weight};
pub use layers::loss::IGNORE;
pub use training::Trainable;
