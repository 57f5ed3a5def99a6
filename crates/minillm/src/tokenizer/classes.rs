//! Character classes the split patterns use: `\p{L}` (letters), `\p{N}` (numbers), `\s`.
//!
//! The tables come from `regex-syntax`, the same Unicode data the `regex` and `fancy-regex`
//! crates (and so tiktoken and HF tokenizers) match with, so our hand-written splitters classify
//! every code point exactly as the reference regex would. ASCII and the Basic Multilingual Plane
//! are looked up in a flat table; rarer code points by binary search.

use regex_syntax::hir::{Class, HirKind};
use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum CharClass {
    Letter,
    Number,
    Space,
    Other,
}

struct Tables {
    bmp: Vec<CharClass>,
    /// Sorted, non-overlapping (start, end, class) ranges above the BMP; everything else is Other.
    astral: Vec<(u32, u32, CharClass)>,
}

fn unicode_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::parse(pattern).expect("built-in class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        other => unreachable!("{pattern} parsed to {other:?}"),
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut bmp = vec![CharClass::Other; 0x10000];
        let mut astral = Vec::new();
        for (pattern, class) in
            [(r"\p{L}", CharClass::Letter), (r"\p{N}", CharClass::Number), (r"\s", CharClass::Space)]
        {
            for (start, end) in unicode_ranges(pattern) {
                for code in start..=end.min(0xFFFF) {
                    bmp[code as usize] = class;
                }
                if end > 0xFFFF {
                    astral.push((start.max(0x10000), end, class));
                }
            }
        }
        astral.sort_unstable_by_key(|r| r.0);
        Tables { bmp, astral }
    })
}

/// The class of `c` under the split patterns' definitions.
#[inline]
pub fn class_of(c: char) -> CharClass {
    let code = c as u32;
    if code < 0x10000 {
        return tables().bmp[code as usize];
    }
    let astral = &tables().astral;
    match astral.binary_search_by(|r| r.0.cmp(&code)) {
        Ok(i) => astral[i].2,
        Err(0) => CharClass::Other,
        Err(i) if code <= astral[i - 1].1 => astral[i - 1].2,
        Err(_) => CharClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_familiar_characters() {
        use CharClass::*;
        for (c, class) in [
            ('a', Letter),
            ('É', Letter),
            ('字', Letter),
            ('7', Number),
            ('½', Number),
            ('٣', Number),
            (' ', Space),
            ('\u{3000}', Space),
            ('\n', Space),
            ('!', Other),
            ('\u{0301}', Other), // combining accent: a mark, not a letter
            ('😀', Other),
            ('𝐀', Letter), // mathematical bold A, above the BMP
            ('𝟙', Number),
        ] {
            assert_eq!(class_of(c), class, "{c:?}");
        }
    }
}
