//! tokenizer.json in both directions with HF `tokenizers`, vocab.json + merges.txt, and clear
//! errors for files that are wrong.

mod common;

use minillm::tokenizer::Pattern;
use minillm::tokenizer::formats;
use minillm::tokenizer::train::{BpeConfig, train};
use minillm::{SpecialTokens, Tokenizer};

fn hf_ids(hf: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    hf.encode(text, false).unwrap().get_ids().to_vec()
}

fn trained(pattern: Pattern) -> Tokenizer {
    let text = format!("{}{}", &minillm::corpus::builtin()[..300_000], common::tricky_text(21, 3000));
    let config =
        BpeConfig { vocab_size: 1500, pattern, specials: vec!["<|endoftext|>".into(), "<|user|>".into()] };
    train(&[&text], &config, &mut |_| {}).unwrap()
}

#[test]
fn hf_tokenizers_loads_what_we_write_and_gives_the_same_ids() {
    let dir = common::temp_dir("hf-write");
    for pattern in [Pattern::Gpt2, Pattern::Gpt4, Pattern::Qwen2, Pattern::Gpt2Digits] {
        let ours = trained(pattern);
        let path = dir.join(format!("{pattern}.json"));
        formats::save(&ours, &path).unwrap();
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        assert_eq!(hf.get_vocab_size(true), ours.vocab_size());
        for s in common::tricky_strings(22, 1500) {
            assert_eq!(hf_ids(&hf, &s), ours.encode_ordinary(&s), "{pattern}: {s:?}");
        }
        let text = "Hi<|user|>What is 12345?<|endoftext|>";
        let ids = ours.encode(text, SpecialTokens::Allow).unwrap();
        assert_eq!(hf_ids(&hf, text), ids);
        assert_eq!(hf.decode(&ids, false).unwrap(), text);
        // And we read our own file back unchanged.
        let again = minillm::io::load_tokenizer(&path).unwrap();
        assert_eq!(again.specials(), ours.specials());
        assert_eq!(again.bpe().merges(), ours.bpe().merges());
        assert_eq!(again.pattern(), pattern);
    }
}

#[test]
fn llama3_and_qwen2_tokenizer_json_read_with_their_own_split_patterns() {
    // The tokenizer.json files of Llama 3 and Qwen2 models: byte-level BPE after a Split with
    // their regexes, as those files spell them. HF `tokenizers` runs the regex itself.
    let dir = common::temp_dir("hf-llama3-qwen2");
    for (regex, want) in
        [(minillm::tokenizer::LLAMA3_REGEX, Pattern::Gpt4), (minillm::tokenizer::QWEN2_REGEX, Pattern::Qwen2)]
    {
        let ours = trained(want);
        let mut doc: serde_json::Value = serde_json::from_str(&formats::to_hf_json(&ours)).unwrap();
        doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = regex.into();
        let path = dir.join(format!("{want}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let read = minillm::io::load_tokenizer(&path).unwrap();
        assert_eq!(read.pattern(), want);
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        for s in common::tricky_strings(23, 1500) {
            assert_eq!(hf_ids(&hf, &s), read.encode_ordinary(&s), "{want}: {s:?}");
        }
        // Qwen2 gives every digit its own piece; Llama 3 groups them by three.
        let pieces: Vec<&str> = read.pattern().split("12345").collect();
        assert_eq!(pieces.len(), if want == Pattern::Qwen2 { 5 } else { 2 }, "{want}: {pieces:?}");
    }
}

#[test]
fn a_prefix_token_from_the_post_processor_starts_every_prompt_as_in_hf() {
    // Llama 3's tokenizer.json: a TemplateProcessing that puts <|begin_of_text|> before every
    // text (HF's `tokenizer(text)`; generation, evaluation and chat start from it).
    let dir = common::temp_dir("hf-prefix");
    let ours = trained(Pattern::Gpt4).with_added_specials(&["<|begin_of_text|>"]).unwrap();
    let bos = ours.special_id("<|begin_of_text|>").unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&formats::to_hf_json(&ours)).unwrap();
    doc["post_processor"] = serde_json::json!({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos], "tokens": ["<|begin_of_text|>"]}}}]});
    let path = dir.join("llama3-style.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let read = minillm::io::load_tokenizer(&path).unwrap();
    assert_eq!(read.prefix(), Some(bos));
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    for s in common::tricky_strings(23, 200) {
        let want = hf.encode(s.as_str(), true).unwrap().get_ids().to_vec();
        assert_eq!(read.encode_prompt(&s).unwrap(), want, "{s:?}");
    }
    // Written back, HF reads the same prefix from our file; plain `encode` never adds it.
    let again = dir.join("ours.json");
    formats::save(&read, &again).unwrap();
    let hf = tokenizers::Tokenizer::from_file(&again).unwrap();
    assert_eq!(hf.encode("Hello", true).unwrap().get_ids()[0], bos);
    assert_eq!(minillm::io::load_tokenizer(&again).unwrap().prefix(), Some(bos));
    assert!(!read.encode("Hello", SpecialTokens::AsText).unwrap().contains(&bos));
    // A template that adds a token after the text is refused by name, not dropped.
    let mut after = doc.clone();
    after["post_processor"]["processors"][1]["single"] = serde_json::json!([
        {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}]);
    std::fs::write(&path, after.to_string()).unwrap();
    let err = minillm::io::load_tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("post_processor") && err.contains("after the text"), "{err}");
}

