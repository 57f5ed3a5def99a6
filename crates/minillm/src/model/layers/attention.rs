//! Causal multi-head self-attention over a fused q, k, v tensor.
//!
//! For each head: att = softmax(q k^T / sqrt(hs)) with future positions masked out, then
//! out = att . v; heads sit side by side in out's channels. `att` (B, T, NH, T) keeps the
//! probabilities for backward; with dropout, `mask` (same shape) scales them on the way to v.

use crate::kernels::vec::{axpy, dot};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub nh: usize,
}

impl Shape {
    fn hs(&self) -> usize {
        self.c / self.nh
    }
}

/// out (B, T, C) and att (B, T, NH, T) from qkv (B, T, 3C).
pub fn forward(out: &mut [f32], att: &mut [f32], qkv: &[f32], mask: Option<&[f32]>, s: Shape) {
    let (t_len, c, nh, hs) = (s.t, s.c, s.nh, s.hs());
    let scale = 1.0 / (hs as f32).sqrt();
    out.par_chunks_mut(c)
        .zip(att.par_chunks_mut(nh * t_len))
        .enumerate()
        .for_each(|(row, (out_row, att_rows))| {
            let (b, t) = (row / t_len, row % t_len);
            let at = |t2: usize, part: usize, h: usize| {
                &qkv[(b * t_len + t2) * 3 * c + part * c + h * hs..][..hs]
            };
            for h in 0..nh {
                let q = at(t, 0, h);
                let att_row = &mut att_rows[h * t_len..(h + 1) * t_len];
                let mut max = f32::NEG_INFINITY;
                for (t2, a) in att_row[..=t].iter_mut().enumerate() {
                    *a = dot(q, at(t2, 1, h)) * scale;
                    max = max.max(*a);
                }
                let mut sum = 0.0;
                for a in &mut att_row[..=t] {
                    *a = (*a - max).exp();
                    sum += *a;
                }
                for a in &mut att_row[..=t] {
                    *a /= sum;
                }
                att_row[t + 1..].fill(0.0);
                let y = &mut out_row[h * hs..(h + 1) * hs];
                y.fill(0.0);
                let m = mask.map(|m| &m[(row * nh + h) * t_len..][..t_len]);
                for t2 in 0..=t {
                    let w = att_row[t2] * m.map_or(1.0, |m| m[t2]);
                    axpy(y, w, at(t2, 2, h));
                }
            }
        });
}

/// dqkv += d/dqkv given dout (B, T, C). `heads` (B, NH, T, 3 hs) and `row` (B, NH, T) are
/// scratch: each (batch, head) works in its own slice, then the slices are added into dqkv.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dqkv: &mut [f32],
    heads: &mut [f32],
    row: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    att: &[f32],
    mask: Option<&[f32]>,
    s: Shape,
) {
    let (t_len, c, nh, hs) = (s.t, s.c, s.nh, s.hs());
    let scale = 1.0 / (hs as f32).sqrt();
    heads[..s.b * nh * t_len * 3 * hs]
        .par_chunks_mut(t_len * 3 * hs)
        .zip(row.par_chunks_mut(t_len))
        .enumerate()
        .for_each(|(bh, (grads, datt))| {
            let (b, h) = (bh / nh, bh % nh);
            grads.fill(0.0);
            let at =
                |t2: usize, part: usize| &qkv[(b * t_len + t2) * 3 * c + part * c + h * hs..][..hs];
            for t in 0..t_len {
                let dy = &dout[(b * t_len + t) * c + h * hs..][..hs];
                let att_row = &att[((b * t_len + t) * nh + h) * t_len..][..t_len];
                let m = mask.map(|m| &m[((b * t_len + t) * nh + h) * t_len..][..t_len]);
                let mut weighted = 0.0;
                for t2 in 0..=t {
                    let keep = m.map_or(1.0, |m| m[t2]);
                    datt[t2] = dot(dy, at(t2, 2)) * keep;
                    weighted += att_row[t2] * datt[t2];
                    axpy(
                        &mut grads[t2 * 3 * hs + 2 * hs..][..hs],
                        att_row[t2] * keep,
                        dy,
                    );
                }
                // Softmax backward (datt becomes d(pre-softmax scores)), then through the scaled
                // dot products: dk[t2] += d * q[t], dq[t] += d * k[t2].
                for t2 in 0..=t {
                    datt[t2] = att_row[t2] * (datt[t2] - weighted) * scale;
                    axpy(&mut grads[t2 * 3 * hs + hs..][..hs], datt[t2], at(t, 0));
                }
                let dq = &mut grads[t * 3 * hs..][..hs];
                for (t2, &d) in datt[..=t].iter().enumerate() {
                    axpy(dq, d, at(t2, 1));
                }
            }
        });
    dqkv.par_chunks_mut(3 * c).enumerate().for_each(|(r, d)| {
        let (b, t) = (r / t_len, r % t_len);
        for h in 0..nh {
            let g = &heads[((b * nh + h) * t_len + t) * 3 * hs..][..3 * hs];
            for part in 0..3 {
                axpy(
                    &mut d[part * c + h * hs..][..hs],
                    1.0,
                    &g[part * hs..][..hs],
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    fn run(qkv: &[f32], mask: Option<&[f32]>, s: Shape, r: &[f32]) -> f64 {
        let mut out = vec![0.0; s.b * s.t * s.c];
        let mut att = vec![0.0; s.b * s.t * s.nh * s.t];
        forward(&mut out, &mut att, qkv, mask, s);
        weighted_sum(&out, r)
    }

    #[test]
    fn gradients_match_finite_differences_with_and_without_dropout() {
        let s = Shape {
            b: 2,
            t: 4,
            c: 6,
            nh: 2,
        };
        let mut rng = Rng::new(7);
        let qkv = random(&mut rng, s.b * s.t * 3 * s.c, 1.0);
        let r = random(&mut rng, s.b * s.t * s.c, 1.0);
        let mut mask = vec![0.0; s.b * s.t * s.nh * s.t];
        super::super::dropout::fill_mask(&mut mask, 0.3, &mut rng);
        for m in [None, Some(mask.as_slice())] {
            let mut out = vec![0.0; s.b * s.t * s.c];
            let mut att = vec![0.0; s.b * s.t * s.nh * s.t];
            forward(&mut out, &mut att, &qkv, m, s);
            let mut dqkv = vec![0.0; qkv.len()];
            let mut heads = vec![0.0; s.b * s.nh * s.t * 3 * s.hs()];
            let mut row = vec![0.0; s.b * s.nh * s.t];
            backward(&mut dqkv, &mut heads, &mut row, &r, &qkv, &att, m, s);
            check("qkv", &qkv, &dqkv, |x| run(x, m, s, &r));
        }
    }

    #[test]
    fn the_future_gets_no_attention() {
        let s = Shape {
            b: 1,
            t: 3,
            c: 4,
            nh: 1,
        };
        let qkv = random(&mut Rng::new(8), 3 * 3 * 4, 1.0);
        let mut out = vec![0.0; 12];
        let mut att = vec![0.0; 9];
        forward(&mut out, &mut att, &qkv, None, s);
        assert_eq!(att[0], 1.0);
        assert_eq!((att[1], att[2], att[5]), (0.0, 0.0, 0.0));
        for r in att.chunks(3) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
