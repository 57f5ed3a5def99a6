//! Char-level and word-level tokenizers: the two ends BPE sits between.
//!
//! Characters give a tiny vocabulary but long sequences; words give short sequences but a huge
//! vocabulary that still misses words it never saw (they become `<unk>`). Both are fitted to a
//! corpus here so the demo and the guide can compare them with BPE on the same text.

use std::collections::HashMap;

pub const UNK: &str = "<unk>";

/// One vocabulary entry per distinct character of the corpus; id 0 is `<unk>`.
pub struct CharTokenizer {
    vocab: Vec<String>,
    ids: HashMap<char, u32>,
}

impl CharTokenizer {
    pub fn fit(corpus: &str) -> CharTokenizer {
        let mut chars: Vec<char> = corpus.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let vocab = std::iter::once(UNK.to_string()).chain(chars.iter().map(char::to_string)).collect();
        let ids = chars.iter().zip(1..).map(|(&c, id)| (c, id)).collect();
        CharTokenizer { vocab, ids }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars().map(|c| self.ids.get(&c).copied().unwrap_or(0)).collect()
    }

    pub fn token(&self, id: u32) -> &str {
        &self.vocab[id as usize]
    }
}

/// Splits text into words (runs of letters, digits, `_` and apostrophes inside words) and single
/// punctuation marks; whitespace only separates.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let first = rest.chars().next()?;
        let len = if first.is_alphanumeric() || first == '_' {
            rest.char_indices()
                .find(|&(i, c)| {
                    !(c.is_alphanumeric()
                        || c == '_'
                        || (c == '\'' && i > 0 && rest[i + 1..].starts_with(char::is_alphabetic)))
                })
                .map_or(rest.len(), |(i, _)| i)
        } else {
            first.len_utf8()
        };
        let (word, tail) = rest.split_at(len);
        rest = tail;
        Some(word)
    })
}

/// One vocabulary entry per word seen at least `min_count` times (most frequent first, at most
/// `max_vocab` entries); id 0 is `<unk>`. Whitespace is not kept, so decoding is lossy.
pub struct WordTokenizer {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
}

impl WordTokenizer {
    pub fn fit(corpus: &str, max_vocab: usize) -> WordTokenizer {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for w in words(corpus) {
            *counts.entry(w).or_default() += 1;
        }
        let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.truncate(max_vocab.saturating_sub(1));
        let vocab: Vec<String> =
            std::iter::once(UNK).chain(ranked.iter().map(|r| r.0)).map(str::to_string).collect();
        let ids = vocab.iter().cloned().zip(0..).skip(1).collect();
        WordTokenizer { vocab, ids }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        words(text).map(|w| self.ids.get(w).copied().unwrap_or(0)).collect()
    }

    pub fn token(&self, id: u32) -> &str {
        &self.vocab[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_contractions_and_split_punctuation() {
        let w: Vec<&str> = words("Don't stop, Mia's cat!  'Quoted'").collect();
        assert_eq!(w, ["Don't", "stop", ",", "Mia's", "cat", "!", "'", "Quoted", "'"]);
    }

    #[test]
    fn unseen_words_and_chars_become_unk() {
        let corpus = "the cat sat on the mat";
        let words = WordTokenizer::fit(corpus, 100);
        assert_eq!(words.token(1), "the");
        let ids = words.encode("the dog sat");
        assert_eq!(ids[1], 0);
        assert_eq!(words.token(ids[2]), "sat");
        let chars = CharTokenizer::fit(corpus);
        assert_eq!(
            chars.vocab_size(),
            1 + "the casonm".chars().collect::<std::collections::HashSet<_>>().len()
        );
        assert_eq!(chars.encode("cz")[1], 0);
    }
}
