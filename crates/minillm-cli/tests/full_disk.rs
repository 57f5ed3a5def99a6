//! Writing where writing fails: a full filesystem (a size-limited tmpfs), a read-only one and a
//! run directory that vanishes mid-run. Every command that writes what a user owns gives one
//! clear error, never a panic, leaves no file half-written under its final name (nor its
//! temporary files), and a training run's previous checkpoint stays intact and resumes.
//!
//! Mounting needs root (CI runs as root); elsewhere the tests say why they skip, unless
//! MINILLM_REQUIRE_TMPFS is set (as in CI), which makes them fail instead.
#![cfg(target_os = "linux")]

mod common;

use common::tmpfs::Tmpfs;
use common::{failure, minillm, ok, temp_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files in `dir` (recursively) whose names mark them as temporary or partial.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp-") || name.ends_with(".incomplete") {
            found.push(entry.path());
        } else if entry.path().is_dir() {
            found.extend(leftovers(&entry.path()));
        }
    }
    found
}

/// One clear line: an error naming the failure, no panic or backtrace.
fn clear_error(out: &std::process::Output, says: &str) -> String {
    let err = failure(out);
    assert!(err.contains(says), "expected '{says}': {err}");
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "{err}");
    err
}

const TRAIN: &[&str] = &["--model", "d1", "--context", "32", "--batch-size", "2", "--eval-every", "1000000"];

fn train(dir: &Path, first: &[&str]) -> std::process::Output {
    let mut args = first.to_vec();
    args.extend_from_slice(TRAIN);
    minillm(dir, &args)
}

/// `train --resume RUN` to `steps` (the shape flags belong to the run).
fn resume(dir: &Path, run: &str, steps: &str, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["train", "--data", "data", "--resume", run, "--max-steps", steps, "--eval-every", "1000000"];
    args.extend_from_slice(extra);
    minillm(dir, &args)
}

fn prepare(dir: &Path) {
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..20_000]).unwrap();
    // With an end-of-text token, so the model exports to GGUF.
    let tok =
        ["tokenizer", "train", "--input", "text.txt", "--vocab-size", "300", "--special", "<|endoftext|>"];
    ok(&minillm(dir, &[&tok[..], &["--out", "tok.json"]].concat()));
    ok(&minillm(dir, &["prepare", "--input", "text.txt", "--tokenizer", "tok.json", "--out", "data"]));
}

fn latest_step(run: &Path) -> u64 {
    let latest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("latest.json")).unwrap()).unwrap();
    latest["step"].as_u64().unwrap()
}

#[test]
fn a_full_disk_stops_each_writer_with_one_error_and_loses_nothing() {
    let dir = temp_dir("full-disk");
    let Some(fs) = Tmpfs::mount(&dir.join("full"), "6m") else { return };
    prepare(&dir);

    // A run checkpoints while there is room; then the disk fills.
    ok(&train(&dir, &["train", "--data", "data", "--out", "full/run", "--max-steps", "2"]));
    fs.fill();
    let out = resume(&dir, "full/run", "4", &["--checkpoint-every", "1"]);
    clear_error(&out, "No space left on device");
    assert_eq!(latest_step(&dir.join("full/run")), 2, "the last good checkpoint is still the latest");
    assert!(leftovers(&dir.join("full")).is_empty(), "{:?}", leftovers(&dir.join("full")));

    // Every other writer, into the full disk: an error, and nothing under the final name.
    let writers: [(&[&str], &str); 5] = [
        (&["quantize", "--model", "full/run", "--type", "q8_0", "--out", "full/q8.gguf"], "full/q8.gguf"),
        (
            &["export", "--model", "full/run", "--format", "gguf", "--out", "full/model.gguf"],
            "full/model.gguf",
        ),
        (
            &["prepare", "--input", "text.txt", "--tokenizer", "bytes", "--out", "full/data"],
            "full/data/train.bin",
        ),
        (
            &["tokenizer", "train", "--input", "text.txt", "--vocab-size", "300", "--out", "full/tok.json"],
            "full/tok.json",
        ),
        (&["corpus", "--out", "full/corpus.txt"], "full/corpus.txt"),
    ];
    for (args, output) in writers {
        clear_error(&minillm(&dir, args), "No space left on device");
        assert!(!dir.join(output).exists(), "{args:?} left {output}");
        assert!(leftovers(&dir.join("full")).is_empty(), "{args:?}: {:?}", leftovers(&dir.join("full")));
    }

    // With room again, the run resumes from its last checkpoint.
    fs.free();
    ok(&resume(&dir, "full/run", "4", &[]));
    assert_eq!(latest_step(&dir.join("full/run")), 4);
}

/// A download by hub id into an HF cache on a disk with room for config.json but not the
/// weights: one error naming the file, no partial blob, no snapshot or ref that would make the
/// model look downloaded; with room, the same command downloads and runs.
#[test]
fn a_download_into_a_full_disk_keeps_no_partial_model() {
    use common::fake_hub::{files, serve};
    let dir = temp_dir("full-disk-download");
    let Some(fs) = Tmpfs::mount(&dir.join("cache"), "256k") else { return };
    let hub = serve(
        [("acme/tiny".to_string(), files(&["config.json", "model.safetensors", "tokenizer.json"]))].into(),
    );
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_minillm"))
            .args(["generate", "--model", "acme/tiny", "It was", "--max-new-tokens", "3"])
            .env("HF_HUB_CACHE", dir.join("cache"))
            .env("HF_ENDPOINT", &hub.url)
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .unwrap()
    };
    let err = clear_error(&run(), "No space left on device");
    assert!(err.contains("cannot write") && err.contains("blobs"), "{err}");
    let repo = dir.join("cache/models--acme--tiny");
    assert!(leftovers(&repo).is_empty(), "{:?}", leftovers(&repo));
    assert!(!repo.join("refs").exists() && !repo.join("snapshots").exists(), "the model looks downloaded");
    fs.resize("8m");
    ok(&run());
    assert!(repo.join("refs/main").is_file());
}

#[test]
fn a_read_only_disk_and_a_vanished_run_directory_are_errors_not_panics() {
    let dir = temp_dir("read-only");
    let Some(fs) = Tmpfs::mount(&dir.join("ro"), "4m") else { return };
    prepare(&dir);
    ok(&train(&dir, &["train", "--data", "data", "--out", "ro/run", "--max-steps", "1"]));
    fs.read_only();
    let out = resume(&dir, "ro/run", "2", &[]);
    clear_error(&out, "Read-only file system");
    assert_eq!(latest_step(&dir.join("ro/run")), 1);
    let out = minillm(&dir, &["quantize", "--model", "ro/run", "--type", "q8_0", "--out", "ro/q8.gguf"]);
    clear_error(&out, "Read-only file system");

    // The run directory removed while training: the next checkpoint says it cannot write there.
    let mut args =
        vec!["train", "--data", "data", "--out", "gone", "--max-steps", "1000000", "--checkpoint-every", "1"];
    args.extend_from_slice(TRAIN);
    let mut child = Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(&args)
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("gone/latest.json").exists() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("no checkpoint after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Moved away in one step (removing it would race with the checkpoints being written).
    std::fs::rename(dir.join("gone"), dir.join("moved")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gone") && err.contains("No such file or directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
