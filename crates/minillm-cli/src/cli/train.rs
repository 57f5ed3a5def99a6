//! `minillm train`: pretraining with live progress, metrics.jsonl, evaluation and checkpoints.

use super::display::count;
use super::ranks::{Join, RankArgs, outcome};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use minillm::fsutil::atomic_write;
use minillm::train::objective::DpoStats;
use minillm::train::{TrainConfig, Trainer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    /// Directory of shards made by `minillm prepare`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run directory for checkpoints, metrics.jsonl and the resolved config.
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its latest checkpoint, exactly.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config"])]
    resume: Option<PathBuf>,
    /// A TOML file with any of the settings below (flags win).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Model shape: a preset (baby, gpt2, smollm2-135m, ...) or the depth dial (d4).
    #[arg(long)]
    model: Option<String>,
    /// Architecture: gpt2, or llama (RMSNorm, rotary positions, SwiGLU, grouped-query
    /// attention); with the depth dial, picks its family (default: the preset's own).
    #[arg(long, value_parser = ["gpt2", "llama"])]
    arch: Option<String>,
    /// Context length (tokens per window; default: the preset's).
    #[arg(long)]
    context: Option<usize>,
    #[command(flatten)]
    flags: Flags,
    #[command(flatten)]
    ranks: RankArgs,
}

/// Every TrainConfig setting but the model's shape, as an optional flag (shared by train, sft
/// and dpo). The default sets nothing.
#[derive(ClapArgs, Default)]
pub struct Flags {
    /// Dropout probability during training.
    #[arg(long)]
    dropout: Option<f32>,
    /// Windows per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches averaged into one optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Optimizer steps to train for (in total, counting resumed steps).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Learning rate at the end of the cosine decay.
    #[arg(long)]
    min_lr: Option<f32>,
    /// Steps of linear warmup.
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Step where the cosine reaches min_lr (default: max_steps).
    #[arg(long)]
    decay_steps: Option<usize>,
    /// AdamW beta1.
    #[arg(long)]
    beta1: Option<f32>,
    /// AdamW beta2.
    #[arg(long)]
    beta2: Option<f32>,
    /// Decoupled weight decay on the blocks' weight matrices.
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Clip the gradient's global norm to this (0 = off).
    #[arg(long)]
    grad_clip: Option<f32>,
    /// Evaluate (and sample) every this many steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Validation batches per evaluation (0 = the whole validation split).
    #[arg(long)]
    eval_batches: Option<usize>,
    /// Write a checkpoint every this many steps.
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Seed for initialisation, batches and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Prompt continued after each evaluation ("" turns samples off).
    #[arg(long)]
    sample_prompt: Option<String>,
    /// Tokens to sample after each evaluation.
    #[arg(long)]
    sample_tokens: Option<usize>,
}

impl Flags {
    pub fn apply(&self, c: &mut TrainConfig) {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = &self.$field { c.$field = v.clone(); })* };
        }
        set!(dropout, batch_size, grad_accum, max_steps, lr, min_lr, warmup_steps, beta1, beta2);
        set!(
            weight_decay,
            grad_clip,
            eval_every,
            eval_batches,
            checkpoint_every,
            seed,
            sample_prompt,
            sample_tokens
        );
        if self.decay_steps.is_some() {
            c.decay_steps = self.decay_steps;
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    run_watched(a, Watch::ctrl_c()?)
}

/// How a training loop is stopped and followed from outside: on the command line by Ctrl-C and
/// its progress bar; from Python by the iterator that yields each step's metrics.
pub struct Watch<'a> {
    /// Set to stop after the current step, with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Called with each step's line of metrics.jsonl, once it is written.
    pub on_step: Box<dyn FnMut(&serde_json::Value) + Send + 'a>,
}

impl Watch<'_> {
    /// Ctrl-C stops the run; nothing else follows it.
    pub fn ctrl_c() -> Result<Watch<'static>> {
        Ok(Watch { stop: interrupted()?, on_step: Box::new(|_| {}) })
    }
}

/// [`run`], stopped and followed by `watch`.
pub fn run_watched(a: Args, mut watch: Watch) -> Result<()> {
    let mut join = Join::start(&a.ranks)?;
    let built = start(&a);
    let (mut trainer, run_dir) = join.settle(built)?;
    join.attach(&mut trainer)?;
    if trainer.rank().0 == 0 {
        atomic_write(&run_dir.join("config.toml"), trainer.config.to_toml().as_bytes())?;
    }
    train_loop(&mut trainer, &run_dir, &mut watch)
}

