//! Causal multi-head self-attention over a fused q, k, v tensor.
//!
//! For each head: att = softmax(q k^T / sqrt(hs)) with future positions masked out, then
//! y = att . v; heads sit side by side in y's channels. With grouped-query attention (the LLaMA
//! family's `num_key_value_heads`) there are fewer key/value heads than query heads: query head
//! h reads key/value head h / (NH / NKV), so a group of query heads shares one, and the cache
//! stores only NKV heads. GPT-2 is the case NKV = NH. Each (sequence, head) is a pair of
//! matrix products with a row-wise softmax between them, run in parallel over (sequence,
//! head). `att` (B, NH, T, T) keeps the probabilities for backward; with dropout, `mask`
//! (same shape) scales them on the way to v.

use crate::kernels::matmul::{View, matmul_view};
use crate::kernels::simd::{multiversion, softmax_inline};
use crate::kernels::vec::dot_inline;
use rayon::prelude::*;

/// Sizes: qkv rows hold NH query heads, then NKV key heads, then NKV value heads, hs lanes
/// each; the output rows hold NH heads.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub b: usize,
    pub t: usize,
    pub nh: usize,
    pub nkv: usize,
    pub hs: usize,
}

impl Shape {
    /// Width of a qkv row.
    pub fn qkv_width(&self) -> usize {
        (self.nh + 2 * self.nkv) * self.hs
    }

    /// Width of an output row.
    pub fn out_width(&self) -> usize {
        self.nh * self.hs
    }

    /// The key/value head query head `h` reads.
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.nh / self.nkv)
    }

    /// Views of q, k and v of sequence `b`, query head `h` inside qkv (B, T, W).
    fn qkv_views(&self, b: usize, h: usize) -> [View; 3] {
        let (t, w, hs) = (self.t, self.qkv_width(), self.hs);
        let g = self.kv_head(h);
        let starts = [h * hs, (self.nh + g) * hs, (self.nh + self.nkv + g) * hs];
        starts.map(|start| View::rows(b * t * w + start, t, hs, w))
    }
}

/// Scratch space the caller owns (so a step allocates nothing): `tt` (B, NH, T, T) and
/// `heads` (B, NH, T, 3 hs).
pub struct Scratch<'a> {
    pub tt: &'a mut [f32],
    pub heads: &'a mut [f32],
}

/// out (B, T, NH hs) and att (B, NH, T, T) from qkv (B, T, W).
pub fn forward(
    out: &mut [f32],
    att: &mut [f32],
    qkv: &[f32],
    mask: Option<&[f32]>,
    scratch: Scratch,
    s: Shape,
) {
    let (t, c, nh, hs) = (s.t, s.out_width(), s.nh, s.hs);
    let scale = 1.0 / (hs as f32).sqrt();
    let tt = View::rows(0, t, t, t);
    att.par_chunks_mut(t * t)
        .zip(scratch.tt.par_chunks_mut(t * t))
        .zip(scratch.heads.par_chunks_mut(t * hs))
        .enumerate()
        .for_each(|(bh, ((probs, dropped), y))| {
            let [q, k, v] = s.qkv_views(bh / nh, bh % nh);
            matmul_view(probs, tt, qkv, q, qkv, k.t(), scale, false);
            causal_softmax(probs, t);
            let weights = match mask {
                Some(m) => {
                    for ((d, &p), &m) in dropped.iter_mut().zip(&*probs).zip(&m[bh * t * t..][..t * t]) {
                        *d = p * m;
                    }
                    &*dropped
                }
                None => &*probs,
            };
            matmul_view(y, View::rows(0, t, hs, hs), weights, tt, qkv, v, 1.0, false);
        });
    // Gather the heads into the channels of each position.
    let heads = &*scratch.heads;
    out.par_chunks_mut(c).enumerate().for_each(|(row, o)| {
        let (b, pos) = (row / t, row % t);
        for h in 0..nh {
            o[h * hs..(h + 1) * hs].copy_from_slice(&heads[((b * nh + h) * t + pos) * hs..][..hs]);
        }
    });
}

