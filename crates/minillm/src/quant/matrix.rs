//! A quantized matrix and its product with a few rows of activations (decoding).

use super::formats::{BlockFormat, F16, Q4_0, Q8_0};
use super::{BLOCK, QuantType, simd};
use crate::error::{Error, Result};
use crate::kernels::SharedOut;
use rayon::prelude::*;

/// Output rows per parallel task: a few kilobytes of weights each.
const ROWS_PER_TASK: usize = 16;
/// How many rows ahead the next weights are requested from memory. The kernels spend more time
/// per byte than f32 code does (widening integers), so the hardware prefetcher alone does not
/// keep enough reads in flight to stream from DRAM at full speed.
const PREFETCH_ROWS: usize = 4;

/// Asks the CPU to start loading `bytes` into cache.
fn prefetch(bytes: Option<&[u8]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(bytes) = bytes {
        for line in bytes.chunks(64) {
            // SAFETY: prefetching is a hint; the address is inside a live slice.
            unsafe {
                std::arch::x86_64::_mm_prefetch(line.as_ptr() as *const i8, std::arch::x86_64::_MM_HINT_T0)
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// A (rows x cols) matrix stored row by row in blocks of [`BLOCK`] along each row: GGUF's
/// layout, where a linear layer's row is one output.
#[derive(Clone, Debug, PartialEq)]
pub struct QMatrix {
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    data: Vec<u8>,
}

impl QMatrix {
    /// Quantizes `w` (rows x cols, row-major); `cols` must be a multiple of 32.
    pub fn quantize(ty: QuantType, w: &[f32], rows: usize, cols: usize) -> Result<QMatrix> {
        check_shape(ty, rows, cols)?;
        assert_eq!(w.len(), rows * cols, "quantize: matrix shape");
        let bytes = ty.block_bytes();
        let mut data = vec![0u8; rows * cols / BLOCK * bytes];
        let quantize: fn(&[f32; BLOCK], &mut [u8]) = match ty {
            QuantType::F16 => F16::quantize,
            QuantType::Q8_0 => Q8_0::quantize,
            QuantType::Q4_0 => Q4_0::quantize,
        };
        data.par_chunks_mut(bytes * 1024).zip(w.par_chunks(BLOCK * 1024)).for_each(|(out, x)| {
            for (o, xs) in out.chunks_exact_mut(bytes).zip(x.chunks_exact(BLOCK)) {
                quantize(xs.try_into().expect("a block"), o);
            }
        });
        Ok(QMatrix { ty, rows, cols, data })
    }

    /// A matrix from its blocks as stored (in a GGUF file); the length must match the shape.
    pub fn from_bytes(ty: QuantType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix> {
        check_shape(ty, rows, cols)?;
        let want = rows * cols / BLOCK * ty.block_bytes();
        if data.len() != want {
            return Err(Error::Invalid(format!(
                "{} matrix of {rows} x {cols} needs {want} bytes, got {}",
                ty.name(),
                data.len()
            )));
        }
        Ok(QMatrix { ty, rows, cols, data })
    }

    /// The blocks, as GGUF stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The weights the blocks stand for (rows x cols).
    pub fn dequantize(&self) -> Vec<f32> {
        let dequantize: fn(&[u8], &mut [f32; BLOCK]) = match self.ty {
            QuantType::F16 => F16::dequantize,
            QuantType::Q8_0 => Q8_0::dequantize,
            QuantType::Q4_0 => Q4_0::dequantize,
        };
        let mut out = vec![0.0f32; self.rows * self.cols];
        for (o, block) in out.chunks_exact_mut(BLOCK).zip(self.data.chunks_exact(self.ty.block_bytes())) {
            dequantize(block, o.try_into().expect("a block"));
        }
        out
    }

    /// `out (m x rows) = x (m x cols) . W^T + bias`: each output row is one dot product of a
    /// matrix row with a row of x. Output rows are split across threads; each reads its rows
    /// of weights once and uses them for all m rows of x while they are in cache.
    pub fn times(&self, out: &mut [f32], x: &[f32], bias: Option<&[f32]>, m: usize) {
        let (n, k) = (self.rows, self.cols);
        assert!(out.len() >= m * n && x.len() >= m * k, "quantized product shapes");
        let (dot, _) = simd::kernel(self.ty);
        let row_bytes = k / BLOCK * self.ty.block_bytes();
        let out = SharedOut(out.as_mut_ptr());
        let task = |(t, rows): (usize, &[u8])| {
            let first = t * ROWS_PER_TASK;
            for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
                prefetch(rows.get((r + PREFETCH_ROWS) * row_bytes..(r + PREFETCH_ROWS + 1) * row_bytes));
                let j = first + r;
                let b = bias.map_or(0.0, |b| b[j]);
                for i in 0..m {
                    let v = dot(row, &x[i * k..(i + 1) * k]) + b;
                    // SAFETY: out holds m * n and each (i, j) is written by exactly one task.
                    unsafe { *out.ptr().add(i * n + j) = v };
                }
            }
        };
        if n * k < 1 << 15 {
            self.data.chunks(ROWS_PER_TASK * row_bytes).enumerate().for_each(task);
        } else {
            self.data.par_chunks(ROWS_PER_TASK * row_bytes).enumerate().for_each(task);
        }
    }
}

fn check_shape(ty: QuantType, rows: usize, cols: usize) -> Result<()> {
    if !cols.is_multiple_of(BLOCK) || rows == 0 {
        return Err(Error::Invalid(format!(
            "a {} matrix needs rows of a multiple of {BLOCK} weights; this one is {rows} x {cols}",
            ty.name()
        )));
    }
    Ok(())
}
