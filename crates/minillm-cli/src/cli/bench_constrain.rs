//! `minillm bench constrain`: what constrained decoding adds to each token, next to the decoding
//! step it rides on, measured in the same loop: GPT-2 small's shape (124M parameters, random
//! weights, GPT-2's 50,257-token vocabulary) decodes one sequence; before each draw the JSON
//! schema's mask is applied to the logits (restrict) and after it the parser advances (accept).
//! Both are timed per token (the draw itself, which happens either way, is not); when an output completes, a fresh one starts, so every step is
//! masked. The median over rounds counts (this machine's speed drifts between rounds).

use super::bench::median;
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::Tokenizer;
use minillm::constrain::{Grammars, Spec};
use minillm::model::kv_cache::KvCache;
use minillm::model::{Gpt, ModelConfig};
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, sample};
use std::time::Instant;

#[derive(ClapArgs)]
pub struct ConstrainArgs {
    /// The JSON schema to decode under [default: a list of people, each an object with a short
    /// name and an age: objects, strings, numbers and lists in turn].
    #[arg(long, value_name = "SCHEMA")]
    json_schema: Option<String>,
    /// Tokens decoded per round.
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const PEOPLE: &str = r#"{"type": "object", "properties": {"people": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": false}}}, "required": ["people"], "additionalProperties": false}"#;

pub fn run(a: ConstrainArgs) -> Result<()> {
    if a.tokens < 2 || a.rounds == 0 || a.tokens > 1000 {
        bail!("--tokens must be 2..=1000 and --rounds at least 1");
    }
    let schema: serde_json::Value = serde_json::from_str(a.json_schema.as_deref().unwrap_or(PEOPLE))
        .map_err(|e| anyhow::anyhow!("--json-schema is not valid JSON: {e}"))?;
    let tok = Tokenizer::gpt2();
    let end = tok.end_of_text().expect("GPT-2's tokenizer has <|endoftext|>");
    let config = ModelConfig::preset("gpt2")?;
    let model = Gpt::new(config, 1)?;
    let build = Instant::now();
    let grammars = Grammars::new(tok, &[end])?;
    let vocabulary_ms = build.elapsed().as_secs_f64() * 1e3;
    let spec = Spec::JsonSchema(schema);
    grammars.constraint(&spec)?; // a schema that cannot be used fails here, before any timing
    let sampler = SamplerConfig { temperature: 1.0, ..Default::default() };
    let (mut steps, mut masks) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let mut cache = KvCache::new(&model, 1);
        let mut rng = Rng::new(round as u64);
        let mut ids: Vec<u32> = tok.encode_prompt("Here are the people:")?;
        let mut logits = model.prefill(&mut cache, 0, &ids)?;
        let mut constraint = grammars.constraint(&spec)?;
        let (mut step_time, mut mask_time) = (0.0, 0.0);
        for _ in 0..a.tokens {
            let t = Instant::now();
            constraint.restrict(&mut logits)?;
            mask_time += t.elapsed().as_secs_f64();
            let id = sample(&logits, &ids, &sampler, &mut rng); // drawn with or without a mask
            let t = Instant::now();
            if id == end {
                constraint = grammars.constraint(&spec)?; // the output is complete: start another
            } else {
                constraint.accept(id)?;
            }
            mask_time += t.elapsed().as_secs_f64();
            ids.push(id);
            let t = Instant::now();
            let next = model.decode(&mut cache, &[0], &[id])?;
            logits.clear();
            logits.extend_from_slice(next);
            step_time += t.elapsed().as_secs_f64();
        }
        steps.push(step_time / a.tokens as f64);
        masks.push(mask_time / a.tokens as f64);
    }
    let (step, mask) = (median(&mut steps), median(&mut masks));
    if a.json {
        let report = serde_json::json!({
            "model": "gpt2 (124M, random weights)", "vocabulary": tok.vocab_size(), "threads": rayon::current_num_threads(),
            "vocabulary_setup_ms": vocabulary_ms, "decode_step_ms": step * 1e3, "constraint_ms_per_token": mask * 1e3,
            "constraint_fraction_of_step": mask / step,
        });
        println!("{report}");
    } else {
        println!(
            "GPT-2 small shape, {} threads, {} tokens x {} rounds (median): decoding step {:.2} ms, constraint {:.3} ms a token ({:.1}% of a step); the vocabulary's trie took {vocabulary_ms:.0} ms once",
            rayon::current_num_threads(),
            a.tokens,
            a.rounds,
            step * 1e3,
            mask * 1e3,
            100.0 * mask / step
        );
    }
    Ok(())
}
