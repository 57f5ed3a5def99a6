//! `minillm model info`: the arithmetic of a model's size, memory and compute.

use super::display::count;
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use minillm::model::config::LlamaShape;
use minillm::model::config::PRESETS;
use minillm::model::{Arch, ModelConfig};
use minillm::sample::GenerationMemory;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Parameter count, memory at each precision and to generate, FLOPs per token and
    /// activation memory.
    Info(InfoArgs),
    /// Write a preset shape with GPT-2's random initialisation and GPT-2's tokenizer, as a
    /// model directory every --model takes: for measuring speed and memory at a size you have
    /// not trained (it writes nonsense).
    Init(InitArgs),
}

#[derive(ClapArgs)]
pub struct InitArgs {
    /// The shape: gpt2, gpt2-medium, gpt2-large, gpt2-xl, the depth dial dN, or a LLaMA-family
    /// shape (smollm2-135m, qwen2.5-0.5b, ...), which gets GPT-2's vocabulary of 50257 in place
    /// of its own, since the model gets GPT-2's tokenizer.
    #[arg(long, value_name = "NAME")]
    preset: String,
    /// The model directory to write (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Where a model's shape comes from: a preset, a config file, or a model directory.
#[derive(ClapArgs)]
pub struct ShapeChoice {
    /// A preset: gpt2, gpt2-medium, gpt2-large, gpt2-xl, baby, dN (the depth dial, e.g. d6), or a
    /// LLaMA-family shape (smollm2-135m, qwen2.5-0.5b, llama-3.2-1b, llama-2-70b, ...: see
    /// `minillm model info --preset list`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["config", "model"])]
    preset: Option<String>,
    /// A config.json (HF GPT-2, Llama, Mistral or Qwen2) file.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    config: Option<PathBuf>,
    /// A model directory holding config.json, or any model other commands take (a run, a
    /// checkpoint, a .gguf file, an HF hub id), loaded to read its shape.
    #[arg(long, value_name = "MODEL")]
    pub(super) model: Option<PathBuf>,
    /// Override the vocabulary size (e.g. for a preset with your own tokenizer).
    #[arg(long, value_name = "N")]
    pub(super) vocab_size: Option<usize>,
}

/// How a loaded model's weights are stored: their type and bytes.
pub struct Stored {
    pub weight_type: String,
    pub bytes: usize,
}

impl ShapeChoice {
    /// The shape alone: a model directory's config.json is read without loading its weights.
    pub fn resolve(&self) -> Result<(String, ModelConfig)> {
        self.resolve_with(false).map(|(name, config, _)| (name, config))
    }

    /// [`resolve`](Self::resolve), and for `--model` how its weights are stored (the model is
    /// loaded for that: mapped, so this is quick for GGUF files).
    pub fn resolve_stored(&self) -> Result<(String, ModelConfig, Option<Stored>)> {
        self.resolve_with(true)
    }

    /// The model `--model` names, loaded: its shape, and how its weights are stored.
    fn load(&self, path: &std::path::Path, how: &mut Option<Stored>) -> Result<(String, ModelConfig)> {
        let model = super::session::load(path)?.model;
        *how = Some(Stored { weight_type: model.weight_type(), bytes: model.weight_bytes() });
        Ok((path.display().to_string(), model.config))
    }

    fn resolve_with(&self, stored: bool) -> Result<(String, ModelConfig, Option<Stored>)> {
        let mut how = None;
        let (name, mut config) = match (&self.preset, &self.config, &self.model) {
            (Some(p), _, _) => (p.clone(), ModelConfig::preset(p)?),
            (_, _, Some(path)) if !path.join("config.json").is_file() => self.load(path, &mut how)?,
            (_, Some(path), _) | (_, _, Some(path)) => {
                let file = if path.is_dir() { path.join("config.json") } else { path.clone() };
                let text = minillm::fsutil::read_text(&file)?;
                let config = minillm::io::hf_config::from_json(&text, &file)?;
                // A GPT-2 model is loaded to say how its weights are stored; a LLaMA-family one
                // is described from its config.json alone, its weights unread (so the weights
                // line assumes f32, whatever type the checkpoint has).
                if stored && self.model.is_some() && config.arch == Arch::Gpt2 {
                    self.load(path, &mut how)?
                } else {
                    (file.display().to_string(), config)
                }
            }
            _ => bail!("say which model: --preset NAME, --config FILE or --model MODEL"),
        };
        if let Some(v) = self.vocab_size {
            config.vocab_size = v;
        }
        config.validate().context("the model's shape is not usable")?;
        Ok((name, config, how))
    }
}

#[derive(ClapArgs)]
pub struct InfoArgs {
    #[command(flatten)]
    shape: ShapeChoice,
    /// Batch size for the activation-memory estimate.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Context length for FLOPs and activation memory (default: the model's context).
    #[arg(long)]
    context: Option<usize>,
    /// Just a parameter count (e.g. 70B for LLaMA 2 70B): the weights' memory at each type.
    #[arg(long, value_name = "N", conflicts_with_all = ["preset", "config", "model"])]
    params: Option<String>,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Info(a) => info(a),
        Command::Init(a) => init(a),
    }
}

