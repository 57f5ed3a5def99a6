//! Data-parallel training for real: `mpirun -np 2 minillm train|sft ...` against one process.
//! Two ranks with the global batch split between them train the same model as one process
//! with gradient accumulation (within float summation order), with and without the sharded
//! optimizer; checkpoints resume across rank counts; a rank that fails, dies or hangs stops the
//! run with a message and the last checkpoint resumes.
//!
//! Needs a build with `--features mpi` and OpenMPI's `mpirun`; otherwise each test says why it
//! skips (with MINILLM_REQUIRE_MPI set, as in CI, it fails instead).
#![cfg(unix)]

mod common;

use common::temp_dir;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the data-parallel tests can run here; a reason is printed when not.
fn mpi_ready() -> bool {
    let missing = if !cfg!(feature = "mpi") {
        Some("minillm was built without the mpi feature (cargo test --features mpi)")
    } else if Command::new("mpirun").arg("--version").output().is_err() {
        Some("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("MINILLM_REQUIRE_MPI").is_some() => {
            panic!("MINILLM_REQUIRE_MPI is set but {why}")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// `mpirun` for `ranks` processes on this one machine (as root in CI; 2 ranks on 2 cores).
fn mpirun(dir: &Path, ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &ranks.to_string(), "--oversubscribe"])
        .current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers refuse the cross-process copy OpenMPI tries first for large messages.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `minillm ARGS` on `ranks` processes (1: the plain binary, no MPI at all).
fn train(dir: &Path, ranks: usize, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_minillm");
    let out = if ranks == 1 {
        Command::new(bin).args(["--threads", "1"]).args(args).current_dir(dir).output().unwrap()
    } else {
        mpirun(dir, ranks).arg(bin).args(args).output().unwrap()
    };
    assert!(out.status.success(), "{ranks} rank(s) {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Byte-level shards of part of the built-in corpus.
fn prepare(dir: &Path) {
    std::fs::write(dir.join("text.txt"), &minillm::corpus::builtin()[..60_000]).unwrap();
    common::ok(&common::minillm(
        dir,
        &["prepare", "--input", "text.txt", "--tokenizer", "bytes", "--out", "data"],
    ));
}

/// Global batch 4 windows x 2 micro-batches; dropout on, so the masks must match too.
const RUN: &[&str] = &[
    "--model",
    "d2",
    "--context",
    "32",
    "--batch-size",
    "4",
    "--grad-accum",
    "2",
    "--dropout",
    "0.1",
    "--eval-every",
    "5",
    "--eval-batches",
    "2",
    "--sample-tokens",
    "0",
];

fn pretrain(dir: &Path, ranks: usize, out: &str, steps: &str, extra: &[&str]) {
    let mut args = vec!["train", "--data", "data", "--out", out, "--max-steps", steps];
    args.extend_from_slice(RUN);
    args.extend_from_slice(extra);
    train(dir, ranks, &args);
}

fn resume(dir: &Path, ranks: usize, run: &str, steps: &str, extra: &[&str]) {
    let mut args = vec!["train", "--data", "data", "--resume", run, "--max-steps", steps];
    args.extend_from_slice(extra);
    train(dir, ranks, &args);
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

fn weights(run: &Path) -> Vec<f32> {
    minillm::io::load_model(&minillm::io::model_dir(run).unwrap()).unwrap().params
}

fn moments(run: &Path) -> Vec<u8> {
    let dir = minillm::io::model_dir(run).unwrap();
    [
        std::fs::read(dir.join("optimizer_m.safetensors")).unwrap(),
        std::fs::read(dir.join("optimizer_v.safetensors")).unwrap(),
    ]
    .concat()
}

/// ||a - b|| / ||a||.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let n: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
    (d / n).sqrt()
}

/// The same training, within float summation order: every step's loss, and the weights.
fn assert_same_training(dir: &Path, a: &str, b: &str) {
    let (la, lb) = (losses(&dir.join(a)), losses(&dir.join(b)));
    assert_eq!(la.len(), lb.len(), "{a} and {b} logged different steps");
    for (step, (x, y)) in la.iter().zip(&lb).enumerate() {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "step {}: loss {x} in {a}, {y} in {b}", step + 1);
    }
    let r = relative(&weights(&dir.join(a)), &weights(&dir.join(b)));
    assert!(r < 1e-5, "the weights of {a} and {b} differ by {r:e} (relative)");
}

#[test]
fn two_ranks_train_the_same_model_as_one_process() {
    if !mpi_ready() {
        return;
    }
    let dir = temp_dir("dp-equal");
    prepare(&dir);
    pretrain(&dir, 1, "one", "10", &[]);
    pretrain(&dir, 2, "two", "10", &[]);
    pretrain(&dir, 2, "sharded", "10", &["--shard-optimizer"]);
    assert_same_training(&dir, "one", "two");
    assert_same_training(&dir, "one", "sharded");
    // The ranks really split the work: rank 0 logged 2 ranks and its time communicating.
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("two/metrics.jsonl")).unwrap().lines().last().unwrap(),
    )
    .unwrap();
    assert_eq!(last["ranks"], 2);
    assert!(last["comm_share"].as_f64().unwrap() >= 0.0);
    // A global batch that does not split evenly is refused, once, by rank 0.
    let mut args = vec!["train", "--data", "data", "--out", "odd", "--max-steps", "2"];
    args.extend(RUN.iter().map(|&a| if a == "2" { "3" } else { a }));
    assert!(args.windows(2).any(|w| w == ["--grad-accum", "3"]));
    let out = mpirun(&dir, 2).arg(env!("CARGO_BIN_EXE_minillm")).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("cannot be split over 2 ranks").count(), 1, "{err}");
}

