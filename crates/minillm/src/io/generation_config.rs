//! HF `generation_config.json`: the sampling settings a model was published with. They become
//! the defaults of `generate` and `chat`; a flag the user passes still wins.

use crate::error::{Error, Result};
use crate::fsutil::read_text;
use crate::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::Path;

/// The settings found in the file; `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    /// `do_sample: false` in the file reads as temperature 0 (greedy), as HF would decode.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
    /// The tokens that end a generation: one, or several (Llama 3 Instruct ends at
    /// `<|end_of_text|>`, `<|eom_id|>` and `<|eot_id|>`); empty when the file names none.
    pub eos_token_ids: Vec<u32>,
}

/// The tokens a model's texts begin and end with, as exports write them (HF's `bos_token` and
/// `eos_token`, GGUF's `tokenizer.ggml.bos_token_id` and `eos_token_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct TextTokens {
    /// The prefix every text starts with where the tokenizer has one, else the end token, as
    /// GPT-2 uses `<|endoftext|>` for both.
    pub bos: Option<u32>,
    /// The first end token the model was published with, else the tokenizer's end-of-text.
    pub eos: Option<u32>,
    /// Every special token the generation config stops at (may be empty).
    pub ends: Vec<u32>,
}

impl TextTokens {
    pub fn of(tok: &Tokenizer, generation: &GenerationConfig) -> TextTokens {
        let ends: Vec<u32> =
            generation.eos_token_ids.iter().copied().filter(|&id| tok.is_special(id)).collect();
        let eos = ends.first().copied().or_else(|| tok.end_of_text());
        TextTokens { bos: tok.prefix().or(eos), eos, ends }
    }
}

impl GenerationConfig {
    /// Reads `generation_config.json` in `dir`; a directory without one gives no settings.
    pub fn read(dir: &Path) -> Result<GenerationConfig> {
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(GenerationConfig::default());
        }
        let v: Value = serde_json::from_str(&read_text(&path)?)
            .map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
        let float = |key: &str| -> Result<Option<f32>> {
            match &v[key] {
                Value::Null => Ok(None),
                x => x
                    .as_f64()
                    .map(|f| Some(f as f32))
                    .ok_or_else(|| Error::format(&path, format!("'{key}' is not a number"))),
            }
        };
        let whole = |key: &str| -> Result<Option<u64>> {
            match &v[key] {
                Value::Null => Ok(None),
                x => x
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| Error::format(&path, format!("'{key}' is not a whole number"))),
            }
        };
        let listed = match &v["eos_token_id"] {
            Value::Array(ids) => ids.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        let eos_token_ids = listed
            .iter()
            .map(|x| {
                x.as_u64()
                    .filter(|&id| id < u32::MAX as u64)
                    .map(|id| id as u32)
                    .ok_or_else(|| Error::format(&path, "'eos_token_id' is not a token id or a list of them"))
            })
            .collect::<Result<Vec<u32>>>()?;
        let mut temperature = float("temperature")?;
        if v["do_sample"] == Value::Bool(false) {
            temperature = Some(0.0);
        }
        Ok(GenerationConfig {
            temperature,
            top_k: whole("top_k")?.map(|k| k as usize),
            top_p: float("top_p")?,
            min_p: float("min_p")?,
            repetition_penalty: float("repetition_penalty")?,
            max_new_tokens: whole("max_new_tokens")?.map(|n| n as usize),
            eos_token_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<GenerationConfig> {
        let dir =
            std::env::temp_dir().join(format!("minillm-genconfig-{}-{}", std::process::id(), json.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("generation_config.json"), json).unwrap();
        let out = GenerationConfig::read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn reads_hf_keys_and_greedy_when_do_sample_is_false() {
        let c = read(
            r#"{"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
            "repetition_penalty": 1.1, "max_new_tokens": 64, "eos_token_id": [50256, 50257]}"#,
        )
        .unwrap();
        assert_eq!(c.temperature, Some(0.7));
        assert_eq!((c.top_k, c.top_p, c.min_p), (Some(20), Some(0.9), None));
        assert_eq!(
            (c.repetition_penalty, c.max_new_tokens, c.eos_token_ids),
            (Some(1.1), Some(64), vec![50256, 50257])
        );
        let greedy = read(r#"{"do_sample": false, "temperature": 0.7, "eos_token_id": 3}"#).unwrap();
        assert_eq!((greedy.temperature, greedy.eos_token_ids), (Some(0.0), vec![3]));
        assert_eq!(GenerationConfig::read(Path::new("/nonexistent")).unwrap(), GenerationConfig::default());
    }

    #[test]
    fn wrong_types_are_named() {
        assert!(
            read(r#"{"top_k": "many"}"#).unwrap_err().to_string().contains("'top_k' is not a whole number")
        );
        assert!(read(r#"{"eos_token_id": "x"}"#).unwrap_err().to_string().contains("eos_token_id"));
        assert!(read("{oops").unwrap_err().to_string().contains("not valid JSON"));
    }
}
