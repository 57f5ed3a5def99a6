//! `minillm export`: a model in the files other tools load. `--format hf` writes an HF
//! transformers model directory that `AutoModelForCausalLM.from_pretrained(DIR)` and
//! `AutoTokenizer.from_pretrained(DIR)` load offline; `--format gguf` writes one file that
//! llama.cpp runs.

use super::session::{MODEL_HELP, load};
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};
use minillm::chat::ChatTemplate;
use minillm::fsutil::atomic_write;
use minillm::io::generation_config::TextTokens;
use minillm::io::gguf::TensorType;
use minillm::io::{gguf_gpt2, gguf_llama, save_model};
use minillm::model::Arch;
use minillm::model::config::Family;
use minillm::quant::QuantType;
use minillm::tokenizer::Pattern;
use minillm::tokenizer::formats;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Format {
    /// An HF transformers model directory (GPT2LMHeadModel).
    Hf,
    /// One GGUF file for llama.cpp (its `gpt2`, `llama` or `qwen2` architecture), tokenizer and
    /// chat template included.
    Gguf,
}

/// The element type of the GGUF file's matrices (LayerNorms and biases stay f32).
#[derive(Clone, Copy, ValueEnum)]
pub enum GgufType {
    F32,
    F16,
    /// 8.5 bits per weight: blocks of 32 int8 with an f16 scale.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4.5 bits per weight: blocks of 32 4-bit integers with an f16 scale (LM head q8_0 by default).
    #[value(name = "q4_0")]
    Q4_0,
}

impl GgufType {
    fn tensor_type(self) -> TensorType {
        match self {
            GgufType::F32 => TensorType::F32,
            GgufType::F16 => TensorType::F16,
            GgufType::Q8_0 => TensorType::Q8_0,
            GgufType::Q4_0 => TensorType::Q4_0,
        }
    }
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
    /// GGUF only: how to store the matrices (see `minillm quantize`).
    #[arg(long = "type", value_enum, default_value = "f32", value_name = "TYPE")]
    ty: GgufType,
    /// GGUF only: how to store the LM head (also the token embedding) when --type is q8_0 or
    /// q4_0 [default: q8_0].
    #[arg(long, value_enum, value_name = "TYPE")]
    head_type: Option<GgufType>,
}

/// `minillm quantize`: the model as one GGUF file with quantized matrices, which every command's
/// `--model` accepts and llama.cpp runs.
#[derive(ClapArgs)]
pub struct QuantizeArgs {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// q8_0 (8.5 bits per weight), q4_0 (4.5; its LM head q8_0 unless --head-type says) or f16.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    ty: GgufType,
    /// The .gguf file to write (it must not exist yet).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The LM head's type (it is also the token embedding) [default: q8_0]: q4_0 makes the
    /// whole model 4-bit, like llama.cpp's --pure, smaller and faster at some cost in quality.
    #[arg(long, value_enum, value_name = "TYPE")]
    head_type: Option<GgufType>,
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    if matches!(a.ty, GgufType::F32) {
        bail!("f32 is not a quantized type; `minillm export --format gguf` writes f32 files");
    }
    run(Args { model: a.model, format: Format::Gguf, out: a.out, ty: a.ty, head_type: a.head_type })
}

pub fn run(a: Args) -> Result<()> {
    if a.out.exists() {
        bail!("{} already exists; choose a new path for the export", a.out.display());
    }
    let loaded = load(&a.model)?;
    match a.format {
        Format::Hf => export_hf(&loaded, &a.out),
        Format::Gguf => export_gguf(&loaded, &a.out, a.ty, a.head_type),
    }
}

