//! The LLaMA-family presets against HF transformers: the config.json transformers writes for each
//! published shape reads into exactly minillm's preset, and minillm counts exactly the parameters
//! transformers builds (fixtures from scripts/reference/llama_presets.py).

use minillm::io::hf_config;
use minillm::model::config::PRESETS;
use minillm::model::{Arch, ModelConfig};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_presets")
}

#[test]
fn every_llama_preset_reads_from_transformers_config_and_counts_its_parameters() {
    let mut checked = 0;
    for (name, _) in
        PRESETS.iter().filter(|p| !p.0.starts_with("gpt2") && !["baby", "dN", "llama-dN"].contains(&p.0))
    {
        let path = fixtures().join(format!("{name}.json"));
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let read = hf_config::from_json(&doc["config"].to_string(), &path).unwrap();
        let preset = ModelConfig::preset(name).unwrap();
        assert_eq!(read, preset, "{name}: transformers' config.json and the preset differ");
        let want = doc["num_parameters"].as_u64().unwrap() as usize;
        assert_eq!(preset.num_params(), want, "{name}: parameters");
        assert!(matches!(preset.arch, Arch::Llama(_)));
        checked += 1;
    }
    assert_eq!(checked, 8, "every LLaMA-family preset has its fixture");
}

#[test]
fn older_config_keys_and_unsupported_features() {
    let path = fixtures().join("hand-written.json");
    let read = |text: &str| hf_config::from_json(text, &path);
    // transformers 4's keys (rope_theta, rope_scaling with "type") read as its newer ones do.
    let old = r#"{"model_type": "llama", "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "hidden_size": 2048, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "vocab_size": 128256, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "tie_word_embeddings": true, "hidden_act": "silu",
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#;
    assert_eq!(read(old).unwrap(), ModelConfig::preset("llama-3.2-1b").unwrap());

    for (key, value, named) in [
        ("num_local_experts", serde_json::json!(8), "mixture of experts"),
        ("attention_bias", serde_json::json!(true), "attention_bias"),
        ("mlp_bias", serde_json::json!(true), "mlp_bias"),
        ("hidden_act", serde_json::json!("gelu"), "hidden_act 'gelu'"),
        ("num_key_value_heads", serde_json::json!(5), "not a multiple of num_key_value_heads 5"),
    ] {
        let mut changed: serde_json::Value = serde_json::from_str(old).unwrap();
        changed[key] = value;
        let err = read(&changed.to_string()).unwrap_err().to_string();
        assert!(err.contains(named), "{key}: {err}");
    }
    let yarn = old.replace("\"llama3\"", "\"yarn\"");
    assert!(read(&yarn).unwrap_err().to_string().contains("rope scaling 'yarn' is not supported"));
    let windowed = old
        .replace("\"llama\"", "\"mistral\"")
        .replace("\"rope_theta\"", "\"sliding_window\": 4096, \"rope_theta\"");
    assert!(
        read(&windowed).unwrap_err().to_string().contains("sliding_window 4096 is shorter than the context")
    );
}

/// A small LLaMA-family shape: GQA, an untied head (Llama) or biases and a tied head (Qwen2).
fn small(preset: &str) -> ModelConfig {
    let mut config = ModelConfig::preset(preset).unwrap();
    (config.n_layer, config.n_head, config.n_embd, config.vocab_size, config.block_size) =
        (2, 4, 64, 300, 32);
    if let Arch::Llama(l) = &mut config.arch {
        (l.n_kv_head, l.head_dim, l.intermediate) = (2, 16, 96);
    }
    config
}

#[test]
fn llama_models_save_load_and_quantize() {
    use minillm::model::kv_cache::KvCache;
    use minillm::model::{Gpt, quantized::Matrix};
    use minillm::quant::QuantType;
    let dir = std::env::temp_dir().join(format!("minillm-llama-roundtrip-{}", std::process::id()));
    for preset in ["tinyllama-1.1b", "qwen2.5-0.5b"] {
        let model = Gpt::new(small(preset), 7).unwrap();
        minillm::io::save_model(&dir, &model, Some(299)).unwrap();
        let loaded = minillm::io::load_model(&dir).unwrap();
        assert_eq!(loaded.config, model.config, "{preset}: config.json");
        assert_eq!(loaded.params, model.params, "{preset}: weights");
        let prompt = [5u32, 17, 250, 3];
        let logits = |m: &Gpt| m.prefill(&mut KvCache::new(m, 1), 0, &prompt).unwrap();
        let want = logits(&model);
        for (ty, tolerance) in [(QuantType::Q8_0, 0.02), (QuantType::Q4_0, 0.2)] {
            let mut q = minillm::io::load_model(&dir).unwrap();
            q.quantize(ty, Some(QuantType::Q8_0)).unwrap();
            assert!(
                q.weight_bytes() < model.weight_bytes() / 2,
                "{preset} {ty:?}: the blocks are the weights"
            );
            assert!(matches!(q.matrix(1, Matrix::Qkv), minillm::model::Weight::Stacked(_)));
            let got = logits(&q);
            let err = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(err < tolerance * scale, "{preset} {ty:?}: logits moved by {err} (scale {scale})");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
