//! The learning-rate schedule: linear warmup, then cosine decay to a floor (nanoGPT's `get_lr`).

#[derive(Clone, Debug)]
pub struct Schedule {
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: usize,
    /// Step at which the cosine reaches `min_lr`; it stays there afterwards.
    pub decay_steps: usize,
}

impl Schedule {
    /// Learning rate for `step` (counting from 0).
    pub fn at(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f32 / (self.warmup_steps + 1) as f32;
        }
        if step > self.decay_steps || self.decay_steps <= self.warmup_steps {
            return self.min_lr;
        }
        let ratio = (step - self.warmup_steps) as f64 / (self.decay_steps - self.warmup_steps) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + (coeff as f32) * (self.lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let s = Schedule { lr: 1e-3, min_lr: 1e-4, warmup_steps: 100, decay_steps: 2000 };
        assert!((s.at(0) - 1e-3 / 101.0).abs() < 1e-9);
        assert!((s.at(99) - 1e-3 * 100.0 / 101.0).abs() < 1e-9);
        assert!((s.at(100) - 1e-3).abs() < 1e-9);
        assert!((s.at(1050) - 5.5e-4).abs() < 1e-7);
        assert_eq!(s.at(2001), 1e-4);
        let mut last = f32::MAX;
        for step in 100..=2000 {
            assert!(s.at(step) <= last);
            last = s.at(step);
        }
    }
}
