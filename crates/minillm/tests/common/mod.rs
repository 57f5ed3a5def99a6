//! Test data the tests make themselves, and the optional shared data when it is present.
#![allow(dead_code)]

pub mod mutate;
pub mod parsers;

use minillm::rng::Rng;
use std::path::PathBuf;

/// Fragments that exercise every branch of the split patterns and of byte-level BPE.
const FRAGMENTS: &[&str] = &[
    "Hello",
    " world",
    "  ",
    "   ",
    "\t",
    "\t\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n ",
    "\u{3000}",
    "\u{a0}",
    "don't",
    "I'm",
    "we'll",
    "they've",
    "you're",
    "she'd",
    "'s",
    "'S",
    "'LL",
    "O'Neil",
    "''",
    "42",
    " 1234567",
    "3.14159",
    "1,000,000",
    "0x1F",
    "-7",
    "½",
    "٣٤",
    "Ⅻ",
    "!",
    "?!",
    "...",
    " --",
    "(a)",
    "[x]",
    "{y: 1}",
    "\"quoted\"",
    "#",
    "@user",
    "a_b",
    "~/.rc",
    "fn main() { println!(\"hi\"); }",
    "    let x = vec![1, 2, 3];\n",
    "if x >= 10 && y != 0:",
    "café",
    "naïve",
    "Ελληνικά",
    "Привет",
    "mañana",
    "straße",
    "İstanbul",
    "e\u{301}",
    "日本語",
    "中文字符",
    "한국어",
    "ひらがな",
    " 東京",
    "😀",
    "👍🏽",
    "🦀🦀",
    "👨‍👩‍👧",
    "❤️",
    "\u{200b}",
    "\u{feff}",
    "𝐀𝐁",
    "𝟙𝟚",
    "\u{10FFFF}",
];

/// Deterministic text: every fragment once, then random mixtures of them.
pub fn tricky_text(seed: u64, pieces: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text: String = FRAGMENTS.concat();
    for _ in 0..pieces {
        text.push_str(rng.pick::<&str>(FRAGMENTS));
        if rng.chance(0.3) {
            text.push(' ');
        }
    }
    text
}

/// Individual test strings: each fragment alone and in short random combinations.
pub fn tricky_strings(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<String> = FRAGMENTS.iter().map(|f| f.to_string()).collect();
    for _ in 0..n {
        let k = 1 + rng.below(6);
        out.push((0..k).map(|_| *rng.pick(FRAGMENTS)).collect());
    }
    out
}

/// A file under `../shared/data`, or `None` with a printed reason when it is absent.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(relative);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipping the part that needs {}: not present", path.display());
        None
    }
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// HF `tokenizers`' byte-level BPE trainer with the GPT-2 pre-tokenizer, fed line by line as
/// `train_from_files` would: the reference our trainer is compared with.
pub fn hf_train(text: &str, vocab_size: usize) -> tokenizers::Tokenizer {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(byte_level));
    tok.with_decoder(Some(byte_level));
    tok.train(&mut trainer, text.split_inclusive('\n')).unwrap();
    tok
}
