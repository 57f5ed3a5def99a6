//! A quantized matrix and its product with a few rows of activations (decoding).

use super::activations::Int8Activations;
use super::interleaved::{self, GROUP_ROWS, GroupDot};
use super::simd::{self, Kernel};
use super::{BlockFormat, QuantType, with_format};
use crate::error::{Error, Result};
use crate::kernels::SharedOut;
use rayon::prelude::*;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

/// Parallel tasks per thread in one product: enough for the threads to even out, few enough
/// that handing them out costs little next to the work (the LM head has 50,257 rows).
const TASKS_PER_THREAD: usize = 4;
/// Matrix rows per kernel call: the integer kernels work on four rows at once, so that each
/// block of activations is loaded once for four rows of weights.
const ROWS_PER_CALL: usize = 4;
/// Rows of activations per kernel call, when there are several (prefill): each block of weights
/// is unpacked once for all of them.
const ACTIVATION_ROWS: usize = 4;
/// Matrix rows that every group of activation rows passes over before the next rows load (a
/// multiple of [`ROWS_PER_CALL`] and of [`GROUP_ROWS`]): 32 rows of 768 weights are 14-26 KB,
/// in L1.
const TILE_ROWS: usize = 32;
/// How many rows ahead the next weights are requested from memory (one kernel call). A byte of
/// q8_0 or q4_0 holds one or two weights, so the kernels spend more time per byte than f32 code
/// does, and the hardware prefetcher alone does not keep enough reads in flight to stream at
/// full speed (measured: without this, decoding GPT-2 small is slower in 5 of 6 A/B pairs).
const PREFETCH_ROWS: usize = 4;
/// From this many rows of activations on, f16 products widen tiles of the matrix and use GEMM
/// ([`QMatrix::times_widened`]): reused across many rows, a widened weight pays for itself.
const WIDEN_ROWS: usize = 16;
/// Matrix rows widened per task: 64 rows of a 3072-wide matrix are 768 KB of f32, in L2.
const WIDEN_TILE: usize = 64;

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

/// Bytes that matrices share: a mapped file, or a buffer in memory.
pub trait SharedBytes: AsRef<[u8]> + Send + Sync {
    /// Hands the pages under `bytes` (a part of these bytes) back to the OS: they were copied
    /// and are not needed again. A buffer in memory keeps them.
    fn release(&self, _bytes: &[u8]) {}
}

impl SharedBytes for Vec<u8> {}

/// A (rows x cols) matrix stored row by row in blocks along each row (32 or 256 weights): GGUF's
/// layout, where a linear layer's row is one output.
#[derive(Clone)]
pub struct QMatrix {
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    data: Blocks,
}

/// Where a matrix's blocks live: its own buffer, or a stretch of a buffer it shares (a mapped
/// file, whose blocks are used where they lie), both in GGUF's layout; or its own buffer in
/// the [`interleaved`] layout, which q8_0 and q4_0 take at construction where the CPU has its
/// kernels.
#[derive(Clone)]
enum Blocks {
    Owned(Vec<u8>),
    Shared(Arc<dyn SharedBytes>, Range<usize>),
    Interleaved(Vec<u8>, GroupDot),
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.data {
            Blocks::Owned(_) => "owned",
            Blocks::Shared(..) => "mapped",
            Blocks::Interleaved(..) => "interleaved",
        };
        write!(f, "QMatrix({} {} x {}, {place})", self.ty.name(), self.rows, self.cols)
    }
}

impl PartialEq for QMatrix {
    fn eq(&self, other: &QMatrix) -> bool {
        (self.ty, self.rows, self.cols) == (other.ty, other.rows, other.cols)
            && *self.bytes() == *other.bytes()
    }
}

impl QMatrix {
    /// Quantizes `w` (rows x cols, row-major); `cols` must be a multiple of the type's block.
    pub fn quantize(ty: QuantType, w: &[f32], rows: usize, cols: usize) -> Result<QMatrix> {
        check_shape(ty, rows, cols)?;
        assert_eq!(w.len(), rows * cols, "quantize: matrix shape");
        let (weights, bytes) = (ty.block_weights(), ty.block_bytes());
        let mut data = vec![0u8; rows * ty.row_bytes(cols)];
        let quantize: fn(&[f32], &mut [u8]) = with_format!(ty, F => F::quantize);
        // Tasks of 32 K weights: the k-quants' search costs about a microsecond per block.
        let per_task = (1 << 15) / weights;
        data.par_chunks_mut(bytes * per_task).zip(w.par_chunks(weights * per_task)).for_each(|(out, x)| {
            for (o, xs) in out.chunks_exact_mut(bytes).zip(x.chunks_exact(weights)) {
                quantize(xs, o);
            }
        });
        Ok(QMatrix { ty, rows, cols, data: Blocks::Owned(data) }.interleave())
    }

