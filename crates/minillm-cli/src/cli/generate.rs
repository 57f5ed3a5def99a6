//! `minillm generate`: continue a prompt with a trained model, streaming the text as it comes.

use super::session::{SamplingArgs, fit_context, load, stream};
use anyhow::Result;
use clap::Args as ClapArgs;
use minillm::SpecialTokens;
use minillm::rng::Rng;
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    /// A run directory (its latest checkpoint), a checkpoint, or a model directory with
    /// config.json, model.safetensors and tokenizer.json.
    #[arg(long, value_name = "RUN_OR_DIR")]
    model: PathBuf,
    /// The text to continue.
    prompt: String,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// What to do with a prompt longer than the model's context: refuse (default) or keep its
    /// end (`left`).
    #[arg(long, value_name = "left")]
    truncate: Option<String>,
    /// Print the new tokens with their ids and probabilities as JSON instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut loaded = load(&a.model)?;
    let prompt = loaded.tok.encode(&a.prompt, SpecialTokens::AsText)?;
    let prompt = fit_context(prompt, loaded.model.config.block_size, a.truncate.as_deref())?;
    a.sampling.config(loaded.model.config.vocab_size)?; // bad flags fail before any output
    let mut rng = Rng::new(a.sampling.seed);
    let mut out = std::io::stdout().lock();
    if !a.json {
        write!(out, "{}", a.prompt)?;
    }
    let result = stream(&mut loaded, &prompt, &a.sampling, &mut rng, |piece| {
        if !a.json {
            write!(out, "{piece}")?;
            out.flush()?;
        }
        Ok(())
    })?;
    if a.json {
        let tok = &loaded.tok;
        let tokens: Vec<serde_json::Value> = result
            .tokens
            .iter()
            .map(|&(id, prob)| {
                let text = String::from_utf8_lossy(tok.token_bytes(id).unwrap_or_default());
                serde_json::json!({"id": id, "text": text, "prob": prob})
            })
            .collect();
        let doc = serde_json::json!({
            "prompt_tokens": prompt.len(), "tokens": tokens, "text": result.text,
            "stopped_at_stop_string": result.hit_stop,
        });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(out)?;
    }
    Ok(())
}
