//! Fetching a model from the HF hub into the local HF cache, in the layout `huggingface_hub`
//! writes (so either tool finds what the other downloaded): each file's content stored once in
//! `blobs/<etag>`, linked from `snapshots/<commit>/<file>`, and `refs/main` naming the commit.
//!
//! Only what minillm runs is fetched: config.json (checked to be GPT-2 before any weights
//! move), safetensors weights (one file or shards), and the tokenizer and generation files.
//! `HF_HUB_OFFLINE=1` forbids the network; `HF_ENDPOINT` points at a mirror; `HF_TOKEN` is sent
//! for gated or private models (never to the storage host a download is redirected to).
//! Weights (LFS files, which the hub names by their SHA-256) are checked against that hash
//! before they are kept: a download corrupted in transit or by a mirror is refused.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use minillm::io::{hf_config, hub};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use ureq::Agent;

const OPTIONAL_FILES: &[&str] = &[
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Makes sure hub id `spec` is in the HF cache, downloading it when it is not and the network is
/// allowed. Anything that is not a hub id, or exists as a path, is left to the loader.
pub fn ensure_cached(spec: &Path) -> Result<()> {
    let text = spec.to_string_lossy();
    if spec.exists() || spec.extension().is_some_and(|e| e == "gguf") {
        return Ok(());
    }
    let Some(at) = hub::parse_hub_ref(&text) else { return Ok(()) };
    let Some(cache) = hub::cache_dir() else { return Ok(()) };
    if hub::find_in_cache(&text, &cache).is_ok() {
        return Ok(());
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") {
        bail!(
            "'{text}' is not a file or directory here, nor in the HF cache ({}), and HF_HUB_OFFLINE is set, so it was not downloaded",
            hub::repo_dir(&cache, at.id).display()
        );
    }
    Hub::new(at, &cache).fetch()
}

/// What the hub says about one file before it is downloaded.
struct Remote {
    commit: String,
    etag: String,
    url: String,
    size: Option<u64>,
}

struct Hub<'a> {
    /// The model (`at.id`) and the branch, tag or commit asked for (`main` unless the spec
    /// says `@REVISION`).
    at: hub::HubRef<'a>,
    cache: &'a Path,
    endpoint: String,
    token: Option<String>,
    /// Follows no redirects: a redirect's own headers carry the file's identity.
    probe: Agent,
    /// Follows redirects, to the storage host.
    get: Agent,
}

impl<'a> Hub<'a> {
    fn new(at: hub::HubRef<'a>, cache: &'a Path) -> Hub<'a> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        let agent = |redirects: u32| -> Agent {
            Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .timeout_connect(Some(Duration::from_secs(20)))
                .timeout_per_read(Some(Duration::from_secs(60)))
                .user_agent(concat!("minillm/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Hub {
            at,
            cache,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            probe: agent(0),
            get: agent(5),
        }
    }

    fn fetch(&self) -> Result<()> {
        let config =
            self.probe(self.at.revision, "config.json")?.with_context(|| match self.at.revision {
                "main" => format!(
                    "'{}' is neither a file or directory here nor a model on {}",
                    self.at.id, self.endpoint
                ),
                revision => format!(
                    "'{}' is neither a file or directory here nor a model on {} with a revision '{revision}'",
                    self.at.id, self.endpoint
                ),
            })?;
        eprintln!(
            "downloading {} (revision {}) from {} into {}",
            self.at.id,
            self.at.revision,
            self.endpoint,
            self.cache.display()
        );
        let commit = config.commit.clone();
        self.download("config.json", &config)?;
        let config_path = hub::blob_path(self.cache, self.at.id, &config.etag);
        // Refuse architectures and features minillm does not model before fetching gigabytes.
        hf_config::from_json(&std::fs::read_to_string(&config_path)?, Path::new("config.json"))
            .with_context(|| format!("{} cannot run '{}'", env!("CARGO_PKG_NAME"), self.at.id))?;

        let mut files = vec![("config.json".to_string(), config)];
        if let Some(weights) = self.probe(&commit, "model.safetensors")? {
            files.push(("model.safetensors".into(), weights));
        } else if let Some(index) = self.probe(&commit, "model.safetensors.index.json")? {
            self.download("model.safetensors.index.json", &index)?;
            let text = std::fs::read_to_string(hub::blob_path(self.cache, self.at.id, &index.etag))?;
            let doc: serde_json::Value =
                serde_json::from_str(&text).context("model.safetensors.index.json is not JSON")?;
            let mut shards: Vec<String> = doc["weight_map"]
                .as_object()
                .context("model.safetensors.index.json has no weight_map")?
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            shards.sort();
            shards.dedup();
            if shards.iter().any(|s| s.contains('/') || s.contains('\\') || s.starts_with('.')) {
                bail!("model.safetensors.index.json names a shard outside the model");
            }
            files.push(("model.safetensors.index.json".into(), index));
            for shard in shards {
                let remote =
                    self.probe(&commit, &shard)?.with_context(|| format!("shard {shard} is missing"))?;
                files.push((shard, remote));
            }
        } else if self.probe(&commit, "pytorch_model.bin")?.is_some() {
            bail!(
                "'{}' publishes only pytorch_model.bin, a Python pickle: loading one can run any code it contains, so minillm does not download it. Convert it once where you trust it (`python -c \"from transformers import AutoModelForCausalLM as M; M.from_pretrained('{0}').save_pretrained('DIR', safe_serialization=True)\"`) and pass DIR",
                self.at.id
            );
        } else {
            bail!("'{}' has no model.safetensors (or safetensors shards) to download", self.at.id);
        }
        for name in OPTIONAL_FILES {
            if let Some(remote) = self.probe(&commit, name)? {
                files.push((name.to_string(), remote));
            }
        }
        for (name, remote) in &files {
            self.download(name, remote)?;
        }
        // Linked and referenced only once every file is here: an interrupted download never
        // looks like a complete snapshot.
        for (name, remote) in &files {
            hub::link_snapshot(self.cache, self.at.id, &commit, name, &remote.etag)?;
        }
        hub::set_ref(self.cache, self.at, &commit)?;
        Ok(())
    }

