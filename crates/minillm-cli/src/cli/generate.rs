//! `minillm generate`: continue a prompt with a trained model, streaming the text as it comes.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::rng::Rng;
use minillm::sample::stop::StopMatcher;
use minillm::sample::{SamplerConfig, generate};
use minillm::tokenizer::stream::StreamDecoder;
use minillm::{SpecialTokens, io};
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
    #[arg(long, default_value_t = 100)]
    max_new_tokens: usize,
    /// 0 picks the most likely token every time (greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sample only from the smallest set of tokens whose probability reaches p (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Divide (or multiply, if negative) the logits of tokens already in the text (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Subtract this times each token's count so far from its logit.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Subtract this from the logit of every token already in the text.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// What to do with a prompt longer than the model's context: refuse (default) or keep its
    /// end (`left`).
    #[arg(long, value_name = "left")]
    truncate: Option<String>,
    /// Stop before this text appears (repeatable); it is not printed.
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Print the new tokens with their ids as JSON instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let dir = io::model_dir(&a.model)?;
    let mut model = io::load_model(&dir)?;
    let tok_path = dir.join("tokenizer.json");
    let tok = minillm::tokenizer::formats::read_hf_json(&tok_path)?;
    if tok.vocab_size() != model.config.vocab_size {
        bail!(
            "the tokenizer has {} ids but the model {}; they do not belong together",
            tok.vocab_size(),
            model.config.vocab_size
        );
    }
    let mut prompt = tok.encode(&a.prompt, SpecialTokens::AsText)?;
    let window = model.config.block_size;
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    if prompt.len() >= window {
        match a.truncate.as_deref() {
            Some("left") => prompt.drain(..prompt.len() + 1 - window).for_each(drop),
            Some(other) => bail!("--truncate takes `left`, not `{other}`"),
            None => bail!(
                "the prompt is {} tokens but the model's context holds {window}; shorten it or pass --truncate left to keep its end",
                prompt.len()
            ),
        }
    }
    let valid =
        a.top_p > 0.0 && a.top_p <= 1.0 && (0.0..=1.0).contains(&a.min_p) && a.repetition_penalty > 0.0;
    if !valid {
        bail!("--top-p must be in (0, 1], --min-p in [0, 1] and --repetition-penalty above 0");
    }
    let config = SamplerConfig {
        temperature: a.temperature.max(0.0),
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repetition_penalty: a.repetition_penalty,
        frequency_penalty: a.frequency_penalty,
        presence_penalty: a.presence_penalty,
    };
    let mut rng = Rng::new(a.seed);
    let stop = tok.special_id("<|endoftext|>");
    let mut decoder = StreamDecoder::new(&tok);
    let mut stops = StopMatcher::new(a.stop.clone());
    let mut out = std::io::stdout().lock();
    if !a.json {
        write!(out, "{}", a.prompt)?;
    }
    // Stream each piece once it is whole text and cannot be the start of a stop string; keep
    // the first error to report after the loop.
    let mut shown = String::new();
    let mut failed: Option<anyhow::Error> = None;
    let mut stopped = false;
    let ids = generate(&mut model, &prompt, a.max_new_tokens, config, &mut rng, stop, |id| {
        let step = decoder.push(id).map_err(anyhow::Error::from).and_then(|text| {
            let (safe, stop_here) = stops.push(&text);
            stopped = stop_here;
            shown.push_str(&safe);
            if !a.json {
                write!(out, "{safe}")?;
                out.flush()?;
            }
            Ok(())
        });
        failed = step.err();
        failed.is_none() && !stopped
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !stopped {
        // Generation ended another way: release what was held back.
        let (safe, _) = stops.push(&decoder.finish());
        let tail = safe + &stops.finish();
        if !a.json {
            write!(out, "{tail}")?;
        }
        shown.push_str(&tail);
    }
    if a.json {
        let tokens: Vec<serde_json::Value> = ids[prompt.len()..]
            .iter()
            .map(|&id| serde_json::json!({"id": id, "text": String::from_utf8_lossy(tok.token_bytes(id).unwrap_or_default())}))
            .collect();
        let doc = serde_json::json!({"prompt_tokens": prompt.len(), "tokens": tokens, "text": shown, "stopped_at_stop_string": stopped});
        writeln!(out, "{doc}")?;
    } else {
        writeln!(out)?;
    }
    Ok(())
}
