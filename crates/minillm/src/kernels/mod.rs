//! Numeric kernels with nothing model-specific in them.

pub(crate) mod batched;
pub(crate) mod matmul;
pub(crate) mod matvec;
pub(crate) mod simd;
pub(crate) mod vec;

// What `minillm bench` measures the machine with (GEMM GFLOP/s, read bandwidth).
pub use matmul::{Stored, matmul};
pub use simd::sum;

/// One output buffer that parallel tasks write through, each to its own disjoint elements (the
/// columns of one block in `matvec::times_transposed`, the rows of a quantized product).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: every user writes disjoint elements from each task; the buffer outlives the tasks.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// (A method, so that closures capture the whole `SharedOut`, not its bare pointer field.)
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