fn export_gguf(
    loaded: &super::session::Loaded,
    out: &Path,
    ty: GgufType,
    head: Option<GgufType>,
) -> Result<()> {
    if out.extension().is_none_or(|e| e != "gguf") {
        bail!("--out for GGUF should be a file name ending in .gguf, e.g. model.gguf");
    }
    let ty = ty.tensor_type();
    let head = match (ty.quant(), head) {
        (Some(QuantType::F16) | None, Some(_)) => {
            bail!("--head-type is for q8_0 and q4_0 files; f32 and f16 files keep one type throughout")
        }
        (Some(q), None) => Some(gguf_gpt2::head_type(q)),
        (_, Some(h)) => h.tensor_type().quant(),
        (None, None) => None,
    };
    let name = out.file_stem().map_or("minillm".into(), |s| s.to_string_lossy().into_owned());
    let (bytes, arch) = match &loaded.model.config.arch {
        Arch::Gpt2 => (gguf_gpt2::to_bytes_with_head(&loaded.model, &loaded.tok, ty, head, &name)?, "gpt2"),
        Arch::Llama(l) => {
            // The model's own chat template, or minillm's for a model fine-tuned with its tokens.
            let template = match &loaded.chat_template {
                Some(t) => Some(t.source()),
                None => ChatTemplate::of(&loaded.tok).map(|_| minillm::chat::JINJA),
            };
            let bytes = gguf_llama::to_bytes(
                &loaded.model,
                &loaded.tok,
                &loaded.generation,
                template,
                ty,
                head,
                &name,
            )?;
            (bytes, if l.family == Family::Qwen2 { "qwen2" } else { "llama" })
        }
    };
    atomic_write(out, &bytes)?;
    let matrices = match (ty.quant(), head) {
        (Some(q), Some(h)) if h != q => format!("{} matrices, LM head {}", q.name(), h.name()),
        (Some(q), None) if q != QuantType::F16 => format!("{} matrices, LM head f32", q.name()),
        (Some(q), _) => format!("{} matrices", q.name()),
        (None, _) => "f32 matrices".into(),
    };
    let smaller = 4.0 * loaded.model.config.num_params() as f64 / bytes.len() as f64;
    let ratio =
        if ty.quant().is_some() { format!(", {smaller:.2}x smaller than f32") } else { String::new() };
    println!(
        "wrote {} (GGUF, llama.cpp architecture {arch}, {matrices}; {:.2} MB{ratio})",
        out.display(),
        bytes.len() as f64 / 1e6,
    );
    Ok(())
}

fn export_hf(loaded: &super::session::Loaded, out: &Path) -> Result<()> {
    let config = &loaded.model.config;
    if config.arch == Arch::Gpt2 && !config.bias {
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
    let class = config.hf_architecture();
    println!(
        "wrote {} (HF transformers {class}: config.json, model.safetensors, tokenizer files)",
        out.display()
    );
    Ok(())
}

fn write_hf(loaded: &super::session::Loaded, dir: &Path) -> Result<()> {
    let (model, tok) = (&loaded.model, &loaded.tok);
    let TextTokens { bos, eos, ends } = TextTokens::of(tok, &loaded.generation);
    save_model(dir, model, eos)?;
    formats::save(tok, &dir.join("tokenizer.json"))?;
    // vocab.json + merges.txt are what GPT-2's slow tokenizer reads, which splits text with
    // GPT-2's pattern: written only for a tokenizer that uses it, so no slow tokenizer can read
    // another's vocabulary with the wrong split. Others load through tokenizer.json alone.
    let gpt2_split = tok.pattern() == Pattern::Gpt2 && tok.sentencepiece().is_none();
    if gpt2_split {
        atomic_write(&dir.join("vocab.json"), formats::to_vocab_json(tok).as_bytes())?;
        atomic_write(&dir.join("merges.txt"), formats::to_merges_txt(tok).as_bytes())?;
    }
    let name = |id: Option<u32>| id.map(|id| tok.token_text(id));
    let (bos_name, eos_name) = (name(bos), name(eos));
    let unk_name = name(tok.special_id("<unk>").or(eos));
    let mut tokenizer_config = serde_json::json!({
        "tokenizer_class": if gpt2_split { "GPT2Tokenizer" } else { "PreTrainedTokenizerFast" },
        "model_max_length": model.config.block_size,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "bos_token": bos_name, "eos_token": eos_name, "unk_token": unk_name,
    });
    // The model's chat template, for `apply_chat_template`: the one it came with, or minillm's
    // for a model fine-tuned with its role tokens.
    if let Some(t) = &loaded.chat_template {
        tokenizer_config["chat_template"] = t.source().into();
    } else if ChatTemplate::of(tok).is_some() {
        tokenizer_config["chat_template"] = minillm::chat::JINJA.into();
    }
    let special_map =
        serde_json::json!({"bos_token": bos_name, "eos_token": eos_name, "unk_token": unk_name});
    // Every end token the model stops at, as the file it came with listed them.
    let eos_field = if ends.len() > 1 { serde_json::json!(ends) } else { serde_json::json!(eos) };
    let generation = serde_json::json!({"bos_token_id": bos, "eos_token_id": eos_field});
    for (file, doc) in [
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special_map),
        ("generation_config.json", generation),
    ] {
        atomic_write(&dir.join(file), serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}
