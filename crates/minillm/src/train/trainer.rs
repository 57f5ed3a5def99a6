//! The pretraining loop: batches from the shards, forward, backward, clip, AdamW, evaluation and
//! crash-safe checkpoints that resume bit for bit.

use super::adamw::{AdamW, AdamWConfig};
use super::data::{Loader, read_shard, tokenizer_hash};
use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::eval::score_windows;
use crate::fsutil::{atomic_write, read_text};
use crate::io::{load_model, safetensors as st, save_model};
use crate::model::{Gpt, ModelConfig};
use crate::rng::Rng;
use crate::tokenizer::{Tokenizer, formats};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of a run. Read from TOML (unknown keys are an error), overridden by flags, and
/// saved in the run directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Model shape: a preset (`baby`, `gpt2`, ...) or the depth dial (`d4`).
    pub model: String,
    /// Context length (default: the preset's).
    pub context: Option<usize>,
    pub dropout: f32,
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged into one step.
    pub grad_accum: usize,
    pub max_steps: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: usize,
    /// Step where the cosine reaches min_lr (default: max_steps).
    pub decay_steps: Option<usize>,
    pub beta1: f32,
    pub beta2: f32,
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f32,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Validation windows per evaluation; 0 = the whole validation split.
    pub eval_batches: usize,
    /// Checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// After each evaluation, continue this prompt to show what the model writes ("" = off).
    pub sample_prompt: String,
    pub sample_tokens: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "d4".into(),
            context: None,
            dropout: 0.0,
            batch_size: 8,
            grad_accum: 1,
            max_steps: 1000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            decay_steps: None,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.1,
            grad_clip: 1.0,
            eval_every: 250,
            eval_batches: 0,
            checkpoint_every: 500,
            sample_prompt: "\n".into(),
            sample_tokens: 64,
            seed: 1337,
        }
    }
}

