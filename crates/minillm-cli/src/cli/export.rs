//! `minillm export`: a model in the files other tools load. `--format hf` writes an HF
//! transformers model directory that `AutoModelForCausalLM.from_pretrained(DIR)` and
//! `AutoTokenizer.from_pretrained(DIR)` load offline; `--format gguf` writes one file that
//! llama.cpp runs.

use super::session::{MODEL_HELP, load};
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use minillm::chat::ChatTemplate;
use minillm::fsutil::atomic_write;
use minillm::io::gguf::TensorType;
use minillm::io::{gguf_gpt2, save_model};
use minillm::tokenizer::formats;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    /// An HF transformers model directory (GPT2LMHeadModel).
    Hf,
    /// One GGUF file for llama.cpp's `gpt2` architecture, tokenizer included.
    Gguf,
}

/// The element type of the GGUF file's matrices (LayerNorms and biases stay f32).
#[derive(Clone, Copy, ValueEnum)]
enum GgufType {
    F32,
    F16,
}

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// What to create (it must not exist yet): a directory for hf, a .gguf file for gguf.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// GGUF only: store matrices as f32 or f16.
    #[arg(long = "type", value_enum, default_value = "f32")]
    ty: GgufType,
}

pub fn run(a: Args) -> Result<()> {
    if a.out.exists() {
        bail!("{} already exists; choose a new path for the export", a.out.display());
    }
    let loaded = load(&a.model)?;
    match a.format {
        Format::Hf => export_hf(&loaded, &a.out),
        Format::Gguf => export_gguf(&loaded, &a.out, a.ty),
    }
}

fn export_gguf(loaded: &super::session::Loaded, out: &Path, ty: GgufType) -> Result<()> {
    if out.extension().is_none_or(|e| e != "gguf") {
        bail!("--out for GGUF should be a file name ending in .gguf, e.g. model.gguf");
    }
    let ty = match ty {
        GgufType::F32 => TensorType::F32,
        GgufType::F16 => TensorType::F16,
    };
    let name = out.file_stem().map_or("minillm".into(), |s| s.to_string_lossy().into_owned());
    let bytes = gguf_gpt2::to_bytes(&loaded.model, &loaded.tok, ty, &name)?;
    atomic_write(out, &bytes)?;
    println!(
        "wrote {} (GGUF, llama.cpp architecture gpt2, {} matrices, {:.1} MB)",
        out.display(),
        if ty == TensorType::F16 { "f16" } else { "f32" },
        bytes.len() as f64 / 1e6
    );
    Ok(())
}

fn export_hf(loaded: &super::session::Loaded, out: &Path) -> Result<()> {
    if !loaded.model.config.bias {
        bail!(
            "this model has no biases, which GPT2LMHeadModel always has; exporting it to HF is not supported yet"
        );
    }
    // Everything is written into a temporary sibling, renamed into place at the end: an
    // interrupted export leaves no half-written model behind.
    let name = out.file_name().context("--out needs a directory name")?.to_string_lossy().into_owned();
    let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    if let Err(e) = write_hf(loaded, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).with_context(|| format!("cannot move the export into {}", out.display()))?;
    println!(
        "wrote {} (HF transformers GPT-2: config.json, model.safetensors, tokenizer files)",
        out.display()
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
    let mut tokenizer_config = serde_json::json!({
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model.config.block_size,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "bos_token": special, "eos_token": special, "unk_token": special,
    });
    // A fine-tuned model's chat template, for `apply_chat_template`, rendering what minillm does.
    if ChatTemplate::of(tok).is_some() {
        tokenizer_config["chat_template"] = minillm::chat::JINJA.into();
    }
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
