//! The chat template a model ships with: `chat_template.jinja` (what transformers 5 saves), or
//! `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates of which
//! minillm uses `default`), with the `bos_token` and `eos_token` it names.

use super::generation_config::GenerationConfig;
use crate::chat::jinja::JinjaTemplate;
use crate::error::{Error, Result};
use crate::fsutil::read_text;
use crate::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::Path;

/// The template in `dir`, if the model has one. Generation stops at the model's
/// `eos_token_id` list, else at its `eos_token`, else at the tokenizer's end-of-text.
pub fn read(dir: &Path, tok: &Tokenizer, generation: &GenerationConfig) -> Result<Option<JinjaTemplate>> {
    let config_path = dir.join("tokenizer_config.json");
    let config: Value = if config_path.is_file() {
        serde_json::from_str(&read_text(&config_path)?)
            .map_err(|e| Error::format(&config_path, format!("not valid JSON: {e}")))?
    } else {
        Value::Null
    };
    let jinja_path = dir.join("chat_template.jinja");
    let source = if jinja_path.is_file() {
        read_text(&jinja_path)?
    } else {
        match &config["chat_template"] {
            Value::Null => return Ok(None),
            Value::String(s) => s.clone(),
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .ok_or_else(|| {
                    Error::format(&config_path, "chat_template lists no template named 'default'")
                })?
                .to_string(),
            _ => {
                return Err(Error::format(
                    &config_path,
                    "chat_template is neither text nor a list of templates",
                ));
            }
        }
    };
    let token = |key: &str| -> Option<String> {
        match &config[key] {
            Value::String(s) => Some(s.clone()),
            v => v["content"].as_str().map(str::to_string),
        }
    };
    let (bos, eos) = (token("bos_token"), token("eos_token"));
    let ends = if generation.eos_token_ids.is_empty() {
        eos.as_deref().and_then(|e| tok.special_id(e)).or_else(|| tok.end_of_text()).into_iter().collect()
    } else {
        generation.eos_token_ids.clone()
    };
    let template = JinjaTemplate::new(&source, bos, eos, ends).map_err(|e| {
        Error::format(if jinja_path.is_file() { &jinja_path } else { &config_path }, e.to_string())
    })?;
    Ok(Some(template))
}