/// The trainer for a new run, or the resumed one, and its directory.
fn start(a: &Args) -> Result<(Trainer, PathBuf)> {
    Ok(match &a.resume {
        Some(run) => {
            let mut t = Trainer::resume(run, &a.data)?;
            a.flags.apply(&mut t.config);
            if a.model.is_some() || a.arch.is_some() || a.context.is_some() {
                bail!("--model, --arch and --context are fixed when a run starts; --resume keeps them");
            }
            (t, run.clone())
        }
        None => {
            let out = a.out.clone().expect("clap requires --out without --resume");
            if out.join("latest.json").exists() {
                bail!(
                    "the run directory {} already holds a run; continue it with --resume {0} or choose another --out",
                    out.display()
                );
            }
            let mut config = match &a.config {
                Some(path) => TrainConfig::from_toml(&minillm::fsutil::read_text(path)?, path)?,
                None => TrainConfig::default(),
            };
            a.flags.apply(&mut config);
            if let Some(model) = &a.model {
                config.model = model.clone();
            }
            if a.arch.is_some() {
                config.arch = a.arch.clone();
            }
            if a.context.is_some() {
                config.context = a.context;
            }
            let trainer = Trainer::new(config, &a.data)?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            (trainer, out)
        }
    })
}

/// Runs `trainer` to its `max_steps` with a progress bar, metrics.jsonl, evaluations and
/// checkpoints in `run_dir`; stops early (with a checkpoint) when `watch.stop` is set. In a
/// data-parallel run every rank runs it; rank 0 alone prints and writes.
pub fn train_loop(trainer: &mut Trainer, run_dir: &Path, watch: &mut Watch) -> Result<()> {
    let result = run_steps(trainer, run_dir, watch);
    outcome(trainer, result)
}