    /// A matrix from its blocks as stored (in a GGUF file); the length must match the shape.
    pub fn from_bytes(ty: QuantType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix> {
        check_bytes(ty, rows, cols, data.len())?;
        Ok(QMatrix { ty, rows, cols, data: Blocks::Owned(data) }.interleave())
    }

    /// A matrix whose blocks are `range` of `owner` (a mapped file), used where they lie (or
    /// copied once into the interleaved layout).
    pub fn from_shared(
        ty: QuantType,
        (rows, cols): (usize, usize),
        owner: Arc<dyn SharedBytes>,
        range: Range<usize>,
    ) -> Result<QMatrix> {
        check_bytes(ty, rows, cols, range.len())?;
        if (*owner).as_ref().get(range.clone()).is_none() {
            return Err(Error::Invalid(format!("{} matrix's blocks lie outside the file", ty.name())));
        }
        let matrix =
            QMatrix { ty, rows, cols, data: Blocks::Shared(owner.clone(), range.clone()) }.interleave();
        if let Blocks::Interleaved(..) = matrix.data {
            // Copied: the file's pages are not read again, and would double the working set.
            owner.release(&(*owner).as_ref()[range]);
        }
        Ok(matrix)
    }

    /// The matrix in the [`interleaved`] layout, if its type has one this CPU multiplies.
    fn interleave(self) -> QMatrix {
        match interleaved::kernel(self.ty) {
            Some(kernel) => self.interleave_with(kernel),
            None => self,
        }
    }

    fn interleave_with(self, kernel: GroupDot) -> QMatrix {
        let packed = interleaved::pack(self.ty, self.rows, self.cols, &self.bytes());
        QMatrix { data: Blocks::Interleaved(packed, kernel), ..self }
    }

    /// This matrix with `below`'s rows under it (the same type and columns). Interleaved
    /// matrices whose top ends on a whole group join as they are (their layout is group after
    /// group); others through GGUF's bytes.
    pub fn stacked(&self, below: &QMatrix) -> Result<QMatrix> {
        assert!(self.ty == below.ty && self.cols == below.cols, "stacked matrices' types and columns");
        let (ty, rows, cols) = (self.ty, self.rows + below.rows, self.cols);
        if let (Blocks::Interleaved(top, kernel), Blocks::Interleaved(bottom, _)) = (&self.data, &below.data)
            && self.rows.is_multiple_of(GROUP_ROWS)
        {
            return Ok(QMatrix {
                ty,
                rows,
                cols,
                data: Blocks::Interleaved([&top[..], bottom].concat(), *kernel),
            });
        }
        QMatrix::from_bytes(ty, rows, cols, [self.bytes(), below.bytes()].concat())
    }

    /// Whether the matrix is kept in the [`interleaved`] layout (q8_0 and q4_0, on a CPU with
    /// AVX-512 VNNI): a copy of a mapped file's blocks, not the blocks where they lie.
    pub fn is_interleaved(&self) -> bool {
        matches!(self.data, Blocks::Interleaved(..))
    }

    /// The same matrix in GGUF's layout and the interleaved one, multiplied by the portable
    /// interleaved kernel: for tests of the layout on any CPU.
    #[cfg(test)]
    pub(crate) fn layouts(&self) -> (QMatrix, Option<QMatrix>) {
        let plain = QMatrix { data: Blocks::Owned(self.bytes().into_owned()), ..self.clone() };
        let packed = interleaved::packs(self.ty)
            .then(|| plain.clone().interleave_with(interleaved::reference(self.ty)));
        (plain, packed)
    }

    /// The blocks, as GGUF stores them (put back in rows from the interleaved layout).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match &self.data {
            Blocks::Owned(v) => Cow::Borrowed(v),
            Blocks::Shared(owner, range) => Cow::Borrowed(&(**owner).as_ref()[range.clone()]),
            Blocks::Interleaved(packed, _) => {
                Cow::Owned(interleaved::unpack(self.ty, self.rows, self.cols, packed))
            }
        }
    }

    /// The weights the blocks stand for (rows x cols).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        self.dequantize_into(&self.bytes(), &mut out);
        out
    }

    /// Row `r`'s weights into `out` (cols): a token's embedding, when the embedding is stored
    /// in blocks.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row_bytes = self.ty.row_bytes(self.cols);
        if let Blocks::Interleaved(packed, _) = &self.data {
            let dequantize: fn(&[u8], &mut [f32]) = with_format!(self.ty, F => F::dequantize);
            return interleaved::dequantize_row(
                self.ty,
                self.cols,
                packed,
                r,
                dequantize,
                &mut out[..self.cols],
            );
        }
        self.dequantize_into(&self.bytes()[r * row_bytes..][..row_bytes], &mut out[..self.cols]);
    }

    fn dequantize_into(&self, blocks: &[u8], out: &mut [f32]) {
        if self.ty == QuantType::F16 && widen_f16(blocks, &mut out[..blocks.len() / 2]) {
            return;
        }
        let dequantize: fn(&[u8], &mut [f32]) = with_format!(self.ty, F => F::dequantize);
        let (weights, bytes) = (self.ty.block_weights(), self.ty.block_bytes());
        for (o, block) in out.chunks_exact_mut(weights).zip(blocks.chunks_exact(bytes)) {
            dequantize(block, o);
        }
    }

    /// `out (m x rows) = x (m x cols) . W^T + bias`: each output row is one dot product of a
    /// matrix row with a row of x. Output rows are split across threads; each reads its rows
    /// of weights once and uses them for all m rows of x while they are in cache.
    ///
    /// Every type but f16 first rounds x to 8 bits per value ([`Int8Activations`], kept per
    /// thread and reused), as llama.cpp does: the products are then integer ones, several times
    /// cheaper than widening each weight to f32. f16 rows multiply x as it is.
    pub fn times(&self, out: &mut [f32], x: &[f32], bias: Option<&[f32]>, m: usize) {
        self.times_into(out, self.rows, x, bias, m)
    }

    /// [`times`](Self::times) into the first `rows` columns of an output whose rows are
    /// `stride` long: a part of a matrix stacked from parts of different types writes its
    /// columns of the whole product.
    pub fn times_into(&self, out: &mut [f32], stride: usize, x: &[f32], bias: Option<&[f32]>, m: usize) {
        let k = self.cols;
        assert!(
            stride >= self.rows && out.len() >= (m - 1) * stride + self.rows && x.len() >= m * k,
            "quantized product shapes"
        );
        if self.ty == QuantType::F16 && m >= WIDEN_ROWS {
            return self.times_widened(out, stride, x, bias, m);
        }
        thread_local! {
            static ACTIVATIONS: RefCell<Int8Activations> = RefCell::default();
        }
        match simd::kernel(self.ty).0 {
            Kernel::Float(dot) => {
                let row_bytes = self.ty.row_bytes(k);
                self.each_output(out, stride, bias, m, |rows, (i, a), out| {
                    let r = out.len() / a;
                    for (ia, outs) in out.chunks_exact_mut(r).enumerate() {
                        for (o, row) in outs.iter_mut().zip(rows.chunks_exact(row_bytes)) {
                            *o = dot(row, &x[(i + ia) * k..(i + ia + 1) * k]);
                        }
                    }
                })
            }
            Kernel::Int8(_) if let Blocks::Interleaved(packed, kernel) = &self.data => ACTIVATIONS
                .with_borrow_mut(|x8| {
                    x8.quantize(x, m, k);
                    self.each_group(packed, *kernel, x8, (out, stride), bias, m)
                }),
            Kernel::Int8(dot) => ACTIVATIONS.with_borrow_mut(|x8| {
                x8.quantize(x, m, k);
                self.each_output(out, stride, bias, m, |rows, (i, a), out| {
                    let xs: [_; ACTIVATION_ROWS] = std::array::from_fn(|ia| x8.row((i + ia).min(m - 1)));
                    dot(rows, &xs[..a], out)
                })
            }),
        }
    }

    /// [`times`](Self::times) for many rows of f16: each task widens a tile of the matrix's rows
    /// to f32 (exactly: every f16 is an f32) and multiplies it with all of x in one small GEMM,
    /// so the whole matrix is never widened at once and each weight is widened once per call,
    /// not once per row of x. The products are the f16 kernel's, summed in another order.
    fn times_widened(&self, out: &mut [f32], stride: usize, x: &[f32], bias: Option<&[f32]>, m: usize) {
        use crate::kernels::matmul::{View, matmul_view};
        thread_local! {
            static TILE: RefCell<(Vec<f32>, Vec<f32>)> = RefCell::default();
        }
        let k = self.cols;
        let row_bytes = self.ty.row_bytes(k);
        let shared = SharedOut(out.as_mut_ptr());
        let x = &x[..m * k];
        self.bytes().par_chunks(WIDEN_TILE * row_bytes).enumerate().for_each(|(t, rows)| {
            let (first, count) = (t * WIDEN_TILE, rows.len() / row_bytes);
            TILE.with_borrow_mut(|(w, y)| {
                w.resize(count * k, 0.0);
                y.resize(m * count, 0.0);
                self.dequantize_into(rows, w);
                // y (m x count) = x (m x k) . w^T, w stored (count x k).
                let wt = View::rows(0, count, k, k).t();
                matmul_view(y, View::rows(0, m, count, count), x, View::rows(0, m, k, k), w, wt, 1.0, false);
                for (i, products) in y.chunks_exact(count).enumerate() {
                    // SAFETY: out holds m rows of stride; this task alone writes its columns.
                    unsafe { put(shared, stride, bias, (i, first), products) };
                }
            });
        });
    }

    /// out[i][j] = (row j . row i of the activations) + bias[j]. `dot(rows, (i, a), o)` writes
    /// the products of up to [`ROWS_PER_CALL`] consecutive matrix rows (R) with activation rows
    /// i..i + a (a up to [`ACTIVATION_ROWS`]) into o[ia * R + r].
    fn each_output(
        &self,
        out: &mut [f32],
        stride: usize,
        bias: Option<&[f32]>,
        m: usize,
        dot: impl Fn(&[u8], (usize, usize), &mut [f32]) + Sync,
    ) {
        let (n, k) = (self.rows, self.cols);
        let row_bytes = self.ty.row_bytes(k);
        let out = SharedOut(out.as_mut_ptr());
        let tasks = TASKS_PER_THREAD * rayon::current_num_threads();
        let rows_per_task = n.div_ceil(tasks).next_multiple_of(ROWS_PER_CALL);
        let task = |(t, rows): (usize, &[u8])| {
            let mut products = [0.0f32; ROWS_PER_CALL * ACTIVATION_ROWS];
            // A tile of matrix rows stays in L1 while every group of activation rows passes
            // over it: the weights come from memory once, the activations from L2 once per tile.
            for (tile_index, tile) in rows.chunks(TILE_ROWS * row_bytes).enumerate() {
                for i in (0..m).step_by(ACTIVATION_ROWS) {
                    let a = ACTIVATION_ROWS.min(m - i);
                    for (c, call) in tile.chunks(ROWS_PER_CALL * row_bytes).enumerate() {
                        let at = tile_index * TILE_ROWS + c * ROWS_PER_CALL;
                        if i == 0 {
                            let ahead = (at + PREFETCH_ROWS) * row_bytes;
                            prefetch(rows.get(ahead..(ahead + ROWS_PER_CALL * row_bytes).min(rows.len())));
                        }
                        let (first, r) = (t * rows_per_task + at, call.len() / row_bytes);
                        let products = &mut products[..r * a];
                        dot(call, (i, a), products);
                        for (ia, sums) in products.chunks_exact(r).enumerate() {
                            // SAFETY: out holds m rows of stride; this task alone writes its rows.
                            unsafe { put(out, stride, bias, (i + ia, first), sums) };
                        }
                    }
                }
            }
        };
        let data = self.bytes();
        if n * k < 1 << 15 {
            data.chunks(rows_per_task * row_bytes).enumerate().for_each(task);
        } else {
            data.par_chunks(rows_per_task * row_bytes).enumerate().for_each(task);
        }
    }

    /// [`each_output`](Self::each_output) for the interleaved layout: the kernel makes a
    /// group's [`GROUP_ROWS`] outputs for up to [`interleaved::ACTIVATION_ROWS`] rows of x at a time.
    fn each_group(
        &self,
        packed: &[u8],
        kernel: GroupDot,
        x8: &Int8Activations,
        (out, stride): (&mut [f32], usize),
        bias: Option<&[f32]>,
        m: usize,
    ) {
        let (n, k) = (self.rows, self.cols);
        let size = interleaved::group_bytes(self.ty, k);
        let out = SharedOut(out.as_mut_ptr());
        let tasks = TASKS_PER_THREAD * rayon::current_num_threads();
        let groups_per_task = n.div_ceil(GROUP_ROWS).div_ceil(tasks);
        let task = |(t, groups): (usize, &[u8])| {
            let mut sums = [[0.0f32; GROUP_ROWS]; interleaved::ACTIVATION_ROWS];
            for (tile_index, tile) in groups.chunks(TILE_ROWS / GROUP_ROWS * size).enumerate() {
                for i in (0..m).step_by(interleaved::ACTIVATION_ROWS) {
                    let a = interleaved::ACTIVATION_ROWS.min(m - i);
                    let xs: [_; interleaved::ACTIVATION_ROWS] =
                        std::array::from_fn(|ia| x8.row((i + ia).min(m - 1)));
                    for (c, group) in tile.chunks_exact(size).enumerate() {
                        let at = tile_index * TILE_ROWS / GROUP_ROWS + c;
                        if i == 0 {
                            prefetch(groups.get((at + 1) * size..(at + 2) * size));
                        }
                        kernel(group, &xs[..a], &mut sums[..a]);
                        let first = (t * groups_per_task + at) * GROUP_ROWS;
                        for (ia, sums) in sums[..a].iter().enumerate() {
                            // SAFETY: out holds m rows of stride; this task alone writes its group's
                            // rows, of which those past n are padding and not written.
                            unsafe {
                                put(out, stride, bias, (i + ia, first), &sums[..GROUP_ROWS.min(n - first)])
                            };
                        }
                    }
                }
            }
        };
        if n * k < 1 << 15 {
            packed.chunks(groups_per_task * size).enumerate().for_each(task);
        } else {
            packed.par_chunks(groups_per_task * size).enumerate().for_each(task);
        }
    }
}

