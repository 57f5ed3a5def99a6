//! Downloading a model by hub id, against a small HTTP server on loopback that answers the way
//! huggingface.co does (HEAD/GET on /REPO/resolve/REV/FILE, X-Repo-Commit, ETag, weights behind a
//! redirect to a storage host carrying X-Linked-Etag, renamed repositories redirected).

mod common;

use common::fake_hub::{COMMIT, Repos, V1_COMMIT, files, serve, sha256};
use common::fixture;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn minillm(dir: &Path, hub: &str, args: &[&str], offline: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minillm"));
    cmd.args(args)
        .current_dir(dir)
        .env("HF_HUB_CACHE", dir.join("cache"))
        .env("HF_ENDPOINT", hub)
        .env("HF_TOKEN", "secret")
        .env_remove("HF_HUB_OFFLINE");
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd.output().unwrap()
}

fn greedy(model: &str) -> Vec<String> {
    vec!["generate", "--model", model, "It was the", "--temperature", "0", "--max-new-tokens", "6", "--json"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_hub_id_downloads_into_the_hf_cache_then_runs_offline() {
    let dir = common::temp_dir("hub-download");
    let mut llama = files(&["config.json", "model.safetensors"]);
    // A real LLaMA-family config.json (SmolLM2-135M's, as transformers writes it), made a
    // mixture of experts, which minillm does not model.
    let smollm = common::fixture().join("../llama_presets/smollm2-135m.json");
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(smollm).unwrap()).unwrap();
    doc["config"]["num_local_experts"] = 8.into();
    llama.insert("config.json".into(), doc["config"].to_string().into_bytes());
    let repos: Repos = [
        (
            "acme/tiny".to_string(),
            files(&["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]),
        ),
        ("acme/llama".to_string(), llama),
        (
            "acme/corrupt".to_string(),
            files(&["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]),
        ),
        ("acme/pickle".to_string(), {
            let mut f = files(&["config.json"]);
            f.insert("pytorch_model.bin".into(), b"pickle".to_vec());
            f
        }),
    ]
    .into();
    let hub = serve(repos);
    let local = fixture().to_string_lossy().into_owned();
    let want = stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy(&local)), false))["tokens"].clone();

    // The first use downloads; the answer equals the local model's.
    let got = stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny")), false));
    assert_eq!(got["tokens"], want);
    let repo = dir.join("cache/models--acme--tiny");
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let link = repo.join("snapshots").join(COMMIT).join("model.safetensors");
    let weights = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let blob = format!("../../blobs/{}", sha256(&weights));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(&blob));
    assert_eq!(std::fs::read(&link).unwrap(), std::fs::read(fixture().join("model.safetensors")).unwrap());
    assert!(repo.join("blobs/etag-config-json").is_file());
    {
        let log = hub.log.lock().unwrap();
        let config_at =
            log.iter().position(|l| l.starts_with("GET /acme/tiny/resolve/main/config.json")).unwrap();
        let weights_at = log.iter().position(|l| l.starts_with("GET /storage/")).unwrap();
        assert!(config_at < weights_at, "config.json is checked before weights move: {log:?}");
        assert!(
            log.iter().filter(|l| l.contains("/resolve/")).all(|l| l.ends_with("true")),
            "token sent to the hub"
        );
        assert!(
            log.iter().filter(|l| l.contains("/storage/")).all(|l| l.ends_with("false")),
            "token leaked: {log:?}"
        );
    }

    // Offline, from the cache; and the cache alone, with the hub gone.
    let requests = hub.log.lock().unwrap().len();
    assert_eq!(stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny")), true))["tokens"], want);
    assert_eq!(
        stdout_json(&minillm(&dir, "http://127.0.0.1:9", &as_strs(&greedy("acme/tiny")), false))["tokens"],
        want
    );
    assert_eq!(hub.log.lock().unwrap().len(), requests, "a cached model went back to the network");

    // A revision (`ID@REV`: a branch, a tag or a commit) is downloaded beside main, recorded
    // in refs/ as huggingface_hub does, and found offline by either name.
    assert_eq!(
        stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny@v1")), false))["tokens"],
        want
    );
    assert_eq!(std::fs::read_to_string(repo.join("refs/v1")).unwrap(), V1_COMMIT);
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT, "main moved");
    assert!(hub.log.lock().unwrap().iter().any(|l| l.starts_with("HEAD /acme/tiny/resolve/v1/config.json")));
    assert!(repo.join("snapshots").join(V1_COMMIT).join("model.safetensors").is_file());
    for spec in ["acme/tiny@v1", &format!("acme/tiny@{V1_COMMIT}")] {
        assert_eq!(
            stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy(spec)), true))["tokens"],
            want,
            "{spec}"
        );
    }
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny@v2")), false));
    assert!(err.contains("with a revision 'v2'"), "{err}");
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny@v2")), true));
    assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");
    // A revision cannot name a path: `..` is not a hub id, so nothing is fetched or read.
    let requests = hub.log.lock().unwrap().len();
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny@../../etc")), false));
    assert!(err.contains("is not a model"), "{err}");
    assert_eq!(hub.log.lock().unwrap().len(), requests);

    // A renamed repository follows the hub's redirect.
    assert_eq!(stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy("tiny")), false))["tokens"], want);

    // Each failure is one clear line, and leaves no snapshot behind.
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/absent")), true));
    assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/absent")), false));
    assert!(err.contains("neither a file or directory here nor a model on"), "{err}");
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/gated")), false));
    assert!(err.contains("gated or private") && err.contains("HF_TOKEN"), "{err}");
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/llama")), false));
    assert!(err.contains("cannot run 'acme/llama'") && err.contains("mixture of experts"), "{err}");
    assert!(
        !hub.log.lock().unwrap().iter().any(|l| l.contains("acme~llama")),
        "the weights of a model minillm cannot run were downloaded"
    );
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/pickle")), false));
    assert!(err.contains("pickle") && err.contains("safe_serialization"), "{err}");
    let err = stderr(&minillm(&dir, "http://127.0.0.1:9", &as_strs(&greedy("acme/other")), false));
    assert!(err.contains("http://127.0.0.1:9 cannot be reached"), "{err}");
    let err = stderr(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/corrupt")), false));
    assert!(err.contains("does not match the SHA-256") && err.contains("nothing was kept"), "{err}");
    let blobs = dir.join("cache/models--acme--corrupt/blobs");
    let kept: Vec<_> = std::fs::read_dir(&blobs).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(kept.iter().all(|f| !f.to_string_lossy().starts_with(&sha256(&weights)[..8])), "{kept:?}");
    for id in ["llama", "pickle", "other", "corrupt"] {
        assert!(!dir.join(format!("cache/models--acme--{id}/refs")).exists(), "{id} looks downloaded");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_llama_family_model_downloads_by_hub_id_and_runs_as_the_local_directory_does() {
    // The tiny Llama transformers wrote (GQA, untied head, llama3 rope scaling, a tokenizer that
    // puts its bos first), served as a hub repository.
    let dir = common::temp_dir("hub-download-llama");
    let local = fixture().join("../llama_tiny");
    let repo: HashMap<String, Vec<u8>> =
        ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(local.join(n)).unwrap()))
            .collect();
    let hub = serve([("acme/tiny-llama".to_string(), repo)].into());
    let want = stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy(&local.to_string_lossy())), false));
    let got = stdout_json(&minillm(&dir, &hub.url, &as_strs(&greedy("acme/tiny-llama")), false));
    assert_eq!(got["tokens"], want["tokens"]);
    assert_eq!(got["text"], want["text"]);
    assert!(dir.join("cache/models--acme--tiny-llama/refs/main").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