/// Bytes as decimal megabytes or gigabytes, as model sizes are usually quoted.
pub fn size(bytes: f64) -> String {
    if bytes >= 1e9 { format!("{:.2} GB", bytes / 1e9) } else { format!("{:.1} MB", bytes / 1e6) }
}

fn flops(n: u64) -> String {
    if n >= 100_000_000 {
        format!("{:.3} GFLOP", n as f64 / 1e9)
    } else {
        format!("{:.2} MFLOP", n as f64 / 1e6)
    }
}

/// The weights' memory at each type: the plain bit widths and GGUF's block formats, whose f16
/// scale per 32 weights adds half a bit to each.
fn print_memory(n: f64) {
    println!("weights in memory:");
    for (label, bits, note) in [
        ("fp32", 32.0, ""),
        ("fp16", 16.0, ""),
        ("q8_0", 8.5, "  (8 bits + a 16-bit scale per block of 32 = 8.5 bits)"),
        ("int8", 8.0, "  (plain 8-bit, no scales)"),
        ("q4_0", 4.5, "  (4 bits + a 16-bit scale per block of 32 = 4.5 bits)"),
        ("int4", 4.0, "  (plain 4-bit, no scales)"),
    ] {
        println!("  {label}  {:>10}{note}", size(n * bits / 8.0));
    }
}

/// The weights' memory at each type, and FLOPs per token at context `t`.
fn print_memory_and_flops(c: &ModelConfig, t: usize) {
    print_memory(c.num_params() as f64);
    println!(
        "FLOPs per token at context {}: {} forward, {} training",
        count(t),
        flops(c.forward_flops_per_token(t)),
        flops(c.train_flops_per_token(t))
    );
}

/// "70B", "124M", "7e9" or "1500000": a parameter count.
fn parse_count(text: &str) -> Result<f64> {
    let t = text.trim().replace(['_', ','], "");
    let (digits, scale) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('B') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        _ => (t.as_str(), 1.0),
    };
    match digits.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x * scale),
        _ => bail!("--params {text}: give a count such as 70B, 124M or 7e9"),
    }
}

fn info(a: InfoArgs) -> Result<()> {
    if let Some(text) = &a.params {
        let n = parse_count(text)?;
        println!("{} parameters (any architecture: only the count matters here)", count(n.round() as usize));
        print_memory(n);
        return Ok(());
    }
    if a.shape.preset.as_deref() == Some("list") {
        for (name, description) in PRESETS {
            println!("{name:<15} {description}");
        }
        return Ok(());
    }
    let (name, c, stored) = a.shape.resolve_stored()?;
    let t = a.context.unwrap_or(c.block_size);
    if t == 0 || t > c.block_size || a.batch == 0 {
        bail!("--context must be 1..={} and --batch at least 1", c.block_size);
    }
    let described = match PRESETS.iter().find(|p| p.0 == name) {
        Some(p) => format!(" ({})", p.1),
        None if name.starts_with('d') && name[1..].parse::<usize>().is_ok() => {
            format!(" (the depth dial at {}: layers = heads = {0}, width 64 x {0})", &name[1..])
        }
        None if name.strip_prefix("llama-d").is_some_and(|d| d.parse::<usize>().is_ok()) => {
            format!(" (the LLaMA-shaped depth dial at {}: {0} layers, width 64 x {0})", &name[7..])
        }
        None => String::new(),
    };
    println!("model {name}{described}");
    match &c.arch {
        Arch::Gpt2 => gpt2_parameters(&c),
        Arch::Llama(l) => llama_parameters(&c, l),
    }
    print_memory_and_flops(&c, t);
    print_generating(&c, stored, a.batch, t);
    let state = 4.0 * 4.0 * c.num_params() as f64; // weights, gradients, two AdamW moments, fp32
    println!(
        "training memory at batch {} x {}: {} for weights, gradients and AdamW moments + {} of activations",
        a.batch,
        count(t),
        size(state),
        size(minillm::model::training::activation_bytes(&c, a.batch, t) as f64)
    );
    Ok(())
}

/// GPT-2's shape and where its parameters are.
fn gpt2_parameters(c: &ModelConfig) {
    println!(
        "  {} layers, {} heads of {}, width {}, context {}, vocabulary {} (padded to {})",
        c.n_layer,
        c.n_head,
        c.head_size(),
        c.n_embd,
        count(c.block_size),
        count(c.vocab_size),
        count(c.padded_vocab_size())
    );
    let n = c.num_params();
    let e = c.n_embd;
    let b = usize::from(c.bias);
    let attention = 4 * e * e + b * 4 * e;
    let mlp = 8 * e * e + b * 5 * e;
    let norms = 2 * (e + b * e);
    println!("parameters: {}", count(n));
    println!("  token embedding wte    {:>15}  (also the output layer: tied)", count(c.vocab_size * e));
    println!("  position embedding wpe {:>15}", count(c.block_size * e));
    println!(
        "  {} blocks x {:<11} {:>13}",
        c.n_layer,
        count(attention + mlp + norms),
        count(c.n_layer * (attention + mlp + norms))
    );
    println!("    attention {}, MLP {}, LayerNorms {} per block", count(attention), count(mlp), count(norms));
    println!("  final LayerNorm        {:>15}", count(e + b * e));
}

