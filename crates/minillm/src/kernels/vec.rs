//! Element-wise vector operations, vectorized for the CPU at hand (see [`super::simd`]).

use super::simd::multiversion;

/// Elements per task of the element-wise passes that run across the threads.
const CHUNK: usize = 8192;

multiversion! {
    fn add_chunk(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
}

/// out = a + b (a residual connection written to a new buffer), in chunks across the threads:
/// `out` is usually cold (a training step keeps every layer's), and one thread writing it
/// alone took 3% of a baby GPT's step.
pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    use rayon::prelude::*;
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| add_chunk(o, a, b));
}

multiversion! {
    fn add_biased_chunk(out: &mut [f32], a: &[f32], branch: &mut [f32], bias: &[f32]) {
        let width = bias.len();
        let rows = out.chunks_exact_mut(width).zip(a.chunks_exact(width)).zip(branch.chunks_exact_mut(width));
        for ((o, a), br) in rows {
            for (((o, &a), br), &b) in o.iter_mut().zip(a).zip(br.iter_mut()).zip(bias) {
                *br += b;
                *o = a + *br;
            }
        }
    }
}

/// branch (N, W) += bias row by row, and out = a + branch, in one pass: a residual connection
/// that also adds the bias of the layer that made the branch (so that layer's product does not
/// read a copy of it).
pub fn add_biased(out: &mut [f32], a: &[f32], branch: &mut [f32], bias: &[f32]) {
    use rayon::prelude::*;
    let per = CHUNK.div_ceil(bias.len()) * bias.len();
    out.par_chunks_mut(per)
        .zip(a.par_chunks(per).zip(branch.par_chunks_mut(per)))
        .for_each(|(o, (a, br))| add_biased_chunk(o, a, br, bias));
}

/// Each row of x (N, W) += bias (W): a layer's bias, where no other pass adds it.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    x.chunks_exact_mut(bias.len()).for_each(|row| add_into(row, bias));
}

multiversion! {
    /// x += y (a residual connection in place).
    pub fn add_into(x: &mut [f32], y: &[f32]) {
        for (x, &y) in x.iter_mut().zip(y) {
            *x += y;
        }
    }
}

multiversion! {
    /// y += alpha * x
    pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        axpy_inline(y, alpha, x)
    }
}

/// [`dot`] for inlining into other multiversioned loops (no dispatch per call). Sixteen
/// independent accumulators let the compiler use SIMD lanes without reassociating one sum,
/// which strict float semantics forbid.
#[inline(always)]
pub fn dot_inline(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum = 0.0;
    for a in acc {
        sum += a;
    }
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// [`axpy`] for inlining into other multiversioned loops.
#[inline(always)]
pub fn axpy_inline(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// (rows, cols) row-major to (cols, rows) row-major.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for (col, &x) in data[r * cols..(r + 1) * cols].iter().enumerate() {
            out[col * rows + r] = x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn add_biased_is_the_bias_then_the_sum() {
        // Rows of an odd width, more of them than one parallel chunk holds.
        let (n, w) = (700, 37);
        let a: Vec<f32> = (0..n * w).map(|i| (i as f32 * 0.37).sin()).collect();
        let branch: Vec<f32> = (0..n * w).map(|i| (i as f32 * 0.11).cos()).collect();
        let bias: Vec<f32> = (0..w).map(|j| j as f32 * 0.1 - 1.0).collect();
        let mut want_branch = branch.clone();
        super::add_bias(&mut want_branch, &bias);
        let mut want = vec![0.0; n * w];
        super::add(&mut want, &a, &want_branch);
        let (mut out, mut got_branch) = (vec![0.0; n * w], branch);
        super::add_biased(&mut out, &a, &mut got_branch, &bias);
        assert_eq!((out, got_branch), (want, want_branch));
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.5).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((super::dot_inline(&a, &b) - want).abs() < 1e-2);
        let mut y = b.clone();
        super::axpy(&mut y, 2.0, &a);
        assert_eq!(y[3], b[3] + 6.0);
    }
}
