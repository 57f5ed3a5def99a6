//! Tricky text for tokenizer tests: fragments that exercise every branch of the split patterns
//! and of byte-level BPE, alone and mixed. Its own file so that other crates' tests can include
//! it (it needs only minillm).

use minillm::rng::Rng;

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
    // Control characters: SmolLM2's vocabulary has no token for 0x04, 0x06, 0x13, 0x14, 0x16 and
    // 0x1D, and a missing byte between two mergeable ones is where HF and llama.cpp differ.
    "\u{4}",
    "!\u{4}!",
    "a\u{6}b",
    "\u{0}\u{1b}[0m\u{7f}",
    "x\u{13}\u{14}\u{16}\u{1d}y",
    "..\u{1d}..",
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
