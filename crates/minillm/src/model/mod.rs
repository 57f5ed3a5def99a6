//! The GPT: configuration, the flat parameter buffer, the layers and the model that runs them.

pub mod config;
pub mod layers;
pub mod params;

pub use config::ModelConfig;
pub mod activations;
pub mod gpt;
pub mod kv_cache;
pub mod quantized;

pub use gpt::Gpt;