fn run_steps(trainer: &mut Trainer, run_dir: &Path, watch: &mut Watch) -> Result<()> {
    let (rank, ranks) = trainer.rank();
    let lead = rank == 0;
    let c = trainer.config.clone();
    let m = &trainer.model.config;
    let tokens_per_step = trainer.tokens_per_step();
    let (arch, heads) = match m.arch {
        minillm::model::Arch::Gpt2 => (String::new(), format!("{} heads", m.n_head)),
        _ => ("llama ".to_string(), format!("{} heads sharing {} KV heads", m.n_head, m.n_kv_head())),
    };
    println!(
        "training {arch}{} ({} layers, {heads}, width {}, context {}): {} parameters, vocabulary {}",
        c.model,
        m.n_layer,
        m.n_embd,
        trainer.window(),
        count(m.num_params()),
        count(m.vocab_size)
    );
    println!(
        "{} steps of {} tokens from step {}; run directory {}",
        count(c.max_steps),
        count(tokens_per_step),
        trainer.step,
        run_dir.display()
    );
    if ranks > 1 {
        println!("{}", data_parallel_summary(trainer));
    }
    let mut metrics = match lead {
        true => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(run_dir.join("metrics.jsonl"))
                .with_context(|| format!("cannot open {}", run_dir.join("metrics.jsonl").display()))?,
        ),
        false => None,
    };
    let bar = match lead {
        true => ProgressBar::new(c.max_steps as u64),
        false => ProgressBar::hidden(),
    };
    let bar = bar.with_position(trainer.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (eta {eta})").expect("valid template"),
    );
    let started = Instant::now();
    let first = trainer.step;
    while trainer.step < c.max_steps {
        let (t0, waited) = (Instant::now(), trainer.communication_time());
        let stats = match trainer.train_step() {
            Ok(s) => s,
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        let tokens_per_s = tokens_per_step as f64 / secs;
        let mut line = serde_json::json!({
            "step": stats.step, "loss": stats.loss, "lr": stats.lr, "grad_norm": stats.grad_norm,
            "tokens_per_s": tokens_per_s, "elapsed_s": started.elapsed().as_secs_f64(),
        });
        let comm_share = (trainer.communication_time() - waited).as_secs_f64() / secs;
        if ranks > 1 {
            line["ranks"] = ranks.into();
            line["comm_share"] = comm_share.into();
        }
        if let Some(d) = &stats.dpo {
            add_rewards(&mut line, "", d);
        }
        let last = trainer.step == c.max_steps;
        if trainer.step.is_multiple_of(c.eval_every) || last {
            // Every rank evaluates (the same numbers), so all agree on the best checkpoint.
            trainer.check_ranks_agree()?;
            let previous_best = trainer.best_val;
            let e = trainer.evaluate()?;
            if previous_best.is_none_or(|b| e.val_loss < b) {
                trainer.save_best(run_dir)?;
            }
            line["val_loss"] = e.val_loss.into();
            let report = match &e.dpo {
                Some(d) => {
                    add_rewards(&mut line, "eval_", d);
                    format!(
                        "step {:>6}: train loss {:.4}, held-out DPO loss {:.4}, preference accuracy {:.1}%, reward margin {:.3}",
                        stats.step,
                        stats.loss,
                        e.val_loss,
                        100.0 * d.accuracy,
                        d.margin
                    )
                }
                None => {
                    line["val_perplexity"] = e.perplexity.into();
                    line["val_bits_per_byte"] = e.bits_per_byte.into();
                    format!(
                        "step {:>6}: train loss {:.4}, val loss {:.4}, perplexity {:.2}, {:.3} bits per byte",
                        stats.step, stats.loss, e.val_loss, e.perplexity, e.bits_per_byte
                    )
                }
            };
            let sample = if lead { trainer.sample()? } else { None };
            let report = match &sample {
                Some(text) => format!("{report}\n  sample: {}", super::display::visible(text.trim())),
                None => report,
            };
            if let Some(text) = sample {
                line["sample"] = text.into();
            }
            // A hidden bar (output not a terminal) would swallow its println.
            if bar.is_hidden() { println!("{report}") } else { bar.println(report) }
        }
        if let Some(metrics) = &mut metrics {
            writeln!(metrics, "{line}")?;
            (watch.on_step)(&line);
        }
        bar.set_position(trainer.step as u64);
        bar.set_message(match &stats.dpo {
            Some(d) => format!(
                "loss {:.4} acc {:.0}% margin {:.3} lr {:.2e}",
                stats.loss,
                100.0 * d.accuracy,
                d.margin,
                stats.lr
            ),
            None => format!("loss {:.4} lr {:.2e} {:.0} tok/s", stats.loss, stats.lr, tokens_per_s),
        });
        if ranks > 1 {
            bar.set_message(format!(
                "{} | {ranks} ranks, {:.0}% communicating",
                bar.message(),
                100.0 * comm_share
            ));
        }
        let interrupted = trainer.any_rank(watch.stop.load(Ordering::SeqCst));
        if trainer.step.is_multiple_of(c.checkpoint_every) || last || interrupted {
            trainer.save_checkpoint(run_dir)?;
        }
        if interrupted {
            bar.abandon();
            println!(
                "interrupted: saved a checkpoint at step {}; continue with --resume {}",
                trainer.step,
                run_dir.display()
            );
            return Ok(());
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if lead {
        super::plot::write_plot(run_dir, &run_dir.join("loss.svg"))?;
    }
    println!(
        "done: {} steps in {:.1}s ({:.0} tokens/s); best val loss {:.4}; checkpoint and loss.svg in {}",
        trainer.step - first,
        secs,
        ((trainer.step - first) * tokens_per_step) as f64 / secs,
        trainer.best_val.unwrap_or(f32::NAN),
        run_dir.display()
    );
    Ok(())
}

/// The line a data-parallel run starts with: ranks, threads, and what each rank holds.
fn data_parallel_summary(trainer: &Trainer) -> String {
    let (_, ranks) = trainer.rank();
    let m = &trainer.model.config;
    let p = trainer.model.params.len() as f64 * 4.0;
    let sharded = trainer.sharded();
    let moments = if sharded { 2.0 * p / ranks as f64 } else { 2.0 * p };
    // The chunked reductions' two 4 MB buffers, and without sharding the overlapped
    // reduction's copy of the gradients and their sums.
    let buffers = 8.0 * 1048576.0 + if sharded { 0.0 } else { 2.0 * p };
    let acts =
        minillm::model::training::activation_bytes(m, trainer.config.batch_size, trainer.window()) as f64;
    let mb = |b: f64| format!("{:.1} MB", b / 1e6);
    format!(
        "data-parallel: {ranks} ranks x {} threads; {}; memory per rank: weights {}, gradients {}, AdamW moments {}, communication buffers {}, activations {}",
        rayon::current_num_threads(),
        if sharded {
            "optimizer state sharded (ZeRO-1): gradients reduce-scattered, weights all-gathered"
        } else {
            "gradients all-reduced layer by layer during backward"
        },
        mb(p),
        mb(p),
        mb(moments),
        mb(buffers),
        mb(acts)
    )
}

/// DPO's numbers under TRL's names (`rewards/chosen`, ...), with `prefix` for held-out ones.
fn add_rewards(line: &mut serde_json::Value, prefix: &str, d: &DpoStats) {
    for (name, value) in [
        ("rewards/chosen", d.chosen_reward),
        ("rewards/rejected", d.rejected_reward),
        ("rewards/accuracies", d.accuracy),
        ("rewards/margins", d.margin),
    ] {
        line[format!("{prefix}{name}")] = value.into();
    }
}

/// Set by Ctrl-C: the loop saves a checkpoint and stops. Installed once per process (the demo
/// runs several stages).
pub fn interrupted() -> Result<Arc<AtomicBool>> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| stop).clone())
}
