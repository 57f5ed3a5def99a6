//! Pretraining: random windows of token shards, every next token a target.

use super::{Loss, Objective, Step};
use crate::data::{Loader, read_shard, tokenizer_hash};
use crate::error::{Error, Result};
use crate::eval::score_windows;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use std::path::Path;

pub struct Pretrain {
    train: Loader,
    val: Loader,
}

impl Pretrain {
    /// The `train.bin` and `val.bin` shards in `dir` (as `minillm prepare` writes them), cut into
    /// windows of `t` tokens; the shards must have been made with `tokenizer`.
    pub fn from_shards(dir: &Path, tokenizer: &Tokenizer, t: usize, seed: u64) -> Result<Pretrain> {
        let train = load_split(dir, "train.bin", tokenizer)?;
        let val = load_split(dir, "val.bin", tokenizer)?;
        let train = Loader::new(train, t, seed).map_err(|e| Error::Invalid(format!("training data: {e}")))?;
        let val =
            Loader::new(val, t, seed ^ 1).map_err(|e| Error::Invalid(format!("validation data: {e}")))?;
        Ok(Pretrain { train, val })
    }
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

impl Objective for Pretrain {
    fn forward(&mut self, s: Step) -> Result<Loss> {
        let t = s.batch.t;
        self.train.next_batch(&mut s.batch.inputs, &mut s.batch.targets, t);
        let loss = s.model.forward(&s.batch.inputs, Some(&s.batch.targets), (s.examples, t))?;
        Ok(Loss::plain(loss.unwrap_or(f32::NAN)))
    }

    fn skip(&mut self, s: Step) {
        let t = s.batch.t;
        self.train.next_batch(&mut s.batch.inputs, &mut s.batch.targets, t);
    }

    fn evaluate(&mut self, s: Step, limit: Option<usize>) -> Result<Loss> {
        let t = s.batch.t;
        let all = self.val.windows(t).count();
        let windows = self.val.windows(t).take(limit.unwrap_or(all));
        let (sum, counted) =
            score_windows(s.model, windows, (s.examples, t), &mut s.batch.inputs, &mut s.batch.targets)?;
        Ok(Loss::plain((sum / counted.max(1) as f64) as f32))
    }

    fn val_bytes_per_token(&self, tokenizer: &Tokenizer) -> f64 {
        let ids = self.val.tokens();
        tokenizer.decoded_len(ids) as f64 / ids.len().max(1) as f64
    }

    fn rng(&self) -> &Rng {
        self.train.rng()
    }

    fn set_rng(&mut self, rng: Rng) {
        self.train.set_rng(rng)
    }
}
