//! Pretraining, SFT and DPO end to end through the CLI, on a tiny model: the stages chain, report
//! their held-out figures, resume, and refuse bad data clearly.

mod common;

use common::{failure, minillm, minillm_with_input, ok};
use std::path::PathBuf;

fn setup() -> PathBuf {
    let dir = common::temp_dir("finetune-cli");
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..200_000]).unwrap();
    ok(&minillm(
        &dir,
        &["tokenizer", "train", "--input", "text.txt", "--vocab-size", "320", "--out", "tok.json"],
    ));
    ok(&minillm(&dir, &["prepare", "--input", "text.txt", "--tokenizer", "tok.json", "--out", "data"]));
    let train = ["train", "--data", "data", "--out", "base", "--model", "d1", "--context", "48"];
    ok(&minillm(
        &dir,
        &[
            &train[..],
            &["--max-steps", "30", "--eval-every", "30", "--eval-batches", "2", "--sample-tokens", "0"],
        ]
        .concat(),
    ));
    ok(&minillm(&dir, &["corpus", "--tasks", "tasks"]));
    dir
}

#[test]
fn sft_then_dpo_then_chat() {
    let dir = setup();
    let steps = ["--max-steps", "6", "--eval-every", "3", "--batch-size", "4", "--sample-tokens", "4"];
    let sft = [
        "sft",
        "--model",
        "base",
        "--data",
        "tasks/sft-train.jsonl",
        "--val-data",
        "tasks/sft-val.jsonl",
        "--out",
        "sft",
    ];
    let out = ok(&minillm(&dir, &[&sft[..], &steps[..]].concat()));
    assert!(out.contains("held-out instructions (36, about items SFT never showed)"), "{out}");
    assert!(out.contains("after SFT:") && out.contains("base model:"), "{out}");
    let heldout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sft/heldout.json")).unwrap()).unwrap();
    assert_eq!(heldout["examples"], 36);
    assert!(heldout["base"]["correct"].is_u64() && heldout["after"]["ended_turn"].is_u64());
    // The fine-tuned checkpoint carries the chat tokens.
    let tok = minillm::tokenizer::formats::read_hf_json(
        &minillm::io::model_dir(&dir.join("sft")).unwrap().join("tokenizer.json"),
    )
    .unwrap();
    assert!(minillm::chat::ChatTemplate::of(&tok).is_some());

    let dpo = [
        "dpo",
        "--model",
        "sft",
        "--data",
        "tasks/dpo-train.jsonl",
        "--val-data",
        "tasks/dpo-val.jsonl",
        "--out",
        "dpo",
    ];
    let out = ok(&minillm(&dir, &[&dpo[..], &steps[..], &["--beta", "0.2"]].concat()));
    assert!(out.contains("held-out preference accuracy before DPO: 50.0% (policy = reference)"), "{out}");
    assert!(out.contains("held-out preference accuracy: 50.0% before DPO, "), "{out}");
    let metrics = std::fs::read_to_string(dir.join("dpo/metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for key in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "eval_rewards/accuracies",
    ] {
        assert!(last[key].is_number(), "metrics.jsonl lacks {key}: {last}");
    }
    let config = std::fs::read_to_string(dir.join("dpo/config.toml")).unwrap();
    assert!(config.contains("stage = \"dpo\"") && config.contains("beta = 0.2"), "{config}");

    // Resuming extends the run from its checkpoint, with the same reference.
    let more = ok(&minillm(
        &dir,
        &[
            "dpo",
            "--resume",
            "dpo",
            "--data",
            "tasks/dpo-train.jsonl",
            "--val-data",
            "tasks/dpo-val.jsonl",
            "--max-steps",
            "8",
        ],
    ));
    assert!(more.contains("2 steps") || more.contains("from step 6"), "{more}");

    // chat renders the template and stops at <|end|>.
    let out = minillm_with_input(
        &dir,
        &["chat", "--model", "dpo", "--temperature", "0", "--max-new-tokens", "8", "--system", "Be brief."],
        "What is the capital of Peru?\n",
    );
    let text = ok(&out);
    assert!(text.starts_with("assistant>") && !text.contains("<|end|>"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_fine_tuning_data_is_reported_by_line() {
    let dir = common::temp_dir("finetune-bad");
    let good = r#"{"prompt": "What is one plus one?", "completion": "Two.", "answer": "Two"}"#;
    let lines: Vec<&str> = (0..12).map(|i| if i == 3 { "{not json" } else { good }).collect();
    std::fs::write(dir.join("bad.jsonl"), lines.join("\n")).unwrap();
    // The model is never loaded: the data is checked first.
    let sft = ["sft", "--model", "nowhere", "--data", "bad.jsonl", "--out", "run"];
    let err = failure(&minillm(&dir, &sft));
    assert!(err.contains("bad.jsonl: line 4: not JSON") && err.contains("--skip-bad-lines"), "{err}");
    let err = failure(&minillm(&dir, &[&sft[..], &["--skip-bad-lines"]].concat()));
    assert!(err.contains("skipped 1 malformed line(s), the first at line 4"), "{err}");
    assert!(!err.contains("line 4: not JSON\n") || err.contains("nowhere"), "{err}");
    std::fs::write(dir.join("pairs.jsonl"), r#"{"prompt": "Q", "chosen": "A"}"#).unwrap();
    let err =
        failure(&minillm(&dir, &["dpo", "--model", "nowhere", "--data", "pairs.jsonl", "--out", "run"]));
    assert!(err.contains("line 1: 'rejected' is missing"), "{err}");
    assert!(!dir.join("run").exists(), "a failed start left a run directory");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sft_context_is_the_training_window_and_the_model_keeps_its_own() {
    // A model made for a long context fine-tunes on short conversations in a short window:
    // activations grow with the window, and the checkpoint still has the model's context.
    let dir = common::temp_dir("finetune-context");
    ok(&minillm(&dir, &["corpus", "--tasks", "tasks"]));
    let model = common::fixture();
    let sft = [
        "sft",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "tasks/sft-train.jsonl",
        "--val-data",
        "tasks/sft-val.jsonl",
    ];
    let err = failure(&minillm(&dir, &[&sft[..], &["--out", "long", "--context", "65"]].concat()));
    assert!(err.contains("context 65 does not fit the model, whose context is 64 tokens"), "{err}");
    let steps = ["--max-steps", "2", "--eval-every", "2", "--batch-size", "2", "--sample-tokens", "0"];
    let out = ok(&minillm(&dir, &[&sft[..], &["--out", "short", "--context", "32"], &steps[..]].concat()));
    assert!(out.contains("context 32)") && out.contains("steps of 64 tokens"), "{out}");
    let config =
        std::fs::read_to_string(minillm::io::model_dir(&dir.join("short")).unwrap().join("config.json"))
            .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["n_positions"], 64, "{config}");
    let err = failure(&minillm(
        &dir,
        &["sft", "--resume", "short", "--data", "tasks/sft-train.jsonl", "--context", "16"],
    ));
    assert!(err.contains("--context") && err.contains("--resume"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
