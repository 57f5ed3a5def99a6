//! Decoding one token at a time, for streaming output.
//!
//! A byte-level token can end in the middle of a UTF-8 character (an emoji is often two or
//! three tokens). Printing each token's bytes on its own would print garbage; this decoder holds
//! back an incomplete character until the token that completes it arrives.

use super::Tokenizer;
use crate::error::Result;
use std::ops::Deref;

/// `T` is how the decoder holds its tokenizer: a reference, or an `Arc` where the decoder must
/// outlive the borrow (a streaming HTTP response).
pub struct StreamDecoder<T: Deref<Target = Tokenizer>> {
    tokenizer: T,
    pending: Vec<u8>,
}

impl<T: Deref<Target = Tokenizer>> StreamDecoder<T> {
    pub fn new(tokenizer: T) -> Self {
        StreamDecoder { tokenizer, pending: Vec::new() }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.pending.extend_from_slice(self.tokenizer.token_bytes_or_err(id)?);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return Ok(out);
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"));
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return Ok(out);
                        }
                        // Bytes that no continuation can make valid.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held back, with an incomplete character shown as U+FFFD.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_tokens_come_out_whole() {
        let tok = Tokenizer::gpt2();
        let text = "I ❤️ 東京 🦀!";
        let ids = tok.encode_ordinary(text);
        let mut dec = StreamDecoder::new(tok);
        let mut out = String::new();
        let mut held_back = false;
        for &id in &ids {
            let piece = dec.push(id).unwrap();
            held_back |= piece.is_empty();
            assert!(!piece.contains(char::REPLACEMENT_CHARACTER));
            out.push_str(&piece);
        }
        out.push_str(&dec.finish());
        assert_eq!(out, text);
        assert!(held_back, "some token should end inside a character");
    }
}
