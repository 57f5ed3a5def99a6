//! Numeric kernels with nothing model-specific in them.

pub mod matmul;
pub mod matvec;
pub mod simd;
pub mod vec;
