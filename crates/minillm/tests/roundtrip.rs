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

/// The pieces a regex cuts `text` into (compiled once per spelling).
fn regex_pieces(regex: &'static str, text: &str) -> Vec<String> {
    static COMPILED: OnceLock<std::sync::Mutex<std::collections::HashMap<&str, fancy_regex::Regex>>> =
        OnceLock::new();
    let mut all = COMPILED.get_or_init(Default::default).lock().unwrap();
    let re = all.entry(regex).or_insert_with(|| fancy_regex::Regex::new(regex).unwrap());
    re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect()
}

/// Each pattern with every spelling of its regex that reads as it: GPT-4's also as Llama 3's
/// tokenizer.json writes it.
const SPELLINGS: [(Pattern, &str); 4] = [
    (Pattern::Gpt2, minillm::tokenizer::GPT2_REGEX),
    (Pattern::Gpt4, minillm::tokenizer::GPT4_REGEX),
    (Pattern::Gpt4, minillm::tokenizer::LLAMA3_REGEX),
    (Pattern::Qwen2, minillm::tokenizer::QWEN2_REGEX),
];

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
        for (pattern, regex) in SPELLINGS {
            let ours: Vec<&str> = pattern.split(&text).collect();
            prop_assert_eq!(ours, regex_pieces(regex, &text), "pattern {} as {}", pattern, regex);
            prop_assert_eq!(Pattern::from_regex(regex), Some(pattern));
        }
        // SmolLM's: each numeric character alone (HF's Digits splits where char::is_numeric),
        // GPT-2's regex over each stretch between them.
        let mut want = Vec::new();
        let mut stretch = String::new();
        for c in text.chars() {
            if c.is_numeric() {
                want.extend(regex_pieces(minillm::tokenizer::GPT2_REGEX, &std::mem::take(&mut stretch)));
                want.push(c.to_string());
            } else {
                stretch.push(c);
            }
        }
        want.extend(regex_pieces(minillm::tokenizer::GPT2_REGEX, &stretch));
        let ours: Vec<&str> = Pattern::Gpt2Digits.split(&text).collect();
        prop_assert_eq!(ours, want);
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
