//! Our GPT-2 tokenizer against tiktoken's `r50k_base`, id for id, and our tiktoken-file reader
//! and GPT-4 pattern against tiktoken's `cl100k_base`.

mod common;

use minillm::{SpecialTokens, Tokenizer};
use tiktoken_rs::CoreBPE;

fn assert_same_ids(ours: &Tokenizer, theirs: &CoreBPE, text: &str) {
    let want = theirs.encode_ordinary(text);
    let got = ours.encode_ordinary(text);
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "ids differ at token {first} for {:?}\n ours: {:?}\ntheirs: {:?}",
            text.chars().take(200).collect::<String>(),
            &got[first.saturating_sub(3)..(first + 5).min(got.len())],
            &want[first.saturating_sub(3)..(first + 5).min(want.len())]
        );
    }
}

#[test]
fn gpt2_matches_tiktoken_on_tricky_text() {
    let theirs = tiktoken_rs::r50k_base().unwrap();
    let ours = Tokenizer::gpt2();
    for s in common::tricky_strings(1, 3000) {
        assert_same_ids(ours, &theirs, &s);
    }
    let text = common::tricky_text(2, 20_000);
    assert_same_ids(ours, &theirs, &text);
    assert_eq!(ours.encode_parallel(&text, SpecialTokens::Refuse).unwrap(), ours.encode_ordinary(&text));
}

#[test]
fn gpt2_matches_tiktoken_on_the_builtin_corpus_and_shakespeare() {
    let theirs = tiktoken_rs::r50k_base().unwrap();
    let ours = Tokenizer::gpt2();
    assert_same_ids(ours, &theirs, minillm::corpus::builtin());
    if let Some(path) = common::shared_data("tinyshakespeare.txt") {
        let text = std::fs::read_to_string(path).unwrap();
        assert_same_ids(ours, &theirs, &text);
        assert_eq!(
            ours.encode_parallel(&text, SpecialTokens::Refuse).unwrap(),
            theirs.encode_ordinary(&text)
        );
    }
}

#[test]
fn special_tokens_match_tiktoken() {
    let theirs = tiktoken_rs::r50k_base().unwrap();
    let text = "one<|endoftext|>two <|endoftext|><|endoftext|>";
    let ours = Tokenizer::gpt2().encode(text, SpecialTokens::Allow).unwrap();
    assert_eq!(ours, theirs.encode_with_special_tokens(text));
}

#[test]
fn token_bytes_match_tiktoken_even_when_they_split_characters() {
    let theirs = tiktoken_rs::r50k_base().unwrap();
    let ours = Tokenizer::gpt2();
    let mut split_chars = 0;
    for id in 0..50257u32 {
        let want = theirs.decode_bytes(&[id]).unwrap();
        assert_eq!(ours.token_bytes(id).unwrap(), want.as_slice(), "token {id}");
        split_chars += usize::from(std::str::from_utf8(&want).is_err());
    }
    // Many GPT-2 tokens are fragments of UTF-8 characters; decoding must not lose them.
    assert!(split_chars > 100, "{split_chars}");
    let text = "👨‍👩‍👧 日本語 🦀";
    let ids = ours.encode_ordinary(text);
    let joined: Vec<u8> = ids.iter().flat_map(|&id| ours.decode_bytes(&[id]).unwrap()).collect();
    assert_eq!(joined, text.as_bytes());
}

/// A tiktoken rank file rebuilt from a tiktoken encoding, token by token.
fn rank_file(bpe: &CoreBPE, n: u32) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for rank in 0..n {
        if let Ok(bytes) = bpe.decode_bytes(&[rank]) {
            out.push_str(&format!("{} {rank}\n", b64.encode(bytes)));
        }
    }
    out
}

#[test]
fn tiktoken_files_load_and_match_r50k_and_cl100k() {
    let dir = common::temp_dir("tiktoken");
    for (bpe, n, name) in [
        (tiktoken_rs::r50k_base().unwrap(), 50256, "r50k_base.tiktoken"),
        (tiktoken_rs::cl100k_base().unwrap(), 100256, "cl100k_base.tiktoken"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, rank_file(&bpe, n)).unwrap();
        let ours = minillm::io::load_tokenizer(&path).unwrap();
        for s in common::tricky_strings(3, 2000) {
            assert_same_ids(&ours, &bpe, &s);
        }
        assert_same_ids(&ours, &bpe, &common::tricky_text(4, 20_000));
        assert_same_ids(&ours, &bpe, &minillm::corpus::builtin()[..200_000]);
        let text = "a<|endoftext|>b";
        assert_eq!(ours.encode(text, SpecialTokens::Allow).unwrap(), bpe.encode_with_special_tokens(text));
    }
}

#[test]
fn embedded_vocabulary_equals_gpt2_encoder_json() {
    let Some(path) = common::shared_data("gpt2/encoder.json") else {
        return;
    };
    let encoder: std::collections::HashMap<String, u32> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ours = Tokenizer::gpt2();
    assert_eq!(encoder.len(), ours.vocab_size());
    for (text, id) in encoder {
        let bytes = match ours.is_special(id) {
            true => text.clone().into_bytes(),
            false => minillm::tokenizer::bytes::token_text_to_bytes(&text).unwrap(),
        };
        assert_eq!(ours.token_bytes(id).unwrap(), bytes.as_slice(), "{text}");
    }
    // encoder.json + vocab.bpe, read from disk, tokenize like the embedded copy.
    let loaded = minillm::io::load_tokenizer(&path).unwrap();
    let text = common::tricky_text(5, 5000);
    assert_eq!(loaded.encode_ordinary(&text), ours.encode_ordinary(&text));
}
