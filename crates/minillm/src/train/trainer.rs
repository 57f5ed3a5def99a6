//! The training loop, one for every stage: batches, forward, backward, clip, AdamW, evaluation
//! and crash-safe checkpoints that resume bit for bit. Pretraining draws windows from token
//! shards; SFT draws whole conversations with the loss on the assistant's tokens; DPO draws
//! preference pairs and weights each token's gradient by the DPO loss (see [`Data`]).

use super::adamw::{AdamW, AdamWConfig};
use super::data::{Loader, read_shard, tokenizer_hash};
use super::finetune::{DpoStats, Sampler, Sequence, dpo, row_logps};
use super::schedule::Schedule;
use crate::chat::{ChatTemplate, Message, Role};
use crate::error::{Error, Result};
use crate::eval::score_windows;
use crate::fsutil::{atomic_write, read_text};
use crate::io::{load_model, safetensors as st, save_model};
use crate::model::layers::loss::IGNORE;
use crate::model::{Gpt, ModelConfig, Trainable};
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
    /// What is trained: `pretrain`, `sft` or `dpo`.
    pub stage: Stage,
    /// DPO's beta: how far the policy may move from the reference (higher = less).
    pub beta: f32,
    /// The model a fine-tuning run started from (DPO's frozen reference).
    pub base_model: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    #[default]
    Pretrain,
    Sft,
    Dpo,
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
            stage: Stage::Pretrain,
            beta: 0.1,
            base_model: None,
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

#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    pub step: usize,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// DPO's rewards and accuracy for this step's pairs.
    pub dpo: Option<DpoStats>,
}

#[derive(Clone, Copy, Debug)]
pub struct EvalStats {
    pub val_loss: f32,
    pub perplexity: f32,
    /// Tokenizer-independent: nats per token / ln 2 / bytes per token.
    pub bits_per_byte: f32,
    /// DPO's numbers on the held-out pairs (`val_loss` is then the DPO loss).
    pub dpo: Option<DpoStats>,
}

/// A preference pair as two sequences, with the frozen reference model's log-probabilities.
pub struct Pair {
    pub chosen: Sequence,
    pub rejected: Sequence,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
}

/// What a run trains on, which decides its loss.
pub enum Data {
    /// Pretraining: random windows of token shards, every token counted.
    Stream { train: Loader, val: Loader },
    /// SFT: whole conversations; only the assistant's tokens are targets.
    Chats { train: Vec<Sequence>, val: Vec<Sequence>, sampler: Sampler },
    /// DPO: preference pairs against a frozen reference.
    Pairs { train: Vec<Pair>, val: Vec<Pair>, sampler: Sampler },
}

impl Data {
    fn rng(&self) -> &Rng {
        match self {
            Data::Stream { train, .. } => train.rng(),
            Data::Chats { sampler, .. } | Data::Pairs { sampler, .. } => sampler.rng(),
        }
    }

    fn set_rng(&mut self, rng: Rng) {
        match self {
            Data::Stream { train, .. } => train.set_rng(rng),
            Data::Chats { sampler, .. } | Data::Pairs { sampler, .. } => sampler.set_rng(rng),
        }
    }

