//! Parameters as safetensors with HF GPT-2's tensor names and shapes (`transformer.h.0.attn.c_attn.weight`,
//! Conv1D weights stored (in, out)), as `GPT2LMHeadModel.save_pretrained` writes them.
//!
//! Loading checks every name, shape and dtype and names the first one that is wrong.

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;
use crate::model::ModelConfig;
use crate::model::params::Layout;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

const PREFIX: &str = "transformer.";

/// Serializes `params` (laid out for `config`) to safetensors bytes. The padding rows of `wte`
/// are left out; a model without biases gets zero biases, which HF's GPT-2 expects.
pub fn to_bytes(config: &ModelConfig, params: &[f32]) -> Result<Vec<u8>> {
    let layout = Layout::new(config);
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &layout.tensors {
        let mut shape = t.shape.clone();
        let mut data = &params[t.range()];
        if t.name == "wte.weight" {
            shape[0] = config.vocab_size;
            data = &data[..config.vocab_size * config.n_embd];
        }
        owned.push((format!("{PREFIX}{}", t.name), shape, bytes_of(data)));
    }
    if !config.bias {
        for t in &layout.tensors {
            if let Some(stem) = t.name.strip_suffix(".weight").filter(|s| *s != "wte" && *s != "wpe") {
                let len = if t.shape.len() == 2 { t.shape[1] } else { t.shape[0] };
                owned.push((format!("{PREFIX}{stem}.bias"), vec![len], vec![0u8; 4 * len]));
            }
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Invalid(e.to_string()))
}

fn bytes_of(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn save(path: &Path, config: &ModelConfig, params: &[f32]) -> Result<()> {
    atomic_write(path, &to_bytes(config, params)?)
}

/// Reads parameters for `config` from safetensors bytes; `path` only names the file in errors.
pub fn from_bytes(bytes: &[u8], config: &ModelConfig, path: &Path) -> Result<Vec<f32>> {
    from_shards(&[(bytes, path)], config)
}

/// [`from_bytes`] for a checkpoint split over several files (HF's sharded safetensors).
pub fn from_shards(shards: &[(&[u8], &Path)], config: &ModelConfig) -> Result<Vec<f32>> {
    let mut files = Vec::with_capacity(shards.len());
    for &(bytes, path) in shards {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        files.push((file, path));
    }
    let path = shards.first().map_or(Path::new("model.safetensors"), |s| s.1);
    let layout = Layout::new(config);
    let mut params = vec![0.0f32; layout.total];
    let mut found: HashMap<String, TensorView> = HashMap::new();
    for (name, view) in files.iter().flat_map(|(f, _)| f.tensors()) {
        let short = name.strip_prefix(PREFIX).unwrap_or(&name).to_string();
        let is_buffer = short.starts_with("h.")
            && (short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias"));
        if is_buffer || short == "lm_head.weight" {
            continue; // the causal-mask buffers of old checkpoints, and the tied LM head
        }
        let zero_bias_of_biasless_model = !config.bias && short.ends_with(".bias");
        if layout.get(&short).is_none() && !zero_bias_of_biasless_model {
            return Err(Error::format(
                path,
                format!("unexpected tensor '{name}': not part of a GPT-2 model shaped like config.json"),
            ));
        }
        found.insert(short, view);
    }
    for t in &layout.tensors {
        let view = found
            .get(&t.name)
            .ok_or_else(|| Error::format(path, format!("tensor '{PREFIX}{}' is missing", t.name)))?;
        let mut want = t.shape.clone();
        if t.name == "wte.weight" {
            want[0] = config.vocab_size;
        }
        if view.shape() != want.as_slice() {
            return Err(Error::format(
                path,
                format!(
                    "tensor '{PREFIX}{}' has shape {:?}, the configuration needs {want:?}",
                    t.name,
                    view.shape()
                ),
            ));
        }
        let dst = &mut params[t.offset..t.offset + want.iter().product::<usize>()];
        let data = view.data();
        match view.dtype() {
            Dtype::F32 => {
                for (d, c) in dst.iter_mut().zip(data.chunks_exact(4)) {
                    *d = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                }
            }
            // Half-precision checkpoints are widened: minillm computes in f32.
            Dtype::F16 => {
                for (d, c) in dst.iter_mut().zip(data.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            Dtype::BF16 => {
                for (d, c) in dst.iter_mut().zip(data.chunks_exact(2)) {
                    *d = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor '{PREFIX}{}' is {other:?}; minillm reads F32, F16 and BF16 checkpoints",
                        t.name
                    ),
                ));
            }
        }
    }
    Ok(params)
}
