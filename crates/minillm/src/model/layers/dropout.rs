//! Inverted dropout: during training each value is zeroed with probability p and the survivors
//! are scaled by 1/(1-p), so nothing changes at inference. The mask is drawn from a seeded Rng
//! and kept, so backward zeroes exactly the same gradients.

use crate::rng::Rng;

/// Fills `mask` with 0 or 1/(1-p).
pub fn fill_mask(mask: &mut [f32], p: f32, rng: &mut Rng) {
    let keep = 1.0 / (1.0 - p);
    for m in mask.iter_mut() {
        *m = if rng.uniform() < p as f64 { 0.0 } else { keep };
    }
}

/// x *= mask (forward), or dx *= mask (backward): the same operation.
pub fn apply(x: &mut [f32], mask: &[f32]) {
    for (x, &m) in x.iter_mut().zip(mask) {
        *x *= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_expected_value_and_the_drop_rate() {
        let mut mask = vec![0.0; 100_000];
        fill_mask(&mut mask, 0.25, &mut Rng::new(5));
        let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
        let mean = mask.iter().map(|&m| m as f64).sum::<f64>() / mask.len() as f64;
        assert!((dropped - 0.25).abs() < 0.01, "{dropped}");
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
    }
}
