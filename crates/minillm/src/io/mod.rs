//! Models and tokenizers in and out, in the ecosystem's formats: safetensors with HF GPT-2 names,
//! config.json and generation_config.json, GGUF (llama.cpp's), and the HF hub's cache; and
//! resolving anything a `--model` or `--tokenizer` flag takes ([`load`], [`load_tokenizer`]).

pub mod chat_template;
pub mod generation_config;
pub mod gguf;
pub mod gguf_gpt2;
pub mod gguf_llama;
mod gguf_tokenizer;
pub mod hf_config;
pub mod hub;
pub(crate) mod mapped;
pub mod safetensors;

use crate::chat::Dialogue;
use crate::chat::jinja::JinjaTemplate;
use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, read_text};
use crate::model::Gpt;
use crate::tokenizer::{Tokenizer, formats};
use generation_config::GenerationConfig;
use mapped::Mapped;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory holding a model's files: a run directory resolves to its latest checkpoint
/// (through `latest.json`); a checkpoint or HF-style model directory is itself; anything else
/// that looks like a hub id (`gpt2`, `openai-community/gpt2`) is looked up in the HF cache.
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
    let spec = path.to_string_lossy();
    if !path.exists()
        && hub::is_hub_id(&spec)
        && let Some(cache) = hub::cache_dir()
    {
        return hub::find_in_cache(&spec, &cache);
    }
    Err(Error::Invalid(format!(
        "{} is not a model: expected a run directory (latest.json), a model directory (config.json + model.safetensors) or an HF hub id",
        path.display()
    )))
}

/// A tokenizer from a name or a path: `gpt2` is the built-in GPT-2 vocabulary, `bytes` the 256
/// single bytes (when no file of that name exists); a tokenizer file (see
/// [`formats::read_file`]); a `.gguf` model file (the tokenizer in its metadata); a directory
/// holding one; or a training run, whose latest checkpoint holds it (as `--model RUN` finds it).
pub fn load_tokenizer(spec: &Path) -> Result<Tokenizer> {
    if !spec.exists() {
        return match spec.to_str() {
            Some("gpt2") => Ok(Tokenizer::gpt2().clone()),
            Some("bytes") => Ok(Tokenizer::bytes()),
            _ => Err(Error::Invalid(format!(
                "no tokenizer file or directory at '{}' (built in: gpt2, bytes)",
                spec.display()
            ))),
        };
    }
    if spec.join("latest.json").is_file() {
        return formats::read_dir(&model_dir(spec)?);
    }
    if spec.is_dir() {
        return formats::read_dir(spec);
    }
    if spec.extension().is_some_and(|e| e == "gguf") {
        // Only the metadata is read: the mapped tensors' pages are never touched.
        let mapped = Mapped::open(spec)?;
        let file = gguf::Gguf::parse(mapped.bytes(), spec)?;
        return Ok(gguf_tokenizer::read(&file, spec)?.0);
    }
    formats::read_file(spec)
}

/// A model ready to run: its weights, its tokenizer, and the generation settings and chat
/// template it came with.
pub struct Loaded {
    pub model: Gpt,
    pub tok: Tokenizer,
    pub generation: GenerationConfig,
    pub chat_template: Option<JinjaTemplate>,
}

impl Loaded {
    /// How conversations become this model's prompts (see [`Dialogue::of`]).
    pub fn dialogue(&self) -> Dialogue {
        Dialogue::of(&self.tok, self.chat_template.as_ref())
    }

    /// The tokens generation stops at: the model's own end tokens (its generation config's
    /// list), else its tokenizer's end of text.
    pub fn end_ids(&self) -> Vec<u32> {
        match &self.generation.eos_token_ids {
            ids if !ids.is_empty() => ids.clone(),
            _ => self.tok.end_of_text().into_iter().collect(),
        }
    }
}

