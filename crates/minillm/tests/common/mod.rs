//! Test data the tests make themselves, and the optional shared data when it is present.
#![allow(dead_code)]

use minillm::rng::Rng;
use std::path::PathBuf;

/// Fragments that exercise every branch of the split patterns and of byte-level BPE.
const FRAGMENTS: &[&str] = &[
    "Hello", " world", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u{3000}", "\u{a0}",
    "don't", "I'm", "we'll", "they've", "you're", "she'd", "'s", "'S", "'LL", "O'Neil", "''",
    "42", " 1234567", "3.14159", "1,000,000", "0x1F", "-7", "½", "٣٤", "Ⅻ",
    "!", "?!", "...", " --", "(a)", "[x]", "{y: 1}", "\"quoted\"", "#", "@user", "a_b", "~/.rc",
    "fn main() { println!(\"hi\"); }", "    let x = vec![1, 2, 3];\n", "if x >= 10 && y != 0:",
    "café", "naïve", "Ελληνικά", "Привет", "mañana", "straße", "İstanbul", "e\u{301}",
    "日本語", "中文字符", "한국어", "ひらがな", " 東京", "😀", "👍🏽", "🦀🦀", "👨‍👩‍👧", "❤️",
    "\u{200b}", "\u{feff}", "𝐀𝐁", "𝟙𝟚", "\u{10FFFF}",
];

/// Deterministic text: every fragment once, then random mixtures of them.
pub fn tricky_text(seed: u64, pieces: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text: String = FRAGMENTS.concat();
    for _ in 0..pieces {
        text.push_str(*rng.pick(FRAGMENTS));
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
    let dir = std::env::temp_dir().join(format!("minillm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
