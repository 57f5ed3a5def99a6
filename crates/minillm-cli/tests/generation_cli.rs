//! generate, chat, inspect and eval as a user runs them, on a tiny model trained here.

mod common;

use common::{minillm, minillm_with_input, ok};
use std::path::PathBuf;
use std::process::{Command, Output};

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A character-level model trained for a few steps, shared by the tests of this file.
fn trained() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| train_in(common::temp_dir("generation-cli"), "bytes", 40)).clone()
}

/// `dir` with the corpus's first 60 kB prepared with `tokenizer` and a d1 model trained on it
/// for `steps` steps in `run`.
fn train_in(dir: PathBuf, tokenizer: &str, steps: usize) -> PathBuf {
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..60_000]).unwrap();
    ok(&minillm(&dir, &["prepare", "--input", "text.txt", "--tokenizer", tokenizer, "--out", "data"]));
    let steps = steps.to_string();
    let train = ["train", "--data", "data", "--out", "run", "--model", "d1", "--context", "32"];
    let every = ["--max-steps", &steps, "--eval-every", &steps, "--eval-batches", "2"];
    ok(&minillm(&dir, &[&train[..], &every[..]].concat()));
    dir
}

#[test]
fn generate_json_gives_probabilities_and_logit_bias_bans_tokens() {
    let dir = trained();
    let args =
        ["generate", "--model", "run", "Once", "--temperature", "0", "--max-new-tokens", "6", "--json"];
    let doc = json(&minillm(&dir, &args));
    let tokens = doc["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6);
    let text: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(text, doc["text"].as_str().unwrap());
    for t in tokens {
        let p = t["prob"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{p}");
    }
    let first = tokens[0]["id"].as_u64().unwrap().to_string();
    let ban = format!("{first}=-100");
    let banned = json(&minillm(&dir, &[&args[..], &["--logit-bias", &ban]].concat()));
    assert_ne!(banned["tokens"][0]["id"].as_u64().unwrap().to_string(), first, "a banned token was chosen");
    // Batched samples: sample 0 is the single run (same seed), each line one JSON object.
    let many = ok(&minillm(&dir, &[&args[..], &["-n", "3"]].concat()));
    let docs: Vec<serde_json::Value> = many.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["tokens"], doc["tokens"]);
    assert_eq!(docs[2]["sample"], 2);
    for bad in ["7", "x=1", "999=1", "3=inf"] {
        let out = minillm(&dir, &[&args[..], &["--logit-bias", bad]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--logit-bias"), "{bad}: {err}");
        assert!(out.stdout.is_empty(), "{bad}: printed before failing");
    }
}

#[test]
fn chat_answers_each_line_and_forgets_on_reset() {
    let dir = trained();
    let out = ok(&minillm_with_input(
        &dir,
        &["chat", "--model", "run", "--max-new-tokens", "8", "--temperature", "0"],
        "Hello there\n\n/reset\nHello there\n/quit\nnot read\n",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("assistant>") && lines[2].starts_with("assistant>"), "{out}");
    assert_eq!(lines[1], "(conversation forgotten)");
    // After /reset, the same question in the same state gets the same greedy answer.
    assert_eq!(lines[0], lines[2]);
}

#[test]
fn inspect_json_holds_tokens_probabilities_attention_and_surprisal() {
    let dir = trained();
    let text = "The cat";
    let out = minillm(
        &dir,
        &["inspect", "--model", "run", text, "--top-k", "256", "--layer", "0", "--head", "0", "--json"],
    );
    let doc = json(&out);
    let tokens = doc["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), text.len()); // bytes tokenizer: a token per character
    let probs: Vec<f64> =
        doc["next"].as_array().unwrap().iter().map(|c| c["prob"].as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 256);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(probs.windows(2).all(|w| w[0] >= w[1]));
    let weights = doc["attention"]["weights"].as_array().unwrap();
    for (i, row) in weights.iter().enumerate() {
        let row: Vec<f64> = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "row {i}: {row:?}");
        assert!(row[i + 1..].iter().all(|&x| x == 0.0), "row {i} sees the future");
    }
    let surprisal = doc["surprisal"].as_array().unwrap();
    assert!(surprisal[0].is_null() && surprisal[1..].iter().all(|s| s.as_f64().unwrap() >= 0.0));
    let err = minillm(&dir, &["inspect", "--model", "run", text, "--layer", "0", "--head", "9"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("there is no layer 0 head 9"));
    let long = "x".repeat(100);
    let err = minillm(&dir, &["inspect", "--model", "run", &long]);
    assert!(
        String::from_utf8_lossy(&err.stderr)
            .contains("the text is 100 tokens but the model's context holds 32")
    );
}

#[test]
fn eval_scores_text_files_and_shards_alike() {
    let dir = trained();
    let shards = json(&minillm(&dir, &["eval", "--model", "run", "--data", "data", "--json"]));
    let loss = shards["loss"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < (256f64).ln() + 1.0, "{loss}");
    let bpb = shards["bits_per_byte"].as_f64().unwrap();
    // A byte per token: bits per byte is the loss in bits.
    assert!((bpb - loss / std::f64::consts::LN_2).abs() < 1e-9);
    std::fs::write(dir.join("held_out.txt"), &minillm::corpus::builtin()[100_000..110_000]).unwrap();
    let text = json(&minillm(&dir, &["eval", "--model", "run", "--data", "held_out.txt", "--json"]));
    assert_eq!(text["tokens"].as_u64().unwrap(), 9_999);
    for (data, message) in [("missing.txt", "missing.txt"), ("run", "holds no val.bin")] {
        let out = minillm(&dir, &["eval", "--model", "run", "--data", data]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(message), "{data}: {err}");
    }
}

#[test]
fn a_hub_id_loads_from_the_hf_cache_with_a_vocab_and_merges_tokenizer() {
    let dir = trained();
    let checkpoint = minillm::io::model_dir(&dir.join("run")).unwrap();
    let snapshot = dir.join("hub/models--acme--tiny/snapshots/r1");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(dir.join("hub/models--acme--tiny/refs")).unwrap();
    std::fs::write(dir.join("hub/models--acme--tiny/refs/main"), "r1\n").unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(checkpoint.join(name), snapshot.join(name)).unwrap();
    }
    let tok = minillm::tokenizer::formats::read_hf_json(&checkpoint.join("tokenizer.json")).unwrap();
    std::fs::write(snapshot.join("vocab.json"), minillm::tokenizer::formats::to_vocab_json(&tok)).unwrap();
    std::fs::write(snapshot.join("merges.txt"), minillm::tokenizer::formats::to_merges_txt(&tok)).unwrap();
    let run = |model: &str| {
        Command::new(env!("CARGO_BIN_EXE_minillm"))
            .args([
                "generate",
                "--model",
                model,
                "Once",
                "--temperature",
                "0",
                "--max-new-tokens",
                "6",
                "--json",
            ])
            .current_dir(&dir)
            .env("HF_HUB_CACHE", dir.join("hub"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    assert_eq!(json(&run("acme/tiny"))["tokens"], json(&run("run"))["tokens"]);
    let missing = run("acme/absent");
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("HF_HUB_OFFLINE is set"), "{err}");
}

#[test]
fn export_to_hf_round_trips_weights_tokenizer_and_generations() {
    let dir = trained();
    let out = minillm(&dir, &["export", "--model", "run", "--format", "hf", "--out", "hf-export"]);
    assert!(ok(&out).contains("wrote hf-export"));
    let checkpoint = minillm::io::model_dir(&dir.join("run")).unwrap();
    let (ours, theirs) = (
        minillm::io::load_model(&checkpoint).unwrap(),
        minillm::io::load_model(&dir.join("hf-export")).unwrap(),
    );
    assert_eq!(ours.params, theirs.params);
    assert_eq!(ours.config, theirs.config);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        assert!(dir.join("hf-export").join(file).is_file(), "{file} missing");
    }
    let continuation = |model: &str| {
        json(&minillm(
            &dir,
            &["generate", "--model", model, "Once", "--temperature", "0", "--max-new-tokens", "8", "--json"],
        ))
    };
    assert_eq!(continuation("hf-export")["tokens"], continuation("run")["tokens"]);
    // The slow-tokenizer files alone give the same ids.
    let tok = minillm::tokenizer::formats::read_hf_json(&checkpoint.join("tokenizer.json")).unwrap();
    let slow = minillm::io::load_tokenizer(&dir.join("hf-export/vocab.json")).unwrap();
    let text = "Once upon a time, 42 cats!";
    let all = minillm::SpecialTokens::AsText;
    assert_eq!(tok.encode(text, all).unwrap(), slow.encode(text, all).unwrap());
    // An existing directory is never written into.
    let again = minillm(&dir, &["export", "--model", "run", "--format", "hf", "--out", "hf-export"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "a partial export was left behind");
}

/// [`trained`]'s model with an end-of-text token after the 256 bytes, which GGUF files need.
fn trained_with_end_of_text() -> PathBuf {
    let dir = common::temp_dir("generation-cli-eot");
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..60_000]).unwrap();
    let tokenizer = ["tokenizer", "train", "--input", "text.txt", "--vocab-size", "257"];
    ok(&minillm(&dir, &[&tokenizer[..], &["--special", "<|endoftext|>", "--out", "tok.json"]].concat()));
    train_in(dir, "tok.json", 20)
}

#[test]
fn gguf_export_needs_an_end_of_text_token() {
    // llama.cpp would otherwise take a byte for BOS and EOS and stop wherever the model wrote it.
    let dir = trained();
    let out = minillm(&dir, &["export", "--model", "run", "--format", "gguf", "--out", "bytes.gguf"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no end-of-text token (<|endoftext|>"), "{err}");
    assert!(err.contains("--special '<|endoftext|>'"), "{err}");
    assert!(!dir.join("bytes.gguf").exists());
}

#[test]
fn export_to_gguf_round_trips_and_runs_everywhere_a_model_does() {
    let dir = trained_with_end_of_text();
    for (ty, file) in [("f32", "tiny.gguf"), ("f16", "tiny-f16.gguf")] {
        let out =
            minillm(&dir, &["export", "--model", "run", "--format", "gguf", "--type", ty, "--out", file]);
        assert!(ok(&out).contains(&format!("wrote {file} (GGUF")), "{}", ok(&out));
    }
    let continuation = |model: &str| {
        json(&minillm(
            &dir,
            &["generate", "--model", model, "Once", "--temperature", "0", "--max-new-tokens", "8", "--json"],
        ))["tokens"]
            .clone()
    };
    assert_eq!(continuation("tiny.gguf"), continuation("run"));
    let ids =
        |doc: serde_json::Value| doc.as_array().unwrap().iter().map(|t| t["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(continuation("tiny-f16.gguf")).len(), 8);
    let checkpoint = minillm::io::model_dir(&dir.join("run")).unwrap();
    let ours = minillm::io::load(&checkpoint).unwrap().model;
    let theirs = minillm::io::load(&dir.join("tiny.gguf")).unwrap().model;
    assert_eq!(ours.params, theirs.params);
    // eval and inspect take the GGUF file too, and agree with the checkpoint.
    let score = |model: &str| ok(&minillm(&dir, &["eval", "--model", model, "--data", "data"]));
    assert_eq!(score("tiny.gguf"), score("run"));
    // Refusals: an existing file, and a GGUF name without .gguf.
    let again = minillm(&dir, &["export", "--model", "run", "--format", "gguf", "--out", "tiny.gguf"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = minillm(&dir, &["export", "--model", "run", "--format", "gguf", "--out", "tiny.bin"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ending in .gguf"));
    assert!(!dir.join("tiny.bin").exists());
    // --head-type sets the head's type in any quantized or 16-bit file (as llama-quantize's
    // --output-tensor-type does); an f32 file keeps one type throughout.
    let mixed = ["export", "--model", "run", "--format", "gguf", "--type", "f16", "--head-type", "q8_0"];
    let out = ok(&minillm(&dir, &[&mixed[..], &["--out", "mixed.gguf"]].concat())).to_string();
    assert!(out.contains("f16 matrices, LM head q8_0"), "{out}");
    let plain =
        ["export", "--model", "run", "--format", "gguf", "--head-type", "q4_0", "--out", "plain.gguf"];
    let plain = minillm(&dir, &plain);
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("--head-type and --pure are for quantized files")
    );
    assert!(!dir.join("plain.gguf").exists());
}

#[test]
fn generation_config_json_sets_defaults_that_flags_override() {
    let dir = trained();
    let model = dir.join("genconfig-model");
    let _ = std::fs::remove_dir_all(&model);
    ok(&minillm(&dir, &["export", "--model", "run", "--format", "hf", "--out", "genconfig-model"]));
    std::fs::write(model.join("generation_config.json"), r#"{"do_sample": false, "max_new_tokens": 5}"#)
        .unwrap();
    let tokens = |extra: &[&str]| {
        let args = [&["generate", "--model", "genconfig-model", "Once", "--json"][..], extra].concat();
        json(&minillm(&dir, &args))["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect::<Vec<_>>()
    };
    let by_file = tokens(&[]);
    assert_eq!(by_file.len(), 5, "max_new_tokens from the file");
    assert_eq!(by_file, tokens(&["--temperature", "0"]), "do_sample false = greedy");
    assert_eq!(tokens(&["--max-new-tokens", "7"]).len(), 7, "a flag beats the file");
    let sampled: Vec<Vec<_>> =
        (0..4).map(|s| tokens(&["--temperature", "1.5", "--seed", &s.to_string()])).collect();
    assert!(sampled.iter().any(|t| *t != by_file), "--temperature should override do_sample false");
}

/// `--json-schema`: the continuation is JSON valid under the schema (constrained decoding), with
/// or without several samples; a schema that cannot be used is refused before anything is
/// printed.
#[test]
fn generate_follows_a_json_schema_and_refuses_a_bad_one_first() {
    let dir = common::temp_dir("generate-schema");
    let model = common::fixture().to_string_lossy().into_owned();
    let schema = r#"{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}}, "required": ["ok", "n"], "additionalProperties": false}"#;
    let out = ok(&minillm(
        &dir,
        &["generate", "--model", &model, "It was", "--json-schema", schema, "--seed", "3"],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim_end().strip_prefix("It was").unwrap()).unwrap();
    assert!(v["ok"].is_boolean() && [1, 2, 3].contains(&v["n"].as_i64().unwrap()), "{out}");
    std::fs::write(dir.join("schema.json"), schema).unwrap();
    let args = ["generate", "--model", &model, "It was", "--json-schema", "schema.json", "-n", "3", "--json"];
    let many = ok(&minillm(&dir, &args));
    assert_eq!(many.lines().count(), 3, "{many}");
    for line in many.lines() {
        let sample: serde_json::Value = serde_json::from_str(line).unwrap();
        let v: serde_json::Value = serde_json::from_str(sample["text"].as_str().unwrap()).unwrap();
        assert!(v["ok"].is_boolean(), "{sample}");
    }
    let bad = minillm(
        &dir,
        &["generate", "--model", &model, "It was", "--json-schema", r##"{"$ref": "#/nowhere"}"##],
    );
    assert!(!bad.status.success() && bad.stdout.is_empty(), "{}", String::from_utf8_lossy(&bad.stdout));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot be used"));
}
