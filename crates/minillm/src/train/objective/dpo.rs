//! Direct preference optimization (Rafailov et al. 2023) with TRL's definitions: preference
//! pairs scored against a frozen reference, each token's gradient weighted by the DPO loss.

use super::{Batch, Loss, Objective, Step};
use crate::error::Result;
use crate::model::Trainable;
use crate::model::training::Ready;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::finetune::{Examples, Pair, Sampler};

pub struct Dpo {
    train: Vec<Pair>,
    val: Vec<Pair>,
    sampler: Sampler,
    beta: f32,
}

impl Dpo {
    /// Pairs whose reference log-probabilities are set (see [`reference_logps`]); `beta` is how
    /// far the policy may move from the reference (higher: less).
    pub fn new(pairs: Examples<Pair>, beta: f32, seed: u64) -> Dpo {
        let sampler = Sampler::new(pairs.train.len(), seed);
        Dpo { train: pairs.train, val: pairs.val, sampler, beta }
    }
}

impl Objective for Dpo {
    fn rows(&self, examples: usize) -> usize {
        2 * examples
    }

    fn forward(&mut self, s: Step) -> Result<Loss> {
        let picked: Vec<usize> = (0..s.examples).map(|_| self.sampler.next_index()).collect();
        let stats = pairs_forward(s.model, &self.train, &picked, self.beta, s.batch)?;
        Ok(Loss { value: stats.loss, dpo: Some(stats) })
    }

    fn skip(&mut self, s: Step) {
        (0..s.examples).for_each(|_| _ = self.sampler.next_index());
    }

    fn backward(&self, s: Step, ready: Ready) -> Result<()> {
        s.model.backward_notify(Some(&s.batch.weights), ready)
    }

    fn evaluate(&mut self, s: Step, limit: Option<usize>) -> Result<Loss> {
        let picked: Vec<usize> = (0..limit.unwrap_or(usize::MAX).min(self.val.len())).collect();
        let mut all = Vec::new();
        for chunk in picked.chunks(s.examples) {
            all.push((pairs_forward(s.model, &self.val, chunk, self.beta, s.batch)?, chunk.len()));
        }
        let stats = DpoStats::mean(&all);
        Ok(Loss { value: stats.map_or(f32::NAN, |s| s.loss), dpo: stats })
    }

    /// The DPO loss is not a per-token loss: bits per byte has no meaning here.
    fn val_bytes_per_token(&self, _: &Tokenizer) -> f64 {
        1.0
    }

    fn rng(&self) -> &Rng {
        self.sampler.rng()
    }

    fn set_rng(&mut self, rng: Rng) {
        self.sampler.set_rng(rng)
    }
}

/// Writes the pairs `picked` of `pairs` into `batch`: chosen sequences in the first rows,
/// rejected in the next.
fn fill(pairs: &[Pair], picked: &[usize], batch: &mut Batch) {
    let (n, t) = (picked.len(), batch.t);
    for (row, &i) in picked.iter().enumerate() {
        let (c, r) = (row * t..(row + 1) * t, (n + row) * t..(n + row + 1) * t);
        pairs[i].chosen.fill(&mut batch.inputs[c.clone()], &mut batch.targets[c]);
        pairs[i].rejected.fill(&mut batch.inputs[r.clone()], &mut batch.targets[r]);
    }
}

/// DPO's forward for the pairs `picked`, in one pass; fills `batch.weights` with d(DPO
/// loss)/d(each position's loss) for a following [`Trainable::backward_weighted`], and returns
/// the batch's numbers.
fn pairs_forward(
    model: &mut Trainable,
    pairs: &[Pair],
    picked: &[usize],
    beta: f32,
    batch: &mut Batch,
) -> Result<DpoStats> {
    let (n, t) = (picked.len(), batch.t);
    let logps = pair_logps(model, pairs, picked, batch)?;
    let rows = 2 * n * t;
    let (ref_w, ref_l): (Vec<f64>, Vec<f64>) =
        picked.iter().map(|&i| (pairs[i].ref_chosen, pairs[i].ref_rejected)).unzip();
    let (stats, d_w, d_l) = dpo_loss(beta, &logps[..n], &logps[n..], &ref_w, &ref_l);
    // log p(sequence) = -sum of its positions' losses, so d/d loss_i = -d/d logp.
    for (row, d) in d_w.iter().chain(&d_l).enumerate() {
        batch.weights[row * t..(row + 1) * t].fill(-*d as f32);
    }
    batch.weights[rows..].fill(0.0);
    Ok(stats)
}

/// The sequence log-probabilities of the pairs `picked` under `model`, in one forward pass:
/// the chosen sequences' first, then the rejected ones'.
fn pair_logps(
    model: &mut Trainable,
    pairs: &[Pair],
    picked: &[usize],
    batch: &mut Batch,
) -> Result<Vec<f64>> {
    let (n, t) = (picked.len(), batch.t);
    fill(pairs, picked, batch);
    let rows = 2 * n * t;
    model.forward(&batch.inputs[..rows], Some(&batch.targets[..rows]), (2 * n, t))?;
    Ok(row_logps(model.token_losses(), t))
}