    /// Asks the hub about `file` at `revision`; `None` when it does not exist.
    fn probe(&self, revision: &str, file: &str) -> Result<Option<Remote>> {
        let mut url = format!("{}/{}/resolve/{revision}/{file}", self.endpoint, self.at.id);
        // Renamed repositories (gpt2 -> openai-community/gpt2) answer with a redirect on the
        // same host; a redirect elsewhere is the storage host, where the download goes.
        for _ in 0..5 {
            let mut request = self.probe.head(&url);
            if let Some(token) = &self.token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let response = request.call().map_err(|e| self.unreachable(e))?;
            let status = response.status().as_u16();
            let header =
                |k: &str| response.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
            match status {
                404 => return Ok(None),
                401 | 403 => bail!(
                    "{} refused access to '{}' (HTTP {status}): the model is gated or private; set HF_TOKEN to a token that may read it",
                    self.endpoint,
                    self.at.id
                ),
                300..=399 => {
                    let location = header("location").context("a redirect without a Location")?;
                    if location.starts_with('/') {
                        url = format!("{}{location}", self.endpoint);
                        continue;
                    }
                    return Ok(Some(self.remote(&response, location)?));
                }
                200..=299 => return Ok(Some(self.remote(&response, url)?)),
                _ => bail!("{} answered HTTP {status} for {file} of '{}'", self.endpoint, self.at.id),
            }
        }
        bail!("too many redirects for {file} of '{}'", self.at.id)
    }

    fn remote(&self, response: &ureq::http::Response<ureq::Body>, url: String) -> Result<Remote> {
        let header = |k: &str| response.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let commit = header("x-repo-commit").context("the hub's answer names no commit (X-Repo-Commit)")?;
        let etag =
            header("x-linked-etag").or_else(|| header("etag")).context("the hub's answer has no ETag")?;
        let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
        let safe =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !safe(&commit) || !safe(&etag) {
            bail!("the hub's answer has a malformed commit or ETag");
        }
        let size = header("x-linked-size").or_else(|| header("content-length")).and_then(|s| s.parse().ok());
        Ok(Remote { commit, etag, url, size })
    }

    /// Stores `remote` as its blob unless it is already there, through a temporary file.
    fn download(&self, name: &str, remote: &Remote) -> Result<()> {
        let blob = hub::blob_path(self.cache, self.at.id, &remote.etag);
        if blob.is_file() {
            return Ok(());
        }
        let blobs = blob.parent().expect("blobs/");
        std::fs::create_dir_all(blobs).with_context(|| format!("cannot write {}", blobs.display()))?;
        let mut request = self.get.get(&remote.url);
        // The token is for the hub only, not for the storage host its redirects point at.
        if let Some(token) = self.token.as_ref().filter(|_| remote.url.starts_with(&self.endpoint)) {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        if status != 200 {
            bail!("{} answered HTTP {status} when downloading {name}", self.endpoint);
        }
        let size = remote.size.or(response.body().content_length());
        let bar = ProgressBar::new(size.unwrap_or(0)).with_message(name.to_string());
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .expect("a valid template"),
        );
        let partial = blob.with_extension("incomplete");
        let mut hash = Sha256::new();
        // A failed write (a full disk, a read-only cache) names the file; what was written is
        // removed below, and the cache holds no half blob.
        let cannot_write = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", partial.display());
        let written = (|| -> Result<u64> {
            let mut file = std::fs::File::create(&partial).map_err(cannot_write)?;
            let mut reader = response.body_mut().as_reader();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = reader.read(&mut buf).with_context(|| format!("the download of {name} broke off"))?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).map_err(cannot_write)?;
                hash.update(&buf[..n]);
                total += n as u64;
                bar.set_position(total);
            }
            file.sync_all().map_err(cannot_write)?;
            Ok(total)
        })();
        bar.finish_and_clear();
        let got = format!("{:x}", hash.finalize());
        let result = written.and_then(|total| match size {
            Some(want) if want != total => bail!("{name}: received {total} bytes of {want}"),
            _ if is_sha256(&remote.etag) && got != remote.etag => bail!(
                "the download of {name} does not match the SHA-256 the hub names it by ({}), its content hashes to {got}: it was corrupted on the way; nothing was kept",
                remote.etag
            ),
            _ => std::fs::rename(&partial, &blob).map_err(cannot_write),
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "'{}' is not a file or directory here, nor in the HF cache, and {} cannot be reached to download it as a hub id ({e}); check the path, or fetch the model where there is network",
            self.at.id,
            self.endpoint
        )
    }
}

/// Whether an ETag is a SHA-256 (64 hex digits): the hub's name for an LFS file (weights). Small
/// files carry a git blob id (40 digits), which is not a hash of the content alone.
fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}
