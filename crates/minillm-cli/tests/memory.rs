//! What `model info` says generating takes, against what `minillm generate` takes: its peak
//! resident memory (the kernel's count, VmHWM), less that of a run that loads only the
//! tokenizer (the program and tokenizer, which `model info` leaves out). For an f32, an f16 and
//! a q4_0 file of one model, so the saving of quantization is measured, not assumed.

mod common;

use minillm::model::{Gpt, ModelConfig};
use std::path::Path;
use std::process::Command;

/// Peak resident memory of `minillm ARGS` in bytes (as it reports it with `--report-memory`:
/// the kernel's VmHWM, which starts afresh at exec), and its standard output.
fn peak_rss(args: &[&str]) -> (usize, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minillm")).args(args).arg("--report-memory").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "minillm {args:?}: {stderr}");
    let mb: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak resident memory: ")?.strip_suffix(" MB")?.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory reported: {stderr}"));
    ((mb * 1e6) as usize, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The "total" of `model info`'s memory-to-generate table, in bytes.
fn stated_total(info: &str) -> usize {
    let line = info.lines().find(|l| l.trim_start().starts_with("total")).expect("a total line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let n: f64 = words[1].parse().unwrap();
    let unit = match words[2] {
        "MB" => 1e6,
        "GB" => 1e9,
        u => panic!("unit {u}"),
    };
    (n * unit) as usize
}

/// An f32 model directory of `config` with GPT-2's tokenizer, and its f16 and q4_0 files.
fn files(dir: &Path, config: ModelConfig) -> [String; 3] {
    let f32_dir = dir.join("f32");
    minillm::io::save_model(&f32_dir, &Gpt::new(config, 1).unwrap(), None).unwrap();
    minillm::tokenizer::formats::save(minillm::Tokenizer::gpt2(), &f32_dir.join("tokenizer.json")).unwrap();
    let path = |p: &Path| p.display().to_string();
    let files = [path(&f32_dir), path(&dir.join("f16.gguf")), path(&dir.join("q4_0.gguf"))];
    for (ty, file) in [("f16", &files[1]), ("q4_0", &files[2])] {
        let out = Command::new(env!("CARGO_BIN_EXE_minillm"))
            .args(["quantize", "--model", &files[0], "--type", ty, "--out", file])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    files
}

/// (measured peak, stated total) of generating 16 tokens after "Hello" (one token) from `file`.
fn generate_memory(file: &str) -> (usize, usize) {
    let (peak, _) =
        peak_rss(&["generate", "--model", file, "--max-new-tokens", "16", "--seed", "1", "Hello"]);
    let (_, info) = peak_rss(&["model", "info", "--model", file, "--context", "17"]);
    (peak, stated_total(&info))
}

/// The program and the tokenizer (read from tokenizer.json or from the GGUF file's metadata,
/// which costs differently) are not in `model info`'s figure: each file is compared with the
/// same kind of file of a tiny model with the same tokenizer, and the differences with the
/// differences of the statements.
#[cfg(target_os = "linux")]
#[test]
fn model_info_states_what_generate_takes_within_15_percent() {
    let dir = common::temp_dir("memory");
    // 51M parameters with GPT-2's vocabulary: 205 MB in f32; the tiny one has 1.7M.
    let big = files(&dir.join("big"), ModelConfig { block_size: 1024, ..ModelConfig::depth(8, 50257) });
    let tiny = ModelConfig { n_layer: 1, n_head: 1, n_embd: 32, ..ModelConfig::depth(1, 50257) };
    let tiny = files(&dir.join("tiny"), ModelConfig { block_size: 1024, ..tiny });
    let mut measured = Vec::new();
    for (big, tiny) in big.iter().zip(&tiny) {
        let ((peak, stated), (tiny_peak, tiny_stated)) = (generate_memory(big), generate_memory(tiny));
        let (used, said) = (peak.saturating_sub(tiny_peak), stated - tiny_stated);
        let ratio = used as f64 / said as f64;
        println!(
            "{big}: peak {peak} B, stated {stated} B; beyond the tiny model's: {used} B used, {said} B stated ({ratio:.3})"
        );
        assert!(
            (0.85..=1.15).contains(&ratio),
            "{big}: generate took {used} B more than a tiny model, model info said {said} B"
        );
        measured.push(peak);
    }
    // Quantization shrinks memory: the q4_0 process takes under a third of the f32 one.
    assert!(measured[2] * 3 < measured[0] && measured[1] < measured[0] * 7 / 10, "{measured:?}");
}