    /// Rows per micro-batch: a pair takes two.
    fn rows(&self, batch: usize) -> usize {
        if matches!(self, Data::Pairs { .. }) { 2 * batch } else { batch }
    }
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
    /// The model and its training state (gradients, activations for backward).
    pub model: Trainable,
    pub tokenizer: Tokenizer,
    pub step: usize,
    pub best_val: Option<f32>,
    opt: AdamW,
    data: Data,
    val_bytes_per_token: f64,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// DPO's per-position gradient weights.
    weights: Vec<f32>,
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
        let data = stream_data(&config, model.config.block_size, &tokenizer, data)?;
        Trainer::with_data(config, model, tokenizer, data)
    }

    /// A run of any stage on `data`, starting from `model` (SFT and DPO start from a trained one).
    pub fn with_data(
        mut config: TrainConfig,
        model: Gpt,
        tokenizer: Tokenizer,
        data: Data,
    ) -> Result<Trainer> {
        config.validate()?;
        config.decay_steps.get_or_insert(config.max_steps);
        let t = model.config.block_size;
        let (tokens, bytes) = match &data {
            Data::Stream { val, .. } => (val.tokens().len(), tokenizer.decoded_len(val.tokens())),
            Data::Chats { val, .. } => {
                let ids: Vec<u32> =
                    val.iter().flat_map(|s| s.targets.iter().copied().filter(|&x| x != IGNORE)).collect();
                (ids.len(), tokenizer.decoded_len(&ids))
            }
            Data::Pairs { .. } => (1, 1),
        };
        let val_bytes_per_token = bytes as f64 / tokens.max(1) as f64;
        let adam = AdamWConfig {
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: 1e-8,
            weight_decay: config.weight_decay,
        };
        // Weights stored in 16 bits or quantized are widened here; a caller that accepts such a
        // model says so first (`sft` and `dpo` do, with `widening_note`).
        let (model, _) = Trainable::new(model, config.seed);
        let opt = AdamW::new(adam, &model.layout);
        let n = data.rows(config.batch_size) * t;
        Ok(Trainer {
            config,
            model,
            tokenizer,
            step: 0,
            best_val: None,
            opt,
            data,
            val_bytes_per_token,
            inputs: vec![0; n],
            targets: vec![0; n],
            weights: vec![0.0; n],
        })
    }

    /// One optimizer step: `grad_accum` micro-batches, gradient clipping, AdamW. A loss that is
    /// not finite stops with an error naming the step (nothing is updated).
    pub fn train_step(&mut self) -> Result<StepStats> {
        let (b, t) = (self.config.batch_size, self.model.config.block_size);
        self.model.training = true;
        self.model.zero_grad();
        let mut loss_sum = 0.0f64;
        let mut dpo_stats = Vec::new();
        for _ in 0..self.config.grad_accum {
            let loss = match &mut self.data {
                Data::Stream { train, .. } => {
                    train.next_batch(&mut self.inputs, &mut self.targets, t);
                    self.model.forward(&self.inputs, Some(&self.targets), (b, t))?
                }
                Data::Chats { train, sampler, .. } => {
                    for row in 0..b {
                        let r = row * t..(row + 1) * t;
                        train[sampler.next_index()].fill(&mut self.inputs[r.clone()], &mut self.targets[r]);
                    }
                    self.model.forward(&self.inputs, Some(&self.targets), (b, t))?
                }
                Data::Pairs { train, sampler, .. } => {
                    let picked: Vec<usize> = (0..b).map(|_| sampler.next_index()).collect();
                    let stats = dpo_forward(
                        &mut self.model,
                        train,
                        &picked,
                        self.config.beta,
                        &mut self.inputs,
                        &mut self.targets,
                        &mut self.weights,
                        t,
                    )?;
                    dpo_stats.push((stats, b));
                    Some(stats.loss)
                }
            }
            .unwrap_or(f32::NAN);
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "the loss became {loss} at step {}; stopping (the last checkpoint is kept). Try a lower lr or grad_clip",
                    self.step + 1
                )));
            }
            loss_sum += loss as f64;
            match &self.data {
                Data::Pairs { .. } => self.model.backward_weighted(&self.weights)?,
                _ => self.model.backward()?,
            }
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
        let Trainable { model, grads, .. } = &mut self.model;
        self.opt.step(&mut model.params, grads, lr);
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: (loss_sum / self.config.grad_accum as f64) as f32,
            lr,
            grad_norm: norm,
            dpo: mean_dpo(&dpo_stats),
        })
    }

    /// Mean loss per token over validation windows (all of them when `eval_batches` is 0), in
    /// batches of the training shape; for SFT over the held-out replies' tokens, for DPO the DPO
    /// loss and rewards on the held-out pairs.
    pub fn evaluate(&mut self) -> Result<EvalStats> {
        let (b, t) = (self.config.batch_size, self.model.config.block_size);
        let limit = |total: usize| {
            if self.config.eval_batches == 0 { total } else { (self.config.eval_batches * b).min(total) }
        };
        let was_training = std::mem::replace(&mut self.model.training, false);
        let (val_loss, dpo_stats) = match &self.data {
            Data::Stream { val, .. } => {
                let windows = val.windows(t).take(limit(val.windows(t).count()));
                let (sum, counted) =
                    score_windows(&mut self.model, windows, (b, t), &mut self.inputs, &mut self.targets)?;
                ((sum / counted.max(1) as f64) as f32, None)
            }
            Data::Chats { val, .. } => {
                let (mut sum, mut counted) = (0.0f64, 0usize);
                for chunk in val[..limit(val.len())].chunks(b) {
                    for (row, seq) in chunk.iter().enumerate() {
                        let r = row * t..(row + 1) * t;
                        seq.fill(&mut self.inputs[r.clone()], &mut self.targets[r]);
                    }
                    let n = chunk.len() * t;
                    let mean = self
                        .model
                        .forward(&self.inputs[..n], Some(&self.targets[..n]), (chunk.len(), t))?
                        .unwrap_or(0.0);
                    let c: usize = chunk.iter().map(Sequence::counted).sum();
                    sum += mean as f64 * c as f64;
                    counted += c;
                }
                ((sum / counted.max(1) as f64) as f32, None)
            }
            Data::Pairs { val, .. } => {
                let picked: Vec<usize> = (0..limit(val.len())).collect();
                let mut all = Vec::new();
                for chunk in picked.chunks(b) {
                    all.push((
                        dpo_forward(
                            &mut self.model,
                            val,
                            chunk,
                            self.config.beta,
                            &mut self.inputs,
                            &mut self.targets,
                            &mut self.weights,
                            t,
                        )?,
                        chunk.len(),
                    ));
                }
                let s = mean_dpo(&all);
                (s.map_or(f32::NAN, |s| s.loss), s)
            }
        };
        self.model.training = was_training;
        let bits_per_byte = (val_loss as f64 / std::f64::consts::LN_2 / self.val_bytes_per_token) as f32;
        if self.best_val.is_none_or(|best| val_loss < best) {
            self.best_val = Some(val_loss);
        }
        Ok(EvalStats { val_loss, perplexity: val_loss.exp(), bits_per_byte, dpo: dpo_stats })
    }

    /// A short continuation of `sample_prompt` (greedy-ish: temperature 0.8, top-k 40, fixed
    /// seed, so samples from successive evaluations are comparable). `None` when turned off.
    pub fn sample(&mut self) -> Result<Option<String>> {
        if self.config.sample_prompt.is_empty() || self.config.sample_tokens == 0 {
            return Ok(None);
        }
        // Fine-tuned models are asked as a user would ask them: through the chat template.
        let template = ChatTemplate::of(&self.tokenizer).filter(|_| self.config.stage != Stage::Pretrain);
        let (prompt, stop) = match &template {
            Some(t) => {
                let ask = [Message::new(Role::User, self.config.sample_prompt.clone())];
                (t.render(&self.tokenizer, &ask, true).ids, Some(t.end_id()))
            }
            None => (self.tokenizer.encode(&self.config.sample_prompt, crate::SpecialTokens::AsText)?, None),
        };
        let config = crate::sample::SamplerConfig { temperature: 0.8, top_k: 40, ..Default::default() };
        let mut rng = Rng::new(self.config.seed);
        self.model.training = false;
        let ids = crate::sample::generate(
            &self.model,
            &prompt,
            self.config.sample_tokens,
            &config,
            &mut rng,
            stop,
            |_, _| true,
        );
        self.model.training = true;
        let ids = ids?;
        // A chat model's sample is its reply alone.
        let shown = if template.is_some() { &ids[prompt.len()..] } else { &ids[..] };
        Ok(Some(self.tokenizer.decode(shown)?))
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
            loader_rng: self.data.rng().state(),
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
        Trainer::resume_with(run, |config, model, tok| {
            stream_data(config, model.config.block_size, tok, data)
        })
    }

    /// [`resume`](Self::resume) for any stage: `make_data` rebuilds the run's data for its
    /// saved config, checkpointed model and tokenizer.
    pub fn resume_with(
        run: &Path,
        make_data: impl FnOnce(&TrainConfig, &mut Gpt, &Tokenizer) -> Result<Data>,
    ) -> Result<Trainer> {
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
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = formats::read_hf_json(&tok_path)?;
        let data = make_data(&state.config, &mut model, &tokenizer)?;
        let mut trainer = Trainer::with_data(state.config.clone(), model, tokenizer, data)?;
        let read_moment = |file: &str| -> Result<Vec<f32>> {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|cause| Error::Read { path: path.clone(), cause })?;
            st::from_bytes(&bytes, &trainer.model.config, &path)
        };
        let (m, v) = (read_moment("optimizer_m.safetensors")?, read_moment("optimizer_v.safetensors")?);
        trainer.opt.set_state(m, v, state.adam_step)?;
        trainer.data.set_rng(Rng::from_state(state.loader_rng));
        trainer.model.set_dropout_rng(Rng::from_state(state.dropout_rng));
        trainer.step = state.step;
        trainer.best_val = state.best_val;
        Ok(trainer)
    }
}

