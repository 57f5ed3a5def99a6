//! Pre-tokenization: cutting text into pieces before BPE runs inside each piece.
//!
//! Byte-level BPE never merges across piece boundaries, so words, numbers, punctuation and
//! whitespace stay separate tokens ("dog." is never one token). GPT-2 cuts with the regex
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! and GPT-4 (`cl100k`) with
//!
//! ```text
//! '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+
//! ```
//!
//! SmolLM cuts every digit off on its own first, then applies GPT-2's regex to each stretch of
//! text between digits (HF's `Digits` pre-tokenizer before a regex `ByteLevel`). Qwen2 uses
//! GPT-4's pattern with single digits (`\p{N}` for `\p{N}{1,3}`); Llama 3's
//! tokenizer.json spells GPT-4's pattern differently (`(?i:'s|'t|...)`, greedy `?` and `+` for
//! possessive ones, `\s*[\r\n]+`) with the same cuts, so both spellings read as `Gpt4`.
//!
//! The look-ahead `\s+(?!\S)` (a run of spaces gives its last space to the next word) is beyond
//! the linear-time `regex` crate, and a backtracking engine is slow. So each pattern is written
//! here as a small hand scanner, one branch per alternative, in the regex's order. The tests
//! check them against `fancy-regex` running the patterns above.

use super::classes::{CharClass, class_of};
use std::fmt;
use std::str::FromStr;

/// The regex used to split text before BPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pattern {
    /// GPT-2's pattern (also r50k / p50k).
    #[default]
    Gpt2,
    /// GPT-4's `cl100k_base` pattern: case-insensitive contractions, numbers in groups of 3.
    /// Llama 3 splits with it too.
    Gpt4,
    /// Qwen2's: GPT-4's with every digit on its own.
    Qwen2,
    /// SmolLM's: every digit on its own, GPT-2's pattern between digits.
    Gpt2Digits,
}

pub const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
pub const GPT4_REGEX: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
/// GPT-4's pattern as Llama 3's tokenizer.json writes it (the same cuts).
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pattern, as its tokenizer.json writes it.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Gpt2 => "gpt2",
            Pattern::Gpt4 => "gpt4",
            Pattern::Qwen2 => "qwen2",
            Pattern::Gpt2Digits => "gpt2-digits",
        }
    }

    /// The regex; for `Gpt2Digits` the one applied between digits.
    pub fn regex(self) -> &'static str {
        match self {
            Pattern::Gpt2 | Pattern::Gpt2Digits => GPT2_REGEX,
            Pattern::Gpt4 => GPT4_REGEX,
            Pattern::Qwen2 => QWEN2_REGEX,
        }
    }

    /// The pattern whose regex is exactly `regex` (or Llama 3's spelling of GPT-4's), if it is
    /// one we implement.
    pub fn from_regex(regex: &str) -> Option<Pattern> {
        if regex == LLAMA3_REGEX {
            return Some(Pattern::Gpt4);
        }
        [Pattern::Gpt2, Pattern::Gpt4, Pattern::Qwen2].into_iter().find(|p| p.regex() == regex)
    }

    /// Splits `text` into pieces; concatenated, they give back `text`.
    pub fn split(self, text: &str) -> Pieces<'_> {
        Pieces { text, pos: 0, pattern: self, stretch_end: 0 }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gpt2" | "r50k" => Ok(Pattern::Gpt2),
            "gpt4" | "cl100k" | "llama3" => Ok(Pattern::Gpt4),
            "qwen2" => Ok(Pattern::Qwen2),
            "gpt2-digits" | "smollm" => Ok(Pattern::Gpt2Digits),
            _ => Err(format!(
                "unknown split pattern '{s}': use gpt2 (GPT-2, r50k), gpt4 (GPT-4, cl100k, Llama 3), \
                 qwen2 (gpt4 with single digits) or gpt2-digits (SmolLM: single digits, gpt2 between)"
            )),
        }
    }
}

