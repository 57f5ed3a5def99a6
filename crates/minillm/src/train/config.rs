//! A training run's settings (read from TOML, saved in the run directory) and the numbers each
//! step and evaluation report.

use super::objective::DpoStats;
use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Every setting of a run. Read from TOML (unknown keys are an error), overridden by flags, and
/// saved in the run directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Model shape: a preset (`baby`, `gpt2`, `smollm2-135m`, ...) or the depth dial (`d4`).
    pub model: String,
    /// The architecture: `gpt2` or `llama` (default: the preset's own; the depth dial is GPT-2's
    /// unless this says `llama`).
    pub arch: Option<String>,
    /// Context length: a new model's (default: the preset's); when fine-tuning, the window
    /// examples must fit in (default: the model's context, which is the most it can be). A model
    /// made for 8,192 tokens fine-tunes on short conversations in a short window: activations
    /// grow with it.
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
            arch: None,
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
        let mut c = match self.arch.as_deref() {
            None => ModelConfig::preset(&self.model)?,
            Some("gpt2" | "llama") if self.model.starts_with('d') => {
                let prefix = if self.arch.as_deref() == Some("llama") { "llama-" } else { "" };
                ModelConfig::preset(&format!("{prefix}{}", self.model))?
            }
            Some(arch @ ("gpt2" | "llama")) => {
                let c = ModelConfig::preset(&self.model)?;
                if c.arch_name() != arch {
                    return Err(Error::Invalid(format!(
                        "model '{}' is a {} shape but arch is '{arch}': drop arch, or use the depth dial (d4) with it",
                        self.model,
                        c.arch_name()
                    )));
                }
                c
            }
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "arch '{other}' is not one minillm trains: choose gpt2 or llama"
                )));
            }
        };
        c.vocab_size = vocab_size;
        c.dropout = self.dropout;
        if let Some(t) = self.context {
            c.block_size = t;
        }
        c.validate()?;
        Ok(c)
    }

    /// The window a step trains on for `model`: `context` when it is set, else the model's
    /// context. Refused when longer than the model's context.
    pub fn window(&self, model: &ModelConfig) -> Result<usize> {
        match self.context {
            None => Ok(model.block_size),
            Some(t) if (1..=model.block_size).contains(&t) => Ok(t),
            Some(t) => Err(Error::Invalid(format!(
                "context {t} does not fit the model, whose context is {} tokens",
                model.block_size
            ))),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
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

    pub(crate) fn schedule(&self) -> Schedule {
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
