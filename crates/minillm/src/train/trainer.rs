//! The training loop, one for every objective: micro-batches, forward, backward, gradient
//! accumulation and clipping, AdamW on the schedule's learning rate, evaluation and samples.
//! What is learned is the [`Objective`]'s business; checkpoints are in `checkpoint.rs`.

use super::adamw::{AdamW, AdamWConfig};
use super::objective::{Batch, DpoStats, Objective, Pretrain, Step};
use super::{EvalStats, Stage, StepStats, TrainConfig};
use crate::chat::jinja::JinjaTemplate;
use crate::chat::{Dialogue, Message, Role};
use crate::error::{Error, Result};
use crate::model::{Gpt, Trainable};
use crate::rng::Rng;
use crate::tokenizer::{Tokenizer, formats};
use std::path::Path;

pub struct Trainer {
    pub config: TrainConfig,
    /// The model and its training state (gradients, activations for backward).
    pub model: Trainable,
    pub tokenizer: Tokenizer,
    /// The model's own chat template, when it has one (an HF model's): fine-tuning renders with
    /// it, checkpoints keep it. Without one, a fine-tuned model uses minillm's role tokens.
    pub chat_template: Option<JinjaTemplate>,
    pub step: usize,
    pub best_val: Option<f32>,
    pub(super) opt: AdamW,
    pub(super) objective: Box<dyn Objective>,
    val_bytes_per_token: f64,
    batch: Batch,
}

impl Trainer {
    /// A fresh pretraining run on the shards in `data` (as written by `minillm prepare`).
    /// Everything that can be wrong with the input is checked here, before any training.
    pub fn new(config: TrainConfig, data: &Path) -> Result<Trainer> {
        config.validate()?;
        if !data.join("train.bin").is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no train.bin: make the data with `minillm prepare --out {0}`",
                data.display()
            )));
        }
        let tokenizer = formats::read_hf_json(&data.join("tokenizer.json"))?;
        let model = Gpt::new(config.model_config(tokenizer.vocab_size())?, config.seed)?;
        let objective = Pretrain::from_shards(data, &tokenizer, model.config.block_size, config.seed)?;
        Trainer::with_objective(config, model, tokenizer, Box::new(objective))
    }

    /// A run of any objective, starting from `model` (SFT and DPO start from a trained one).
    pub fn with_objective(
        mut config: TrainConfig,
        model: Gpt,
        tokenizer: Tokenizer,
        objective: Box<dyn Objective>,
    ) -> Result<Trainer> {
        config.validate()?;
        // Pin the schedule's end now, so resuming with a larger max_steps extends the run at the
        // floor learning rate instead of reshaping the cosine behind it.
        config.decay_steps.get_or_insert(config.max_steps);
        let val_bytes_per_token = objective.val_bytes_per_token(&tokenizer);
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
        let batch = Batch::new(objective.rows(config.batch_size), model.config.block_size);
        Ok(Trainer {
            config,
            model,
            tokenizer,
            chat_template: None,
            step: 0,
            best_val: None,
            opt,
            objective,
            val_bytes_per_token,
            batch,
        })
    }

    /// Tokens one optimizer step reads (rows of the context, over every micro-batch).
    /// How conversations become this model's tokens (see [`Dialogue::of`]).
    pub fn dialogue(&self) -> Dialogue {
        Dialogue::of(&self.tokenizer, self.chat_template.as_ref())
    }

    pub fn tokens_per_step(&self) -> usize {
        self.objective.rows(self.config.batch_size) * self.config.grad_accum * self.model.config.block_size
    }

    /// One optimizer step: `grad_accum` micro-batches, gradient clipping, AdamW. A loss that is
    /// not finite stops with an error naming the step (nothing is updated).
    pub fn train_step(&mut self) -> Result<StepStats> {
        let examples = self.config.batch_size;
        self.model.training = true;
        self.model.zero_grad();
        let mut loss_sum = 0.0f64;
        let mut dpo = Vec::new();
        for _ in 0..self.config.grad_accum {
            let step = Step { model: &mut self.model, batch: &mut self.batch, examples };
            let loss = self.objective.forward(step)?;
            if !loss.value.is_finite() {
                return Err(Error::Diverged { quantity: "loss", value: loss.value, step: self.step + 1 });
            }
            loss_sum += loss.value as f64;
            dpo.extend(loss.dpo.map(|d| (d, examples)));
            let step = Step { model: &mut self.model, batch: &mut self.batch, examples };
            self.objective.backward(step)?;
        }
        let grads = &mut self.model.grads;
        let accum = self.config.grad_accum as f32;
        if accum > 1.0 {
            grads.iter_mut().for_each(|g| *g /= accum);
        }
        let norm = grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() as f32;
        if !norm.is_finite() {
            return Err(Error::Diverged { quantity: "gradient norm", value: norm, step: self.step + 1 });
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
            dpo: DpoStats::mean(&dpo),
        })
    }

    /// The objective's held-out loss (over `eval_batches` micro-batches, or all the held-out
    /// examples when it is 0): mean loss per token for pretraining and SFT (over the replies'
    /// tokens), the DPO loss and rewards for DPO.
    pub fn evaluate(&mut self) -> Result<EvalStats> {
        let examples = self.config.batch_size;
        let limit = (self.config.eval_batches > 0).then(|| self.config.eval_batches * examples);
        let was_training = std::mem::replace(&mut self.model.training, false);
        let step = Step { model: &mut self.model, batch: &mut self.batch, examples };
        let loss = self.objective.evaluate(step, limit);
        self.model.training = was_training;
        let loss = loss?;
        let val_loss = loss.value;
        let bits_per_byte = (val_loss as f64 / std::f64::consts::LN_2 / self.val_bytes_per_token) as f32;
        if self.best_val.is_none_or(|best| val_loss < best) {
            self.best_val = Some(val_loss);
        }
        Ok(EvalStats { val_loss, perplexity: val_loss.exp(), bits_per_byte, dpo: loss.dpo })
    }

    /// A short continuation of `sample_prompt` (greedy-ish: temperature 0.8, top-k 40, fixed
    /// seed, so samples from successive evaluations are comparable). `None` when turned off.
    pub fn sample(&mut self) -> Result<Option<String>> {
        if self.config.sample_prompt.is_empty() || self.config.sample_tokens == 0 {
            return Ok(None);
        }
        // Fine-tuned models are asked as a user would ask them: through the chat template.
        let dialogue = self.dialogue();
        let chat = dialogue.has_template() && self.config.stage != Stage::Pretrain;
        let (prompt, stop) = if chat {
            let ask = [Message::new(Role::User, self.config.sample_prompt.clone())];
            (dialogue.render(&self.tokenizer, &ask)?, dialogue.end_ids())
        } else {
            // A document ends at the end-of-text token, where the tokenizer has one.
            let end = self.tokenizer.end_of_text().into_iter().collect();
            (self.tokenizer.encode_prompt(&self.config.sample_prompt)?, end)
        };
        let config = crate::sample::SamplerConfig { temperature: 0.8, top_k: 40, ..Default::default() };
        let mut rng = Rng::new(self.config.seed);
        let ids = crate::sample::generate(
            &self.model,
            &prompt,
            self.config.sample_tokens,
            &config,
            &mut rng,
            stop.as_slice(),
            |_, _| true,
        )?;
        // A chat model's sample is its reply alone.
        let shown = if chat { &ids[prompt.len()..] } else { &ids[..] };
        Ok(Some(self.tokenizer.decode(shown)?))
    }
}