/// A model with its tokenizer from anything `--model` accepts: a run directory, a checkpoint or
/// HF-style model directory, an HF hub id in the local cache, or a `.gguf` file.
pub fn load(spec: &Path) -> Result<Loaded> {
    if spec.extension().is_some_and(|e| e == "gguf") {
        return load_gguf(spec);
    }
    let dir = model_dir(spec)?;
    let model = load_model(&dir)?;
    // tokenizer.json, or GPT-2's vocab.json + merges.txt.
    let tok = formats::read_dir(&dir)?;
    if tok.vocab_size() != model.config.vocab_size {
        return Err(Error::Invalid(format!(
            "{}: the tokenizer has {} ids but the model {}; they do not belong together",
            dir.display(),
            tok.vocab_size(),
            model.config.vocab_size
        )));
    }
    let generation = GenerationConfig::read(&dir)?;
    if let Some(eos) = generation.eos_token_ids.iter().find(|&&id| id as usize >= tok.vocab_size()) {
        return Err(Error::format(
            dir.join("generation_config.json"),
            format!("eos_token_id {eos} is outside the vocabulary of {}", tok.vocab_size()),
        ));
    }
    let chat_template = chat_template::read(&dir, &tok, &generation)?;
    Ok(Loaded { model, tok, generation, chat_template })
}

/// A `.gguf` file of either kind minillm reads: GPT-2's architecture or the LLaMA family's.
fn load_gguf(path: &Path) -> Result<Loaded> {
    let mapped: Arc<Mapped> = Arc::new(Mapped::open(path)?);
    let arch = gguf::Gguf::parse(mapped.bytes(), path)?
        .get("general.architecture")
        .and_then(gguf::Value::as_str)
        .map(str::to_string);
    match arch.as_deref() {
        Some("llama" | "qwen2") => {
            let (model, tok, extras) = gguf_llama::from_shared(mapped, path)?;
            Ok(Loaded { model, tok, generation: extras.generation, chat_template: extras.chat_template })
        }
        _ => {
            let (model, tok) = gguf_gpt2::from_shared(mapped, path)?;
            Ok(Loaded { model, tok, generation: GenerationConfig::default(), chat_template: None })
        }
    }
}

/// Loads a model from a directory holding `config.json` and `model.safetensors` (or shards
/// listed in `model.safetensors.index.json`), or from a `.safetensors` file with `config.json`
/// beside it.
pub fn load_model(path: &Path) -> Result<Gpt> {
    let (dir, weights): (PathBuf, Vec<PathBuf>) = if path.is_dir() {
        (path.to_path_buf(), weight_files(path)?)
    } else {
        (path.parent().unwrap_or(Path::new(".")).to_path_buf(), vec![path.to_path_buf()])
    };
    let config_path = dir.join("config.json");
    let config = hf_config::from_json(&read_text(&config_path)?, &config_path)?;
    let files = weights.iter().map(|w| Mapped::open(w)).collect::<Result<Vec<_>>>()?;
    let shards: Vec<(&[u8], &Path)> = files.iter().map(|f| (f.bytes(), f.path.as_path())).collect();
    let release = |bytes: &[u8]| files.iter().for_each(|f| f.release(bytes));
    safetensors::load(&shards, config, &release)
}

/// The safetensors files of a model directory: `model.safetensors`, or the shards its index
/// names. A pickled `pytorch_model.bin` is refused: loading a pickle runs code from the file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v: serde_json::Value = serde_json::from_str(&read_text(&index)?)
            .map_err(|e| Error::format(&index, format!("not valid JSON: {e}")))?;
        let map = v["weight_map"].as_object().ok_or_else(|| Error::format(&index, "has no weight_map"))?;
        let mut names: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.iter().any(|n| n.contains('/') || n.contains('\\') || n.starts_with('.')) {
            return Err(Error::format(&index, "names a shard outside its directory"));
        }
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::Invalid(format!(
            "{} holds only pytorch_model.bin, a Python pickle: loading one can run any code it contains, so minillm does not. Convert it once where you trust it: `python -c \"from transformers import AutoModelForCausalLM as M; M.from_pretrained('{}').save_pretrained('{}', safe_serialization=True)\"`",
            dir.display(),
            dir.display(),
            dir.display()
        )));
    }
    Err(Error::Invalid(format!("{} has no model.safetensors (or shards with their index)", dir.display())))
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if needed), each atomically.
pub fn save_model(dir: &Path, model: &Gpt, eos: Option<u32>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|cause| Error::Write { path: dir.to_path_buf(), cause })?;
    safetensors::save(&dir.join("model.safetensors"), &model.config, &model.full_params())?;
    atomic_write(&dir.join("config.json"), hf_config::to_json(&model.config, eos).as_bytes())
}
