//! `minillm bench train-step`: forward + backward throughput on random tokens, next to this
//! machine's matrix-product speed measured in the same run.

use super::model::ShapeChoice;
use anyhow::{Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use minillm::kernels::matmul::{Stored, matmul};
use minillm::model::Gpt;
use minillm::rng::Rng;
use std::time::Instant;

#[derive(Subcommand)]
pub enum Command {
    /// Time training steps (forward + backward) of a model shape.
    TrainStep(TrainStepArgs),
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
        Command::TrainStep(a) => rayon::ThreadPoolBuilder::new().build()?.install(|| train_step(a)),
    }
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
    let mut model = Gpt::new(config.clone(), 1)?;
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