/// Iterator over the pieces of a text (see [`Pattern::split`]).
pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    pattern: Pattern,
    /// For `Gpt2Digits`: where the stretch of text before the next digit ends (found once per
    /// stretch, not once per piece).
    stretch_end: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let end = match self.pattern {
            Pattern::Gpt2 => gpt2_piece_end(self.text, self.pos),
            Pattern::Gpt4 => gpt4_piece_end(self.text, self.pos, 3),
            Pattern::Qwen2 => gpt4_piece_end(self.text, self.pos, 1),
            Pattern::Gpt2Digits => {
                let (_, class, len) = char_at(self.text, self.pos).expect("pos is inside the text");
                if class == CharClass::Number {
                    self.pos + len
                } else {
                    if self.stretch_end <= self.pos {
                        let rest = &self.text[self.pos..];
                        self.stretch_end = self.pos
                            + rest
                                .char_indices()
                                .find(|&(_, c)| class_of(c) == CharClass::Number)
                                .map_or(rest.len(), |(i, _)| i);
                    }
                    // GPT-2's regex sees the stretch alone: its look-ahead stops at the digit.
                    gpt2_piece_end(&self.text[..self.stretch_end], self.pos)
                }
            }
        };
        debug_assert!(end > self.pos);
        let piece = &self.text[self.pos..end];
        self.pos = end;
        Some(piece)
    }
}

const ASCII_CLASS: [CharClass; 128] = {
    let mut table = [CharClass::Other; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        table[i] = if c.is_ascii_alphabetic() {
            CharClass::Letter
        } else if c.is_ascii_digit() {
            CharClass::Number
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C) {
            CharClass::Space
        } else {
            CharClass::Other
        };
        i += 1;
    }
    table
};

/// The char at byte offset `i` (a char boundary), its class and its UTF-8 length.
#[inline(always)]
fn char_at(text: &str, i: usize) -> Option<(char, CharClass, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 128 {
        return Some((b as char, ASCII_CLASS[b as usize], 1));
    }
    let c = text[i..].chars().next()?;
    Some((c, class_of(c), c.len_utf8()))
}

/// End of the run of characters of class `class` starting at `i`.
#[inline(always)]
fn run_end(text: &str, mut i: usize, class: CharClass) -> usize {
    while let Some((_, cl, len)) = char_at(text, i) {
        if cl != class {
            break;
        }
        i += len;
    }
    i
}

/// End of a run of `[^\s\p{L}\p{N}]`: anything that is not a letter, number or space.
#[inline(always)]
fn other_run_end(text: &str, i: usize) -> usize {
    run_end(text, i, CharClass::Other)
}

/// `\s+(?!\S)|\s+` at `start`, whose whitespace run ends at `run_end`: the run gives its last
/// character to whatever follows, unless the run ends the text or is a single character.
#[inline(always)]
fn whitespace_piece_end(text: &str, start: usize, run_end: usize) -> usize {
    if run_end == text.len() {
        return run_end;
    }
    let last_len = text[start..run_end].chars().next_back().map_or(0, char::len_utf8);
    if run_end - start > last_len { run_end - last_len } else { run_end }
}

fn gpt2_piece_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let (c, class, len) = char_at(text, start).expect("start is inside the text");
    let after = start + len;
    // 's|'t|'re|'ve|'m|'ll|'d
    if c == '\'' {
        match bytes.get(after) {
            Some(b's' | b't' | b'm' | b'd') => return after + 1,
            Some(b'r') if bytes.get(after + 1) == Some(&b'e') => return after + 2,
            Some(b'v') if bytes.get(after + 1) == Some(&b'e') => return after + 2,
            Some(b'l') if bytes.get(after + 1) == Some(&b'l') => return after + 2,
            _ => {}
        }
    }
    // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let (body, body_class) = if c == ' ' {
        match char_at(text, after) {
            Some((_, cl, _)) if cl != CharClass::Space => (after, cl),
            _ => (start, class),
        }
    } else {
        (start, class)
    };
    if body_class != CharClass::Space {
        return run_end(text, body, body_class);
    }
    // \s+(?!\S)|\s+
    let end = run_end(text, start, CharClass::Space);
    whitespace_piece_end(text, start, end)
}

