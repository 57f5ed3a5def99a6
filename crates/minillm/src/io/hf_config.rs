//! HF `config.json`: GPT-2's read into a [`ModelConfig`] and written so that `transformers`
//! loads the model as a `GPT2LMHeadModel`; the LLaMA family's (`llama`, `mistral`, `qwen2`)
//! read, with every feature minillm does not model refused by name.

use crate::error::{Error, Result};
use crate::model::config::{Family, LlamaShape, RopeScaling};
use crate::model::layers::layernorm::EPS;
use crate::model::{Arch, ModelConfig};
use serde_json::{Value, json};
use std::path::Path;

pub fn from_json(text: &str, path: &Path) -> Result<ModelConfig> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    match v["model_type"].as_str() {
        Some("gpt2") => {}
        Some("llama") => return llama_from_json(&v, path, Family::Llama),
        Some("mistral") => return llama_from_json(&v, path, Family::Mistral),
        Some("qwen2") => return llama_from_json(&v, path, Family::Qwen2),
        Some(other) => {
            return Err(Error::format(
                path,
                format!(
                    "model_type is '{other}'; minillm knows gpt2 and the LLaMA family (llama, mistral, qwen2)"
                ),
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
    let size = |key: &str| whole(&v, key, path)?.ok_or_else(|| missing(path, key));
    let config = ModelConfig {
        n_layer: size("n_layer")?,
        n_head: size("n_head")?,
        n_embd: size("n_embd")?,
        block_size: size("n_positions")?,
        vocab_size: size("vocab_size")?,
        dropout: v["resid_pdrop"].as_f64().unwrap_or(0.0) as f32,
        bias: true,
        arch: Arch::Gpt2,
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

/// A Llama, Mistral or Qwen2 config.json (either transformers' older `rope_theta` +
/// `rope_scaling` keys or its newer `rope_parameters`).
fn llama_from_json(v: &Value, path: &Path, family: Family) -> Result<ModelConfig> {
    let bad = |m: String| Err(Error::format(path, m));
    let size = |key: &str| whole(v, key, path)?.ok_or_else(|| missing(path, key));
    let optional = |key: &str| whole(v, key, path);
    let flag = |key: &str| v[key].as_bool().unwrap_or(false);
    if let Some(act) = v["hidden_act"].as_str().filter(|a| *a != "silu") {
        return bad(format!("hidden_act '{act}' is not supported (the LLaMA family's SwiGLU uses silu)"));
    }
    for key in ["num_local_experts", "num_experts", "num_experts_per_tok"] {
        if !v[key].is_null() {
            return bad(format!("'{key}' describes a mixture of experts, which minillm does not model"));
        }
    }
    if family == Family::Llama && flag("attention_bias") {
        return bad(
            "attention_bias is true (biases on q, k, v and o); minillm models Qwen2's q/k/v biases only"
                .into(),
        );
    }
    if flag("mlp_bias") {
        return bad("mlp_bias is true; minillm's SwiGLU MLP has no biases".into());
    }
    let (n_head, n_embd) = (size("num_attention_heads")?, size("hidden_size")?);
    let block_size = size("max_position_embeddings")?;
    // Attention over a sliding window shorter than the context is a different model.
    let windowed = family == Family::Mistral || flag("use_sliding_window");
    if let Some(window) = optional("sliding_window")?.filter(|&w| windowed && w < block_size) {
        return bad(format!(
            "sliding_window {window} is shorter than the context of {block_size}; minillm attends over the whole context"
        ));
    }
    let rope = &v["rope_parameters"];
    let theta = rope["rope_theta"].as_f64().or(v["rope_theta"].as_f64()).unwrap_or(10000.0);
    let scaling = if v["rope_scaling"].is_object() { &v["rope_scaling"] } else { rope };
    let kind = scaling["rope_type"].as_str().or(scaling["type"].as_str()).unwrap_or("default");
    let number = |key: &str| -> Result<f64> {
        scaling[key]
            .as_f64()
            .ok_or_else(|| Error::format(path, format!("rope scaling '{kind}' needs a number '{key}'")))
    };
    let rope_scaling = match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: number("factor")? }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_context: number("original_max_position_embeddings")? as usize,
        }),
        other => {
            return bad(format!(
                "rope scaling '{other}' is not supported (minillm knows default, linear and llama3)"
            ));
        }
    };
    let config = ModelConfig {
        n_layer: size("num_hidden_layers")?,
        n_head,
        n_embd,
        block_size,
        vocab_size: size("vocab_size")?,
        dropout: v["attention_dropout"].as_f64().unwrap_or(0.0) as f32,
        bias: false,
        arch: Arch::Llama(LlamaShape {
            family,
            n_kv_head: optional("num_key_value_heads")?.unwrap_or(n_head),
            head_dim: optional("head_dim")?.unwrap_or(n_embd / n_head.max(1)),
            intermediate: size("intermediate_size")?,
            rope_theta: theta,
            rope_scaling,
            norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            qkv_bias: family == Family::Qwen2,
            tied_head: flag("tie_word_embeddings"),
        }),
    };
    config.validate().map_err(|e| Error::format(path, e.to_string()))?;
    Ok(config)
}

/// `v[key]` as a whole number: `None` when absent or null, an error naming the key when it is
/// something else.
fn whole(v: &Value, key: &str, path: &Path) -> Result<Option<usize>> {
    match &v[key] {
        Value::Null => Ok(None),
        x => x
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| Error::format(path, format!("'{key}' is not a whole number"))),
    }
}

fn missing(path: &Path, key: &str) -> Error {
    Error::format(path, format!("'{key}' is missing or not a whole number"))
}

/// A complete config for transformers: GPT2Config, or LlamaConfig / MistralConfig /
/// Qwen2Config. `eos` is the end-of-text id, when the tokenizer has one.
pub fn to_json(config: &ModelConfig, eos: Option<u32>) -> String {
    if let Arch::Llama(l) = &config.arch {
        return llama_to_json(config, l, eos);
    }
    let doc = json!({
        "architectures": [config.hf_architecture()],
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

fn llama_to_json(config: &ModelConfig, l: &LlamaShape, eos: Option<u32>) -> String {
    let rope_scaling = match l.rope_scaling {
        None => Value::Null,
        Some(RopeScaling::Linear { factor }) => json!({"rope_type": "linear", "factor": factor}),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context }) => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_context,
        }),
    };
    let mut doc = json!({
        "architectures": [config.hf_architecture()],
        "model_type": l.family.model_type(),
        "hidden_act": "silu",
        "hidden_size": config.n_embd,
        "intermediate_size": l.intermediate,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": l.n_kv_head,
        "head_dim": l.head_dim,
        "max_position_embeddings": config.block_size,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": l.norm_eps,
        "rope_theta": l.rope_theta,
        "rope_scaling": rope_scaling,
        "attention_dropout": config.dropout,
        "initializer_range": 0.02,
        "tie_word_embeddings": l.tied_head,
        "use_cache": true,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "dtype": "float32",
    });
    let extra = match l.family {
        Family::Llama => json!({"attention_bias": false, "mlp_bias": false, "pretraining_tp": 1}),
        Family::Mistral => json!({"sliding_window": null}),
        Family::Qwen2 => {
            json!({"use_sliding_window": false, "sliding_window": null, "max_window_layers": config.n_layer})
        }
    };
    for (k, v) in extra.as_object().expect("an object") {
        doc[k] = v.clone();
    }
    serde_json::to_string_pretty(&doc).expect("JSON serializes")
}
