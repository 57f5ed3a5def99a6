//! Tokenization: text -> pieces (pre-tokenizer) -> byte-level BPE -> token ids, and back.
//!
//! - [`bytes`]: GPT-2's byte <-> printable-character map used by vocabulary files.
//! - [`pretokenize`]: the split patterns as hand scanners: GPT-2's, GPT-4's (also Llama 3's),
//!   Qwen2's and SmolLM's ([`Pattern`]).
//! - [`bpe`]: merges and the encoding of one piece.
//! - [`sentencepiece`]: SentencePiece-style BPE over characters (Llama 2, Mistral, TinyLlama).
//! - [`train`]: learning merges from a corpus.
//! - [`formats`]: tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, tiktoken.
//! - [`simple`]: char-level and word-level tokenizers, for comparison.
//! - [`stream`]: decoding token by token without splitting UTF-8 characters.

pub(crate) mod bpe;
pub mod bytes;
mod classes;
pub mod formats;
pub(crate) mod pretokenize;
pub mod sentencepiece;
pub mod simple;
pub mod stream;
pub mod train;

use crate::error::{Error, Result};
use bpe::Bpe;
pub use pretokenize::{GPT2_REGEX, GPT4_REGEX, LLAMA3_REGEX, Pattern, QWEN2_REGEX};
use rayon::prelude::*;
use sentencepiece::{Prepend, SentencePiece};
use std::sync::OnceLock;

/// The names of end-of-text tokens, in the order [`Tokenizer::end_of_text`] looks for them.
pub const END_OF_TEXT_NAMES: [&str; 3] = ["<|endoftext|>", "</s>", "<|end_of_text|>"];

/// What `encode` does with special-token text such as `<|endoftext|>` found in its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialTokens {
    /// Fail with an error naming the token (the default: text from users must not be able to
    /// forge control tokens, as in tiktoken).
    Refuse,
    /// Encode each special token as its single id.
    Allow,
    /// Treat it as ordinary text.
    AsText,
}

/// A byte-level BPE tokenizer: split pattern, merges and special tokens.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    bpe: Bpe,
    pattern: Pattern,
    /// (text, id), sorted by id.
    specials: Vec<(String, u32)>,
    /// The special token put before every text a model reads, as HF's post-processor does
    /// (Llama 3's `<|begin_of_text|>`); see [`Tokenizer::encode_prompt`].
    prefix: Option<u32>,
    /// For SentencePiece-style BPE: its pieces and where '▁' goes (`pattern` is then unused).
    sentencepiece: Option<std::sync::Arc<SentencePiece>>,
}

