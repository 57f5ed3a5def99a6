//! Tokenizer speed against the peers, on the same machine in the same run:
//!
//!     cargo bench -p minillm --bench tokenizer
//!
//! - encode, one thread: minillm vs tiktoken-rs (r50k_base, GPT-2), outputs checked identical;
//! - encode, all cores: minillm's parallel encoder, checked identical to one thread; HF
//!   `tokenizers` (GPT-2 files, one call) for scale;
//! - BPE training, vocabulary 8192: minillm vs HF `tokenizers`' trainer.
//!
//! Text: tinyshakespeare repeated to 10 MB when ../shared/data has it, else the built-in corpus.
//! Contenders alternate round by round (the machine's speed drifts) and the best round counts.
//! BENCH_ROUNDS sets the number of rounds (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use minillm::tokenizer::Pattern;
use minillm::tokenizer::train::{BpeConfig, train};
use minillm::{SpecialTokens, Tokenizer};
use std::time::Instant;

const TARGET_BYTES: usize = 10 * 1024 * 1024;

fn text() -> (String, &'static str) {
    let (base, name) = match common::shared_data("tinyshakespeare.txt") {
        Some(p) => (std::fs::read_to_string(p).unwrap(), "tinyshakespeare"),
        None => (minillm::corpus::builtin().to_string(), "the built-in corpus"),
    };
    let mut text = String::with_capacity(TARGET_BYTES + base.len());
    while text.len() < TARGET_BYTES {
        text.push_str(&base);
    }
    (text, name)
}

/// Best wall time in seconds of each contender, alternating them for `rounds` rounds.
fn race(rounds: usize, contenders: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; contenders.len()];
    for _ in 0..rounds {
        for (i, run) in contenders.iter_mut().enumerate() {
            let t = Instant::now();
            run();
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    best
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let (text, source) = text();
    let mb = text.len() as f64 / 1e6;
    let threads = rayon::current_num_threads();
    println!("text: {source}, {mb:.1} MB; {threads} threads; best of {rounds} rounds\n");

    let ours = Tokenizer::gpt2();
    let theirs = tiktoken_rs::r50k_base().unwrap();
    let one_pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let reference = theirs.encode_ordinary(&text);
    assert_eq!(ours.encode_ordinary(&text), reference, "minillm and tiktoken-rs disagree");
    assert_eq!(ours.encode_parallel(&text, SpecialTokens::AsText).unwrap(), reference);
    let t = race(
        rounds,
        &mut [
            &mut || drop(one_pool.install(|| ours.encode_ordinary(&text))),
            &mut || drop(theirs.encode_ordinary(&text)),
            &mut || drop(ours.encode_parallel(&text, SpecialTokens::AsText).unwrap()),
        ],
    );
    println!("encode GPT-2 ({} tokens, identical ids)", reference.len());
    println!("  minillm, 1 thread      {:>7.1} MB/s", mb / t[0]);
    println!("  tiktoken-rs, 1 thread  {:>7.1} MB/s", mb / t[1]);
    println!("  minillm, {threads} threads     {:>7.1} MB/s", mb / t[2]);
    println!("  ratio minillm / tiktoken-rs (1 thread): {:.2}x", t[1] / t[0]);

    // HF tokenizers is far slower per call; time it once on the first 1 MB.
    let dir = common::temp_dir("bench");
    std::fs::write(dir.join("vocab.json"), minillm::tokenizer::formats::to_vocab_json(ours)).unwrap();
    std::fs::write(dir.join("merges.txt"), minillm::tokenizer::formats::to_merges_txt(ours)).unwrap();
    let model = tokenizers::models::bpe::BPE::from_file(
        dir.join("vocab.json").to_str().unwrap(),
        dir.join("merges.txt").to_str().unwrap(),
    )
    .build()
    .unwrap();
    let mut hf = tokenizers::Tokenizer::new(model);
    hf.with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::byte_level::ByteLevel::default().add_prefix_space(false),
    ));
    let slice = &text[..text.floor_char_boundary(1_000_000)];
    let t0 = Instant::now();
    let hf_ids = hf.encode(slice, false).unwrap().get_ids().to_vec();
    let hf_secs = t0.elapsed().as_secs_f64();
    assert_eq!(hf_ids, ours.encode_ordinary(slice));
    println!("  HF tokenizers, 1 call  {:>7.1} MB/s (1 MB, once)\n", slice.len() as f64 / 1e6 / hf_secs);

    let vocab = 8192;
    let config = BpeConfig { vocab_size: vocab, pattern: Pattern::Gpt2, specials: vec![] };
    let train_rounds = rounds.min(3);
    assert_eq!(train(&[&text], &config, &mut |_| {}).unwrap().vocab_size(), vocab);
    assert_eq!(common::hf_train(&text, vocab).get_vocab_size(true), vocab);
    let t = race(
        train_rounds,
        &mut [&mut || drop(train(&[&text], &config, &mut |_| {}).unwrap()), &mut || {
            drop(common::hf_train(&text, vocab))
        }],
    );
    println!("BPE training, vocabulary {vocab}, {mb:.1} MB, best of {train_rounds}");
    println!("  minillm        {:>6.2} s", t[0]);
    println!("  HF tokenizers  {:>6.2} s", t[1]);
    println!("  ratio HF / minillm: {:.2}x", t[1] / t[0]);
    let _ = std::fs::remove_dir_all(dir);
}
