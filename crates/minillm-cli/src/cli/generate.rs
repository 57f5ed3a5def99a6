//! `minillm generate`: continue a prompt with a trained model, streaming the text as it comes.

use super::session::{Loaded, MODEL_HELP, SamplingArgs, fit_context, load, stream_many};
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::chat::{Message, Role};
use minillm::rng::Rng;
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// The text to continue (with --chat, the user's message to answer).
    prompt: String,
    /// Ask a fine-tuned model: the prompt becomes a user message in the model's chat template,
    /// and the reply (only) is printed, ending where the model closes its turn.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// What to do with a prompt longer than the model's context: refuse (default) or keep its
    /// end (`left`).
    #[arg(long, value_name = "left")]
    truncate: Option<String>,
    /// Print the new tokens with their ids and probabilities as JSON instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Continuations to generate, decoded together in one batch (sample i draws with seed + i,
    /// so sample 0 is what a single run with this seed gives).
    #[arg(long, short = 'n', default_value_t = 1, value_name = "N")]
    num_samples: usize,
}

pub fn run(a: Args) -> Result<()> {
    let mut loaded = load(&a.model)?;
    let prompt = prompt_ids(&mut loaded, &a.prompt, a.chat, a.truncate.as_deref())?;
    let echo = if a.chat { "" } else { a.prompt.as_str() };
    let mut sampling = a.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    sampling.prepare_output(&loaded)?;
    if a.num_samples == 0 || a.num_samples > 64 {
        bail!("--num-samples must be 1..=64, not {}", a.num_samples);
    }
    let mut rngs: Vec<Rng> =
        (0..a.num_samples as u64).map(|i| Rng::new(sampling.seed.wrapping_add(i))).collect();
    let mut out = std::io::stdout().lock();
    // One continuation streams as it is made; several are printed when all are done.
    let streaming = !a.json && a.num_samples == 1;
    if streaming {
        write!(out, "{echo}")?;
    }
    let results = stream_many(&mut loaded, &prompt, &sampling, &mut rngs, |_, piece| {
        if streaming {
            write!(out, "{piece}")?;
            out.flush()?;
        }
        Ok(())
    })?;
    for (i, result) in results.iter().enumerate() {
        if a.json {
            let tok = &loaded.tok;
            let tokens: Vec<serde_json::Value> = result
                .tokens
                .iter()
                .map(|&(id, prob)| serde_json::json!({"id": id, "text": tok.token_text(id), "prob": prob}))
                .collect();
            let mut doc = serde_json::json!({
                "prompt_tokens": prompt.len(), "tokens": tokens, "text": result.text,
                "stopped_at_stop_string": result.hit_stop,
            });
            if a.num_samples > 1 {
                doc["sample"] = i.into();
            }
            writeln!(out, "{doc}")?;
        } else if streaming {
            writeln!(out)?;
        } else {
            writeln!(out, "--- sample {} of {} ---\n{echo}{}", i + 1, a.num_samples, result.text)?;
        }
    }
    Ok(())
}

/// The prompt's ids, fitted into the context (see [`fit_context`]). With `chat`, the prompt is
/// a user message in the model's chat template, and generation stops where the model closes
/// its turn.
pub fn prompt_ids(loaded: &mut Loaded, prompt: &str, chat: bool, truncate: Option<&str>) -> Result<Vec<u32>> {
    let ids = if chat {
        let dialogue = loaded.dialogue();
        if !dialogue.has_template() {
            bail!("--chat needs a model with a chat template; fine-tune one with `minillm sft`");
        }
        loaded.generation.eos_token_ids = dialogue.end_ids();
        dialogue.render(&loaded.tok, &[Message::new(Role::User, prompt.to_string())])?
    } else {
        loaded.tok.encode_prompt(prompt)?
    };
    fit_context(ids, loaded.model.config.block_size, truncate)
}
