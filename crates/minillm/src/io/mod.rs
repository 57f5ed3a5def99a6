//! Model files in the ecosystem's formats: safetensors with HF GPT-2 names, and config.json.

pub mod hf_config;
pub mod safetensors;

use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, read_text};
use crate::model::Gpt;
use std::path::{Path, PathBuf};

/// The directory holding a model's files: a run directory resolves to its latest checkpoint
/// (through `latest.json`); a checkpoint or HF-style model directory is itself.
pub fn model_dir(path: &Path) -> Result<PathBuf> {
    let latest = path.join("latest.json");
    if latest.is_file() {
        let v: serde_json::Value = serde_json::from_str(&read_text(&latest)?)
            .map_err(|e| Error::format(&latest, format!("not valid JSON: {e}")))?;
        let name = v["checkpoint"].as_str().ok_or_else(|| Error::format(&latest, "names no checkpoint"))?;
        return Ok(path.join(name));
    }
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::Invalid(format!(
        "{} is not a model: expected a run directory (latest.json) or a model directory (config.json + model.safetensors)",
        path.display()
    )))
}

/// Loads a model from a directory holding `config.json` and `model.safetensors`, or from a
/// `.safetensors` file with `config.json` beside it.
pub fn load_model(path: &Path) -> Result<Gpt> {
    let (dir, weights): (PathBuf, PathBuf) = if path.is_dir() {
        (path.to_path_buf(), path.join("model.safetensors"))
    } else {
        (path.parent().unwrap_or(Path::new(".")).to_path_buf(), path.to_path_buf())
    };
    let config_path = dir.join("config.json");
    let config = hf_config::from_json(&read_text(&config_path)?, &config_path)?;
    let bytes = std::fs::read(&weights).map_err(|cause| Error::Read { path: weights.clone(), cause })?;
    let params = safetensors::from_bytes(&bytes, &config, &weights)?;
    Gpt::from_params(config, params, 0)
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if needed), each atomically.
pub fn save_model(dir: &Path, model: &Gpt, eos: Option<u32>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|cause| Error::Write { path: dir.to_path_buf(), cause })?;
    safetensors::save(&dir.join("model.safetensors"), &model.config, &model.params)?;
    atomic_write(&dir.join("config.json"), hf_config::to_json(&model.config, eos).as_bytes())
}