multiversion! {
    /// Row t of the (T, T) scores keeps columns 0..=t, softmaxed; the future becomes 0.
    fn causal_softmax(scores: &mut [f32], t_len: usize) {
        for (t, row) in scores.chunks_exact_mut(t_len).enumerate() {
            let (past, future) = row.split_at_mut(t + 1);
            softmax_inline(past);
            future.fill(0.0);
        }
    }
}

multiversion! {
    /// d(scores) from d(weights) in place: through the dropout mask, then softmax's Jacobian
    /// p * (d - sum(p * d)) row by row; the masked future gets no gradient.
    fn causal_softmax_backward(dw: &mut [f32], probs: &[f32], mask: Option<&[f32]>, t_len: usize) {
        for (t, (d, p)) in dw.chunks_exact_mut(t_len).zip(probs.chunks_exact(t_len)).enumerate() {
            if let Some(m) = mask {
                for (d, &m) in d.iter_mut().zip(&m[t * t_len..][..t_len]) {
                    *d *= m;
                }
            }
            let (past, future) = d.split_at_mut(t + 1);
            let weighted = dot_inline(past, p);
            for (d, &p) in past.iter_mut().zip(p) {
                *d = p * (*d - weighted);
            }
            future.fill(0.0);
        }
    }
}

/// dqkv = d/dqkv given dout (B, T, NH hs) (overwritten). A shared key/value head's gradient
/// sums over the query heads of its group.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    att: &[f32],
    mask: Option<&[f32]>,
    scratch: Scratch,
    s: Shape,
) {
    let (t, c, nh, hs) = (s.t, s.out_width(), s.nh, s.hs);
    let scale = 1.0 / (hs as f32).sqrt();
    let tt = View::rows(0, t, t, t);
    // Per (sequence, head): grads (T, 3 hs) holds dq | dk | dv for each position.
    scratch.heads[..s.b * nh * t * 3 * hs]
        .par_chunks_mut(t * 3 * hs)
        .zip(scratch.tt.par_chunks_mut(t * t))
        .enumerate()
        .for_each(|(bh, (grads, dw))| {
            let (b, h) = (bh / nh, bh % nh);
            let [q, k, v] = s.qkv_views(b, h);
            let probs = &att[bh * t * t..][..t * t];
            let m = mask.map(|m| &m[bh * t * t..][..t * t]);
            let dy = View::rows(b * t * c + h * hs, t, hs, c);
            let part = |i: usize| View::rows(i * hs, t, hs, 3 * hs);
            // dv = weights^T . dy, with the weights dropout actually used.
            match m {
                Some(m) => {
                    for ((d, &p), &m) in dw.iter_mut().zip(probs).zip(m) {
                        *d = p * m;
                    }
                    matmul_view(grads, part(2), dw, tt.t(), dout, dy, 1.0, false);
                }
                None => matmul_view(grads, part(2), probs, tt.t(), dout, dy, 1.0, false),
            }
            matmul_view(dw, tt, dout, dy, qkv, v.t(), 1.0, false);
            causal_softmax_backward(dw, probs, m, t);
            matmul_view(grads, part(0), dw, tt, qkv, k, scale, false);
            matmul_view(grads, part(1), dw, tt.t(), qkv, q, scale, false);
        });
    let heads = &*scratch.heads;
    let group = nh / s.nkv;
    dqkv.par_chunks_mut(s.qkv_width()).enumerate().for_each(|(r, d)| {
        let (b, pos) = (r / t, r % t);
        let (dq, dkv) = d.split_at_mut(c);
        let (dk, dv) = dkv.split_at_mut(s.nkv * hs);
        for h in 0..nh {
            let grads = &heads[((b * nh + h) * t + pos) * 3 * hs..][..3 * hs];
            dq[h * hs..][..hs].copy_from_slice(&grads[..hs]);
            let kv = s.kv_head(h) * hs;
            for (part, dst) in [(1, &mut *dk), (2, &mut *dv)] {
                let (dst, src) = (&mut dst[kv..][..hs], &grads[part * hs..][..hs]);
                if h % group == 0 {
                    dst.copy_from_slice(src);
                } else {
                    dst.iter_mut().zip(src).for_each(|(d, &g)| *d += g);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::*;
    use super::*;
    use crate::rng::Rng;

    fn buffers(s: Shape) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = s.b * s.t;
        let tt = n * s.nh * s.t;
        (vec![0.0; n * s.out_width()], vec![0.0; tt], vec![0.0; tt], vec![0.0; n * 3 * s.nh * s.hs])
    }

    fn run(qkv: &[f32], mask: Option<&[f32]>, s: Shape, r: &[f32]) -> f64 {
        let (mut out, mut att, mut tt, mut heads) = buffers(s);
        forward(&mut out, &mut att, qkv, mask, Scratch { tt: &mut tt, heads: &mut heads }, s);
        weighted_sum(&out, r)
    }

    #[test]
    fn gradients_match_finite_differences_with_and_without_dropout() {
        // Multi-head (GPT-2), grouped (two query heads per key/value head) and multi-query.
        for (nh, nkv) in [(2, 2), (4, 2), (3, 1)] {
            let s = Shape { b: 2, t: 4, nh, nkv, hs: 3 };
            let mut rng = Rng::new(7);
            let qkv = random(&mut rng, s.b * s.t * s.qkv_width(), 1.0);
            let r = random(&mut rng, s.b * s.t * s.out_width(), 1.0);
            let mut mask = vec![0.0; s.b * s.t * s.nh * s.t];
            super::super::dropout::fill_mask(&mut mask, 0.3, &mut rng);
            for m in [None, Some(mask.as_slice())] {
                let (mut out, mut att, mut tt, mut heads) = buffers(s);
                forward(&mut out, &mut att, &qkv, m, Scratch { tt: &mut tt, heads: &mut heads }, s);
                let mut dqkv = vec![0.0; qkv.len()];
                backward(&mut dqkv, &r, &qkv, &att, m, Scratch { tt: &mut tt, heads: &mut heads }, s);
                check("qkv", &qkv, &dqkv, |x| run(x, m, s, &r));
            }
        }
    }

    #[test]
    fn grouped_heads_equal_multi_head_with_the_keys_repeated() {
        // Two query heads sharing one key/value head attend exactly as two heads with a copy each.
        let (t, hs) = (3, 2);
        let grouped = Shape { b: 1, t, nh: 2, nkv: 1, hs };
        let full = Shape { nkv: 2, ..grouped };
        let qkv = random(&mut Rng::new(9), t * grouped.qkv_width(), 1.0);
        let mut repeated = Vec::new();
        for row in qkv.chunks(grouped.qkv_width()) {
            let (q, k, v) = (&row[..4], &row[4..6], &row[6..8]);
            repeated.extend(q.iter().chain(k).chain(k).chain(v).chain(v));
        }
        let (mut a, mut att_a, mut tt, mut heads) = buffers(grouped);
        forward(&mut a, &mut att_a, &qkv, None, Scratch { tt: &mut tt, heads: &mut heads }, grouped);
        let (mut b, mut att_b, mut tt, mut heads) = buffers(full);
        forward(&mut b, &mut att_b, &repeated, None, Scratch { tt: &mut tt, heads: &mut heads }, full);
        assert_eq!((a, att_a), (b, att_b));
    }

    #[test]
    fn the_future_gets_no_attention() {
        let s = Shape { b: 1, t: 3, nh: 1, nkv: 1, hs: 4 };
        let qkv = random(&mut Rng::new(8), 3 * 3 * 4, 1.0);
        let (mut out, mut att, mut tt, mut heads) = buffers(s);
        forward(&mut out, &mut att, &qkv, None, Scratch { tt: &mut tt, heads: &mut heads }, s);
        assert_eq!(att[0], 1.0);
        assert_eq!((att[1], att[2], att[5]), (0.0, 0.0, 0.0));
        for r in att.chunks(3) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
