//! `minillm model info` on the LLaMA family: presets, a downloaded model's directory (described
//! from its config.json, weights unread), and the list of presets.

mod common;

use common::{failure, minillm, ok};

#[test]
fn a_llama_directory_is_described_from_its_config_without_reading_weights() {
    let dir = common::temp_dir("model-info-llama");
    let fixture = common::fixture().join("../llama_presets/tinyllama-1.1b.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let model = dir.join("tinyllama");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), doc["config"].to_string()).unwrap();
    std::fs::write(model.join("model.safetensors"), b"weights that are never read").unwrap();
    let out = ok(&minillm(&dir, &["model", "info", "--model", "tinyllama", "--context", "2048"]));
    assert!(out.contains("llama (untied head): 22 layers, 32 heads of 64 sharing 4 KV heads"), "{out}");
    assert!(out.contains("parameters: 1,100,048,384"), "{out}");
    // 2 x 22 layers x 2048 positions x 4 KV heads x 64 x 4 bytes = 92.3 MB; 8x that without GQA.
    assert!(out.contains("KV cache                           92.3 MB"), "{out}");
    assert!(out.contains("8x larger"), "{out}");
    // Generating from it reads the weights, and says these are not weights.
    let err = failure(&minillm(&dir, &["generate", "--model", "tinyllama", "Hi"]));
    assert!(err.contains("model.safetensors") && err.contains("not a safetensors file"), "{err}");
}

#[test]
fn the_preset_list_names_every_shape() {
    let out = ok(&minillm(&common::temp_dir("model-info-list"), &["model", "info", "--preset", "list"]));
    for name in ["gpt2-xl", "dN", "smollm2-135m", "qwen2.5-0.5b", "mistral-7b", "llama-2-70b"] {
        assert!(out.contains(name), "{name}: {out}");
    }
}
