//! `minillm prepare`: text files -> token shards (train.bin, val.bin) + tokenizer.json + meta.json.

use super::display::{count, progress};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use minillm::SpecialTokens;
use minillm::data::{ShardInfo, tokenizer_hash, write_shard};
use minillm::tokenizer::formats;
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    /// Text files, or directories of them (read in name order).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE_OR_DIR")]
    input: Vec<PathBuf>,
    /// `gpt2`, `bytes` (256 single bytes: character-level for ASCII), or a tokenizer file.
    #[arg(long, value_name = "T")]
    tokenizer: String,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Share of the tokens, taken from the end, kept for validation.
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    val_fraction: f64,
}

fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read directory {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("{} holds no files", input.display());
            }
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    if !(0.0..1.0).contains(&a.val_fraction) {
        bail!("--val-fraction must be at least 0 and below 1, not {}", a.val_fraction);
    }
    let tok = minillm::io::load_tokenizer(Path::new(&a.tokenizer))?;
    let paths = files(&a.input)?;
    let texts = paths.iter().map(|p| Ok(minillm::fsutil::read_text(p)?)).collect::<Result<Vec<String>>>()?;
    let total: usize = texts.iter().map(String::len).sum();
    let bar = progress(total as u64, "tokenizing", true);
    // Documents are separated by the end-of-text token when the tokenizer has one.
    let eot = tok.special_id("<|endoftext|>");
    let mut ids = Vec::with_capacity(total / 3);
    for (i, text) in texts.iter().enumerate() {
        if i > 0
            && let Some(eot) = eot
        {
            ids.push(eot);
        }
        ids.extend(tok.encode_parallel(text, SpecialTokens::AsText)?);
        bar.inc(text.len() as u64);
    }
    bar.finish_and_clear();
    let n_val = (ids.len() as f64 * a.val_fraction).round() as usize;
    if ids.len() < 2 || (a.val_fraction > 0.0 && n_val < 2) {
        bail!("{} tokens are too few to split into training and validation data", ids.len());
    }
    let (train, val) = ids.split_at(ids.len() - n_val);
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let info = ShardInfo { vocab_size: tok.vocab_size() as u32, tokenizer_hash: tokenizer_hash(&tok) };
    write_shard(&a.out.join("train.bin"), train, info)?;
    write_shard(&a.out.join("val.bin"), val, info)?;
    formats::save(&tok, &a.out.join("tokenizer.json"))?;
    let meta = serde_json::json!({
        "tokenizer": a.tokenizer, "vocab_size": tok.vocab_size(), "tokenizer_hash": format!("{:016x}", info.tokenizer_hash),
        "train_tokens": train.len(), "val_tokens": val.len(), "train_bytes": tok.decoded_len(train), "val_bytes": tok.decoded_len(val),
        "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    minillm::fsutil::atomic_write(&a.out.join("meta.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    println!(
        "{} bytes from {} file{} -> {} tokens ({:.2} bytes per token, vocabulary {})",
        count(total),
        paths.len(),
        if paths.len() == 1 { "" } else { "s" },
        count(ids.len()),
        total as f64 / ids.len() as f64,
        count(tok.vocab_size())
    );
    println!(
        "wrote {}: train.bin ({} tokens), val.bin ({} tokens), tokenizer.json, meta.json",
        display(&a.out),
        count(train.len()),
        count(val.len())
    );
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