#[test]
fn checkpoints_resume_on_any_number_of_ranks() {
    if !mpi_ready() {
        return;
    }
    let dir = temp_dir("dp-resume");
    prepare(&dir);
    pretrain(&dir, 1, "straight", "10", &[]);
    // 2 ranks (sharded moments, gathered on save), then 1 process; and the other way round.
    pretrain(&dir, 2, "two-then-one", "5", &["--shard-optimizer"]);
    resume(&dir, 1, "two-then-one", "10", &[]);
    pretrain(&dir, 1, "one-then-two", "5", &[]);
    resume(&dir, 2, "one-then-two", "10", &["--shard-optimizer"]);
    assert_same_training(&dir, "straight", "two-then-one");
    assert_same_training(&dir, "straight", "one-then-two");
    // On the same number of ranks a resumed run is the uninterrupted one, bit for bit.
    pretrain(&dir, 2, "two-straight", "10", &["--shard-optimizer"]);
    pretrain(&dir, 2, "two-resumed", "5", &["--shard-optimizer"]);
    resume(&dir, 2, "two-resumed", "10", &["--shard-optimizer"]);
    assert_eq!(losses(&dir.join("two-straight")), losses(&dir.join("two-resumed")));
    assert_eq!(weights(&dir.join("two-straight")), weights(&dir.join("two-resumed")));
    assert_eq!(moments(&dir.join("two-straight")), moments(&dir.join("two-resumed")));
}

#[test]
fn sft_on_two_ranks_equals_sft_in_one_process() {
    if !mpi_ready() {
        return;
    }
    let dir = temp_dir("dp-sft");
    prepare(&dir);
    pretrain(&dir, 1, "base", "4", &[]);
    let chats: String = (0..40)
        .map(|i| {
            let q = format!("What is {i} plus one?");
            let a = format!("{}.", i + 1);
            serde_json::json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.join("chats.jsonl"), chats).unwrap();
    let base = minillm::io::model_dir(&dir.join("base")).unwrap();
    let base = base.to_str().unwrap();
    let sft = |ranks, out| {
        let args = [
            "sft",
            "--model",
            base,
            "--data",
            "chats.jsonl",
            "--out",
            out,
            "--max-steps",
            "6",
            "--batch-size",
            "2",
            "--grad-accum",
            "2",
            "--eval-every",
            "3",
            "--sample-tokens",
            "0",
        ];
        train(&dir, ranks, &args)
    };
    sft(1, "sft-one");
    let out = sft(2, "sft-two");
    assert_same_training(&dir, "sft-one", "sft-two");
    // Rank 1 prints nothing: every line of the output is rank 0's, once.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("data-parallel: 2 ranks").count(), 1, "{text}");
}

/// The processes of `mpirun` that are rank `rank` (read from their environment).
fn pid_of_rank(rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(entry.path().join("environ")).ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains("dp-fail");
        (ours && env.split(|&b| b == 0).any(|v| v == wanted.as_bytes())).then_some(pid)
    })
}