#[test]
fn ignore_merges_looks_a_piece_up_whole_as_hf_does() {
    // "abc" is a token made by the merge (a, bc), but merging its bytes by rank reaches ab + c:
    // unreachable. With ignore_merges (Llama 3's files), HF emits it whole; without, ab + c.
    let dir = common::temp_dir("hf-ignore-merges");
    let mut doc: serde_json::Value = serde_json::from_str(&formats::to_hf_json(&Tokenizer::bytes())).unwrap();
    let n = doc["model"]["vocab"].as_object().unwrap().len();
    for (i, t) in ["ab", "bc", "abc"].iter().enumerate() {
        doc["model"]["vocab"][*t] = (n + i).into();
    }
    doc["model"]["merges"] = serde_json::json!(["a b", "b c", "a bc"]);
    for ignore in [false, true] {
        doc["model"]["ignore_merges"] = ignore.into();
        let path = dir.join(format!("ignore-{ignore}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let ours = minillm::io::load_tokenizer(&path).unwrap();
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        for text in ["abc", "abc abcd bc", "xabc abcabc"] {
            assert_eq!(ours.encode_ordinary(text), hf_ids(&hf, text), "ignore_merges {ignore}: {text:?}");
        }
        let whole = ours.encode_ordinary("abc").len() == 1;
        assert_eq!(whole, ignore, "ignore_merges {ignore}");
        // Written back with the setting.
        formats::save(&ours, &path).unwrap();
        assert_eq!(minillm::io::load_tokenizer(&path).unwrap().bpe().ignores_merges(), ignore);
    }
}

#[test]
fn a_normalizer_is_refused_by_name() {
    // Qwen2's tokenizer.json normalizes to NFC: read without it, some texts would get other ids
    // than HF gives.
    let dir = common::temp_dir("hf-refused-settings");
    let ours = trained(Pattern::Qwen2);
    let doc: serde_json::Value = serde_json::from_str(&formats::to_hf_json(&ours)).unwrap();
    let mut changed = doc.clone();
    changed["normalizer"] = serde_json::json!({"type": "NFC"});
    let path = dir.join("normalizer.json");
    std::fs::write(&path, changed.to_string()).unwrap();
    let err = minillm::io::load_tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("normalizer") && err.contains("not supported"), "{err}");
}

#[test]
fn sentencepiece_style_bpe_encodes_and_decodes_as_hf_does() {
    // Llama 2's form (a Prepend + Replace normalizer) and newer files' (a Metaspace
    // pre-tokenizer, prepend only before the text's start), both with byte fallback and <s>
    // put first: fixtures from scripts/reference/sentencepiece_tiny.py.
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentencepiece");
    let dir = common::temp_dir("hf-sentencepiece");
    for name in ["legacy", "metaspace"] {
        let path = fixtures.join(format!("{name}.json"));
        let ours = minillm::io::load_tokenizer(&path).unwrap();
        let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
        assert!(ours.sentencepiece().is_some() && ours.prefix() == ours.special_id("<s>"));
        let mut texts = common::tricky_strings(24, 400);
        texts.extend(["", " ", "  two  spaces ", "x</s>y", "<s> after", "日本語\n\ttab"].map(String::from));
        for s in &texts {
            let want = hf.encode(s.as_str(), true).unwrap().get_ids().to_vec();
            let mut got = ours.encode(s, SpecialTokens::Allow).unwrap();
            got.splice(0..0, ours.prefix());
            assert_eq!(got, want, "{name}: {s:?}");
            let plain = ours.encode_prompt(s).unwrap();
            assert_eq!(
                ours.decode(&plain[1..]).unwrap(),
                hf.decode(&plain[1..], true).unwrap(),
                "{name}: {s:?}"
            );
            // Lossless, but for a text that starts with a space under Metaspace's "first": no '▁'
            // was put in front, so the decoder's strip takes the text's own (HF does the same).
            if name == "legacy" || !s.starts_with(' ') {
                assert_eq!(ours.decode(&plain[1..]).unwrap(), *s, "{name}: decoding is lossless");
            }
        }
        // Written back, HF reads the same tokenizer from our file, and so do we.
        let again = dir.join(format!("{name}.json"));
        formats::save(&ours, &again).unwrap();
        let hf_again = tokenizers::Tokenizer::from_file(&again).unwrap();
        let reread = minillm::io::load_tokenizer(&again).unwrap();
        for s in texts.iter().take(100) {
            let want = hf.encode(s.as_str(), true).unwrap().get_ids().to_vec();
            assert_eq!(
                hf_again.encode(s.as_str(), true).unwrap().get_ids(),
                want.as_slice(),
                "{name}: {s:?}"
            );
            assert_eq!(reread.encode_prompt(s).unwrap(), ours.encode_prompt(s).unwrap());
        }
    }
    // What is not one of these forms is refused by name.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("metaspace.json")).unwrap()).unwrap();
    let split = serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true});
    let mut changed = doc.clone();
    changed["pre_tokenizer"] = split;
    let path = dir.join("changed.json");
    std::fs::write(&path, changed.to_string()).unwrap();
    let err = minillm::io::load_tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("Metaspace without split"), "{err}");
    for (key, value, named) in [
        ("byte_fallback", serde_json::json!(false), "without byte_fallback"),
        ("ignore_merges", serde_json::json!(true), "with ignore_merges"),
        ("dropout", serde_json::json!(0.1), "BPE-dropout"),
    ] {
        let mut changed = doc.clone();
        changed["model"][key] = value;
        std::fs::write(&path, changed.to_string()).unwrap();
        let err = minillm::io::load_tokenizer(&path).unwrap_err().to_string();
        assert!(err.contains(named), "{key}: {err}");
    }
}

