//! Attention over the KV cache, for a pass's rows (see `kv_cache.rs`): each row of a decoding
//! step or a short prompt attends over its slot's stored positions on its own (one task per row
//! and head), and the rows of a long prompt chunk together, as two small GEMMs per head.

use super::kv_cache::row_offset;
use crate::kernels::SharedOut;
use crate::kernels::simd::{multiversion, softmax_inline};
use crate::kernels::vec::{axpy_inline, dot_inline};
use rayon::prelude::*;

multiversion! {
    /// y = softmax(q . k_t * scale over stored positions t) . v_t for one head, whose keys and
    /// values are rows of its size side by side.
    fn attend(y: &mut [f32], scores: &mut [f32], q: &[f32], k: &[f32], v: &[f32], scale: f32) {
        let hs = y.len();
        for (sc, k) in scores.iter_mut().zip(k.chunks_exact(hs)) {
            *sc = dot_inline(q, k) * scale;
        }
        softmax_inline(scores);
        y.fill(0.0);
        for (&w, v) in scores.iter().zip(v.chunks_exact(hs)) {
            axpy_inline(y, w, v);
        }
    }
}

thread_local! {
    /// One head's attention scores over the stored positions, per thread: grows once.
    static SCORES: std::cell::RefCell<Vec<f32>> = std::cell::RefCell::default();
}

/// Grows this thread's attention scores to `positions`, so that no pass allocates them.
pub(super) fn reserve_scores(positions: usize) {
    SCORES.with_borrow_mut(|scores| {
        if scores.len() < positions {
            scores.resize(positions, 0.0);
        }
    })
}

/// Widths attention works with: query heads, their size, query heads per key/value head, a
/// qkv row, and an output row.
#[derive(Clone, Copy)]
pub(super) struct Geometry {
    pub(super) nh: usize,
    pub(super) hs: usize,
    pub(super) group: usize,
    pub(super) qkv: usize,
    pub(super) out: usize,
}

/// A pass's rows as attention sees them in one layer: their q|k|v, where each row sits (slot,
/// position), the cache, the widths, the score scale, and the probe's map if it records.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) qkv: &'a [f32],
    pub(super) k: &'a [f32],
    pub(super) v: &'a [f32],
    pub(super) at: &'a [(usize, usize)],
    pub(super) geometry: (usize, usize, usize, usize),
    pub(super) layer: usize,
    pub(super) g: Geometry,
    pub(super) scale: f32,
    pub(super) record: Option<(SharedOut, usize)>,
}

/// Attention for the pass's rows `first_row..` (as many as `atty` holds), each over its own
/// slot's positions up to its own: one task per (row, head), its scores in a per-thread buffer.
pub(super) fn attend_each(atty: &mut [f32], first_row: usize, rows: Rows) {
    let (g, scale, record) = (rows.g, rows.scale, rows.record);
    let (nh, hs, group) = (g.nh, g.hs, g.group);
    let capacity = rows.geometry.2;
    atty.par_chunks_mut(hs).enumerate().for_each(|(task, y)| {
        let (r, h) = (first_row + task / nh, task % nh);
        let (s, pos) = rows.at[r];
        let base = row_offset(rows.geometry, rows.layer, s, h / group, 0);
        let span = base..base + (pos + 1) * hs;
        let q = &rows.qkv[r * g.qkv + h * hs..][..hs];
        let (k, v) = (&rows.k[span.clone()], &rows.v[span]);
        SCORES.with_borrow_mut(|scores| {
            if scores.len() < capacity {
                scores.resize(capacity, 0.0);
            }
            attend(y, &mut scores[..=pos], q, k, v, scale);
            record_row(record, h, pos, &scores[..=pos]);
        });
    });
}

/// Attention for the pass's rows `first_row..` (as many as `atty` holds), consecutive positions
/// of one slot, a task per head: scores (n x end) = q . k^T * scale as one GEMM, the causal
/// mask and softmax per row, then y = p . v as another. The same sums as [`attend`] per row, in
/// another order.
pub(super) fn attend_rows(atty: &mut [f32], first_row: usize, rows: Rows) {
    use crate::kernels::matmul::{View, matmul_view};
    let (g, scale, record) = (rows.g, rows.scale, rows.record);
    let (nh, hs, c) = (g.nh, g.hs, g.out);
    let n = atty.len() / c;
    let (slot, first) = rows.at[first_row];
    let end = first + n;
    let q_rows = &rows.qkv[first_row * g.qkv..];
    let base = row_offset(rows.geometry, rows.layer, slot, 0, 0);
    let head_stride = rows.geometry.2 * hs;
    let out = SharedOut(atty.as_mut_ptr());
    (0..nh).into_par_iter().for_each(|h| {
        thread_local! {
            static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = std::cell::RefCell::default();
        }
        BUFFERS.with_borrow_mut(|(scores, y)| {
            scores.resize(n * end, 0.0);
            y.resize(n * hs, 0.0);
            let q = View { offset: h * hs, rows: n, cols: hs, row_stride: g.qkv, col_stride: 1 };
            let kv = View::rows(base + h / g.group * head_stride, end, hs, hs);
            matmul_view(scores, View::rows(0, n, end, end), q_rows, q, rows.k, kv.t(), scale, false);
            for (i, row) in scores.chunks_exact_mut(end).enumerate() {
                let pos = first + i;
                softmax_inline(&mut row[..=pos]);
                row[pos + 1..].fill(0.0);
                record_row(record, h, pos, &row[..=pos]);
            }
            matmul_view(
                y,
                View::rows(0, n, hs, hs),
                scores,
                View::rows(0, n, end, end),
                rows.v,
                kv,
                1.0,
                false,
            );
            for (i, yr) in y.chunks_exact(hs).enumerate() {
                // SAFETY: atty holds n x C; row i's lanes of head h belong to this task.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(i * c + h * hs), hs) };
                dst.copy_from_slice(yr);
            }
        });
    });
}

/// Writes head `h`'s attention probabilities at position `pos` into row (h, pos) of a probe's
/// (NH, T, T) map, if there is one and the position is in it.
fn record_row(record: Option<(SharedOut, usize)>, h: usize, pos: usize, probs: &[f32]) {
    if let Some((map, t)) = record.filter(|&(_, t)| pos < t) {
        // SAFETY: the map holds NH x T x T floats, and each (h, pos) row is written by the one
        // task that computed it.
        let row = unsafe { std::slice::from_raw_parts_mut(map.ptr().add((h * t + pos) * t), pos + 1) };
        row.copy_from_slice(probs);
    }
}
