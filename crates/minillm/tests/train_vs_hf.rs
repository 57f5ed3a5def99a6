//! Our BPE trainer against HF `tokenizers`' trainer: same settings, compression of held-out text
//! within 2%. Also: training is deterministic and independent of the thread count.

mod common;

use minillm::tokenizer::Pattern;
use minillm::tokenizer::train::{BpeConfig, train};

/// Trains both on the first 90% and returns (ours, HF) bytes per token on the last 10%.
fn compare(text: &str, vocab_size: usize) -> (f64, f64) {
    let split = text.len() * 9 / 10;
    let split = (split..text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
    let (train_text, held_out) = text.split_at(split);
    let config = BpeConfig { vocab_size, pattern: Pattern::Gpt2, specials: vec![] };
    let ours = train(&[train_text], &config, &mut |_| {}).unwrap();
    let hf = common::hf_train(train_text, vocab_size);
    assert_eq!(ours.vocab_size(), vocab_size);
    assert_eq!(hf.get_vocab_size(true), vocab_size);
    let ours_tokens = ours.encode_ordinary(held_out).len();
    let hf_tokens = hf.encode(held_out, false).unwrap().get_ids().len();
    let bpt = |n: usize| held_out.len() as f64 / n as f64;
    (bpt(ours_tokens), bpt(hf_tokens))
}

fn assert_within_two_percent(name: &str, (ours, hf): (f64, f64)) {
    println!("{name}: bytes per token on held-out text: minillm {ours:.4}, HF tokenizers {hf:.4}");
    assert!((ours / hf - 1.0).abs() < 0.02, "{name}: minillm {ours:.4} vs HF {hf:.4}");
}

#[test]
fn compresses_like_hf_on_the_builtin_corpus() {
    assert_within_two_percent("builtin corpus, vocab 1024", compare(minillm::corpus::builtin(), 1024));
}

#[test]
fn compresses_like_hf_on_tinyshakespeare() {
    let Some(path) = common::shared_data("tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    assert_within_two_percent("tinyshakespeare, vocab 4096", compare(&text, 4096));
}

#[test]
fn training_is_deterministic_across_thread_counts() {
    let text = &minillm::corpus::builtin()[..400_000];
    let config = BpeConfig { vocab_size: 800, pattern: Pattern::Gpt4, specials: vec!["<|end|>".into()] };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| train(&[text], &config, &mut |_| {}).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.bpe().merges(), two.bpe().merges());
    assert_eq!(
        minillm::tokenizer::formats::to_hf_json(&one),
        minillm::tokenizer::formats::to_hf_json(&train(&[text], &config, &mut |_| {}).unwrap())
    );
}
