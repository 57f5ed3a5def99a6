//! Every parser of outside input against mutations of a valid file, as a bounded, seeded
//! property test (proptest, on the stable toolchain): bytes overwritten, inserted, removed and
//! the file cut short, including the values that break length fields (0, 0xFF.., 0x80..). The
//! property: the parser answers `Ok` or an error that is a sentence; it never panics (proptest
//! reports it, with the smallest input it finds), aborts on a huge allocation or hangs (either
//! kills this test binary). The parsers and their seeds are `common::parsers`, which the
//! `cargo fuzz` targets in `fuzz/` run too; every input that ever failed is kept in
//! `tests/fuzz_failures/<parser>/` and checked here on every run.
//!
//! `MINILLM_FUZZ_CASES` sets the inputs per parser for a long run (default 1000).

mod common;

use common::mutate::{apply, edit};
use common::parsers::{Failure, Parser, all};
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::path::PathBuf;
use std::time::Instant;

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The parsers, their seeds written into a directory of `user`'s own (tests run in parallel).
fn parsers(user: &str) -> Vec<Parser> {
    all(&tests_dir().join("fixtures"), &common::temp_dir(&format!("fuzz-seeds-{user}")))
}

fn parser(name: &str) -> Parser {
    parsers(name).into_iter().find(|p| p.name == name).unwrap()
}

/// Runs the parser named `name` on mutations of its valid input.
fn fuzz(name: &str) {
    let parser = parser(name);
    let cases = std::env::var("MINILLM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let dir = common::temp_dir(&format!("fuzz-{name}"));
    parser.prepare(&dir);
    // The valid input itself must parse, or the test proves nothing.
    if let Err(e) = parser.run(&dir, &parser.valid) {
        panic!("{name}: the valid input fails: {e:?}");
    }
    let config =
        Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(7), ..Default::default() };
    let start = Instant::now();
    let result = TestRunner::new(config).run(&proptest::collection::vec(edit(), 1..6), |edits| match parser
        .run(&dir, &apply(parser.valid.clone(), &edits))
    {
        Err(Failure::NotASentence(message)) => Err(proptest::test_runner::TestCaseError::fail(message)),
        _ => Ok(()),
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let rate = cases as f64 / start.elapsed().as_secs_f64();
    println!("{name}: {cases} mutated inputs, {rate:.0} per second, no failure");
}

#[test]
fn gguf_files() {
    fuzz("gguf");
}

#[test]
fn safetensors_checkpoints() {
    fuzz("safetensors");
}

#[test]
fn hf_config_json() {
    fuzz("config-gpt2");
    fuzz("config-llama");
}

#[test]
fn generation_config_json() {
    fuzz("generation-config");
}

#[test]
fn tokenizer_json() {
    fuzz("tokenizer-gpt2");
    fuzz("tokenizer-llama");
}

#[test]
fn vocab_json_and_merges_txt() {
    fuzz("vocab-json");
    fuzz("merges-txt");
}

#[test]
fn tiktoken_rank_files() {
    fuzz("tiktoken");
}

#[test]
fn token_shards() {
    fuzz("shard");
}

#[test]
fn jsonl_training_data() {
    fuzz("chat-jsonl");
    fuzz("preference-jsonl");
}

#[test]
fn training_config_toml() {
    fuzz("toml");
}

/// Every input that ever made a parser fail is kept, named for what it did, and must now be
/// refused with a sentence (or load).
#[test]
fn past_failures_stay_fixed() {
    let corpus = tests_dir().join("fuzz_failures");
    let mut checked = 0;
    for parser in parsers("past-failures") {
        let Ok(entries) = std::fs::read_dir(corpus.join(parser.name)) else { continue };
        let dir = common::temp_dir(&format!("fuzz-failures-{}", parser.name));
        parser.prepare(&dir);
        for entry in entries {
            let path = entry.unwrap().path();
            if let Err(Failure::NotASentence(message)) = parser.run(&dir, &std::fs::read(&path).unwrap()) {
                panic!("{}: {message}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no past failures found under {}", corpus.display());
}

/// Not a test: `scripts/fuzz.sh` runs it (`--ignored`) to write each parser's valid input to
/// `$MINILLM_FUZZ_SEEDS/<parser>/valid`, the seeds of the long `cargo fuzz` runs.
#[test]
#[ignore = "writes the seed corpus of scripts/fuzz.sh"]
fn seed_corpus() {
    let out = std::env::var_os("MINILLM_FUZZ_SEEDS").expect("MINILLM_FUZZ_SEEDS names the corpus directory");
    for parser in parsers("seed-corpus") {
        let dir = PathBuf::from(&out).join(parser.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("valid"), &parser.valid).unwrap();
    }
}
