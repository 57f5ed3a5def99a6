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

/// A hub model and the revision asked for: `org/name` is its `main` branch, `org/name@REV` a
/// branch, tag or commit (what `huggingface_hub` calls `revision`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HubRef<'a> {
    pub id: &'a str,
    pub revision: &'a str,
}

impl HubRef<'_> {
    /// Whether the revision is a commit hash, which names its snapshot directly.
    pub fn is_commit(&self) -> bool {
        self.revision.len() == 40 && self.revision.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// Reads `spec` as a hub id with an optional `@REVISION`; `None` when it has not that shape.
/// Ids are `name` or `org/name`, of letters, digits, `-`, `_` and `.`; revisions are the same
/// characters and `/` (`refs/pr/1`). Neither can start with `.` or hold an empty part, so no
/// id or revision names a path outside the cache.
pub fn parse_hub_ref(spec: &str) -> Option<HubRef<'_>> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let id_parts: Vec<&str> = id.split('/').collect();
    let id_ok = (1..=2).contains(&id_parts.len()) && id_parts.iter().all(|p| part_ok(p));
    let revision_ok = revision.len() <= 256 && revision.split('/').all(part_ok);
    (id_ok && revision_ok).then_some(HubRef { id, revision })
}

/// Whether `spec` has the shape of a hub id (see [`parse_hub_ref`]).
pub fn is_hub_id(spec: &str) -> bool {
    parse_hub_ref(spec).is_some()
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

/// Records `commit` as what the branch or tag `at.revision` points at (`refs/<revision>`); a
/// commit hash needs no record, as `huggingface_hub` does it.
pub fn set_ref(cache: &Path, at: HubRef, commit: &str) -> Result<()> {
    if at.is_commit() {
        return Ok(());
    }
    let file = repo_dir(cache, at.id).join("refs").join(at.revision);
    let dir = file.parent().expect("refs/");
    std::fs::create_dir_all(dir).map_err(|cause| Error::Write { path: dir.to_path_buf(), cause })?;
    atomic_write(&file, commit.as_bytes())
}

/// The snapshot directory of hub model `spec` (an id, `@REVISION` optional: `main` without it)
/// in the cache at `cache`.
pub fn find_in_cache(spec: &str, cache: &Path) -> Result<PathBuf> {
    let at = parse_hub_ref(spec).ok_or_else(|| Error::Invalid(format!("'{spec}' is not a hub id")))?;
    let repo = repo_dir(cache, at.id);
    let not_cached = || {
        let which =
            if at.revision == "main" { String::new() } else { format!(" at revision '{}'", at.revision) };
        Error::Invalid(format!(
            "'{}' is not a file or directory here, and the HF cache holds no copy of it{which} (looked for {}; set HF_HUB_CACHE or HF_HOME if your cache is elsewhere)",
            at.id,
            repo.display()
        ))
    };
    if !repo.is_dir() {
        return Err(not_cached());
    }
    let refs = repo.join("refs").join(at.revision);
    let snapshots = repo.join("snapshots");
    let snapshot = if refs.is_file() {
        let commit = read_text(&refs)?;
        let commit = commit.trim();
        if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::format(&refs, "does not hold a commit hash"));
        }
        snapshots.join(commit)
    } else if at.is_commit() {
        snapshots.join(at.revision)
    } else if at.revision != "main" || repo.join("refs").is_dir() {
        // A cache that records other revisions but not main does not hold main: its one
        // snapshot is some other revision's.
        return Err(not_cached());
    } else {
        // No refs at all (a cache filled by hand): the only snapshot, if just one.
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
    if !snapshot.is_dir() {
        return Err(not_cached());
    }
    if !snapshot.join("config.json").is_file() {
        return Err(Error::Invalid(format!(
            "the cached copy of '{spec}' at {} has no config.json; download it again",
            snapshot.display()
        )));
    }
    Ok(snapshot)
}
