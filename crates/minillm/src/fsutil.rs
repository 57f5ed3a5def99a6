//! File helpers shared by every stage that writes what a user owns.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash or a full disk never leaves a half-written file under the real name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_to(path, |tmp| std::fs::File::create(tmp)?.write_all(bytes))
}

/// [`atomic_write`] for a writer that creates the file itself (`write` is given the temporary
/// path): a large checkpoint streamed to disk, with no copy of it built in memory.
pub fn atomic_write_to(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let wrap = |cause| Error::Write { path: path.to_path_buf(), cause };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        wrap(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))
    })?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        write(&tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(wrap)
}

/// Reads a whole file as UTF-8 text, naming the file in the error.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })?;
    String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("minillm-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let err = atomic_write(&dir.join("missing/out.txt"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/out.txt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
