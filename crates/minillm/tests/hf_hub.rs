//! Models from an HF hub cache built here from the fixture model, sharded checkpoints, and the
//! refusal of pickles.

mod common;

use minillm::io::{hub, load_model};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny")
}

/// The error of a load that must fail.
fn load_error(dir: &Path) -> String {
    match load_model(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("hub-{name}"))
}

/// A cache holding the fixture as `repo` at commit `rev`, as huggingface_hub lays it out
/// (files in blobs/, linked from the snapshot).
fn cache_with(cache: &Path, repo: &str, rev: &str, refs_main: bool) -> PathBuf {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = root.join("snapshots").join(rev);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    for name in ["config.json", "model.safetensors"] {
        let blob = root.join("blobs").join(format!("{rev}-{name}"));
        std::fs::copy(fixture().join(name), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(name)).unwrap();
    }
    if refs_main {
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), rev).unwrap();
    }
    snapshot
}

#[test]
fn hub_ids_resolve_through_refs_main_to_the_snapshot() {
    let cache = temp_dir("cache");
    let snapshot = cache_with(&cache, "acme/tiny-gpt", "0123abcd", true);
    cache_with(&cache, "acme/tiny-gpt", "older", false); // another snapshot: refs/main decides
    assert_eq!(hub::find_in_cache("acme/tiny-gpt", &cache).unwrap(), snapshot);
    let want = load_model(&fixture()).unwrap();
    assert_eq!(load_model(&snapshot).unwrap().params, want.params);
    // An id without an organisation, and a cache without refs/main but one snapshot.
    let solo = cache_with(&cache, "tiny", "feed", false);
    assert_eq!(hub::find_in_cache("tiny", &cache).unwrap(), solo);
    // Two snapshots and no refs/main: ambiguous, said so.
    cache_with(&cache, "tiny", "beef", false);
    let err = hub::find_in_cache("tiny", &cache).unwrap_err().to_string();
    assert!(err.contains("2 snapshots and no refs/main"), "{err}");
    let err = hub::find_in_cache("acme/absent", &cache).unwrap_err().to_string();
    assert!(err.contains("models--acme--absent") && err.contains("HF cache holds no copy"), "{err}");
    for (id, ok) in [
        ("gpt2", true),
        ("openai-community/gpt2", true),
        ("a/b/c", false),
        ("../x", false),
        ("", false),
        ("a/b@v1.0", true),
        ("a/b@refs/pr/1", true),
        ("a/b@", false),
        ("a/b@../../etc", false),
        ("a/b@x/../y", false),
        ("a/b@/abs", false),
        ("a@b@c", false),
    ] {
        assert_eq!(hub::is_hub_id(id), ok, "{id}");
    }
}

/// `ID@REVISION` finds the snapshot a branch or tag names through `refs/REVISION` (as
/// huggingface_hub records it), and a commit hash names its snapshot directly.
#[test]
fn revisions_resolve_through_their_refs_or_as_commits() {
    let cache = temp_dir("revisions");
    let main = cache_with(&cache, "acme/tiny", "0123abcd", true);
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let v1 = cache_with(&cache, "acme/tiny", commit, false);
    let refs = cache.join("models--acme--tiny/refs");
    std::fs::create_dir_all(refs.join("refs/pr")).unwrap();
    std::fs::write(refs.join("v1"), commit).unwrap();
    std::fs::write(refs.join("refs/pr/1"), commit).unwrap();
    assert_eq!(hub::find_in_cache("acme/tiny", &cache).unwrap(), main);
    assert_eq!(hub::find_in_cache("acme/tiny@main", &cache).unwrap(), main);
    assert_eq!(hub::find_in_cache("acme/tiny@v1", &cache).unwrap(), v1);
    assert_eq!(hub::find_in_cache("acme/tiny@refs/pr/1", &cache).unwrap(), v1);
    // A cache holding only another revision does not hold main, though it has one snapshot.
    let only_v1 = cache_with(&cache, "acme/other", commit, false);
    std::fs::create_dir_all(cache.join("models--acme--other/refs")).unwrap();
    std::fs::write(cache.join("models--acme--other/refs/v1"), commit).unwrap();
    assert_eq!(hub::find_in_cache("acme/other@v1", &cache).unwrap(), only_v1);
    let err = hub::find_in_cache("acme/other", &cache).unwrap_err().to_string();
    assert!(err.contains("holds no copy"), "{err}");
    assert_eq!(hub::find_in_cache(&format!("acme/tiny@{commit}"), &cache).unwrap(), v1);
    let err = hub::find_in_cache("acme/tiny@v2", &cache).unwrap_err().to_string();
    assert!(err.contains("holds no copy of it at revision 'v2'"), "{err}");
    let absent = "0000000000000000000000000000000000000000";
    let err = hub::find_in_cache(&format!("acme/tiny@{absent}"), &cache).unwrap_err().to_string();
    assert!(err.contains(&format!("at revision '{absent}'")), "{err}");
    // A ref that holds something other than a commit is not followed as a path.
    std::fs::write(refs.join("bad"), "../../../etc").unwrap();
    let err = hub::find_in_cache("acme/tiny@bad", &cache).unwrap_err().to_string();
    assert!(err.contains("does not hold a commit hash"), "{err}");
}