/// Pretraining data: the `train.bin` and `val.bin` shards in `dir`, cut into windows of `t`.
fn stream_data(config: &TrainConfig, t: usize, tokenizer: &Tokenizer, dir: &Path) -> Result<Data> {
    let train_ids = load_split(dir, "train.bin", tokenizer)?;
    let val_ids = load_split(dir, "val.bin", tokenizer)?;
    let train =
        Loader::new(train_ids, t, config.seed).map_err(|e| Error::Invalid(format!("training data: {e}")))?;
    let val = Loader::new(val_ids, t, config.seed ^ 1)
        .map_err(|e| Error::Invalid(format!("validation data: {e}")))?;
    Ok(Data::Stream { train, val })
}

/// DPO's forward for the pairs `picked` of `pairs`: chosen sequences in the first rows, rejected
/// in the next, one forward pass; fills `weights` with d(DPO loss)/d(each position's loss) for
/// a following [`Trainable::backward_weighted`], and returns the batch's numbers.
#[allow(clippy::too_many_arguments)]
fn dpo_forward(
    model: &mut Trainable,
    pairs: &[Pair],
    picked: &[usize],
    beta: f32,
    inputs: &mut [u32],
    targets: &mut [u32],
    weights: &mut [f32],
    t: usize,
) -> Result<DpoStats> {
    let n = picked.len();
    for (row, &i) in picked.iter().enumerate() {
        let (c, r) = (row * t..(row + 1) * t, (n + row) * t..(n + row + 1) * t);
        pairs[i].chosen.fill(&mut inputs[c.clone()], &mut targets[c]);
        pairs[i].rejected.fill(&mut inputs[r.clone()], &mut targets[r]);
    }
    let rows = 2 * n * t;
    model.forward(&inputs[..rows], Some(&targets[..rows]), (2 * n, t))?;
    let logps = row_logps(model.token_losses(), t);
    let (ref_w, ref_l): (Vec<f64>, Vec<f64>) =
        picked.iter().map(|&i| (pairs[i].ref_chosen, pairs[i].ref_rejected)).unzip();
    let (stats, d_w, d_l) = dpo(beta, &logps[..n], &logps[n..], &ref_w, &ref_l);
    // log p(sequence) = -sum of its positions' losses, so d/d loss_i = -d/d logp.
    for (row, d) in d_w.iter().chain(&d_l).enumerate() {
        weights[row * t..(row + 1) * t].fill(-*d as f32);
    }
    weights[rows..].fill(0.0);
    Ok(stats)
}

