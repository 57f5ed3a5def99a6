//! `minillm train` as a process: killed with SIGKILL at random moments (including while it writes
//! checkpoints) it always leaves a loadable checkpoint; Ctrl-C saves one and exits cleanly.

mod common;

use minillm::train::Trainer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("train-cli-{name}"))
}

fn minillm(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minillm"));
    cmd.args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Character-level shards of part of the built-in corpus.
fn prepare(dir: &Path) {
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..40_000]).unwrap();
    let out = minillm(dir, &["prepare", "--input", "text.txt", "--tokenizer", "bytes", "--out", "data"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

const FAST: &[&str] = &["--model", "d1", "--context", "32", "--batch-size", "2", "--eval-every", "1000000"];

fn start(dir: &Path, first: &[&str]) -> Child {
    let mut args: Vec<&str> = first.to_vec();
    args.extend_from_slice(FAST);
    minillm(dir, &args).spawn().unwrap()
}

#[test]
fn a_killed_run_always_leaves_a_checkpoint_that_resumes() {
    let dir = temp_dir("kill");
    prepare(&dir);
    let mut last_step = 0;
    for round in 0..6u64 {
        let args: &[&str] = if round == 0 {
            &["train", "--data", "data", "--out", "run", "--max-steps", "1000000", "--checkpoint-every", "1"]
        } else {
            &["train", "--data", "data", "--resume", "run", "--max-steps", "1000000"]
        };
        let mut child = start(&dir, args);
        // Vary the moment of death; with a checkpoint every step, most land mid-write.
        std::thread::sleep(Duration::from_millis(400 + 137 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let resumed = Trainer::resume(&dir.join("run"), &dir.join("data"));
        let trainer = resumed.unwrap_or_else(|e| panic!("round {round}: no loadable checkpoint: {e}"));
        assert!(trainer.step >= last_step, "round {round}: went back from {last_step} to {}", trainer.step);
        last_step = trainer.step;
        let loaded =
            minillm::io::load_model(&dir.join("run").join(format!("ckpt-{:08}", trainer.step))).unwrap();
        assert!(loaded.params.iter().all(|p| p.is_finite()));
    }
    assert!(last_step > 0, "the runs never got to checkpoint");
    // A run is also a tokenizer: its latest checkpoint's, as `--model run` finds the model.
    let out = minillm(&dir, &["tokenizer", "encode", "--tokenizer", "run", "hi"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("104 105\n"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let dir = temp_dir("ctrlc");
    prepare(&dir);
    let child = start(
        &dir,
        &[
            "train",
            "--data",
            "data",
            "--out",
            "run",
            "--max-steps",
            "1000000",
            "--checkpoint-every",
            "100000",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("interrupted: saved a checkpoint at step"), "{stdout}");
    let trainer = Trainer::resume(&dir.join("run"), &dir.join("data")).unwrap();
    assert!(trainer.step > 0);
}

#[test]
fn a_run_directory_is_not_overwritten_and_bad_configs_are_refused() {
    let dir = temp_dir("refuse");
    prepare(&dir);
    let ok = start(&dir, &["train", "--data", "data", "--out", "run", "--max-steps", "2"])
        .wait_with_output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    assert!(metrics.lines().last().unwrap().contains("val_bits_per_byte"));
    // The best checkpoint by validation loss is kept beside the latest, and loads.
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/best.json")).unwrap()).unwrap();
    minillm::io::load_model(&dir.join("run").join(best["checkpoint"].as_str().unwrap())).unwrap();
    let again = start(&dir, &["train", "--data", "data", "--out", "run", "--max-steps", "2"])
        .wait_with_output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a run; continue it with --resume")
    );
    std::fs::write(dir.join("bad.toml"), "learning_rate = 0.1\n").unwrap();
    let bad = start(&dir, &["train", "--data", "data", "--out", "run2", "--config", "bad.toml"])
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("unknown field `learning_rate`"), "{err}");
    assert!(!dir.join("run2").exists(), "nothing is created for a refused run");
    let args = ["train", "--data", "data", "--out", "run3", "--model", "d1", "--context", "30000"];
    let long = minillm(&dir, &args).output().unwrap();
    let err = String::from_utf8_lossy(&long.stderr);
    assert!(err.contains("cannot fill one window of context 30000"), "{err}");
}
