//! Element-wise vector operations, vectorized for the CPU at hand (see [`super::simd`]).

use super::simd::multiversion;

multiversion! {
    /// out = a + b (a residual connection written to a new buffer).
    pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
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
