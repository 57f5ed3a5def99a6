//! Damaged or mismatched model files: each gets one clear error naming the file or tensor,
//! never a panic.

mod common;

use minillm::io::load_model;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny")
}

/// A model directory holding the fixture's config.json (edited by `config`) and `weights`.
fn model_with(name: &str, weights: &[u8], config: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let dir = common::temp_dir(&format!("malformed-{name}"));
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap();
    config(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    dir
}

fn error_of(dir: &Path) -> String {
    match load_model(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The fixture's weights with one tensor replaced by `tensor` (name, dtype, shape, bytes).
fn with_tensor(name: &str, dtype: safetensors::Dtype, shape: Vec<usize>, data: &[u8]) -> Vec<u8> {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().filter(|(n, _)| n != name).collect();
    tensors.push((name.to_string(), safetensors::tensor::TensorView::new(dtype, shape, data).unwrap()));
    safetensors::serialize(tensors, None).unwrap()
}

#[test]
fn damaged_and_mismatched_checkpoints_are_explained() {
    let good = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let same = |_: &mut serde_json::Value| {};

    let err = error_of(&model_with("truncated", &good[..good.len() / 2], same));
    assert!(err.contains("model.safetensors") && err.contains("not a safetensors file"), "{err}");

    // A header that claims more bytes than the file has.
    let mut past_end = good.clone();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap());
    past_end[..8].copy_from_slice(&(header_len + 1_000_000).to_le_bytes());
    let err = error_of(&model_with("past-end", &past_end, same));
    assert!(err.contains("not a safetensors file"), "{err}");

    let err = error_of(&model_with("garbage", b"hello", same));
    assert!(err.contains("not a safetensors file"), "{err}");

    let err = error_of(&model_with("shape", &good, |c| c["n_embd"] = 32.into()));
    assert!(err.contains("has shape") && err.contains("the configuration needs"), "{err}");

    let err = error_of(&model_with("missing-field", &good, |c| {
        c.as_object_mut().unwrap().remove("n_layer");
    }));
    assert!(err.contains("config.json") && err.contains("n_layer"), "{err}");

    let err = error_of(&model_with("epsilon", &good, |c| c["layer_norm_epsilon"] = 1e-6.into()));
    assert!(err.contains("layer_norm_epsilon is 0.000001"), "{err}");

    let err = error_of(&model_with("architecture", &good, |c| c["model_type"] = "bert".into()));
    assert!(err.contains("model_type is 'bert'"), "{err}");

    // A tensor in a type minillm does not read (f64 here), and one that is missing.
    let ln = "transformer.ln_f.weight";
    let f64s: Vec<u8> = (0..64).flat_map(|_| 1.0f64.to_le_bytes()).collect();
    let err =
        error_of(&model_with("dtype", &with_tensor(ln, safetensors::Dtype::F64, vec![64], &f64s), same));
    assert!(err.contains(ln) && err.contains("F64") && err.contains("reads F32, F16 and BF16"), "{err}");
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let without: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().filter(|(n, _)| n != ln).collect();
    let err = error_of(&model_with("missing-tensor", &safetensors::serialize(without, None).unwrap(), same));
    assert!(err.contains(ln) && err.contains("missing"), "{err}");
}

/// Sizes a damaged or hostile config.json may claim: each is refused by name before anything
/// is allocated (a billion layers once aborted the process asking for 240 GB), and no error
/// shows a Rust debug dump of the configuration.
#[test]
fn absurd_sizes_in_config_json_are_refused_before_allocation() {
    let good = std::fs::read(fixture().join("model.safetensors")).unwrap();
    for (key, value, says) in [
        (
            "n_layer",
            1_000_000_000u64,
            "n_layer (layers) is 1000000000; it must be at least 1 and at most 1024",
        ),
        ("n_layer", 0, "n_layer (layers) is 0"),
        ("n_head", 0, "n_head (attention heads) is 0"),
        ("n_embd", 0, "n_embd (width) is 0"),
        ("vocab_size", 0, "vocab_size (vocabulary) is 0"),
        ("n_positions", 1_000_000_000_000, "block_size (context) is 1000000000000"),
        ("vocab_size", 100_000_000_000, "vocab_size (vocabulary) is 100000000000"),
    ] {
        let err = error_of(&model_with(&format!("size-{key}-{value}"), &good, |c| c[key] = value.into()));
        assert!(err.contains("config.json") && err.contains(says), "{key} = {value}: {err}");
        assert!(!err.contains("ModelConfig {"), "{err}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 64, failure_persistence: None, ..Default::default() })]
    /// Any whole numbers in config.json's size fields: the model loads (only the fixture's own
    /// shape can) or the error is a sentence; never a panic, an abort or a huge allocation.
    #[test]
    fn any_sizes_in_config_json_load_or_are_explained(
        sizes in proptest::collection::vec(proptest::prop_oneof![0u64..4, 1u64..200, proptest::num::u64::ANY], 5)
    ) {
        let good = std::fs::read(fixture().join("model.safetensors")).unwrap();
        let keys = ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"];
        let dir = model_with("size-any", &good, |c| {
            for (key, &v) in keys.iter().zip(&sizes) {
                c[*key] = v.into();
            }
        });
        if let Err(e) = load_model(&dir) {
            let text = e.to_string();
            proptest::prop_assert!(!text.contains(" { ") && !text.is_empty(), "{}", text);
        }
    }
}

/// No message formats a value with Rust's `Debug` (`Some("x")`, `Dtype::F64`, `[64, 64]` by
/// accident): values from outside go through `error::quoted` and shapes through
/// `error::shape`. Only assertions, which speak to developers, may use `{:?}`.
#[test]
fn no_message_formats_a_debug_form() {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    sources(&crates.join("minillm/src"), &mut files);
    sources(&crates.join("minillm-cli/src"), &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let debug_forms: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| {
                    (l.contains(":?}") || l.contains(":#?}"))
                        && !l.contains("assert")
                        && !l.contains("unreachable!")
                })
                .map(|(i, l)| format!("{}:{}: {}", f.display(), i + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(debug_forms.is_empty(), "messages formatted with Debug:\n{}", debug_forms.join("\n"));
}
