//! The training loop, one for every objective: micro-batches, forward, backward, gradient
//! accumulation and clipping, AdamW on the schedule's learning rate, evaluation and samples.
//! What is learned is the [`Objective`]'s business; checkpoints are in `checkpoint.rs`.
//!
//! Data-parallel training ([`Trainer::distribute`]) changes only who computes what: a step's
//! `grad_accum` micro-batches are split between the ranks in order (rank r takes its
//! `grad_accum / ranks` consecutive ones and passes over the rest), the gradients are summed over
//! the ranks (as backward finishes each layer, or reduce-scattered when the optimizer is sharded),
//! and every rank takes the same AdamW step. The global batch, the data order and dropout's
//! masks are those of one process, so N ranks train the same model as one, up to the order of
//! float sums.

use super::adamw::{AdamW, AdamWConfig};
use super::group::{Group, differing, first_failure, shard};
use super::objective::{Batch, DpoStats, Objective, Pretrain, Step};
use super::{EvalStats, Stage, StepStats, TrainConfig};
use crate::chat::jinja::JinjaTemplate;
use crate::chat::{Dialogue, Message, Role};
use crate::data::fnv1a;
use crate::error::{Error, Result};
use crate::model::training::activation_bytes;
use crate::model::{Gpt, Trainable};
use crate::rng::Rng;
use crate::tokenizer::{Tokenizer, formats};
use std::ops::Range;
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
    pub(super) ranks: Option<Ranks>,
}