#[test]
fn sharded_checkpoints_load_like_one_file() {
    let dir = temp_dir("shards");
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, half) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        let tensors: Vec<(String, safetensors::tensor::TensorView)> =
            half.iter().map(|n| (n.to_string(), file.tensor(n).unwrap())).collect();
        safetensors::serialize_to_file(tensors, None, &dir.join(&shard)).unwrap();
        for n in half {
            weight_map.insert(n.to_string(), shard.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(load_model(&dir).unwrap().params, load_model(&fixture()).unwrap().params);
    // A missing shard and an index that points outside the directory are refused.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert!(load_error(&dir).contains("model-00002-of-00002.safetensors"));
    let escape = serde_json::json!({"weight_map": {"wte.weight": "../elsewhere.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), escape.to_string()).unwrap();
    assert!(load_error(&dir).contains("outside its directory"));
}

#[test]
fn pickled_checkpoints_are_refused_with_the_way_to_convert() {
    let dir = temp_dir("pickle");
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04 not really").unwrap();
    let err = load_error(&dir);
    assert!(err.contains("pickle") && err.contains("safe_serialization=True"), "{err}");
}

/// HF checkpoints saved with `torch_dtype=float16` or `bfloat16` load with their matrices kept in
/// 16 bits (f16 blocks, no f32 copy): f16 exactly, bf16 exactly but for values under f16's
/// smallest normal, which move by at most half its subnormal step.
#[test]
fn half_precision_checkpoints_stay_16_bit() {
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    // GPT-2, and the LLaMA family (q, k and v joined into one matrix; an untied head, a tied one).
    for name in ["gpt2_tiny", "llama_tiny", "qwen2_tiny"] {
        let source = fixture().join("..").join(name);
        let reference = load_model(&source).unwrap();
        let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let narrowed = |dtype: Dtype, round: fn(f32) -> [u8; 2]| -> Vec<u8> {
            let data: Vec<(String, Vec<usize>, Vec<u8>)> = file
                .tensors()
                .into_iter()
                .map(|(name, view)| {
                    let halves = view
                        .data()
                        .chunks_exact(4)
                        .flat_map(|c| round(f32::from_le_bytes(c.try_into().unwrap())))
                        .collect();
                    (name, view.shape().to_vec(), halves)
                })
                .collect();
            let views: Vec<(String, TensorView)> = data
                .iter()
                .map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap()))
                .collect();
            safetensors::serialize(views, None).unwrap()
        };
        type Narrow = fn(f32) -> [u8; 2];
        type Widen = fn(f32) -> f32;
        let cases: [(Dtype, Narrow, Widen); 2] = [
            (Dtype::F16, |x| half::f16::from_f32(x).to_le_bytes(), |x| half::f16::from_f32(x).to_f32()),
            (Dtype::BF16, |x| half::bf16::from_f32(x).to_le_bytes(), |x| half::bf16::from_f32(x).to_f32()),
        ];
        for (dtype, round, widened) in cases {
            let dir = temp_dir(&format!("{dtype:?}"));
            std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
            std::fs::write(dir.join("model.safetensors"), narrowed(dtype, round)).unwrap();
            let model = load_model(&dir).unwrap();
            assert_eq!(model.weight_type(), "f16", "{name} {dtype:?}");
            // (An untied model's token embedding is widened to f32: 7/10 of f32's bytes, not 6/10.)
            assert!(
                model.weight_bytes() < reference.weight_bytes() * 7 / 10,
                "{name} {dtype:?}: no f32 copy"
            );
            let want: Vec<f32> = reference.params.iter().map(|&x| widened(x)).collect();
            let got = model.full_params();
            let worst = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let bound = if dtype == Dtype::F16 { 0.0 } else { 2f32.powi(-25) };
            assert!(worst <= bound, "{name} {dtype:?}: weights moved by {worst}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
