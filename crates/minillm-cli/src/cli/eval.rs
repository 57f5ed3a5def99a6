//! `minillm eval`: a model's loss, perplexity and bits per byte on held-out text.

use super::display::count;
use super::session::{Loaded, MODEL_HELP, load};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use minillm::data::{read_shard, tokenizer_hash};
use minillm::eval::Score;
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// A text file, a token shard (.bin from `minillm prepare`), or a prepared directory
    /// (its val.bin is used).
    #[arg(long, value_name = "FILE_OR_SHARDS")]
    data: PathBuf,
    /// Score as llama.cpp's llama-perplexity does (its -c N), to compare the two: chunks of N
    /// tokens, each starting with the model's BOS token where it has one, only the second half
    /// of each chunk scored.
    #[arg(long, value_name = "N")]
    chunk: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let loaded = load(&a.model)?;
    let (tokens, what) = read_tokens(&a.data, &loaded.tok)?;
    let score = score(&loaded, &tokens, a.chunk)?;
    if a.json {
        println!("{}", serde_json::to_string(&score)?);
        return Ok(());
    }
    let plural = |n: usize, what: &str| format!("{} {what}{}", count(n), if n == 1 { "" } else { "s" });
    println!("{what}: {} scored ({})", plural(score.tokens, "token"), plural(score.bytes, "byte"));
    println!("  loss           {:.4} nats per token", score.loss);
    println!("  perplexity     {:.2}", score.perplexity);
    println!("  bits per byte  {:.4}", score.bits_per_byte);
    Ok(())
}

/// The model's score on `tokens`: every token after the first predicted from those before it,
/// or, given `chunk`, as llama.cpp's llama-perplexity scores chunks of that many tokens. Bits
/// per byte count the bytes of the tokens predicted.
pub fn score(loaded: &Loaded, tokens: &[u32], chunk: Option<usize>) -> minillm::Result<Score> {
    match chunk {
        Some(n) => minillm::eval::evaluate_chunks(&loaded.model, tokens, n, &loaded.tok),
        None => {
            let bytes = loaded.tok.decoded_len(tokens.get(1..).unwrap_or_default());
            minillm::eval::evaluate(&loaded.model, tokens, bytes)
        }
    }
}

/// The tokens to score, and a description of where they came from.
pub fn read_tokens(path: &Path, tok: &minillm::Tokenizer) -> Result<(Vec<u32>, String)> {
    if path.is_dir() && !path.join("val.bin").is_file() {
        bail!(
            "{} holds no val.bin; pass a text file or a directory made by `minillm prepare`",
            path.display()
        );
    }
    let shard = if path.is_dir() { path.join("val.bin") } else { path.to_path_buf() };
    if shard.extension().is_some_and(|e| e == "bin") {
        let (ids, info) = read_shard(&shard)?;
        if info.tokenizer_hash != tokenizer_hash(tok) {
            bail!(
                "{} was tokenized with a different tokenizer than the model's; prepare the text again with the model's tokenizer.json, or pass the text file",
                shard.display()
            );
        }
        return Ok((ids, shard.display().to_string()));
    }
    if path.is_dir() {
        bail!(
            "{} holds no val.bin; pass a text file or a directory made by `minillm prepare`",
            path.display()
        );
    }
    let text = minillm::fsutil::read_text(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((tok.encode_prompt(&text)?, path.display().to_string()))
}