/// out[i][first + c] = products[c] + bias[first + c]: one task's products with row i of x.
///
/// # Safety
/// `out` holds row i of `stride` floats, `first + products.len() <= stride`, and no other
/// task writes these elements meanwhile.
unsafe fn put(
    out: SharedOut,
    stride: usize,
    bias: Option<&[f32]>,
    (i, first): (usize, usize),
    products: &[f32],
) {
    for (c, &v) in products.iter().enumerate() {
        let j = first + c;
        // SAFETY: the caller's contract.
        unsafe { *out.ptr().add(i * stride + j) = v + bias.map_or(0.0, |b| b[j]) };
    }
}

/// Widens little-endian f16 bytes to f32 a vector at a time (F16C where the CPU has it; the
/// per-block path converts one value per call, which made widening cost more than the product
/// in an f16 prompt on a small model). False, having done nothing, where the bytes are not
/// aligned as u16 or the machine is big-endian.
pub(super) fn widen_f16(bytes: &[u8], out: &mut [f32]) -> bool {
    use half::slice::HalfFloatSliceExt;
    // SAFETY: every bit pattern is a valid f16, and align_to only hands out aligned elements.
    let (before, halves, after) = unsafe { bytes.align_to::<half::f16>() };
    if cfg!(target_endian = "big") || !before.is_empty() || !after.is_empty() {
        return false;
    }
    halves.convert_to_f32_slice(out);
    true
}

fn check_bytes(ty: QuantType, rows: usize, cols: usize, len: usize) -> Result<()> {
    check_shape(ty, rows, cols)?;
    let want = rows * ty.row_bytes(cols);
    if len != want {
        return Err(Error::Invalid(format!(
            "{} matrix of {rows} x {cols} needs {want} bytes, got {len}",
            ty.name()
        )));
    }
    Ok(())
}

fn check_shape(ty: QuantType, rows: usize, cols: usize) -> Result<()> {
    let block = ty.block_weights();
    if !cols.is_multiple_of(block) || rows == 0 {
        return Err(Error::Invalid(format!(
            "a {} matrix needs rows of a multiple of {block} weights; this one is {rows} x {cols}",
            ty.name()
        )));
    }
    Ok(())
}
