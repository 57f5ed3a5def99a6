//! Model files mapped into memory rather than read into it.
//!
//! A mapped file's pages come from the OS page cache on first touch, so loading costs no copy:
//! quantized blocks in a GGUF file are used where they lie, and several processes serving one
//! file share its pages. Tensors that must be converted (an f32 tensor into the flat buffer, an
//! HF Conv1D matrix transposed into rows) are read once, and their pages handed back as soon as
//! they are, so loading never holds the file and its conversion at once.

use crate::error::{Error, Result};
use memmap2::{Mmap, UncheckedAdvice};
use std::path::{Path, PathBuf};

pub struct Mapped {
    map: Mmap,
    pub path: PathBuf,
}

impl Mapped {
    pub fn open(path: &Path) -> Result<Mapped> {
        let read = |cause| Error::Read { path: path.to_path_buf(), cause };
        let file = std::fs::File::open(path).map_err(read)?;
        // SAFETY: the map is read-only. Were the file changed on disk while mapped, the weights
        // would change under the model (the contract llama.cpp's and safetensors' loaders take
        // too); nothing here writes through the map.
        let map = unsafe { Mmap::map(&file) }.map_err(read)?;
        Ok(Mapped { map, path: path.to_path_buf() })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Hands the pages under `bytes` (a part of this file) back to the OS: they were read and
    /// are not needed again. Bytes outside the file are ignored.
    pub fn release(&self, bytes: &[u8]) {
        let start = (bytes.as_ptr() as usize).wrapping_sub(self.map.as_ptr() as usize);
        if bytes.is_empty() || start >= self.map.len() || start + bytes.len() > self.map.len() {
            return;
        }
        // SAFETY: DONTNEED on a read-only file mapping drops the pages from this process; a
        // later read faults them in again from the file, unchanged. Only a private *written*
        // page would lose data, and this map is never written. The advice is a hint: if it
        // fails, the pages stay, which costs memory, not correctness.
        let _ = unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, bytes.len()) };
    }
}

impl crate::quant::SharedBytes for Mapped {
    fn release(&self, bytes: &[u8]) {
        Mapped::release(self, bytes)
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}