#[test]
fn we_read_what_hf_writes_and_vocab_merges_files() {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let dir = common::temp_dir("hf-read");
    let gpt2 = Tokenizer::gpt2();
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    std::fs::write(&vocab, formats::to_vocab_json(gpt2)).unwrap();
    std::fs::write(&merges, formats::to_merges_txt(gpt2)).unwrap();
    let from_files = minillm::io::load_tokenizer(&vocab).unwrap();

    let model = BPE::from_file(vocab.to_str().unwrap(), merges.to_str().unwrap()).build().unwrap();
    let mut hf = tokenizers::Tokenizer::new(model);
    let byte_level = ByteLevel::default().add_prefix_space(false);
    hf.with_pre_tokenizer(Some(byte_level));
    hf.with_decoder(Some(byte_level));
    let hf_json = dir.join("tokenizer.json");
    hf.save(&hf_json, true).unwrap();
    let from_hf_json = minillm::io::load_tokenizer(&hf_json).unwrap();

    let text = common::tricky_text(23, 10_000);
    let want = tiktoken_rs::r50k_base().unwrap().encode_ordinary(&text);
    assert_eq!(from_files.encode_ordinary(&text), want);
    assert_eq!(from_hf_json.encode_ordinary(&text), want);
    assert_eq!(hf_ids(&hf, &text), want);
    assert_eq!(from_files.special_id("<|endoftext|>"), Some(50256));
    // A directory holding the files loads too.
    assert_eq!(minillm::io::load_tokenizer(&dir).unwrap().encode_ordinary(&text), want);
}

