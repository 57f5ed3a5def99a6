//! Bad input gets one clear error line, a non-zero exit, no panic, and no half-written file.

mod common;

use common::minillm;
use std::path::PathBuf;
use std::process::Output;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("cli-{name}"))
}

fn assert_clear_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("panicked"));
}

#[test]
fn bad_inputs_fail_clearly() {
    let dir = temp_dir("errors");
    std::fs::write(dir.join("text.txt"), "hello world, hello tokens").unwrap();
    std::fs::write(dir.join("broken.json"), "{\"model\": ").unwrap();
    // Each command line is split on spaces.
    let cases = [
        ("tokenizer encode --tokenizer nope.json hi", "no tokenizer file"),
        ("tokenizer encode --tokenizer broken.json hi", "not valid JSON"),
        ("tokenizer encode --tokenizer text.txt hi", "text.txt"),
        ("tokenizer decode 1 x2", "'x2' is not a token id"),
        ("tokenizer decode -- -1", "'-1' is not a token id"),
        ("tokenizer decode 60000", "token id 60000 is outside the vocabulary"),
        ("tokenizer encode a<|endoftext|>", "--allow-special"),
        ("tokenizer encode", "give the text"),
        ("tokenizer stats missing.txt", "cannot read missing.txt"),
        ("tokenizer train --input text.txt --vocab-size 255 --out t.json", "too small"),
        (
            "tokenizer train --input text.txt --vocab-size 300 --pattern gpt5 --out t.json",
            "unknown split pattern 'gpt5'",
        ),
        ("tokenizer train --input text.txt --vocab-size many --out t.json", "invalid value 'many'"),
        ("tokenizer train --input text.txt --vocab-size 300 --out no/such/dir/t.json", "does not exist"),
        ("tokenizer frobnicate", "unrecognized subcommand"),
        ("model info --preset gpt3", "unknown preset 'gpt3'"),
        ("model info", "say which model"),
        ("model info --preset gpt2 --context 2048", "--context must be 1..=1024"),
        ("model info --config text.txt", "not valid JSON"),
        ("model info --model nowhere", "'nowhere' is not a file or directory here"),
        ("model info --preset d4 --vocab-size 0", "at least 1"),
        ("bench train-step --preset baby --context 65", "--context must be 1..=64"),
        ("bench decode --preset baby --prompt 60 --new-tokens 10", "at most the context (64)"),
        ("bench decode --preset baby --new-tokens 16 --batch 0", "--batch values must be at least 1"),
        ("bench quant --preset gpt2 --rounds 0", "--rounds must be at least 1"),
        ("bench constrain --tokens 1", "--tokens must be 2..=1000"),
        ("serve --model nowhere --read-timeout=-1", "--read-timeout must be a positive number of seconds"),
        ("serve --model nowhere --read-timeout nan", "--read-timeout must be a positive number of seconds"),
        ("bench constrain --json-schema {nope", "--json-schema is not valid JSON"),
    ];
    for (command, needle) in cases {
        let args: Vec<&str> = command.split(' ').collect();
        assert_clear_failure(&minillm(&dir, &args), needle);
    }
    // Nothing was written by the failed commands.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["broken.json", "text.txt"]);
}

#[test]
fn train_then_use_the_file_it_wrote() {
    let dir = temp_dir("train");
    let out = minillm(&dir, &["corpus", "--out", "corpus.txt"]);
    assert!(out.status.success());
    let args = [
        "tokenizer",
        "train",
        "--input",
        "corpus.txt",
        "--vocab-size",
        "400",
        "--pattern",
        "gpt4",
        "--out",
        "t.json",
    ];
    assert!(minillm(&dir, &args).status.success());
    let out = minillm(&dir, &["tokenizer", "encode", "--tokenizer", "t.json", "--json", "Hello 123456"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = doc["ids"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    // The GPT-4 pattern cuts digits into groups of three: no token spans "123|456".
    let texts: Vec<&str> =
        doc["tokens"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert!(!texts.iter().any(|t| t.contains("34")), "{texts:?}");
    assert_eq!(texts.concat(), "Hello 123456");
    let mut decode = vec!["tokenizer", "decode", "--tokenizer", "t.json"];
    decode.extend(ids.iter().map(String::as_str));
    let out = minillm(&dir, &decode);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello 123456\n");
}

/// Sizes from flags and files that need more memory than the machine has are refused with the
/// sum and its parts before anything is allocated; they used to abort with "memory allocation
/// of N bytes failed" and a stack trace.
#[test]
fn what_cannot_fit_in_memory_is_refused_before_it_is_allocated() {
    let dir = temp_dir("memory");
    std::fs::write(dir.join("text.txt"), "hello world, hello tokens. ".repeat(200)).unwrap();
    let out = minillm(&dir, &["prepare", "--input", "text.txt", "--tokenizer", "bytes", "--out", "data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", "data", "--out", "run", "--max-steps", "1"];
        args.extend_from_slice(extra);
        minillm(&dir, &args)
    };
    // 64 layers of width 4,096: 51.6 GB of parameters, four times that to train.
    let out = train(&["--model", "d64"]);
    assert_clear_failure(&out, "weights 51.6 GB, gradients 51.6 GB, AdamW moments 103.1 GB");
    // Activations past any machine, counted without overflow.
    for batch in ["100000000", "100000000000000"] {
        let out = train(&["--model", "d2", "--batch-size", batch]);
        assert_clear_failure(&out, "activations");
        assert_clear_failure(&out, "choose a smaller --model, --batch-size or --context");
    }
    assert!(!dir.join("run").exists(), "a refused run left a directory");

    // Serving: every slot holds the whole context's keys and values from the start.
    let config = minillm::model::ModelConfig {
        n_layer: 16,
        n_head: 2,
        n_embd: 32,
        block_size: 131_072,
        vocab_size: 256,
        dropout: 0.0,
        bias: true,
        arch: Default::default(),
    };
    let kv = config.kv_bytes_per_position() * 131_072 * 256;
    if kv < 64 << 30 {
        panic!("the model's cache is too small to test with: {kv} bytes");
    }
    minillm::io::save_model(&dir.join("long"), &minillm::model::Gpt::new(config, 1).unwrap(), None).unwrap();
    std::fs::write(dir.join("long/tokenizer.json"), std::fs::read(dir.join("data/tokenizer.json")).unwrap())
        .unwrap();
    let out = minillm(&dir, &["serve", "--model", "long", "--port", "0", "--max-concurrent", "256"]);
    assert_clear_failure(&out, "serving 256 requests at once with a context of 131072 needs about");
    assert_clear_failure(&out, "KV cache");
}
