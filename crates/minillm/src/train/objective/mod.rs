//! What a run learns: one type per objective, each filling its micro-batches, computing its loss
//! and evaluating itself, behind [`Objective`]. The [`Trainer`](super::Trainer) owns everything
//! they share (the model, AdamW, clipping, the schedule, checkpoints).
//!
//! Adding an objective (a reward model, GRPO, ...) is one new file here and one `mod` line.

mod dpo;
mod pretrain;
mod sft;

pub use dpo::{Dpo, DpoStats, dpo_loss, reference_logps, row_logps};
pub use pretrain::Pretrain;
pub use sft::Sft;

use crate::error::Result;
use crate::model::Trainable;
use crate::model::training::Ready;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;

/// The token buffers one micro-batch fills: `rows` rows of `t` tokens, allocated once per run.
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// Per-position gradient weights, for objectives whose loss is not a plain mean (DPO).
    pub weights: Vec<f32>,
    pub t: usize,
}

impl Batch {
    pub fn new(rows: usize, t: usize) -> Batch {
        Batch { inputs: vec![0; rows * t], targets: vec![0; rows * t], weights: vec![0.0; rows * t], t }
    }
}

/// A micro-batch's (or a held-out set's) loss, and DPO's numbers when the objective is DPO.
#[derive(Clone, Copy, Debug)]
pub struct Loss {
    pub value: f32,
    pub dpo: Option<DpoStats>,
}

impl Loss {
    pub fn plain(value: f32) -> Loss {
        Loss { value, dpo: None }
    }
}

/// What an objective works on: the model, the batch buffers, and `examples`, the configured
/// batch size (the windows, conversations or pairs in one micro-batch).
pub struct Step<'a> {
    pub model: &'a mut Trainable,
    pub batch: &'a mut Batch,
    pub examples: usize,
}

/// One training objective.
pub trait Objective: Send {
    /// Rows of the batch one micro-batch of `examples` takes (a DPO pair takes two).
    fn rows(&self, examples: usize) -> usize {
        examples
    }

    /// Draws the next micro-batch into the batch and runs the training forward on it.
    fn forward(&mut self, s: Step) -> Result<Loss>;

    /// Draws the next micro-batch and drops it: in data-parallel training each process computes
    /// its own part of every step's micro-batches and passes over the others' (so the data order
    /// is the same on any number of processes).
    fn skip(&mut self, s: Step);

    /// The gradient of the loss of the last [`forward`](Self::forward), accumulated, with
    /// `ready` called as each range of the gradients is finished (see
    /// [`Trainable::backward_notify`]).
    fn backward(&self, s: Step, ready: Ready) -> Result<()> {
        s.model.backward_notify(None, ready)
    }

    /// The loss on the held-out examples (the first `limit`, or all of them when `None`), in
    /// micro-batches. The model is in evaluation mode.
    fn evaluate(&mut self, s: Step, limit: Option<usize>) -> Result<Loss>;

    /// Bytes per held-out target token, for bits per byte (1 where it has no meaning).
    fn val_bytes_per_token(&self, tokenizer: &Tokenizer) -> f64;

    /// The generator that orders the training examples (saved in checkpoints).
    fn rng(&self) -> &Rng;
    fn set_rng(&mut self, rng: Rng);
}