#[test]
fn wrong_files_get_one_clear_error() {
    let dir = common::temp_dir("bad-files");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let cases = [
        (dir.join("missing.json").to_string_lossy().into_owned(), "no tokenizer file"),
        (write("truncated.json", "{\"model\": {\"type\": \"BPE\", \"vocab\""), "not valid JSON"),
        (write("wordpiece.json", r#"{"model": {"type": "WordPiece", "vocab": {}}}"#), "WordPiece"),
        (
            write(
                "nopre.json",
                r#"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": null}"#,
            ),
            "pre_tokenizer",
        ),
        (write("notes.txt", "hello there\nthis is not a tokenizer file at all\n"), "partner file"),
        (write("bad.tiktoken", "SGVsbG8= 0\nnot-base64! 1\n"), "line 2"),
        (write("random.bin", "\u{1}\u{2}"), "not a tokenizer file"),
    ];
    for (path, expected) in cases {
        let err = minillm::io::load_tokenizer(std::path::Path::new(&path)).unwrap_err().to_string();
        assert!(err.contains(expected), "{path}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // A merges.txt whose vocab.json lacks a merged token names the token.
    let sub = dir.join("broken");
    std::fs::create_dir_all(&sub).unwrap();
    let mut vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&formats::to_vocab_json(Tokenizer::gpt2())).unwrap();
    vocab.remove("Ġthe");
    std::fs::write(sub.join("vocab.json"), serde_json::to_string(&vocab).unwrap()).unwrap();
    std::fs::write(sub.join("merges.txt"), formats::to_merges_txt(Tokenizer::gpt2())).unwrap();
    let err = minillm::io::load_tokenizer(&sub).unwrap_err().to_string();
    assert!(err.contains("Ġthe"), "{err}");
}

#[test]
fn vocabularies_missing_bytes_load_and_drop_them_as_hf_does() {
    // SmolLM2's vocabulary has no token for six control bytes: HF loads it and, with no
    // unk_token, leaves such a byte out before merging, so its neighbours may merge across it.
    let dir = common::temp_dir("hf-missing-bytes");
    let ours = trained(Pattern::Gpt2Digits);
    let mut doc: serde_json::Value = serde_json::from_str(&formats::to_hf_json(&ours)).unwrap();
    let missing: Vec<String> = [0x04u8, 0x06, 0x13, 0x14, 0x16, 0x1d]
        .iter()
        .map(|&b| minillm::tokenizer::bytes::bytes_to_token_text(&[b]))
        .collect();
    let has_missing = |t: &str| missing.iter().any(|m| t.contains(m.as_str()));
    let vocab = doc["model"]["vocab"].as_object_mut().unwrap();
    vocab.retain(|t, _| !has_missing(t));
    let merges = doc["model"]["merges"].as_array_mut().unwrap();
    merges.retain(|m| !m.as_array().unwrap().iter().any(|p| has_missing(p.as_str().unwrap())));
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let read = minillm::io::load_tokenizer(&path).unwrap();
    assert_eq!(read.bpe().missing_bytes(), [0x04, 0x06, 0x13, 0x14, 0x16, 0x1d]);
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    for s in common::tricky_strings(25, 1500) {
        assert_eq!(read.encode_ordinary(&s), hf_ids(&hf, &s), "{s:?}");
    }
    // The merge across the dropped byte, HF's way (llama.cpp's keeps "!" and "!" apart; see the
    // real-model test).
    assert_eq!(read.encode_ordinary(".\u{4}."), read.encode_ordinary(".."));
    assert_eq!(read.encode_ordinary("..").len(), 1, "the trained vocabulary has '..'");
    assert_eq!(read.decode(&read.encode_ordinary("a\u{4}b")).unwrap(), "ab");
    // With an unknown token, HF writes it for such a byte: refused, not dropped silently.
    doc["model"]["unk_token"] = "<|endoftext|>".into();
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = minillm::io::load_tokenizer(&path).unwrap_err().to_string();
    assert!(err.contains("unk_token is \"<|endoftext|>\" and byte 0x04 has no token"), "{err}");
}
