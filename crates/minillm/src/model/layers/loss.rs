//! Softmax over the real vocabulary and cross-entropy with an ignore index.
//!
//! The logits buffer has Vp columns but only the first V are real: softmax, loss and their
//! gradient never touch the padding. Positions whose target is [`IGNORE`] (e.g. prompt tokens
//! in SFT) add nothing to the loss, which is the mean over the positions that count, as in
//! PyTorch's `cross_entropy(ignore_index=...)`.

use crate::kernels::simd;
use rayon::prelude::*;

/// Target value meaning "no loss at this position".
pub const IGNORE: u32 = u32::MAX;

/// Turns each row of `logits` (N, Vp) into probabilities in place and writes each position's
/// loss to `losses` (N). Returns the mean loss over counted positions (0 if none count).
pub fn forward(logits: &mut [f32], losses: &mut [f32], targets: &[u32], v: usize, vp: usize) -> f32 {
    logits.par_chunks_mut(vp).zip(losses.par_iter_mut().zip(targets.par_iter())).for_each(
        |(row, (loss, &target))| {
            let row = &mut row[..v];
            simd::softmax(row);
            *loss = if target == IGNORE { 0.0 } else { -row[target as usize].ln() };
        },
    );
    let counted = targets.iter().filter(|&&t| t != IGNORE).count();
    if counted == 0 {
        return 0.0;
    }
    (losses.iter().map(|&l| l as f64).sum::<f64>() / counted as f64) as f32
}

/// Turns `probs` (N, Vp) into d(mean loss)/d(logits) in place: (p - onehot) / count on counted
/// rows, zero on ignored rows and padding columns.
pub fn backward(probs: &mut [f32], targets: &[u32], v: usize, vp: usize) {
    let counted = targets.iter().filter(|&&t| t != IGNORE).count().max(1);
    weighted(probs, targets, |_| 1.0 / counted as f32, v, vp);
}

/// Turns `probs` into d(sum_i weights_i * loss_i)/d(logits): the gradient of any objective that
/// is linear in the per-position losses at this point, such as DPO's (whose weights come from
/// the sequence log-probabilities).
pub fn backward_weighted(probs: &mut [f32], targets: &[u32], weights: &[f32], v: usize, vp: usize) {
    weighted(probs, targets, |i| weights[i], v, vp);
}

fn weighted(probs: &mut [f32], targets: &[u32], weight: impl Fn(usize) -> f32 + Sync, v: usize, vp: usize) {
    probs.par_chunks_mut(vp).zip(targets.par_iter()).enumerate().for_each(|(i, (row, &target))| {
        let w = weight(i);
        if target == IGNORE || w == 0.0 {
            row.fill(0.0);
            return;
        }
        for x in &mut row[..v] {
            *x *= w;
        }
        row[target as usize] -= w;
        row[v..].fill(0.0);
    });
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn gradients_match_finite_differences_and_padding_is_ignored() {
        let (n, v, vp) = (4, 5, 8);
        let targets = [2, IGNORE, 0, 4];
        let mut rng = Rng::new(6);
        let mut logits = random(&mut rng, n * vp, 2.0);
        for row in logits.chunks_mut(vp) {
            row[v..].fill(1e9); // padding must not leak into softmax
        }
        let mut losses = vec![0.0; n];
        let mut probs = logits.clone();
        let loss = forward(&mut probs, &mut losses, &targets, v, vp);
        assert!(loss.is_finite() && loss > 0.0 && losses[1] == 0.0);
        backward(&mut probs, &targets, v, vp);
        check("logits", &logits, &probs, |x| {
            let mut p = x.to_vec();
            forward(&mut p, &mut losses, &targets, v, vp) as f64
        });
    }
}