impl TrainConfig {
    pub fn from_toml(text: &str, path: &Path) -> Result<TrainConfig> {
        toml::from_str(text).map_err(|e| Error::format(path, e.message().to_string()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config serializes")
    }

    /// The model shape for a vocabulary of `vocab_size`.
    pub fn model_config(&self, vocab_size: usize) -> Result<ModelConfig> {
        let mut c = ModelConfig::preset(&self.model)?;
        c.vocab_size = vocab_size;
        c.dropout = self.dropout;
        if let Some(t) = self.context {
            c.block_size = t;
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.batch_size == 0 || self.grad_accum == 0 || self.max_steps == 0 {
            return bad("batch_size, grad_accum and max_steps must be at least 1");
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 {
            return bad("eval_every and checkpoint_every must be at least 1");
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("need lr > 0 and 0 <= min_lr <= lr");
        }
        Ok(())
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            decay_steps: self.decay_steps.unwrap_or(self.max_steps),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepStats {
    pub step: usize,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct EvalStats {
    pub val_loss: f32,
    pub perplexity: f32,
    /// Tokenizer-independent: nats per token / ln 2 / bytes per token.
    pub bits_per_byte: f32,
}

/// Saved beside the weights in each checkpoint.
#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    loader_rng: [u64; 4],
    dropout_rng: [u64; 4],
    adam_step: u32,
    best_val: Option<f32>,
    config: TrainConfig,
}

pub struct Trainer {
    pub config: TrainConfig,
    pub model: Gpt,
    pub tokenizer: Tokenizer,
    pub step: usize,
    pub best_val: Option<f32>,
    opt: AdamW,
    train: Loader,
    val: Loader,
    val_bytes_per_token: f64,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

fn load_split(data: &Path, name: &str, tok: &Tokenizer) -> Result<Vec<u32>> {
    let path = data.join(name);
    let (ids, info) = read_shard(&path)?;
    if info.tokenizer_hash != tokenizer_hash(tok) || info.vocab_size as usize != tok.vocab_size() {
        return Err(Error::format(
            &path,
            "was made with a different tokenizer than the tokenizer.json beside it",
        ));
    }
    Ok(ids)
}

impl Trainer {
    /// A fresh run on the shards in `data` (as written by `minillm prepare`). Everything that
    /// can be wrong with the input is checked here, before any training.
    pub fn new(mut config: TrainConfig, data: &Path) -> Result<Trainer> {
        config.validate()?;
        // Pin the schedule's end now, so resuming with a larger max_steps extends the run at the
        // floor learning rate instead of reshaping the cosine behind it.
        config.decay_steps.get_or_insert(config.max_steps);
        if !data.join("train.bin").is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no train.bin: make the data with `minillm prepare --out {0}`",
                data.display()
            )));
        }
        let tok_path = data.join("tokenizer.json");
        let tokenizer = formats::read_hf_json(&tok_path)?;
        let model_config = config.model_config(tokenizer.vocab_size())?;
        let model = Gpt::new(model_config, config.seed)?;
        Trainer::assemble(config, model, tokenizer, data)
    }

    fn assemble(config: TrainConfig, model: Gpt, tokenizer: Tokenizer, data: &Path) -> Result<Trainer> {
        let t = model.config.block_size;
        let train_ids = load_split(data, "train.bin", &tokenizer)?;
        let val_ids = load_split(data, "val.bin", &tokenizer)?;
        let val_bytes = tokenizer.decoded_len(&val_ids);
        let val_bytes_per_token = val_bytes as f64 / val_ids.len().max(1) as f64;
        let train = Loader::new(train_ids, t, config.seed)
            .map_err(|e| Error::Invalid(format!("training data: {e}")))?;
        let val = Loader::new(val_ids, t, config.seed ^ 1)
            .map_err(|e| Error::Invalid(format!("validation data: {e}")))?;
        let adam = AdamWConfig {
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        };
        let opt = AdamW::new(adam, &model.layout);
        let n = config.batch_size * t;
        Ok(Trainer {
            config,
            model,
            tokenizer,
            step: 0,
            best_val: None,
            opt,
            train,
            val,
            val_bytes_per_token,
            inputs: vec![0; n],
            targets: vec![0; n],
        })
    }

    /// One optimizer step: `grad_accum` micro-batches, gradient clipping, AdamW. A loss that is
    /// not finite stops with an error naming the step (nothing is updated).
    pub fn train_step(&mut self) -> Result<StepStats> {
        let (b, t) = (self.config.batch_size, self.model.config.block_size);
        self.model.training = true;
        self.model.zero_grad();
        let mut loss_sum = 0.0f64;
        for _ in 0..self.config.grad_accum {
            self.train.next_batch(&mut self.inputs, &mut self.targets, t);
            let loss = self.model.forward(&self.inputs, Some(&self.targets), (b, t))?.unwrap_or(f32::NAN);
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "the loss became {loss} at step {}; stopping (the last checkpoint is kept). Try a lower lr or grad_clip",
                    self.step + 1
                )));
            }
            loss_sum += loss as f64;
            self.model.backward()?;
        }
        let grads = &mut self.model.grads;
        let accum = self.config.grad_accum as f32;
        if accum > 1.0 {
            grads.iter_mut().for_each(|g| *g /= accum);
        }
        let norm = grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32;
        if !norm.is_finite() {
            return Err(Error::Invalid(format!(
                "the gradient norm became {norm} at step {}; stopping",
                self.step + 1
            )));
        }
        if self.config.grad_clip > 0.0 && norm > self.config.grad_clip {
            let scale = self.config.grad_clip / norm;
            grads.iter_mut().for_each(|g| *g *= scale);
        }
        let lr = self.config.schedule().at(self.step);
        self.opt.step(&mut self.model.params, &self.model.grads, lr);
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: (loss_sum / self.config.grad_accum as f64) as f32,
            lr,
            grad_norm: norm,
        })
    }

    /// Mean loss per token over validation windows (all of them when `eval_batches` is 0), in
    /// batches of the training shape.
    pub fn evaluate(&mut self) -> Result<EvalStats> {
        let (b, t) = (self.config.batch_size, self.model.config.block_size);
        let total = self.val.windows(t).count();
        let limit =
            if self.config.eval_batches == 0 { total } else { (self.config.eval_batches * b).min(total) };
        let windows = self.val.windows(t).take(limit);
        let (sum, counted) =
            score_windows(&mut self.model, windows, (b, t), &mut self.inputs, &mut self.targets)?;
        let val_loss = (sum / counted.max(1) as f64) as f32;
        let bits_per_byte = (val_loss as f64 / std::f64::consts::LN_2 / self.val_bytes_per_token) as f32;
        if self.best_val.is_none_or(|best| val_loss < best) {
            self.best_val = Some(val_loss);
        }
        Ok(EvalStats { val_loss, perplexity: val_loss.exp(), bits_per_byte })
    }

    /// A short continuation of `sample_prompt` (greedy-ish: temperature 0.8, top-k 40, fixed
    /// seed, so samples from successive evaluations are comparable). `None` when turned off.
    pub fn sample(&mut self) -> Result<Option<String>> {
        if self.config.sample_prompt.is_empty() || self.config.sample_tokens == 0 {
            return Ok(None);
        }
        let prompt = self.tokenizer.encode(&self.config.sample_prompt, crate::SpecialTokens::AsText)?;
        let config = crate::sample::SamplerConfig { temperature: 0.8, top_k: 40, ..Default::default() };
        let mut rng = Rng::new(self.config.seed);
        self.model.training = false;
        let ids = crate::sample::generate(
            &mut self.model,
            &prompt,
            self.config.sample_tokens,
            &config,
            &mut rng,
            None,
            |_, _| true,
        );
        self.model.training = true;
        Ok(Some(self.tokenizer.decode(&ids?)?))
    }

    /// Writes `run/ckpt-STEP/` (weights, optimizer, state, tokenizer) under a temporary name,
    /// renames it into place, then points `run/latest.json` at it, so a crash at any moment
    /// leaves the previous checkpoint loadable. Older checkpoints are removed afterwards.
    pub fn save_checkpoint(&self, run: &Path) -> Result<PathBuf> {
        self.save_as(run, "ckpt", "latest.json")
    }

    /// The same for the best validation loss so far: `run/best-STEP/`, pointed at by `best.json`.
    pub fn save_best(&self, run: &Path) -> Result<PathBuf> {
        self.save_as(run, "best", "best.json")
    }

    fn save_as(&self, run: &Path, prefix: &str, pointer: &str) -> Result<PathBuf> {
        let name = format!("{prefix}-{:08}", self.step);
        let tmp = run.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        save_model(&tmp, &self.model, self.tokenizer.special_id("<|endoftext|>"))?;
        // AdamW's moments share the parameters' layout, so they are saved the same way.
        let (m, v, adam_step) = self.opt.state();
        atomic_write(&tmp.join("optimizer_m.safetensors"), &st::to_bytes(&self.model.config, m)?)?;
        atomic_write(&tmp.join("optimizer_v.safetensors"), &st::to_bytes(&self.model.config, v)?)?;
        formats::save(&self.tokenizer, &tmp.join("tokenizer.json"))?;
        let state = State {
            step: self.step,
            loader_rng: self.train.rng().state(),
            dropout_rng: self.model.dropout_rng().state(),
            adam_step,
            best_val: self.best_val,
            config: self.config.clone(),
        };
        let text = serde_json::to_string_pretty(&state).expect("state serializes");
        atomic_write(&tmp.join("state.json"), text.as_bytes())?;
        let dest = run.join(&name);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(|cause| Error::Write { path: dest.clone(), cause })?;
        let latest = serde_json::json!({ "checkpoint": name, "step": self.step, "best_val": self.best_val });
        atomic_write(&run.join(pointer), latest.to_string().as_bytes())?;
        for entry in
            std::fs::read_dir(run).map_err(|cause| Error::Read { path: run.to_path_buf(), cause })?.flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(&format!("{prefix}-")) && file != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(dest)
    }

    /// Continues the run in `run` from its latest checkpoint, exactly: same weights, optimizer
    /// moments, data position and dropout masks as if it had never stopped.
    pub fn resume(run: &Path, data: &Path) -> Result<Trainer> {
        let latest_path = run.join("latest.json");
        if !latest_path.is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no run to resume (no latest.json); start one with `minillm train --out {0}`",
                run.display()
            )));
        }
        let dir = crate::io::model_dir(run)?;
        let state_path = dir.join("state.json");
        let state: State = serde_json::from_str(&read_text(&state_path)?)
            .map_err(|e| Error::format(&state_path, format!("not a training state: {e}")))?;
        let mut model = load_model(&dir)?;
        model.config.dropout = state.config.dropout;
        let model = Gpt::from_params(model.config.clone(), model.params, state.config.seed)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = formats::read_hf_json(&tok_path)?;
        let mut trainer = Trainer::assemble(state.config.clone(), model, tokenizer, data)?;
        let read_moment = |file: &str| -> Result<Vec<f32>> {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|cause| Error::Read { path: path.clone(), cause })?;
            st::from_bytes(&bytes, &trainer.model.config, &path)
        };
        let (m, v) = (read_moment("optimizer_m.safetensors")?, read_moment("optimizer_v.safetensors")?);
        trainer.opt.set_state(m, v, state.adam_step)?;
        trainer.train.set_rng(Rng::from_state(state.loader_rng));
        trainer.model.set_dropout_rng(Rng::from_state(state.dropout_rng));
        trainer.step = state.step;
        trainer.best_val = state.best_val;
        Ok(trainer)
    }
}
