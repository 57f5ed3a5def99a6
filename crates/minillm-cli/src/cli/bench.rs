//! `minillm bench train-step`: forward + backward throughput on random tokens, next to this
//! machine's matrix-product speed measured in the same run. `minillm bench decode`: generation
//! speed through the KV cache, next to this machine's memory read bandwidth.

use super::model::ShapeChoice;
use super::session::{MODEL_HELP, load};
use anyhow::{Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use minillm::Tokenizer;
use minillm::io::{gguf_gpt2, gguf_llama};
use minillm::kernels::{self, Stored, matmul};
use minillm::model::kv_cache::KvCache;
use minillm::model::{Arch, ModelConfig};
use minillm::model::{Gpt, Trainable};
use minillm::quant::{FileType, QuantType, Recipe};
use minillm::rng::Rng;
use minillm::sample::argmax;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum Command {
    /// Time training steps (forward + backward) of a model shape.
    TrainStep(TrainStepArgs),
    /// Time generation (prefill + KV-cached decoding) of a model shape with random weights, or of
    /// a model as stored (--weights stored).
    Decode(DecodeArgs),
    /// File size, batch-1 decoding speed and perplexity of a model at every file type.
    Quant(QuantArgs),
    /// What constrained decoding (a JSON schema) adds to each token, next to the decoding step
    /// of GPT-2 small's shape, timed in the same loop.
    Constrain(super::bench_constrain::ConstrainArgs),
    /// The library calls behind `generate` and `inspect` on a model, timed in-process (what the
    /// Python package's calls cost without Python).
    Library(super::bench_library::LibraryArgs),
}

#[derive(ClapArgs)]
pub struct QuantArgs {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP, required_unless_present = "preset")]
    model: Option<PathBuf>,
    /// Instead of a model: a preset shape with random weights and GPT-2's tokenizer (size and
    /// speed only; the perplexity of random weights means nothing).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["model", "data"])]
    preset: Option<String>,
    /// Held-out text for perplexity: a text file, a .bin shard or a prepared directory.
    #[arg(long, value_name = "FILE_OR_SHARDS")]
    data: Option<PathBuf>,
    #[command(flatten)]
    timing: Timing,
}

#[derive(ClapArgs)]
pub struct DecodeArgs {
    #[command(flatten)]
    shape: ShapeChoice,
    /// Sequences decoded together, one run per value (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// The block matrices' type: f32, or quantized in memory to q8_0 or q4_0 (the LM head then
    /// q8_0), all with random weights; or `stored`: the --model's own weights as its file holds
    /// them (a .gguf file's blocks, mapped), to time a file as `minillm generate` runs it.
    #[arg(long, value_parser = ["f32", "q8_0", "q4_0", "stored"], default_value = "f32")]
    weights: String,
    #[command(flatten)]
    timing: Timing,
}

/// How `bench decode` and `bench quant` time generation.
#[derive(ClapArgs)]
struct Timing {
    /// Prompt tokens per sequence, prefilled before decoding.
    #[arg(long, default_value_t = 16)]
    prompt: usize,
    /// Tokens decoded per sequence in each timed run.
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed runs of each batch size or type (bench quant takes the types in turns); the best
    /// counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl Timing {
    fn check(&self, context: usize) -> Result<()> {
        if self.prompt == 0
            || self.new_tokens < 2
            || self.prompt + self.new_tokens > context
            || self.rounds == 0
        {
            bail!(
                "--prompt and --rounds must be at least 1 and --new-tokens at least 2, prompt + new tokens at most the context ({context})"
            );
        }
        Ok(())
    }
}

#[derive(ClapArgs)]
pub struct TrainStepArgs {
    #[command(flatten)]
    shape: ShapeChoice,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Context length (default: the model's).
    #[arg(long)]
    context: Option<usize>,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::TrainStep(a) => train_step(a),
        Command::Decode(a) => decode(a),
        Command::Quant(a) => quant(a),
        Command::Constrain(a) => super::bench_constrain::run(a),
        Command::Library(a) => super::bench_library::library(a),
    }
}

