//! Properties: encode/decode is lossless for any text and any bytes; the hand-written splitters
//! cut exactly where the reference regexes (run by fancy-regex) cut.

mod common;

use minillm::tokenizer::Pattern;
use minillm::tokenizer::train::{BpeConfig, train};
use minillm::{SpecialTokens, Tokenizer};
use proptest::prelude::*;
use std::sync::OnceLock;

/// A small tokenizer trained on the tricky text, so merges cover odd scripts too.
fn small() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let text = common::tricky_text(9, 5000);
        let config = BpeConfig { vocab_size: 600, pattern: Pattern::Gpt4, specials: vec!["<|end|>".into()] };
        train(&[&text], &config, &mut |_| {}).unwrap()
    })
}

fn regex_pieces(pattern: Pattern, text: &str) -> Vec<String> {
    static GPT2: OnceLock<fancy_regex::Regex> = OnceLock::new();
    static GPT4: OnceLock<fancy_regex::Regex> = OnceLock::new();
    let re = match pattern {
        Pattern::Gpt2 => GPT2.get_or_init(|| fancy_regex::Regex::new(pattern.regex()).unwrap()),
        Pattern::Gpt4 => GPT4.get_or_init(|| fancy_regex::Regex::new(pattern.regex()).unwrap()),
    };
    re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect()
}

/// Strings built from characters of every class the patterns distinguish.
fn tricky_chars() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'Z', 'é', 'ß', '字', 'ж', '𝐀', '1', '9', '½', '٣', ' ', ' ', ' ', '\t', '\n', '\r', '\u{3000}',
        '\u{a0}', '\'', '\'', 's', 'S', 'l', 'L', 'v', 'e', 'r', 't', 'd', 'm', '.', '!', '-', '"', '😀',
        '\u{301}', '\u{200d}', '_',
    ]);
    prop::collection::vec(chars, 0..40).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn splitters_cut_like_the_reference_regexes(text in tricky_chars()) {
        for pattern in [Pattern::Gpt2, Pattern::Gpt4] {
            let ours: Vec<&str> = pattern.split(&text).collect();
            prop_assert_eq!(ours, regex_pieces(pattern, &text), "pattern {}", pattern);
        }
    }

    #[test]
    fn any_text_round_trips(text in any::<String>()) {
        for tok in [Tokenizer::gpt2(), small()] {
            let ids = tok.encode(&text, SpecialTokens::AsText).unwrap();
            prop_assert_eq!(tok.decode(&ids).unwrap(), text.clone());
        }
    }

    #[test]
    fn tricky_text_round_trips(text in tricky_chars()) {
        for tok in [Tokenizer::gpt2(), small()] {
            prop_assert_eq!(tok.decode(&tok.encode_ordinary(&text)).unwrap(), text.clone());
        }
    }

    #[test]
    fn any_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for tok in [Tokenizer::gpt2(), small()] {
            prop_assert_eq!(tok.decode_bytes(&tok.encode_bytes(&bytes)).unwrap(), bytes.clone());
        }
    }
}

#[test]
fn valid_utf8_bytes_encode_like_text() {
    let text = common::tricky_text(11, 2000);
    let tok = Tokenizer::gpt2();
    assert_eq!(tok.encode_bytes(text.as_bytes()), tok.encode_ordinary(&text));
}

#[test]
fn parallel_encoding_equals_sequential() {
    let text = minillm::corpus::builtin().repeat(2) + &common::tricky_text(12, 50_000);
    for tok in [Tokenizer::gpt2(), small()] {
        let one = tok.encode(&text, SpecialTokens::AsText).unwrap();
        assert_eq!(tok.encode_parallel(&text, SpecialTokens::AsText).unwrap(), one);
    }
    let with_special = format!("{}<|end|>{}", &text[..700_000], &text[700_000..]);
    let one = small().encode(&with_special, SpecialTokens::Allow).unwrap();
    assert_eq!(small().encode_parallel(&with_special, SpecialTokens::Allow).unwrap(), one);
    assert!(small().encode_parallel(&with_special, SpecialTokens::Refuse).is_err());
}