impl Tokenizer {
    /// Puts a tokenizer together; special ids must be free slots of `bpe`'s id space.
    pub fn new(bpe: Bpe, pattern: Pattern, mut specials: Vec<(String, u32)>) -> Result<Tokenizer> {
        specials.sort_by_key(|s| s.1);
        for (i, (text, id)) in specials.iter().enumerate() {
            if text.is_empty() {
                return Err(Error::Invalid("a special token cannot be empty".into()));
            }
            match bpe.token_bytes(*id) {
                Some([]) => {}
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "special token {text} has id {id}, which is already a BPE token"
                    )));
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "special token {text} has id {id}, outside the vocabulary of {}",
                        bpe.n_ids()
                    )));
                }
            }
            if specials[..i].iter().any(|s| s.0 == *text || s.1 == *id) {
                return Err(Error::Invalid(format!("special token {text} is listed twice")));
            }
        }
        Ok(Tokenizer { bpe, pattern, specials, prefix: None, sentencepiece: None })
    }

    /// A SentencePiece-style tokenizer (see [`sentencepiece`]).
    pub fn sentencepiece_from(
        bpe: Bpe,
        sp: SentencePiece,
        specials: Vec<(String, u32)>,
    ) -> Result<Tokenizer> {
        let mut tok = Tokenizer::new(bpe, Pattern::Gpt2, specials)?;
        tok.sentencepiece = Some(std::sync::Arc::new(sp));
        Ok(tok)
    }

    /// The SentencePiece settings, for a SentencePiece-style tokenizer.
    pub fn sentencepiece(&self) -> Option<&SentencePiece> {
        self.sentencepiece.as_deref()
    }

    /// This tokenizer with `prefix` (a special token's id, or none) put before every prompt.
    pub fn with_prefix(mut self, prefix: Option<u32>) -> Result<Tokenizer> {
        if let Some(id) = prefix.filter(|&id| !self.is_special(id)) {
            return Err(Error::Invalid(format!("the prefix token {id} is not a special token")));
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// The special token every text a model reads starts with, if the tokenizer has one.
    pub fn prefix(&self) -> Option<u32> {
        self.prefix
    }

    /// Encodes text as a model reads it: after the tokenizer's prefix token, if it has one
    /// (HF's `tokenizer(text)`, whose post-processor adds it), with special-token text kept as
    /// text. What `generate`, `eval`, `inspect` and the server feed the model.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 2);
        out.extend(self.prefix);
        self.encode_into(text, SpecialTokens::AsText, &mut out)?;
        Ok(out)
    }

    /// GPT-2's tokenizer (r50k_base), built from the merges embedded in the binary.
    pub fn gpt2() -> &'static Tokenizer {
        static GPT2: OnceLock<Tokenizer> = OnceLock::new();
        GPT2.get_or_init(|| {
            formats::from_gpt2_vocab_bpe(include_str!("../../assets/gpt2/vocab.bpe"))
                .expect("the embedded GPT-2 vocab.bpe is valid")
        })
    }

    /// The 256-symbol byte-level vocabulary: one token per byte, no merges (character-level
    /// for ASCII text, as nanoGPT's shakespeare_char).
    pub fn bytes() -> Tokenizer {
        let bpe =
            Bpe::new(std::array::from_fn(|b| b as u32), Vec::new(), 256).expect("256 bytes are a vocabulary");
        Tokenizer::new(bpe, Pattern::Gpt2, Vec::new()).expect("no specials to clash")
    }

    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    pub fn bpe(&self) -> &Bpe {
        &self.bpe
    }

    pub(crate) fn bpe_mut(&mut self) -> &mut Bpe {
        &mut self.bpe
    }

    /// Number of ids, BPE tokens and special tokens together.
    pub fn vocab_size(&self) -> usize {
        self.bpe.n_ids()
    }

    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.specials.iter().find(|s| s.0 == text).map(|s| s.1)
    }

    /// The special token that ends a document, by the names the tokenizers minillm reads give
    /// it: GPT-2's and Qwen2's `<|endoftext|>`, SentencePiece's `</s>`, Llama 3's
    /// `<|end_of_text|>`.
    pub fn end_of_text(&self) -> Option<u32> {
        END_OF_TEXT_NAMES.iter().find_map(|name| self.special_id(name))
    }

    /// The bytes of a token (a special token's are its text); `None` for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        match self.bpe.token_bytes(id) {
            Some([]) => self.specials.iter().find(|s| s.1 == id).map(|s| s.0.as_bytes()),
            other => other,
        }
    }

    /// A token's bytes as text, for showing it: a token that is part of a character shows
    /// U+FFFD, an unknown id the empty string.
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id).unwrap_or_default()).into_owned()
    }

    /// This tokenizer with `names` added as special tokens after the existing ids (names it
    /// already has are skipped); every existing id keeps its meaning.
    pub fn with_added_specials(&self, names: &[&str]) -> Result<Tokenizer> {
        let new: Vec<&str> = names.iter().copied().filter(|n| self.special_id(n).is_none()).collect();
        let n_ids = self.vocab_size() + new.len();
        let mut specials = self.specials.clone();
        specials.extend(new.iter().enumerate().map(|(i, n)| (n.to_string(), (self.vocab_size() + i) as u32)));
        let mut tok =
            Tokenizer::new(self.bpe.with_n_ids(n_ids), self.pattern, specials)?.with_prefix(self.prefix)?;
        if let Some(sp) = &self.sentencepiece {
            let mut pieces = sp.pieces.clone();
            pieces.extend(new.iter().map(|n| n.to_string()));
            tok.sentencepiece = Some(std::sync::Arc::new(SentencePiece::new(pieces, sp.prepend)));
        }
        Ok(tok)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.specials.iter().any(|s| s.1 == id)
    }

    /// Encodes text with no special-token handling at all (their text is ordinary text).
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_stretch(text, true, &mut out);
        out
    }

    /// One stretch of text between special tokens; `at_start` when it begins the whole text
    /// (where SentencePiece puts its leading '▁').
    fn encode_stretch(&self, text: &str, at_start: bool, out: &mut Vec<u32>) {
        if let Some(sp) = &self.sentencepiece {
            return sp.encode_stretch(&self.bpe, text, at_start, out);
        }
        for piece in self.pattern.split(text) {
            self.bpe.encode_piece(piece.as_bytes(), out);
        }
    }

    /// Encodes arbitrary bytes (no special tokens). Valid UTF-8 stretches are encoded as text;
    /// each byte that is not part of valid UTF-8 becomes its own single-byte token, so any file
    /// round-trips exactly through `decode_bytes` (unless the vocabulary lacks some bytes: those
    /// are dropped, as from text).
    pub fn encode_bytes(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len() / 4 + 1);
        for (i, chunk) in bytes.utf8_chunks().enumerate() {
            self.encode_stretch(chunk.valid(), i == 0, &mut out);
            let ids = chunk.invalid().iter().map(|&b| self.bpe.byte_ids()[b as usize]);
            out.extend(ids.filter(|&id| id != bpe::NO_TOKEN));
        }
        out
    }

    /// Encodes text, handling special-token text as `specials` says.
    pub fn encode(&self, text: &str, specials: SpecialTokens) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, specials, &mut out)?;
        Ok(out)
    }

    fn encode_into(&self, text: &str, specials: SpecialTokens, out: &mut Vec<u32>) -> Result<()> {
        if specials == SpecialTokens::AsText || self.specials.is_empty() {
            self.encode_stretch(text, true, out);
            return Ok(());
        }
        let mut rest = text;
        while let Some((at, name, id)) = self.next_special(rest) {
            if specials == SpecialTokens::Refuse {
                return Err(Error::SpecialTokenInText { name: name.to_string(), id });
            }
            self.encode_stretch(&rest[..at], rest.len() == text.len(), out);
            out.push(id);
            rest = &rest[at + name.len()..];
        }
        self.encode_stretch(rest, rest.len() == text.len(), out);
        Ok(())
    }

    /// The first special token in `text` (the longest one where two start together).
    fn next_special<'a>(&'a self, text: &str) -> Option<(usize, &'a str, u32)> {
        self.specials
            .iter()
            .filter_map(|(name, id)| text.find(name.as_str()).map(|at| (at, name.as_str(), *id)))
            .min_by_key(|&(at, name, _)| (at, std::cmp::Reverse(name.len())))
    }

    /// Like [`encode`](Self::encode), on all cores: the text is cut between words into chunks
    /// that pre-tokenize exactly as inside the whole text, so the ids are identical.
    pub fn encode_parallel(&self, text: &str, specials: SpecialTokens) -> Result<Vec<u32>> {
        const CHUNK: usize = 256 * 1024;
        // SentencePiece merges across words (and puts '▁' before each stretch): no cuts.
        if text.len() < 2 * CHUNK || self.sentencepiece.is_some() {
            return self.encode(text, specials);
        }
        if specials == SpecialTokens::Refuse && self.next_special(text).is_some() {
            return self.encode(text, specials); // the same error, from one place
        }
        // Cut only between words, never inside a special token: the cuts fall on a space or
        // newline between two letters, which no special token of ours spans unless it holds
        // whitespace; such tokenizers take the sequential path.
        if self.specials.iter().any(|s| s.0.contains([' ', '\n'])) {
            return self.encode(text, specials);
        }
        let cuts = pretokenize::chunk_boundaries(text, CHUNK);
        let parts: Vec<Result<Vec<u32>>> =
            cuts.par_windows(2).map(|w| self.encode(&text[w[0]..w[1]], specials)).collect();
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        for part in parts {
            out.extend(part?);
        }
        Ok(out)
    }

    /// How many bytes `ids` decode to (unknown ids count 0): the denominator of bits per byte.
    pub fn decoded_len(&self, ids: &[u32]) -> usize {
        ids.iter().map(|&id| self.token_bytes(id).map_or(0, <[u8]>::len)).sum()
    }

    /// The exact bytes of a token sequence: lossless even when tokens split a UTF-8 character.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes_or_err(id)?);
        }
        Ok(out)
    }

    /// Decodes to text; byte sequences that are not UTF-8 become U+FFFD. A SentencePiece-style
    /// tokenizer drops the one space its encoder puts in front, as HF's decoder does.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes = self.decode_bytes(ids)?;
        let lead = self.sentencepiece.as_ref().is_some_and(|sp| sp.prepend != Prepend::Never);
        let bytes = if lead { bytes.strip_prefix(b" ").unwrap_or(&bytes) } else { &bytes };
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    pub(crate) fn token_bytes_or_err(&self, id: u32) -> Result<&[u8]> {
        match self.token_bytes(id) {
            Some(b) if !b.is_empty() => Ok(b),
            _ => Err(Error::UnknownToken { id, vocab: self.vocab_size() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_encodes_the_capital_of_france() {
        let ids = Tokenizer::gpt2().encode_ordinary("The capital of France is");
        assert_eq!(ids, [464, 3139, 286, 4881, 318]);
        assert_eq!(Tokenizer::gpt2().vocab_size(), 50257);
        assert_eq!(Tokenizer::gpt2().special_id("<|endoftext|>"), Some(50256));
    }

    #[test]
    fn special_tokens_are_refused_allowed_or_plain_text() {
        let tok = Tokenizer::gpt2();
        let text = "Hi<|endoftext|>there";
        let err = tok.encode(text, SpecialTokens::Refuse).unwrap_err();
        assert!(err.to_string().contains("<|endoftext|>"), "{err}");
        assert_eq!(tok.encode(text, SpecialTokens::Allow).unwrap(), [17250, 50256, 8117]);
        let plain = tok.encode(text, SpecialTokens::AsText).unwrap();
        assert!(plain.len() > 3 && !plain.contains(&50256));
        assert_eq!(tok.decode(&plain).unwrap(), text);
    }

    #[test]
    fn unknown_ids_are_an_error_not_a_panic() {
        let err = Tokenizer::gpt2().decode(&[464, 99999]).unwrap_err();
        assert!(err.to_string().contains("99999"), "{err}");
    }
}
