//! SentencePiece-style BPE, as HF stores the tokenizers of Llama 2, Mistral and TinyLlama.
//!
//! Spaces become '▁' (U+2581) and a '▁' is put before the text, so a word and its space are one
//! symbol stream; there is no pre-tokenizer, and BPE runs over a whole stretch of text. Its
//! symbols start as characters, not bytes: a character the vocabulary lacks falls back to its
//! UTF-8 bytes as `<0xNN>` tokens. The merges then join the lowest-ranked adjacent pair first,
//! leftmost on ties, as byte-level BPE does ([`super::bpe`]). A token's bytes are its piece
//! with '▁' read as a space and `<0xNN>` as that byte; decoding drops the one space the
//! encoder put in front.

use super::bpe::Bpe;
use rustc_hash::FxHashMap;

pub const SPACE: char = '▁';

/// Where the '▁' that stands for a leading space is put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepend {
    /// Before every stretch of text between special tokens (Llama 2's normalizer, Prepend +
    /// Replace), even one that starts with a space.
    EveryStretch,
    /// Before the text's first stretch, unless it starts with a space (a Metaspace
    /// pre-tokenizer with `prepend_scheme: first`).
    First,
    /// Before every stretch that does not start with a space (`prepend_scheme: always`).
    Always,
    /// Never (`prepend_scheme: never`).
    Never,
}

/// What a SentencePiece-style tokenizer adds to its [`Bpe`]: the pieces as written, which id
/// each single character has, and where the leading '▁' goes.
#[derive(Clone, Debug)]
pub struct SentencePiece {
    pub prepend: Prepend,
    /// Every id's piece as the vocabulary writes it ("▁the", "<0x0A>"; specials' text).
    pub pieces: Vec<String>,
    chars: FxHashMap<char, u32>,
}

impl SentencePiece {
    pub fn new(pieces: Vec<String>, prepend: Prepend) -> SentencePiece {
        let mut chars = FxHashMap::default();
        for (id, p) in pieces.iter().enumerate() {
            let mut it = p.chars();
            if let (Some(c), None) = (it.next(), it.next()) {
                chars.insert(c, id as u32);
            }
        }
        SentencePiece { prepend, pieces, chars }
    }

    /// The bytes a piece stands for.
    pub fn piece_bytes(piece: &str) -> Vec<u8> {
        if let Some(hex) = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'))
            && hex.len() == 2
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            return vec![b];
        }
        piece.replace(SPACE, " ").into_bytes()
    }

    /// Appends the ids of one stretch of text (no special tokens in it); `at_start` says whether
    /// it begins the whole text.
    pub fn encode_stretch(&self, bpe: &Bpe, text: &str, at_start: bool, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let lead = match self.prepend {
            Prepend::EveryStretch => true,
            Prepend::First => at_start && !text.starts_with(' '),
            Prepend::Always => !text.starts_with(' '),
            Prepend::Never => false,
        };
        let mut ids = Vec::with_capacity(text.len() + 1);
        let mut utf8 = [0u8; 4];
        for c in
            lead.then_some(SPACE).into_iter().chain(text.chars().map(|c| if c == ' ' { SPACE } else { c }))
        {
            match self.chars.get(&c) {
                Some(&id) => ids.push(id),
                None => ids.extend(c.encode_utf8(&mut utf8).bytes().map(|b| bpe.byte_ids()[b as usize])),
            }
        }
        bpe.merge_ids(&ids, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::bpe::Merge;

    #[test]
    fn pieces_read_as_their_bytes() {
        assert_eq!(SentencePiece::piece_bytes("▁the"), b" the");
        assert_eq!(SentencePiece::piece_bytes("<0x0A>"), b"\n");
        assert_eq!(SentencePiece::piece_bytes("<0x0G>"), b"<0x0G>");
    }

    #[test]
    fn characters_merge_and_unknown_ones_fall_back_to_bytes() {
        // ids: 0..256 the byte tokens, then ▁, a, b, ▁a, ▁ab.
        let mut pieces: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
        pieces.extend(["▁", "a", "b", "▁a", "▁ab"].map(String::from));
        let tokens = pieces.iter().map(|p| SentencePiece::piece_bytes(p)).collect();
        let m = |left, right, id| Merge { left, right, id };
        let bpe = Bpe::from_pieces(
            tokens,
            vec![m(256, 257, 259), m(259, 258, 260)],
            std::array::from_fn(|b| b as u32),
        )
        .unwrap();
        let sp = SentencePiece::new(pieces, Prepend::EveryStretch);
        let mut out = Vec::new();
        sp.encode_stretch(&bpe, "ab é", true, &mut out);
        assert_eq!(out, [260, 256, 0xC3, 0xA9]); // "▁ab", "▁", then é's two bytes
        let broken =
            Bpe::from_pieces(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()], vec![m(0, 1, 2)], [0; 256]);
        assert!(broken.unwrap_err().contains("does not join"));
    }
}
