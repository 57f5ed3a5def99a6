//! Supervised fine-tuning: whole conversations, with only the assistant's tokens as targets.

use super::{Batch, Loss, Objective, Step};
use crate::error::Result;
use crate::model::layers::loss::IGNORE;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::finetune::{Examples, Sampler, Sequence};

pub struct Sft {
    train: Vec<Sequence>,
    val: Vec<Sequence>,
    sampler: Sampler,
}

impl Sft {
    /// Rendered conversations (see [`chat_sequences`](crate::train::finetune::chat_sequences)),
    /// drawn in an order shuffled by `seed`.
    pub fn new(sequences: Examples<Sequence>, seed: u64) -> Sft {
        let sampler = Sampler::new(sequences.train.len(), seed);
        Sft { train: sequences.train, val: sequences.val, sampler }
    }
}

/// Writes `rows` into consecutive rows of the batch.
fn fill<'a>(batch: &mut Batch, rows: impl Iterator<Item = &'a Sequence>) {
    let t = batch.t;
    for (row, seq) in rows.enumerate() {
        let r = row * t..(row + 1) * t;
        seq.fill(&mut batch.inputs[r.clone()], &mut batch.targets[r]);
    }
}

impl Objective for Sft {
    fn forward(&mut self, s: Step) -> Result<Loss> {
        let picked: Vec<usize> = (0..s.examples).map(|_| self.sampler.next_index()).collect();
        fill(s.batch, picked.iter().map(|&i| &self.train[i]));
        let loss = s.model.forward(&s.batch.inputs, Some(&s.batch.targets), (s.examples, s.batch.t))?;
        Ok(Loss::plain(loss.unwrap_or(f32::NAN)))
    }

    fn skip(&mut self, s: Step) {
        (0..s.examples).for_each(|_| _ = self.sampler.next_index());
    }

    /// The mean over every held-out reply token (batches weighted by their counted tokens).
    fn evaluate(&mut self, s: Step, limit: Option<usize>) -> Result<Loss> {
        let Step { model, batch, examples } = s;
        let t = batch.t;
        let (mut sum, mut counted) = (0.0f64, 0usize);
        for chunk in self.val[..limit.unwrap_or(usize::MAX).min(self.val.len())].chunks(examples) {
            fill(batch, chunk.iter());
            let n = chunk.len() * t;
            let mean = model
                .forward(&batch.inputs[..n], Some(&batch.targets[..n]), (chunk.len(), t))?
                .unwrap_or(0.0);
            let c: usize = chunk.iter().map(Sequence::counted).sum();
            sum += mean as f64 * c as f64;
            counted += c;
        }
        Ok(Loss::plain((sum / counted.max(1) as f64) as f32))
    }

    fn val_bytes_per_token(&self, tokenizer: &Tokenizer) -> f64 {
        let ids: Vec<u32> =
            self.val.iter().flat_map(|s| s.targets.iter().copied().filter(|&x| x != IGNORE)).collect();
        tokenizer.decoded_len(&ids) as f64 / ids.len().max(1) as f64
    }

    fn rng(&self) -> &Rng {
        self.sampler.rng()
    }

    fn set_rng(&mut self, rng: Rng) {
        self.sampler.set_rng(rng)
    }
}
