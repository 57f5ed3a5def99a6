//! HF `config.json` for GPT-2 models: read into a [`ModelConfig`], and written so that
//! `transformers` loads the model as a `GPT2LMHeadModel`.

use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::model::layers::layernorm::EPS;
use serde_json::{Value, json};
use std::path::Path;

pub fn from_json(text: &str, path: &Path) -> Result<ModelConfig> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    match v["model_type"].as_str() {
        Some("gpt2") => {}
        Some(other) => {
            return Err(Error::format(
                path,
                format!("model_type is '{other}'; minillm runs GPT-2-architecture models (model_type gpt2)"),
            ));
        }
        None => {
            return Err(Error::format(path, "has no model_type; is this a model's config.json?"));
        }
    }
    if let Some(act) = v["activation_function"].as_str().filter(|a| *a != "gelu_new") {
        return Err(Error::format(
            path,
            format!("activation_function '{act}' is not supported (GPT-2 uses gelu_new)"),
        ));
    }
    let size = |key: &str| -> Result<usize> {
        v[key]
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| Error::format(path, format!("'{key}' is missing or not a whole number")))
    };
    let config = ModelConfig {
        n_layer: size("n_layer")?,
        n_head: size("n_head")?,
        n_embd: size("n_embd")?,
        block_size: size("n_positions")?,
        vocab_size: size("vocab_size")?,
        dropout: v["resid_pdrop"].as_f64().unwrap_or(0.0) as f32,
        bias: true,
    };
    if let Some(inner) = v["n_inner"].as_u64().filter(|&i| i as usize != 4 * config.n_embd) {
        return Err(Error::format(
            path,
            format!("n_inner {inner} is not 4 * n_embd; minillm's MLP is 4x wide"),
        ));
    }
    if let Some(eps) = v["layer_norm_epsilon"].as_f64().filter(|e| (e - f64::from(EPS)).abs() > 1e-9) {
        return Err(Error::format(
            path,
            format!("layer_norm_epsilon is {eps}; minillm's LayerNorm uses {EPS}"),
        ));
    }
    config.validate().map_err(|e| Error::format(path, e.to_string()))?;
    Ok(config)
}

/// A complete GPT2Config. `eos` is the end-of-text id, when the tokenizer has one.
pub fn to_json(config: &ModelConfig, eos: Option<u32>) -> String {
    let doc = json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_inner": null,
        "vocab_size": config.vocab_size,
        "layer_norm_epsilon": crate::model::layers::layernorm::EPS,
        "initializer_range": 0.02,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "dtype": "float32",
    });
    serde_json::to_string_pretty(&doc).expect("JSON serializes")
}