/// The middle value (the upper one of an even count), sorting `values`.
pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// GFLOP/s of a (m x k) . (k x n) product, best of a few runs.
fn gemm_gflops(m: usize, k: usize, n: usize) -> f64 {
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32).collect();
    let mut out = vec![0.0; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        matmul(&mut out, &a, Stored::Normal, &b, Stored::Normal, (m, k, n), false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

fn train_step(a: TrainStepArgs) -> Result<()> {
    let (name, config) = a.shape.resolve()?;
    let t = a.context.unwrap_or(config.block_size);
    if t == 0 || t > config.block_size || a.batch == 0 || a.steps == 0 {
        bail!("--context must be 1..={}, --batch and --steps at least 1", config.block_size);
    }
    let b = a.batch;
    let mut model = Trainable::init(config.clone(), 1)?;
    let mut rng = Rng::new(2);
    let v = config.vocab_size;
    let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.steps + 2 {
        let start = Instant::now();
        model.zero_grad();
        model.forward(&tokens, Some(&targets), (b, t))?;
        model.backward()?;
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens_per_s = (b * t) as f64 / median;
    let gflops = config.train_flops_per_token(t) as f64 * tokens_per_s / 1e9;
    let c = config.n_embd;
    let peak = gemm_gflops(b * t, c, 4 * c);
    let threads = rayon::current_num_threads();
    if a.json {
        let doc = serde_json::json!({
            "model": name, "batch": b, "context": t, "threads": threads, "ms_per_step": median * 1e3,
            "tokens_per_s": tokens_per_s, "gflops": gflops, "gemm_gflops": peak,
        });
        println!("{doc}");
    } else {
        println!("{name}: batch {b} x context {t}, {threads} threads, median of {} steps", a.steps);
        println!("  {:.1} ms per step (forward + backward), {:.0} tokens/s", median * 1e3, tokens_per_s);
        println!(
            "  {gflops:.1} GFLOP/s achieved; this machine's GEMM at ({}x{}).({}x{}): {peak:.1} GFLOP/s",
            b * t,
            c,
            c,
            4 * c
        );
    }
    Ok(())
}

/// The machine's memory read bandwidth in GB/s: every thread sums its part of a buffer four
/// times larger than the biggest cache this machine reports being common (1 GiB), best of 5.
fn read_bandwidth() -> f64 {
    let buf = vec![1.0f32; 1 << 28];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let total: f32 = buf.par_chunks(1 << 16).map(kernels::sum).sum();
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(total);
    }
    (buf.len() * 4) as f64 / best / 1e9
}

/// Seconds for prefill + decoding, and for the decoding steps alone, of `batch` sequences.
fn time_generation(model: &mut Gpt, batch: usize, prompt: usize, new_tokens: usize) -> Result<(f64, f64)> {
    let mut rng = Rng::new(3);
    let v = model.config.vocab_size;
    let mut cache = KvCache::new(model, batch);
    let prompts: Vec<Vec<u32>> =
        (0..batch).map(|_| (0..prompt).map(|_| rng.below(v) as u32).collect()).collect();
    let start = Instant::now();
    let batch_prompts: Vec<(usize, &[u32])> = prompts.iter().enumerate().map(|(s, p)| (s, &p[..])).collect();
    let mut next: Vec<u32> =
        model.prefill_batch(&mut cache, &batch_prompts)?.iter().map(|l| argmax(l)).collect();
    let slots: Vec<usize> = (0..batch).collect();
    let decoding = Instant::now();
    for _ in 1..new_tokens {
        let logits = model.decode(&mut cache, &slots, &next)?;
        for (n, row) in next.iter_mut().zip(logits.chunks_exact(v)) {
            *n = argmax(row);
        }
    }
    Ok((start.elapsed().as_secs_f64(), decoding.elapsed().as_secs_f64()))
}

fn decode(a: DecodeArgs) -> Result<()> {
    let (name, config) = a.shape.resolve()?;
    a.timing.check(config.block_size)?;
    if a.batch.contains(&0) {
        bail!("--batch values must be at least 1");
    }
    let mut model = match (a.weights.as_str(), &a.shape.model) {
        ("stored", _) if a.shape.vocab_size.is_some() => {
            bail!("--vocab-size changes a shape; --weights stored runs the model as it is")
        }
        ("stored", Some(path)) => load(path)?.model,
        ("stored", None) => bail!("--weights stored times a model's own weights: give --model"),
        _ => Gpt::new(config.clone(), 1)?,
    };
    match a.weights.as_str() {
        "q8_0" => model.quantize(QuantType::Q8_0, Some(QuantType::Q8_0))?,
        "q4_0" => model.quantize(QuantType::Q4_0, Some(QuantType::Q8_0))?,
        _ => {}
    }
    let config = model.config.clone();
    // Weights read per decoding step: every weight once as stored, except the position table
    // (of which one row is read) and the embedding's padding rows; an untied model reads one
    // embedding row too, not its table.
    let table = |len: usize| len.saturating_sub(config.n_embd);
    let mut step_bytes = model.weight_bytes() - 4 * table(model.layout.wpe.len());
    step_bytes -=
        4 * (model.layout.wte.len() - model.layout.wte.len().min(config.vocab_size * config.n_embd));
    if model.layout.lm_head.is_some() {
        step_bytes -= 4 * table(model.layout.wte.len());
    }
    if let Some(e) = model.quantized().and_then(|q| q.embedding.as_ref()) {
        step_bytes -= e.bytes().len() - e.ty.row_bytes(e.cols);
    }
    let name = match a.weights.as_str() {
        "f32" => name,
        "stored" => format!("{name}, {} weights as stored", model.weight_type()),
        w => format!("{name}, {w} weights"),
    };
    let threads = rayon::current_num_threads();
    let mut runs = Vec::new();
    for &b in &a.batch {
        let (mut total, mut steps, mut prefill) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for _ in 0..a.timing.rounds {
            let (t, s) = time_generation(&mut model, b, a.timing.prompt, a.timing.new_tokens)?;
            total = total.min(t);
            steps = steps.min(s);
            prefill = prefill.min(t - s);
        }
        let step = steps / (a.timing.new_tokens - 1) as f64;
        let achieved = step_bytes as f64 / step / 1e9;
        // Batches run in the order given, so with growing batches this is each one's peak.
        let peak = super::memory::peak().map(|b| b as f64 / 1e6);
        runs.push(serde_json::json!({
            "batch": b,
            "peak_mb_so_far": peak,
            "tokens_per_s": (b * a.timing.new_tokens) as f64 / total,
            "prompt_tokens_per_s": (b * a.timing.prompt) as f64 / prefill,
            "ms_per_step": step * 1e3,
            "weights_gb_per_s": achieved,
        }));
    }
    // After the runs: the bandwidth test's 1 GiB buffer would otherwise be the peak.
    let bandwidth = read_bandwidth();
    for r in &mut runs {
        r["fraction_of_bandwidth"] = (r["weights_gb_per_s"].as_f64().unwrap_or(0.0) / bandwidth).into();
    }
    if a.timing.json {
        let doc = serde_json::json!({
            "model": name, "threads": threads, "prompt": a.timing.prompt, "new_tokens": a.timing.new_tokens,
            "weights_mb": step_bytes as f64 / 1e6, "read_bandwidth_gb_per_s": bandwidth, "runs": runs,
        });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{name}: prompt {} + {} new tokens, {threads} threads, best of {} runs",
        a.timing.prompt, a.timing.new_tokens, a.timing.rounds
    );
    println!(
        "  memory read bandwidth {bandwidth:.1} GB/s; a step reads {:.0} MB of weights, so batch 1 \
         can reach at most {:.0} tokens/s",
        step_bytes as f64 / 1e6,
        bandwidth * 1e9 / step_bytes as f64
    );
    for r in &runs {
        println!(
            "  batch {}: {:.1} tokens/s ({:.2} ms per step, weights read at {:.1} GB/s = {:.0}% of bandwidth); \
             prompt {:.0} tokens/s; peak memory so far {}",
            r["batch"],
            r["tokens_per_s"].as_f64().unwrap_or(0.0),
            r["ms_per_step"].as_f64().unwrap_or(0.0),
            r["weights_gb_per_s"].as_f64().unwrap_or(0.0),
            100.0 * r["fraction_of_bandwidth"].as_f64().unwrap_or(0.0),
            r["prompt_tokens_per_s"].as_f64().unwrap_or(0.0),
            r["peak_mb_so_far"].as_f64().map_or("unknown".into(), |mb| format!("{mb:.1} MB")),
        );
    }
    Ok(())
}

/// Each type's model is made the way a user makes it (written to GGUF bytes and read back), so
/// the sizes are real file sizes and decoding runs through the blocks the file holds.
fn quant(a: QuantArgs) -> Result<()> {
    let (name, base, tok) = match (&a.model, &a.preset) {
        (Some(path), _) => {
            let loaded = load(path)?;
            (path.display().to_string(), loaded.model, loaded.tok)
        }
        (None, Some(preset)) => {
            let mut config = ModelConfig::preset(preset)?;
            let tok = Tokenizer::gpt2().clone();
            let name = if config.vocab_size == tok.vocab_size() {
                format!("{preset} (random weights)")
            } else {
                config.vocab_size = tok.vocab_size();
                format!("{preset} (random weights, GPT-2's vocabulary)")
            };
            (name, Gpt::new(config, 1)?, tok)
        }
        (None, None) => bail!("give --model or --preset"),
    };
    a.timing.check(base.config.block_size)?;
    let tokens = match &a.data {
        Some(path) => Some(super::eval::read_tokens(path, &tok)?.0),
        None => None,
    };
    // What `minillm quantize --type T [--pure]` writes; the last is all 4-bit.
    let plain = |t: QuantType| Some(Recipe { file_type: FileType::Plain(t), head: None, pure: false });
    let types = [
        ("f32", None),
        ("f16", plain(QuantType::F16)),
        ("q8_0", plain(QuantType::Q8_0)),
        ("q6_K", plain(QuantType::Q6K)),
        ("q5_K_M", Some(Recipe { file_type: FileType::Q5KM, head: None, pure: false })),
        ("q5_0", plain(QuantType::Q5_0)),
        ("q4_K_M", Some(Recipe { file_type: FileType::Q4KM, head: None, pure: false })),
        ("q4_1", plain(QuantType::Q4_1)),
        ("q4_0", plain(QuantType::Q4_0)),
        ("q4_0 --pure", Some(Recipe::pure(QuantType::Q4_0))),
    ];
    // Each file is also written out, for a separate `minillm generate` whose peak memory the
    // kernel reports: what a user's process takes, measured, not computed.
    let dir = std::env::temp_dir().join(format!("minillm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut models = Vec::new();
    for (i, (label, recipe)) in types.into_iter().enumerate() {
        let bytes = match base.config.arch {
            Arch::Gpt2 => gguf_gpt2::to_bytes_with(&base, &tok, recipe.as_ref(), "bench")?,
            Arch::Llama(_) => {
                gguf_llama::to_bytes(&base, &tok, &Default::default(), None, recipe.as_ref(), "bench")?
            }
        };
        let file = dir.join(format!("{i}.gguf"));
        std::fs::write(&file, &bytes)?;
        models.push((label, bytes.len(), load(&file)?.model, file));
    }
    drop(base);
    // Weights read per decoded token: the blocks, plus f32 for the rest (minus the position
    // table, of which one row is read).
    let read = |m: &Gpt| {
        let (c, wte) = (&m.config, m.layout.wte.len());
        let padding = wte - wte.min(c.vocab_size * c.n_embd);
        m.weight_bytes() - 4 * (c.block_size - 1) * c.n_embd - 4 * padding
    };
    let mut best = vec![f64::INFINITY; models.len()];
    for _ in 0..a.timing.rounds {
        for ((_, _, model, _), best) in models.iter_mut().zip(&mut best) {
            let (total, _) = time_generation(model, 1, a.timing.prompt, a.timing.new_tokens)?;
            *best = best.min(total);
        }
    }
    let mut rows = Vec::new();
    let new = a.timing.new_tokens.to_string();
    for ((label, size, model, file), secs) in models.iter_mut().zip(best) {
        let score = match &tokens {
            Some(t) => {
                let bytes = tok.decoded_len(t.get(1..).unwrap_or_default());
                Some(minillm::eval::evaluate(model, t, bytes)?)
            }
            None => None,
        };
        let file = file.display().to_string();
        let peak = super::memory::peak_of(&[
            "generate",
            "--model",
            &file,
            "--max-new-tokens",
            &new,
            "--seed",
            "1",
            "Hello",
        ])?;
        rows.push(serde_json::json!({
            "type": label,
            "weights": model.weight_type(),
            "file_mb": *size as f64 / 1e6,
            "read_mb_per_token": read(model) as f64 / 1e6,
            "tokens_per_s": a.timing.new_tokens as f64 / secs,
            "peak_mb": peak.map(|b| b as f64 / 1e6),
            "perplexity": score.as_ref().map(|s| s.perplexity),
            "bits_per_byte": score.as_ref().map(|s| s.bits_per_byte),
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let threads = rayon::current_num_threads();
    if a.timing.json {
        let doc = serde_json::json!({"model": name, "threads": threads, "prompt": a.timing.prompt,
            "new_tokens": a.timing.new_tokens, "rounds": a.timing.rounds, "rows": rows});
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{name}: batch-1 decoding of {} tokens after a {}-token prompt, {threads} threads, best of {} runs in turns",
        a.timing.new_tokens, a.timing.prompt, a.timing.rounds
    );
    println!("| type | weights | file MB | MB read per token | tokens/s | peak MB | perplexity | vs f32 |");
    println!("|---|---|---|---|---|---|---|---|");
    let base_ppl = rows[0]["perplexity"].as_f64();
    for r in &rows {
        let ppl = r["perplexity"].as_f64();
        let change = match (ppl, base_ppl) {
            (Some(p), Some(b)) => format!("{:+.3}%", 100.0 * (p / b - 1.0)),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {} | {} | {change} |",
            r["type"].as_str().unwrap_or(""),
            r["weights"].as_str().unwrap_or(""),
            r["file_mb"].as_f64().unwrap_or(0.0),
            r["read_mb_per_token"].as_f64().unwrap_or(0.0),
            r["tokens_per_s"].as_f64().unwrap_or(0.0),
            r["peak_mb"].as_f64().map_or("-".into(), |p| format!("{p:.1}")),
            ppl.map_or("-".into(), |p| format!("{p:.4}")),
        );
    }
    Ok(())
}
