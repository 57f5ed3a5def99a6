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
use minillm::io::{gguf_gpt2, gguf_llama, save_model};
use minillm::model::Arch;
use minillm::model::config::Family;
use minillm::quant::{FileType, QuantType, Recipe};
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

/// `--type`: f32, or a llama.cpp file type.
/// `--type`: f32 (`None`), or a quantized file type.
#[derive(Clone, Copy)]
struct TypeArg(Option<FileType>);

fn parse_type(name: &str) -> Result<TypeArg, String> {
    if name.eq_ignore_ascii_case("f32") {
        return Ok(TypeArg(None));
    }
    FileType::parse(name).map(|t| TypeArg(Some(t))).map_err(|e| format!("{e}, f32, q4_K_M or q5_K_M"))
}

fn parse_quant(name: &str) -> Result<QuantType, String> {
    QuantType::parse(name).map_err(|e| e.to_string())
}

const TYPES_HELP: &str = "q8_0 (8.5 bits per weight), q6_K (6.56), q5_K_M (about 5.7), q5_1 (6), q5_0 (5.5), \
q4_K_M (about 4.9), q4_1 (5), q4_0 (4.5), or f16. Each tensor's type follows llama.cpp's rules \
for that file type: the LM head gets q6_K (q8_0 when its rows are not whole 256-weight \
super-blocks), and Q4_K_M / Q5_K_M give q6_K to some layers' attention values and MLP down \
projections; k-quant rows that are not whole super-blocks fall back to q5_0 / q5_1 / q8_0. \
q4_K and q5_K alone need --pure";

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// What to create (it must not exist yet): a directory for hf, a .gguf file for gguf.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// GGUF only: f32, or how to quantize the matrices (see `minillm quantize --help`).
    #[arg(long = "type", value_parser = parse_type, default_value = "f32", value_name = "TYPE")]
    ty: TypeArg,
    /// GGUF only: the LM head's type (it is also the token embedding when tied), whatever the
    /// rules say, like llama-quantize's --output-tensor-type.
    #[arg(long, value_parser = parse_quant, value_name = "TYPE")]
    head_type: Option<QuantType>,
    /// GGUF only: every matrix in --type, the LM head included (llama-quantize's --pure).
    #[arg(long)]
    pure: bool,
}

/// `minillm quantize`: the model as one GGUF file with quantized matrices, which every command's
/// `--model` accepts and llama.cpp runs.
#[derive(ClapArgs)]
pub struct QuantizeArgs {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    #[arg(long = "type", value_parser = parse_type, value_name = "TYPE", long_help = TYPES_HELP)]
    ty: TypeArg,
    /// The .gguf file to write (it must not exist yet).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The LM head's type (it is also the token embedding when tied), whatever the rules say,
    /// like llama-quantize's --output-tensor-type: e.g. q4_0 with --type q4_0 makes the whole
    /// model 4-bit, smaller and faster at some cost in quality.
    #[arg(long, value_parser = parse_quant, value_name = "TYPE")]
    head_type: Option<QuantType>,
    /// Every matrix in --type, the LM head included, like llama-quantize's --pure (only rows
    /// that are not whole blocks still fall back).
    #[arg(long)]
    pure: bool,
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    if a.ty.0.is_none() {
        bail!("f32 is not a quantized type; `minillm export --format gguf` writes f32 files");
    }
    run(Args {
        model: a.model,
        format: Format::Gguf,
        out: a.out,
        ty: a.ty,
        head_type: a.head_type,
        pure: a.pure,
    })
}

pub fn run(a: Args) -> Result<()> {
    if a.out.exists() {
        bail!("{} already exists; choose a new path for the export", a.out.display());
    }
    let loaded = load(&a.model)?;
    match a.format {
        Format::Hf => export_hf(&loaded, &a.out),
        Format::Gguf => {
            let recipe = match a.ty.0 {
                Some(t) => Some(Recipe::new(t, a.head_type, a.pure)?),
                None if a.head_type.is_some() || a.pure => {
                    bail!(
                        "--head-type and --pure are for quantized files; f32 files keep one type throughout"
                    )
                }
                None => None,
            };
            export_gguf(&loaded, &a.out, recipe.as_ref())
        }
    }
}

fn export_gguf(loaded: &super::session::Loaded, out: &Path, recipe: Option<&Recipe>) -> Result<()> {
    if out.extension().is_none_or(|e| e != "gguf") {
        bail!("--out for GGUF should be a file name ending in .gguf, e.g. model.gguf");
    }
    let name = out.file_stem().map_or("minillm".into(), |s| s.to_string_lossy().into_owned());
    let (bytes, arch) = match &loaded.model.config.arch {
        Arch::Gpt2 => (gguf_gpt2::to_bytes_with(&loaded.model, &loaded.tok, recipe, &name)?, "gpt2"),
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
                recipe,
                &name,
            )?;
            (bytes, if l.family == Family::Qwen2 { "qwen2" } else { "llama" })
        }
    };
    atomic_write(out, &bytes)?;
    // The types as written, read back from the file (memory-mapped: the blocks are not copied);
    // an f32 file is not read again.
    let written = recipe.map(|_| minillm::io::load(out)).transpose()?;
    let matrices = match (recipe, written.as_ref().and_then(|w| w.model.quantized())) {
        (Some(r), Some(q)) => {
            let (body, head) = q.types();
            let mixture =
                if body == r.file_type.name() { String::new() } else { format!("{}: ", r.file_type.name()) };
            let head = if head == body { String::new() } else { format!(", LM head {head}") };
            format!("{mixture}{body} matrices{head}")
        }
        _ => "f32 matrices".into(),
    };
    let smaller = 4.0 * loaded.model.config.num_params() as f64 / bytes.len() as f64;
    let ratio = if recipe.is_some() { format!(", {smaller:.2}x smaller than f32") } else { String::new() };
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