/// The mean of several batches' DPO numbers, each batch weighted by its pairs.
fn mean_dpo(all: &[(DpoStats, usize)]) -> Option<DpoStats> {
    let total: usize = all.iter().map(|a| a.1).sum();
    if total == 0 {
        return None;
    }
    let mean =
        |f: fn(&DpoStats) -> f32| all.iter().map(|(s, n)| f(s) * *n as f32).sum::<f32>() / total as f32;
    Some(DpoStats {
        loss: mean(|s| s.loss),
        chosen_reward: mean(|s| s.chosen_reward),
        rejected_reward: mean(|s| s.rejected_reward),
        accuracy: mean(|s| s.accuracy),
        margin: mean(|s| s.margin),
    })
}

/// Each pair's log-probabilities under `model` (the frozen reference), computed once before
/// DPO starts.
pub fn reference_logps(model: &mut Trainable, pairs: &mut [Pair], batch: usize) -> Result<()> {
    let t = model.config.block_size;
    let was_training = std::mem::replace(&mut model.training, false);
    let (mut inputs, mut targets) = (vec![0u32; 2 * batch * t], vec![0u32; 2 * batch * t]);
    for chunk in pairs.chunks_mut(batch) {
        let n = chunk.len();
        for (row, p) in chunk.iter().enumerate() {
            let (c, r) = (row * t..(row + 1) * t, (n + row) * t..(n + row + 1) * t);
            p.chosen.fill(&mut inputs[c.clone()], &mut targets[c]);
            p.rejected.fill(&mut inputs[r.clone()], &mut targets[r]);
        }
        let rows = 2 * n * t;
        model.forward(&inputs[..rows], Some(&targets[..rows]), (2 * n, t))?;
        let logps = row_logps(model.token_losses(), t);
        for (row, p) in chunk.iter_mut().enumerate() {
            (p.ref_chosen, p.ref_rejected) = (logps[row], logps[n + row]);
        }
    }
    model.training = was_training;
    Ok(())
}