/// A LLaMA-family shape and where its parameters are: SwiGLU's three matrices, rotary positions
/// (no table), an untied head where the model has one.
fn llama_parameters(c: &ModelConfig, l: &LlamaShape) {
    let grouped =
        if l.n_kv_head < c.n_head { format!(" sharing {} KV heads", l.n_kv_head) } else { String::new() };
    println!(
        "  {} ({}): {} layers, {} heads of {}{grouped}, width {}, MLP {}, context {}, vocabulary {}",
        l.family.model_type(),
        if l.tied_head { "tied head" } else { "untied head" },
        c.n_layer,
        c.n_head,
        l.head_dim,
        c.n_embd,
        count(l.intermediate),
        count(c.block_size),
        count(c.vocab_size)
    );
    let n = c.num_params();
    let (attention, mlp, norms) = c.llama_block_parts(l);
    let e = c.n_embd;
    println!("parameters: {}", count(n));
    let tied = if l.tied_head { "  (also the output layer: tied)" } else { "" };
    println!("  token embedding        {:>15}{tied}", count(c.vocab_size * e));
    println!("  positions: rotary, no parameters (theta {})", l.rope_theta);
    let block = attention + mlp + norms;
    println!("  {} blocks x {:<11} {:>13}", c.n_layer, count(block), count(c.n_layer * block));
    let bias = if l.qkv_bias { " with q/k/v biases" } else { "" };
    println!(
        "    attention {}{bias}, SwiGLU MLP {}, RMSNorms {} per block",
        count(attention),
        count(mlp),
        count(norms)
    );
    println!("  final RMSNorm          {:>15}", count(e));
    if !l.tied_head {
        println!("  output layer lm_head   {:>15}", count(c.vocab_size * e));
    }
}

/// What generating `batch` sequences of up to `t` tokens takes: the weights as stored, the KV
/// cache and the working buffers (one pass's activations and scores, the logits and what the
/// sampler sorts). The program and its tokenizer come on top.
fn print_generating(c: &ModelConfig, stored: Option<Stored>, batch: usize, t: usize) {
    let (weight_type, weights) = match stored {
        Some(s) => (s.weight_type, s.bytes),
        None => ("f32".into(), 4 * c.num_params()),
    };
    let m = GenerationMemory::new(c, weights, batch, t);
    println!(
        "memory to generate, batch {batch} x context {} (the program and tokenizer come on top):",
        count(t)
    );
    let line =
        |label: &str, bytes: usize, note: String| println!("  {label:<32}{:>10}{note}", size(bytes as f64));
    line(&format!("weights as stored ({weight_type})"), m.weights, String::new());
    let kv_note = match &c.arch {
        Arch::Gpt2 => format!(
            "  (2 x {} layers x {} positions x {} x 4 bytes x {batch})",
            c.n_layer,
            count(t),
            c.n_embd
        ),
        Arch::Llama(l) => format!(
            "  (2 x {} layers x {} positions x {} KV heads x {} x 4 bytes x {batch})",
            c.n_layer,
            count(t),
            l.n_kv_head,
            l.head_dim
        ),
    };
    line("KV cache", m.kv_cache, kv_note);
    if c.n_kv_head() < c.n_head {
        println!(
            "  (with a KV head per query head, as GPT-2 has, the cache would be {}x larger: {})",
            c.n_head / c.n_kv_head(),
            size((m.kv_cache * c.n_head / c.n_kv_head()) as f64)
        );
    }
    line("working buffers", m.working, String::new());
    line("total", m.total, String::new());
}

fn init(a: InitArgs) -> Result<()> {
    let mut config = ModelConfig::preset(&a.preset)?;
    let tok = minillm::Tokenizer::gpt2();
    let own_vocab = config.vocab_size;
    if own_vocab != tok.vocab_size() {
        if config.arch == minillm::model::Arch::Gpt2 {
            bail!(
                "--preset {} has a vocabulary of {own_vocab}; init writes GPT-2's tokenizer ({}), so choose a GPT-2 shape",
                a.preset,
                tok.vocab_size()
            );
        }
        config.vocab_size = tok.vocab_size();
    }
    if a.out.join("config.json").exists() {
        bail!("{} already holds a model; choose another --out", a.out.display());
    }
    let model = minillm::model::Gpt::new(config, a.seed)?;
    let eos = tok.special_id("<|endoftext|>");
    minillm::io::save_model(&a.out, &model, eos)?;
    minillm::tokenizer::formats::save(tok, &a.out.join("tokenizer.json"))?;
    let vocab = if own_vocab == tok.vocab_size() {
        String::new()
    } else {
        format!("; GPT-2's vocabulary of {} in place of its {own_vocab}", tok.vocab_size())
    };
    println!(
        "wrote {} ({} parameters, random weights{vocab}) to {}",
        a.preset,
        count(model.config.num_params()),
        a.out.display()
    );
    Ok(())
}
