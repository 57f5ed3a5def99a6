//! Models by HF hub id (`gpt2`, `openai-community/gpt2`), found in the local HF cache, laid out as
//! the `huggingface_hub` library writes it:
//!
//! ```text
//! $HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
//!   models--openai-community--gpt2/
//!     refs/main                 the commit hash that `main` pointed at when downloaded
//!     snapshots/<hash>/         the files of that commit (links into blobs/)
//! ```

use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, read_text};
use std::path::{Path, PathBuf};

/// Where the HF cache is, by the same rules as `huggingface_hub`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|home| home.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|home| home.join(".cache/huggingface/hub")))
}

/// Whether `spec` has the shape of a hub id: `name` or `org/name`, of letters, digits, `-`, `_`
/// and `.`.
pub fn is_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| ok(p))
}

/// The cache directory of hub model `id`.
pub fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(format!("models--{}", id.replace('/', "--")))
}

/// Where the file whose hub ETag is `etag` is stored (each distinct content once).
pub fn blob_path(cache: &Path, id: &str, etag: &str) -> PathBuf {
    repo_dir(cache, id).join("blobs").join(etag)
}

/// Makes `file` of the snapshot at `commit` point at its blob, as `huggingface_hub` does (a
/// relative symbolic link; a copy where there are no links).
pub fn link_snapshot(cache: &Path, id: &str, commit: &str, file: &str, etag: &str) -> Result<()> {
    let snapshot = repo_dir(cache, id).join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).map_err(|cause| Error::Write { path: snapshot.clone(), cause })?;
    let link = snapshot.join(file);
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(Path::new("../../blobs").join(etag), &link);
    #[cfg(not(unix))]
    let made = std::fs::copy(blob_path(cache, id, etag), &link).map(|_| ());
    made.map_err(|cause| Error::Write { path: link, cause })
}

/// Records `commit` as what `main` points at.
pub fn set_main(cache: &Path, id: &str, commit: &str) -> Result<()> {
    let refs = repo_dir(cache, id).join("refs");
    std::fs::create_dir_all(&refs).map_err(|cause| Error::Write { path: refs.clone(), cause })?;
    atomic_write(&refs.join("main"), commit.as_bytes())
}

/// The snapshot directory of hub model `id` at `main` in the cache at `cache`.
pub fn find_in_cache(id: &str, cache: &Path) -> Result<PathBuf> {
    let repo = repo_dir(cache, id);
    let not_cached = || {
        Error::Invalid(format!(
            "'{id}' is not a file or directory here, and the HF cache holds no copy of it (looked for {}; set HF_HUB_CACHE or HF_HOME if your cache is elsewhere)",
            repo.display()
        ))
    };
    if !repo.is_dir() {
        return Err(not_cached());
    }
    let refs = repo.join("refs/main");
    let snapshots = repo.join("snapshots");
    let snapshot = if refs.is_file() {
        snapshots.join(read_text(&refs)?.trim())
    } else {
        // No refs/main (a cache filled by hand or by revision): the only snapshot, if just one.
        let mut found: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .map_err(|cause| Error::Read { path: snapshots.clone(), cause })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        match found.len() {
            1 => found.remove(0),
            0 => return Err(not_cached()),
            n => {
                return Err(Error::Invalid(format!(
                    "{} holds {n} snapshots and no refs/main to choose between them; pass the snapshot directory itself",
                    repo.display()
                )));
            }
        }
    };
    if !snapshot.join("config.json").is_file() {
        return Err(Error::Invalid(format!(
            "the cached copy of '{id}' at {} has no config.json; download it again",
            snapshot.display()
        )));
    }
    Ok(snapshot)
}
