//! `minillm bench library`: the library calls behind `generate` and `inspect`, timed in this
//! process on a model as stored: what the Python package's `Model.generate` and
//! `Model.next_token_probs` cost without Python (scripts/bench/python_overhead.py compares).

use super::bench::median;
use super::session::{MODEL_HELP, SamplingArgs, fit_context, load, stream};
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::rng::Rng;
use std::path::PathBuf;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct LibraryArgs {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// The text to continue and to look at.
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    /// The next tokens `inspect` ranks (Model.next_token_probs's `top`).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Timed calls of each; the median counts.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn library(a: LibraryArgs) -> Result<()> {
    if a.rounds == 0 || a.top == 0 {
        bail!("--rounds and --top must be at least 1");
    }
    let mut loaded = load(&a.model)?;
    let sampling = a.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    // As a Python script calls them: each call in turn, from the text (encode, fit the context,
    // then generate with a fresh seed, or look).
    let (mut generate, mut inspect, mut new_tokens) = (Vec::new(), Vec::new(), 0);
    for _ in 0..a.rounds {
        let started = Instant::now();
        let ids = fit_context(loaded.tok.encode_prompt(&a.prompt)?, loaded.model.config.block_size, None)?;
        let out = stream(&mut loaded, &ids, &sampling, &mut Rng::new(sampling.seed), |_| Ok(()))?;
        generate.push(started.elapsed().as_secs_f64());
        new_tokens = out.tokens.len();
    }
    for _ in 0..a.rounds {
        let started = Instant::now();
        let ids = loaded.tok.encode_prompt(&a.prompt)?;
        minillm::inspect::inspect(&loaded.model, &loaded.tok, &ids, a.top, None)?;
        inspect.push(started.elapsed().as_secs_f64());
    }
    let (generate, inspect) = (median(&mut generate), median(&mut inspect));
    if a.json {
        let doc = serde_json::json!({
            "generate_s": generate, "new_tokens": new_tokens, "inspect_s": inspect,
            "threads": rayon::current_num_threads(),
        });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{}: generate {new_tokens} tokens {:.3} ms ({:.0} tokens/s), next-token probabilities {:.3} ms; median of {} calls",
        a.model.display(),
        generate * 1e3,
        new_tokens as f64 / generate,
        inspect * 1e3,
        a.rounds
    );
    Ok(())
}