/// Each pair's log-probabilities under `model` (the frozen reference), computed once before
/// DPO starts, `examples` pairs at a time, in windows of `t` tokens (the run's).
pub fn reference_logps(model: &mut Trainable, pairs: &mut [Pair], examples: usize, t: usize) -> Result<()> {
    let was_training = std::mem::replace(&mut model.training, false);
    let mut batch = Batch::new(2 * examples, t);
    for chunk in pairs.chunks_mut(examples) {
        let n = chunk.len();
        let picked: Vec<usize> = (0..n).collect();
        let logps = pair_logps(model, chunk, &picked, &mut batch)?;
        for (row, p) in chunk.iter_mut().enumerate() {
            (p.ref_chosen, p.ref_rejected) = (logps[row], logps[n + row]);
        }
    }
    model.training = was_training;
    Ok(())
}

/// DPO's numbers for a batch, as TRL logs them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DpoStats {
    pub loss: f32,
    /// Mean beta * (log pi(y_w|x) - log ref(y_w|x)).
    pub chosen_reward: f32,
    pub rejected_reward: f32,
    /// Fraction of pairs whose chosen reward beats the rejected one (ties count half, so an
    /// untrained policy, equal to its reference, scores 0.5).
    pub accuracy: f32,
    pub margin: f32,
}

/// The DPO loss -log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))) averaged over pairs, from
/// sequence log-probabilities (summed over completion tokens), and its gradient with respect to
/// each policy log-probability: (stats, d/d pi_w, d/d pi_l).
pub fn dpo_loss(
    beta: f32,
    pi_w: &[f64],
    pi_l: &[f64],
    ref_w: &[f64],
    ref_l: &[f64],
) -> (DpoStats, Vec<f64>, Vec<f64>) {
    let n = pi_w.len();
    let beta = beta as f64;
    let (mut s, mut d_w, mut d_l) = (DpoStats::default(), vec![0.0; n], vec![0.0; n]);
    let mut sums = [0.0f64; 5];
    for i in 0..n {
        let (rw, rl) = (beta * (pi_w[i] - ref_w[i]), beta * (pi_l[i] - ref_l[i]));
        let z = rw - rl;
        // -log sigmoid(z) = softplus(-z), computed without overflow.
        let loss = if z > 0.0 { (-z).exp().ln_1p() } else { -z + z.exp().ln_1p() };
        let sig_neg = 1.0 / (1.0 + z.exp()); // sigmoid(-z) = -d loss / d z
        d_w[i] = -beta * sig_neg / n as f64;
        d_l[i] = beta * sig_neg / n as f64;
        let acc = if rw > rl {
            1.0
        } else if rw == rl {
            0.5
        } else {
            0.0
        };
        for (sum, x) in sums.iter_mut().zip([loss, rw, rl, acc, z]) {
            *sum += x;
        }
    }
    let mean = |x: f64| (x / n.max(1) as f64) as f32;
    s.loss = mean(sums[0]);
    s.chosen_reward = mean(sums[1]);
    s.rejected_reward = mean(sums[2]);
    s.accuracy = mean(sums[3]);
    s.margin = mean(sums[4]);
    (s, d_w, d_l)
}

/// Sequence log-probabilities: minus the sum of each row's token losses (ignored positions
/// are 0), for rows of width `t`.
pub fn row_logps(token_losses: &[f32], t: usize) -> Vec<f64> {
    token_losses.chunks(t).map(|row| -row.iter().map(|&l| l as f64).sum::<f64>()).collect()
}

impl DpoStats {
    /// The mean of several batches' numbers, each batch weighted by its pairs.
    pub fn mean(all: &[(DpoStats, usize)]) -> Option<DpoStats> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpo_gradient_matches_finite_differences() {
        let (pw, pl, rw, rl) =
            (vec![-3.0, -7.5, -2.0], vec![-4.0, -6.0, -9.0], vec![-3.5, -7.0, -2.2], vec![-3.9, -6.5, -8.0]);
        let (stats, dw, dl) = dpo_loss(0.5, &pw, &pl, &rw, &rl);
        let loss = |pw: &[f64], pl: &[f64]| dpo_loss(0.5, pw, pl, &rw, &rl).0.loss as f64;
        for i in 0..3 {
            for (grad, which) in [(&dw, 0), (&dl, 1)] {
                let (mut a, mut b) = (pw.clone(), pl.clone());
                let h = 1e-3;
                let (plus, minus) = if which == 0 {
                    a[i] += h;
                    let p = loss(&a, &pl);
                    a[i] -= 2.0 * h;
                    (p, loss(&a, &pl))
                } else {
                    b[i] += h;
                    let p = loss(&pw, &b);
                    b[i] -= 2.0 * h;
                    (p, loss(&pw, &b))
                };
                let fd = (plus - minus) / (2.0 * h);
                assert!((fd - grad[i]).abs() < 1e-4, "pair {i}: {fd} vs {}", grad[i]);
            }
        }
        assert!(stats.loss > 0.0 && (stats.accuracy - 2.0 / 3.0).abs() < 1e-6);
        // A policy equal to its reference: loss log 2, accuracy one half.
        let (s, _, _) = dpo_loss(0.1, &rw, &rl, &rw, &rl);
        assert!((s.loss - std::f32::consts::LN_2).abs() < 1e-6 && s.accuracy == 0.5 && s.margin == 0.0);
    }
}