/// A data-parallel run's part of the trainer.
pub(super) struct Ranks {
    pub(super) group: Box<dyn Group>,
    /// AdamW's moments are kept for this rank's shard only (ZeRO-1).
    pub(super) sharded: bool,
    /// The gradients' ranges in the order backward finishes them (see `overlapped`).
    buckets: Vec<Range<usize>>,
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
        let model_config = config.model_config(tokenizer.vocab_size())?;
        model_config.validate()?;
        let objective = Pretrain::from_shards(data, &tokenizer, model_config.block_size, config.seed)?;
        // Before the weights are made: a shape or batch that cannot fit is said in a sentence.
        fits_in_memory(&model_config, objective.rows(config.batch_size), model_config.block_size)?;
        let model = Gpt::new(model_config, config.seed)?;
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
        let window = config.window(&model.config)?;
        fits_in_memory(&model.config, objective.rows(config.batch_size), window)?;
        let (model, _) = Trainable::new(model, config.seed);
        let opt = AdamW::new(adam, &model.layout);
        let batch = Batch::new(objective.rows(config.batch_size), window);
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
            ranks: None,
        })
    }

    /// Makes this trainer one rank of a data-parallel run over `group` (every rank calls it,
    /// with the same configuration): the weights become rank 0's, and with `shard_optimizer`
    /// each rank keeps AdamW's moments for its 1/N of the parameters only (ZeRO-1). Refused when
    /// the ranks' settings differ or the step's micro-batches cannot be split evenly.
    pub fn distribute(&mut self, mut group: Box<dyn Group>, shard_optimizer: bool) -> Result<()> {
        self.check_ranks(group.as_mut())?;
        let n = group.size();
        group.broadcast(0, &mut self.model.params);
        if shard_optimizer {
            self.opt.shard(&self.model.layout, shard(self.model.params.len(), n, group.rank()));
        }
        let buckets = self.model.layout.backward_buckets();
        self.ranks = Some(Ranks { group, sharded: shard_optimizer, buckets });
        Ok(())
    }

    /// What [`distribute`](Self::distribute) refuses, met alike on every rank (every rank calls
    /// it): settings that differ between the ranks, micro-batches that cannot be split evenly.
    /// A caller may check first, to report the refusal while the group is still its own.
    pub fn check_ranks(&self, group: &mut dyn Group) -> Result<()> {
        let settings = fnv1a(self.config.to_toml().bytes());
        if let Some(&rank) = differing(group, settings).first() {
            return Err(Error::Rank {
                rank,
                message: "its settings differ from rank 0's (every rank must run the same command on the same files)"
                    .into(),
            });
        }
        let (n, accum) = (group.size(), self.config.grad_accum);
        if !accum.is_multiple_of(n) {
            let suggestion = accum.div_ceil(n) * n;
            return Err(Error::Invalid(format!(
                "grad_accum {accum} cannot be split over {n} ranks: the global batch is batch_size x grad_accum and each rank computes grad_accum / ranks of its micro-batches; use --grad-accum {suggestion} (or another multiple of {n})"
            )));
        }
        Ok(())
    }

    /// This process's rank and the number of ranks ((0, 1) when it trains alone).
    pub fn rank(&self) -> (usize, usize) {
        self.ranks.as_ref().map_or((0, 1), |r| (r.group.rank(), r.group.size()))
    }

    /// Whether the optimizer's state is sharded over the ranks (ZeRO-1).
    pub fn sharded(&self) -> bool {
        self.ranks.as_ref().is_some_and(|r| r.sharded)
    }

    /// Time this process has spent communicating with the other ranks (zero when alone).
    pub fn communication_time(&self) -> std::time::Duration {
        self.ranks.as_ref().map_or(Default::default(), |r| r.group.waited())
    }

    /// Whether `flag` is set on any rank (on this one, when alone): the ranks stop together
    /// after Ctrl-C, wherever the signal reached.
    pub fn any_rank(&mut self, flag: bool) -> bool {
        let Some(r) = &mut self.ranks else { return flag };
        let mut flags = [flag as u8 as f64];
        r.group.sum(&mut flags);
        flags[0] > 0.0
    }

    /// Checks that every rank holds the same parameters (bit for bit); an error names the
    /// ranks that drifted from rank 0's.
    pub fn check_ranks_agree(&mut self) -> Result<()> {
        let Some(r) = &mut self.ranks else { return Ok(()) };
        let fingerprint = fnv1a(self.model.params.iter().flat_map(|p| p.to_le_bytes()));
        match differing(r.group.as_mut(), fingerprint).first() {
            None => Ok(()),
            Some(&rank) => Err(Error::Rank {
                rank,
                message: format!("its parameters differ from rank 0's at step {}", self.step),
            }),
        }
    }

    /// Stops every rank at once with `message` (an error this rank alone met, after which the
    /// others would wait on it); returns when this process trains alone.
    pub fn abort_ranks(&self, message: &str) {
        if let Some(r) = &self.ranks {
            r.group.abort(message)
        }
    }

    /// Tokens one optimizer step reads (rows of the context, over every micro-batch).
    /// How conversations become this model's tokens (see [`Dialogue::of`]).
    pub fn dialogue(&self) -> Dialogue {
        Dialogue::of(&self.tokenizer, self.chat_template.as_ref())
    }

    pub fn tokens_per_step(&self) -> usize {
        self.objective.rows(self.config.batch_size) * self.config.grad_accum * self.window()
    }

    /// The window a step trains on (see [`TrainConfig::window`]; checked when the run began).
    pub fn window(&self) -> usize {
        self.batch.t
    }

    /// One optimizer step: `grad_accum` micro-batches, gradient clipping, AdamW. A loss that is
    /// not finite stops with an error naming the step (nothing is updated); in a data-parallel
    /// run, a rank's error stops every rank with an [`Error::Rank`] naming it.
    pub fn train_step(&mut self) -> Result<StepStats> {
        let examples = self.config.batch_size;
        let accum = self.config.grad_accum;
        self.model.training = true;
        self.model.zero_grad();
        let (rank, ranks) = self.rank();
        let mine = rank * accum / ranks..(rank + 1) * accum / ranks;
        let overlap = self.ranks.as_ref().is_some_and(|r| !r.sharded);
        let (mut loss_sum, mut dpo, mut outcome) = (0.0f64, Vec::new(), Ok(()));
        for j in 0..accum {
            let step = Step { model: &mut self.model, batch: &mut self.batch, examples };
            if !mine.contains(&j) || outcome.is_err() {
                self.objective.skip(step);
                continue;
            }
            step.model.dropout_for((self.step * accum + j) as u64);
            outcome = match self.objective.forward(step) {
                Ok(loss) if !loss.value.is_finite() => {
                    Err(Error::Diverged { quantity: "loss", value: loss.value, step: self.step + 1 })
                }
                Ok(loss) => {
                    loss_sum += loss.value as f64;
                    dpo.extend(loss.dpo.map(|d| (d, examples)));
                    Ok(())
                }
                Err(e) => Err(e),
            };
            // The last micro-batch's backward overlaps the gradients' reduction (below).
            if outcome.is_ok() && !(overlap && j + 1 == mine.end) {
                let step = Step { model: &mut self.model, batch: &mut self.batch, examples };
                outcome = self.objective.backward(step, &mut |_, _| {});
            }
        }
        let mut dpo = DpoStats::mean(&dpo);
        if let Some(r) = &mut self.ranks {
            if overlap {
                let pending = outcome.is_ok();
                let (model, batch, objective) = (&mut self.model, &mut self.batch, &self.objective);
                let reduced = r.group.overlapped(&r.buckets, &mut |ready| match pending {
                    true => objective.backward(Step { model, batch, examples }, ready),
                    false => Ok(()),
                });
                outcome = outcome.and(reduced);
                r.group.overlapped_sums(&mut self.model.grads);
            }
            let failed = outcome.as_ref().err().map(|e| e.to_string());
            (loss_sum, dpo) = agree(r.group.as_mut(), loss_sum, dpo, failed.as_deref())?;
            if !overlap {
                r.group.reduce_scatter(&mut self.model.grads);
            }
        }
        outcome?;
        let range = self.opt.range();
        let grads = &mut self.model.grads[range.clone()];
        if accum > 1 {
            grads.iter_mut().for_each(|g| *g /= accum as f32);
        }
        let mut squares = [grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>()];
        if let Some(r) = self.ranks.as_mut().filter(|r| r.sharded) {
            r.group.sum(&mut squares);
        }
        let norm = squares[0].sqrt() as f32;
        if !norm.is_finite() {
            return Err(Error::Diverged { quantity: "gradient norm", value: norm, step: self.step + 1 });
        }
        if self.config.grad_clip > 0.0 && norm > self.config.grad_clip {
            let scale = self.config.grad_clip / norm;
            grads.iter_mut().for_each(|g| *g *= scale);
        }
        let lr = self.config.schedule().at(self.step);
        self.opt.step(&mut self.model.model.params[range], grads, lr);
        if let Some(r) = self.ranks.as_mut().filter(|r| r.sharded) {
            r.group.all_gather(&mut self.model.model.params);
        }
        self.step += 1;
        Ok(StepStats { step: self.step, loss: (loss_sum / accum as f64) as f32, lr, grad_norm: norm, dpo })
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

/// The step's numbers summed over the ranks: the loss over all micro-batches, DPO's means (equal
/// weights: every rank computes as many pairs). First, every rank learns whether any failed, and
/// stops with the first one's error if so, before anything is updated.
fn agree(
    group: &mut dyn Group,
    loss_sum: f64,
    dpo: Option<DpoStats>,
    failed: Option<&str>,
) -> Result<(f64, Option<DpoStats>)> {
    if let Some((rank, message)) = first_failure(group, failed) {
        return Err(Error::Rank { rank, message });
    }
    let d = dpo.unwrap_or_default();
    let mut numbers = [loss_sum, 0.0, 0.0, 0.0, 0.0, 0.0];
    for (n, x) in
        numbers[1..].iter_mut().zip([d.loss, d.chosen_reward, d.rejected_reward, d.accuracy, d.margin])
    {
        *n = x as f64;
    }
    group.sum(&mut numbers);
    let mean = |i: usize| (numbers[i] / group.size() as f64) as f32;
    let dpo = dpo.map(|_| DpoStats {
        loss: mean(1),
        chosen_reward: mean(2),
        rejected_reward: mean(3),
        accuracy: mean(4),
        margin: mean(5),
    });
    Ok((numbers[0], dpo))
}

/// Refuses a run whose weights, gradients, AdamW moments and activations (for `rows` windows of
/// `t` tokens) need more memory than the machine has, before they are allocated.
fn fits_in_memory(config: &crate::model::ModelConfig, rows: usize, t: usize) -> Result<()> {
    // As f32, however the model is stored: training widens it.
    let weights = crate::model::params::Layout::new(config).total.saturating_mul(4);
    crate::memory::ensure_fits(
        &format!("training at batch {rows} x context {t}"),
        &[
            ("weights", weights),
            ("gradients", weights),
            ("AdamW moments", weights.saturating_mul(2)),
            ("activations", activation_bytes(config, rows, t)),
        ],
        "choose a smaller --model, --batch-size or --context (--grad-accum keeps the tokens per step)",
    )
}
