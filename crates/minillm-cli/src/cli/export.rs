//! `minillm export`: a model in the files other tools load. `--format hf` writes an HF
//! transformers model directory that `AutoModelForCausalLM.from_pretrained(DIR)` and
//! `AutoTokenizer.from_pretrained(DIR)` load offline.

use super::session::load;
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use minillm::fsutil::atomic_write;
use minillm::io::save_model;
use minillm::tokenizer::formats;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// An HF transformers model directory (GPT2LMHeadModel).
    Hf,
}

#[derive(ClapArgs)]
pub struct Args {
    /// A run directory, a checkpoint, a model directory, or an HF hub id in the local HF cache.
    #[arg(long, value_name = "RUN_OR_DIR")]
    model: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// The directory to create (it must not exist yet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    if a.out.exists() {
        bail!("{} already exists; choose a new directory for the export", a.out.display());
    }
    let loaded = load(&a.model)?;
    if !loaded.model.config.bias {
        bail!(
            "this model has no biases, which GPT2LMHeadModel always has; exporting it to HF is not supported yet"
        );
    }
    // Everything is written into a temporary sibling, renamed into place at the end: an
    // interrupted export leaves no half-written model behind.
    let name = a.out.file_name().context("--out needs a directory name")?.to_string_lossy().into_owned();
    let tmp = a.out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let written = match a.format {
        Format::Hf => write_hf(&loaded, &tmp),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &a.out)
        .with_context(|| format!("cannot move the export into {}", a.out.display()))?;
    println!(
        "wrote {} (HF transformers GPT-2: config.json, model.safetensors, tokenizer files)",
        a.out.display()
    );
    Ok(())
}

fn write_hf(loaded: &super::session::Loaded, dir: &Path) -> Result<()> {
    let (model, tok) = (&loaded.model, &loaded.tok);
    let eos = tok.special_id("<|endoftext|>");
    save_model(dir, model, eos)?;
    formats::save(tok, &dir.join("tokenizer.json"))?;
    atomic_write(&dir.join("vocab.json"), formats::to_vocab_json(tok).as_bytes())?;
    atomic_write(&dir.join("merges.txt"), formats::to_merges_txt(tok).as_bytes())?;
    let special = eos.map(|_| "<|endoftext|>");
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model.config.block_size,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "bos_token": special, "eos_token": special, "unk_token": special,
    });
    let special_map = serde_json::json!({"bos_token": special, "eos_token": special, "unk_token": special});
    let generation = serde_json::json!({"bos_token_id": eos, "eos_token_id": eos});
    for (file, doc) in [
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special_map),
        ("generation_config.json", generation),
    ] {
        atomic_write(&dir.join(file), serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
