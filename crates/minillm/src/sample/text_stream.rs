//! Generated tokens as text a person can watch arrive: whole UTF-8 characters only, and nothing
//! that might turn out to be the start of a stop string. `minillm generate`/`chat` print through
//! it, and the server streams through it.

use super::stop::StopMatcher;
use crate::error::Result;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::stream::StreamDecoder;
use std::ops::Deref;

/// A token-by-token decoder with stop strings. `T` holds the tokenizer as [`StreamDecoder`] does
/// (a reference, or an `Arc` for a stream that outlives the borrow).
pub struct TextStream<T: Deref<Target = Tokenizer>> {
    decoder: StreamDecoder<T>,
    stops: StopMatcher,
    /// A stop string was reached or the stream was finished: nothing more comes out.
    ended: bool,
}

impl<T: Deref<Target = Tokenizer>> TextStream<T> {
    pub fn new(tokenizer: T, stops: Vec<String>) -> Self {
        TextStream { decoder: StreamDecoder::new(tokenizer), stops: StopMatcher::new(stops), ended: false }
    }

    /// Adds one token; returns the text now safe to show (possibly empty). After a stop string
    /// the rest is dropped.
    pub fn push(&mut self, id: u32) -> Result<String> {
        if self.ended {
            return Ok(String::new());
        }
        let piece = self.decoder.push(id)?;
        let (safe, hit) = self.stops.push(&piece);
        self.ended = hit;
        Ok(safe)
    }

    /// The stop string that ended the text, if one did.
    pub fn stopped_by(&self) -> Option<&str> {
        self.stops.hit()
    }

    /// Ends the text for another reason (end token, budget): releases what was held back, an
    /// unfinished character shown as U+FFFD. Empty after a stop string or a second call.
    pub fn finish(&mut self) -> String {
        if std::mem::replace(&mut self.ended, true) {
            return String::new();
        }
        let (safe, _) = self.stops.push(&self.decoder.finish());
        safe + &self.stops.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(stream: &mut TextStream<&Tokenizer>, text: &[u8]) -> Vec<String> {
        text.iter().map(|&b| stream.push(b as u32).unwrap()).collect()
    }

    #[test]
    fn characters_split_across_tokens_and_stop_strings_are_held_back() {
        let tok = Tokenizer::bytes();
        let mut s = TextStream::new(&tok, vec!["END".into()]);
        // "é" is two bytes: nothing shows until both are in.
        assert_eq!(pieces(&mut s, "é".as_bytes()), ["", "é"]);
        // "EN" might begin "END": held back, then released when it does not.
        assert_eq!(pieces(&mut s, b"ENx"), ["", "", "ENx"]);
        assert_eq!(pieces(&mut s, b"ab EN"), ["a", "b", " ", "", ""]);
        assert_eq!(s.stopped_by(), None);
        assert_eq!(pieces(&mut s, b"D more"), ["", "", "", "", "", ""]);
        assert_eq!(s.stopped_by(), Some("END"));
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn finishing_releases_what_was_held_back() {
        let tok = Tokenizer::bytes();
        let mut s = TextStream::new(&tok, vec!["\n\n".into()]);
        assert_eq!(pieces(&mut s, b"hi\n"), ["h", "i", ""]);
        let euro = "€".as_bytes();
        assert_eq!(s.push(euro[0] as u32).unwrap(), "");
        // The newline was harmless and the euro sign is unfinished.
        assert_eq!(s.finish(), "\n\u{FFFD}");
        assert_eq!(s.finish(), "");
    }
}