/// GPT-4's pattern with numbers of up to `max_digits` digits (3; Qwen2's 1).
fn gpt4_piece_end(text: &str, start: usize, max_digits: usize) -> usize {
    let bytes = text.as_bytes();
    let (c, class, len) = char_at(text, start).expect("start is inside the text");
    let after = start + len;
    // '(?i:[sdmt]|ll|ve|re)
    if c == '\'' {
        let lower = |i: usize| bytes.get(i).map(u8::to_ascii_lowercase);
        match lower(after) {
            Some(b's' | b'd' | b'm' | b't') => return after + 1,
            Some(b'l') if lower(after + 1) == Some(b'l') => return after + 2,
            Some(b'v' | b'r') if lower(after + 1) == Some(b'e') => return after + 2,
            _ => {}
        }
    }
    let next = char_at(text, after);
    // [^\r\n\p{L}\p{N}]?+\p{L}+
    if class == CharClass::Letter {
        return run_end(text, start, CharClass::Letter);
    }
    if class != CharClass::Number && c != '\r' && c != '\n' && matches!(next, Some((_, CharClass::Letter, _)))
    {
        return run_end(text, after, CharClass::Letter);
    }
    // \p{N}{1,3}
    if class == CharClass::Number {
        let mut end = after;
        for _ in 1..max_digits {
            match char_at(text, end) {
                Some((_, CharClass::Number, l)) => end += l,
                _ => break,
            }
        }
        return end;
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*`
    let other_start = if class == CharClass::Other {
        Some(start)
    } else if c == ' ' && matches!(next, Some((_, CharClass::Other, _))) {
        Some(after)
    } else {
        None
    };
    if let Some(i) = other_start {
        let mut end = other_run_end(text, i);
        while matches!(bytes.get(end), Some(b'\r' | b'\n')) {
            end += 1;
        }
        return end;
    }
    // \s*[\r\n]: the longest stretch of the whitespace run that ends in a line break.
    let end = run_end(text, start, CharClass::Space);
    if let Some(last_break) = bytes[start..end].iter().rposition(|&b| b == b'\r' || b == b'\n') {
        return start + last_break + 1;
    }
    // \s+(?!\S)|\s+
    whitespace_piece_end(text, start, end)
}

/// Byte offsets where `text` may be cut into chunks that split into the same pieces on their own
/// as inside the whole text, for every pattern: at a space or newline between two letters (the
/// word before ends there, and no pattern looks behind). Used to spread work over threads.
pub fn chunk_boundaries(text: &str, target_chunk: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    let mut pos = target_chunk;
    while pos < text.len() {
        let found = bytes[pos..]
            .windows(3)
            .position(|w| {
                w[0].is_ascii_alphabetic() && matches!(w[1], b' ' | b'\n') && w[2].is_ascii_alphabetic()
            })
            .map(|p| pos + p + 1);
        match found {
            Some(cut) => {
                cuts.push(cut);
                pos = cut + target_chunk;
            }
            None => break,
        }
    }
    cuts.push(text.len());
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(p: Pattern, text: &str) -> Vec<&str> {
        p.split(text).collect()
    }

    #[test]
    fn gpt2_splits_words_spaces_and_contractions() {
        assert_eq!(
            pieces(Pattern::Gpt2, "Hello world!  It's  42\n\n"),
            ["Hello", " world", "!", " ", " It", "'s", " ", " 42", "\n\n"]
        );
    }

    #[test]
    fn gpt4_groups_digits_by_three_and_folds_case_in_contractions() {
        assert_eq!(
            pieces(Pattern::Gpt4, "I'LL pay 1234567.\n\nOK"),
            ["I", "'LL", " pay", " ", "123", "456", "7", ".\n\n", "OK"]
        );
    }

    #[test]
    fn chunk_boundaries_cut_between_words() {
        let text = "one two three four five six seven";
        let cuts = chunk_boundaries(text, 5);
        assert_eq!(cuts.first(), Some(&0));
        assert_eq!(cuts.last(), Some(&text.len()));
        for &c in &cuts[1..cuts.len() - 1] {
            assert_eq!(&text[c..c + 1], " ");
        }
    }
}
