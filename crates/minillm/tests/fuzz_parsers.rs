//! Every parser of outside input against mutations of a valid file, as a bounded, seeded
//! property test (proptest, on the stable toolchain): bytes overwritten, inserted, removed and
//! the file cut short, including the values that break length fields (0, 0xFF.., 0x80..). The
//! property: the parser answers `Ok` or an error that is a sentence; it never panics (proptest
//! reports it, with the smallest input it finds), aborts on a huge allocation or hangs (either
//! kills this test binary).
//!
//! `MINILLM_FUZZ_CASES` raises the number of inputs per parser for a long run (default 96).

mod common;

use common::mutate::{apply, edit};
use minillm::train::TrainConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `parse` on `cases` mutations of `valid` (written to `file` in a fresh directory that
/// also holds `beside`, the files the parser reads next to it).
fn fuzz(
    name: &str,
    valid: &[u8],
    file: &str,
    beside: &[(&str, Vec<u8>)],
    parse: impl Fn(&Path) -> Result<(), String>,
) {
    let cases = std::env::var("MINILLM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    let dir = common::temp_dir(&format!("fuzz-{name}"));
    for (other, bytes) in beside {
        std::fs::write(dir.join(other), bytes).unwrap();
    }
    // The valid file itself must parse, or the test proves nothing.
    std::fs::write(dir.join(file), valid).unwrap();
    parse(&dir.join(file)).unwrap_or_else(|e| panic!("{name}: the valid file fails: {e}"));
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(7),
        ..Default::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(edit(), 1..6), |edits| {
        let bytes = apply(valid.to_vec(), &edits);
        std::fs::write(dir.join(file), &bytes).unwrap();
        if let Err(message) = parse(&dir.join(file)) {
            prop_assert!(!message.is_empty(), "an empty error");
            // A Rust debug dump is not a sentence a person can act on.
            prop_assert!(!message.contains("Error {") && !message.contains("{ kind:"), "{}", message);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[test]
fn gguf_files() {
    let valid = read(fixtures().join("gpt2_tiny/gpt2_tiny.gguf"));
    fuzz("gguf", &valid, "model.gguf", &[], |p| minillm::io::load(p).map(drop).map_err(text));
}

#[test]
fn safetensors_checkpoints() {
    let dir = fixtures().join("llama_tiny");
    let valid = read(dir.join("model.safetensors"));
    let beside = [("config.json", read(dir.join("config.json")))];
    fuzz("safetensors", &valid, "model.safetensors", &beside, |p| {
        minillm::io::load_model(p.parent().unwrap()).map(drop).map_err(text)
    });
}

#[test]
fn hf_config_json() {
    let dir = fixtures().join("llama_tiny");
    let beside = [("model.safetensors", read(dir.join("model.safetensors")))];
    fuzz("config", &read(dir.join("config.json")), "config.json", &beside, |p| {
        minillm::io::load_model(p.parent().unwrap()).map(drop).map_err(text)
    });
}

#[test]
fn generation_config_json() {
    let valid = read(fixtures().join("llama_tiny/generation_config.json"));
    fuzz("generation-config", &valid, "generation_config.json", &[], |p| {
        minillm::io::generation_config::GenerationConfig::read(p.parent().unwrap()).map(drop).map_err(text)
    });
}

#[test]
fn tokenizer_json() {
    for model in ["gpt2_tiny", "llama_tiny"] {
        let valid = read(fixtures().join(model).join("tokenizer.json"));
        fuzz(&format!("tokenizer-{model}"), &valid, "tokenizer.json", &[], |p| {
            minillm::tokenizer::formats::read_hf_json(p).map(drop).map_err(text)
        });
    }
}

#[test]
fn token_shards() {
    let dir = common::temp_dir("fuzz-shard-source");
    let info = minillm::data::ShardInfo { vocab_size: 300, tokenizer_hash: 42 };
    let ids: Vec<u32> = (0..500).map(|i| i % 300).collect();
    minillm::data::write_shard(&dir.join("train.bin"), &ids, info).unwrap();
    fuzz("shard", &read(dir.join("train.bin")), "train.bin", &[], |p| {
        minillm::data::read_shard(p).map(drop).map_err(text)
    });
}

#[test]
fn jsonl_training_data() {
    use minillm::train::finetune::{parse_chat, parse_preference, read_jsonl};
    let chats = concat!(
        r#"{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#,
        "\n",
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "answer": "4"}"#,
        "\n"
    );
    fuzz("chat-jsonl", chats.as_bytes(), "chats.jsonl", &[], |p| {
        read_jsonl(p, false, parse_chat).map(drop).map_err(text)
    });
    let prefs = concat!(r#"{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}"#, "\n");
    fuzz("preference-jsonl", prefs.as_bytes(), "prefs.jsonl", &[], |p| {
        read_jsonl(p, true, parse_preference).map(drop).map_err(text)
    });
}

#[test]
fn training_config_toml() {
    let valid = TrainConfig::default().to_toml();
    fuzz("toml", valid.as_bytes(), "config.toml", &[], |p| {
        let text = std::fs::read(p).map_err(text)?;
        TrainConfig::from_toml(&String::from_utf8_lossy(&text), p).map(drop).map_err(|e| e.to_string())
    });
}

/// A small trained tokenizer, the source of the vocab + merges and tiktoken files below.
fn small_tokenizer() -> minillm::tokenizer::Tokenizer {
    let path = fixtures().join("gpt2_tiny/tokenizer.json");
    minillm::tokenizer::formats::read_hf_json(&path).unwrap()
}

#[test]
fn vocab_json_and_merges_txt() {
    use minillm::tokenizer::formats::{read_file, to_merges_txt, to_vocab_json};
    let tok = small_tokenizer();
    let (vocab, merges) = (to_vocab_json(&tok), to_merges_txt(&tok));
    fuzz("vocab-json", vocab.as_bytes(), "vocab.json", &[("merges.txt", merges.clone().into_bytes())], |p| {
        read_file(p).map(drop).map_err(text)
    });
    fuzz("merges-txt", merges.as_bytes(), "merges.txt", &[("vocab.json", vocab.into_bytes())], |p| {
        read_file(p).map(drop).map_err(text)
    });
}

#[test]
fn tiktoken_rank_files() {
    use base64::Engine;
    let tok = small_tokenizer();
    let b64 = base64::engine::general_purpose::STANDARD;
    let ranks: String = (0..tok.vocab_size() as u32)
        .filter(|&id| !tok.is_special(id))
        .filter_map(|id| Some(format!("{} {id}\n", b64.encode(tok.token_bytes(id)?))))
        .collect();
    fuzz("tiktoken", ranks.as_bytes(), "small.tiktoken", &[], |p| {
        minillm::tokenizer::formats::read_file(p).map(drop).map_err(text)
    });
}