/// Starts a long 2-rank run checkpointing every step, waits for a checkpoint, sends `signal` to
/// rank 1, and returns how the run ended and how long it took after the signal.
fn signal_rank_one(dir: &Path, run: &str, signal: &str, extra: &[&str]) -> (Output, Duration) {
    let run_dir = dir.join(run);
    let run_arg = run_dir.to_str().unwrap();
    let mut args = vec![
        "train",
        "--data",
        "data",
        "--out",
        run_arg,
        "--max-steps",
        "1000000",
        "--checkpoint-every",
        "1",
    ];
    args.extend_from_slice(RUN);
    args.extend_from_slice(extra);
    let child = mpirun(dir, 2).arg(env!("CARGO_BIN_EXE_minillm")).args(&args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join("latest.json").exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = pid_of_rank(1).expect("rank 1 is running");
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(sent.success());
    let at = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, at.elapsed())
}

#[test]
fn a_rank_that_dies_fails_or_hangs_stops_the_run_and_the_checkpoint_resumes() {
    if !mpi_ready() {
        return;
    }
    // The directory's name is how pid_of_rank finds this test's processes.
    let dir = temp_dir("dp-fail");
    prepare(&dir);

    // Killed: mpirun notices and stops the other rank.
    let (out, took) = signal_rank_one(&dir, "killed", "-KILL", &[]);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(30), "the run took {took:?} to stop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
    let step = |run: &str| {
        let latest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(run).join("latest.json")).unwrap())
                .unwrap();
        latest["step"].as_u64().unwrap()
    };
    let at = step("killed");
    resume(&dir, 2, dir.join("killed").to_str().unwrap(), &(at + 2).to_string(), &[]);
    assert_eq!(step("killed"), at + 2);

    // Stuck (stopped, not dead): rank 0 gives up after --comm-timeout with one line saying so.
    let (out, took) = signal_rank_one(&dir, "stuck", "-STOP", &["--comm-timeout", "3"]);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(60), "the run took {took:?} to stop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error (rank 0 of 2): no word from the other ranks for 3 s"), "{err}");
    resume(&dir, 1, dir.join("stuck").to_str().unwrap(), &(step("stuck") + 1).to_string(), &[]);

    // Failed at the start on one rank only (MPMD: rank 1 gets other data): one line, from rank 0.
    let bin = env!("CARGO_BIN_EXE_minillm");
    let out = mpirun(&dir, 1)
        .args([bin, "train", "--data", "data", "--out", "bad", "--max-steps", "2"])
        .args([":", "-np", "1", bin, "train", "--data", "nowhere", "--out", "bad", "--max-steps", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.matches("error: rank 1 failed: nowhere holds no train.bin").count(), 1, "{err}");
    assert!(!dir.join("bad/latest.json").exists());
    // Different settings on the ranks are refused the same way.
    let out = mpirun(&dir, 1)
        .args([bin, "train", "--data", "data", "--out", "mixed", "--max-steps", "2"])
        .args([
            ":",
            "-np",
            "1",
            bin,
            "train",
            "--data",
            "data",
            "--out",
            "mixed",
            "--max-steps",
            "2",
            "--lr",
            "0.1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: rank 1 failed: its settings differ from rank 0's"), "{err}");
}

/// Without the feature, a launch by mpirun is refused instead of training N copies into one
/// directory (runs in every build: the launcher's variables are set by hand).
#[test]
fn a_build_without_mpi_refuses_an_mpi_launch_and_the_flags_need_a_run() {
    let dir = temp_dir("dp-refuse");
    if !cfg!(feature = "mpi") {
        let out = Command::new(env!("CARGO_BIN_EXE_minillm"))
            .args(["train", "--data", "data", "--out", "run"])
            .current_dir(&dir)
            .env("OMPI_COMM_WORLD_SIZE", "2")
            .output()
            .unwrap();
        let err = common::failure(&out);
        assert!(err.contains("built without MPI") && err.contains("--features mpi"), "{err}");
    }
    let out = common::minillm(&dir, &["train", "--data", "data", "--out", "run", "--shard-optimizer"]);
    assert!(
        common::failure(&out).contains("--shard-optimizer and --comm-timeout apply to data-parallel runs")
    );
}
