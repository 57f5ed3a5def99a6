//! Reading and writing tokenizers in the formats the ecosystem already uses.
//!
//! - HF `tokenizer.json` (our own save format; `tokenizers` loads it and gives the same ids).
//! - `vocab.json` + `merges.txt` (HF's "slow" files), which are the same formats as GPT-2's
//!   original `encoder.json` + `vocab.bpe`.
//! - tiktoken rank files (`base64-token rank` per line), which carry no merges: the merge that
//!   makes each token is recovered by running BPE on its bytes with the lower-ranked tokens.
//!
//! Every vocabulary file stores token bytes through GPT-2's byte -> character map ([`super::bytes`]).

use super::bpe::{Bpe, Merge, NO_TOKEN};
use super::bytes::{bytes_to_token_text, gpt2_byte_order};
use super::sentencepiece::{Prepend, SentencePiece};
use super::{Pattern, Tokenizer};
use crate::error::{Error, Result, quoted, quoted_or_missing};
use crate::fsutil::{atomic_write, read_text};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ENDOFTEXT: &str = "<|endoftext|>";

/// Reads a tokenizer file: a `tokenizer.json`, a `vocab.json`/`encoder.json` (with
/// `merges.txt`/`vocab.bpe` beside it), a merges file (with its vocabulary beside it), or a
/// `.tiktoken` rank file. (`io::load_tokenizer` also takes built-in names and directories.)
pub fn read_file(path: &Path) -> Result<Tokenizer> {
    let text = read_text(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".tiktoken") || looks_like_tiktoken(&text) {
        return from_tiktoken(&text, path);
    }
    if name.ends_with(".json") {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        if value["model"].is_object() {
            return from_hf_json_value(&value, path);
        }
        let merges_path = beside(path, &["merges.txt", "vocab.bpe"])?;
        return from_vocab_and_merges_text(&value, path, &read_text(&merges_path)?, &merges_path);
    }
    if text.starts_with("#version") || name.ends_with(".txt") || name.ends_with(".bpe") {
        let vocab_path = beside(path, &["vocab.json", "encoder.json"])?;
        let vocab: Value = serde_json::from_str(&read_text(&vocab_path)?)
            .map_err(|e| Error::format(&vocab_path, format!("not valid JSON: {e}")))?;
        return from_vocab_and_merges_text(&vocab, &vocab_path, &text, path);
    }
    Err(Error::format(
        path,
        "not a tokenizer file minillm knows (tokenizer.json, vocab.json + merges.txt, \
         encoder.json + vocab.bpe, or a .tiktoken rank file)",
    ))
}

/// Reads the tokenizer a directory holds: its `tokenizer.json`, `vocab.json`, `encoder.json` or
/// `.tiktoken` file, in that order of preference.
pub fn read_dir(dir: &Path) -> Result<Tokenizer> {
    for name in ["tokenizer.json", "vocab.json", "encoder.json"] {
        let p = dir.join(name);
        if p.is_file() {
            return read_file(&p);
        }
    }
    if let Some(entry) = std::fs::read_dir(dir)
        .map_err(|cause| Error::Read { path: dir.to_path_buf(), cause })?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "tiktoken"))
    {
        return read_file(&entry.path());
    }
    Err(Error::format(dir, "holds no tokenizer.json, vocab.json, encoder.json or .tiktoken file"))
}

fn beside(path: &Path, names: &[&str]) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        Error::format(path, format!("needs its partner file beside it ({})", names.join(" or ")))
    })
}

fn looks_like_tiktoken(text: &str) -> bool {
    text.lines().next().is_some_and(|line| {
        let mut parts = line.split(' ');
        matches!((parts.next(), parts.next(), parts.next()), (Some(t), Some(r), None)
            if !t.is_empty() && r.parse::<u32>().is_ok())
    })
}

/// GPT-2 from `vocab.bpe` alone: ids 0..256 are the bytes in GPT-2's order, merge `r` makes id
/// `256 + r`, and `<|endoftext|>` takes the last id (50256 for GPT-2).
pub fn from_gpt2_vocab_bpe(merges_txt: &str) -> Result<Tokenizer> {
    let path = Path::new("vocab.bpe");
    let pairs = parse_merges(merges_txt, path)?;
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (id, &b) in gpt2_byte_order().iter().enumerate() {
        vocab.insert(bytes_to_token_text(&[b]), id as u32);
    }
    for (rank, (l, r)) in pairs.iter().enumerate() {
        vocab.insert(format!("{l}{r}"), 256 + rank as u32);
    }
    let eot = vocab.len() as u32;
    vocab.insert(ENDOFTEXT.to_string(), eot);
    build(&vocab, &pairs, Pattern::Gpt2, &[], path)
}

/// Parses merges.txt / vocab.bpe: an optional `#version` line, then `left right` per line.
pub fn parse_merges(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || (i == 0 && line.starts_with("#version")) {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(l), Some(r), None) if !l.is_empty() && !r.is_empty() => {
                pairs.push((l.to_string(), r.to_string()))
            }
            _ => {
                return Err(Error::format(
                    path,
                    format!(
                        "line {}: expected two tokens separated by one space, found {}",
                        i + 1,
                        quoted(line)
                    ),
                ));
            }
        }
    }
    Ok(pairs)
}

fn vocab_map(value: &Value, path: &Path) -> Result<HashMap<String, u32>> {
    let obj = value
        .as_object()
        .ok_or_else(|| Error::format(path, "the vocabulary must be a JSON object of token -> id"))?;
    obj.iter()
        .map(|(token, id)| match id.as_u64() {
            Some(id) if id < u32::MAX as u64 => Ok((token.clone(), id as u32)),
            _ => Err(Error::format(path, format!("token {} has id {id}, not an integer id", quoted(token)))),
        })
        .collect()
}

fn from_vocab_and_merges_text(
    vocab: &Value,
    vocab_path: &Path,
    merges: &str,
    merges_path: &Path,
) -> Result<Tokenizer> {
    let vocab = vocab_map(vocab, vocab_path)?;
    let pairs = parse_merges(merges, merges_path)?;
    build(&vocab, &pairs, Pattern::Gpt2, &[], vocab_path)
}

/// Assembles a tokenizer from a text vocabulary and merges. Vocabulary entries that are neither
/// a byte nor made by a merge are special tokens (GPT-2's `<|endoftext|>` is one).
fn build(
    vocab: &HashMap<String, u32>,
    pairs: &[(String, String)],
    pattern: Pattern,
    added_specials: &[(String, u32)],
    path: &Path,
) -> Result<Tokenizer> {
    let id_of = |token: &str| {
        vocab
            .get(token)
            .copied()
            .ok_or_else(|| Error::format(path, format!("token {} is not in the vocabulary", quoted(token))))
    };
    // A byte without a token is dropped when encoding, as HF and llama.cpp do (SmolLM2's
    // vocabulary has none for six control bytes); a vocabulary with no byte at all is not
    // byte-level.
    let byte_ids: [u32; 256] =
        std::array::from_fn(|b| vocab.get(&bytes_to_token_text(&[b as u8])).copied().unwrap_or(NO_TOKEN));
    if byte_ids.iter().all(|&id| id == NO_TOKEN) {
        return Err(Error::format(
            path,
            "no single byte is a token (for 'a', the vocabulary needs \"a\"): not a byte-level BPE vocabulary",
        ));
    }
    let mut merges = Vec::with_capacity(pairs.len());
    for (l, r) in pairs {
        merges.push(Merge { left: id_of(l)?, right: id_of(r)?, id: id_of(&format!("{l}{r}"))? });
    }
    let mut made: Vec<u32> =
        byte_ids.iter().filter(|&&id| id != NO_TOKEN).chain(merges.iter().map(|m| &m.id)).copied().collect();
    made.sort_unstable();
    let mut specials: Vec<(String, u32)> = vocab
        .iter()
        .filter(|(_, id)| made.binary_search(id).is_err())
        .map(|(t, &id)| (t.clone(), id))
        .collect();
    for (t, id) in added_specials {
        if !specials.iter().any(|s| s.1 == *id) && made.binary_search(id).is_err() {
            specials.push((t.clone(), *id));
        }
    }
    let n_ids =
        vocab.values().chain(added_specials.iter().map(|s| &s.1)).max().map_or(0, |&m| m as usize + 1);
    let bpe = Bpe::new(byte_ids, merges, n_ids).map_err(|e| Error::format(path, e))?;
    Tokenizer::new(bpe, pattern, specials).map_err(|e| Error::format(path, e.to_string()))
}

/// A tokenizer from its token texts listed by id (GPT-2's byte-to-character form) and its merges,
/// as GGUF stores one. Tokens that are neither a byte nor made by a merge are special.
pub fn from_token_list(
    tokens: &[String],
    merges: &[(String, String)],
    pattern: Pattern,
    path: &Path,
) -> Result<Tokenizer> {
    let mut vocab = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), id as u32).is_some() {
            return Err(Error::format(path, format!("token {} is listed twice", quoted(t))));
        }
    }
    build(&vocab, merges, pattern, &[], path)
}

/// Reads an HF `tokenizer.json` file holding a byte-level BPE model.
pub fn read_hf_json(path: &Path) -> Result<Tokenizer> {
    from_hf_json(&read_text(path)?, path)
}

/// Parses an HF `tokenizer.json` holding a byte-level BPE model.
pub fn from_hf_json(text: &str, path: &Path) -> Result<Tokenizer> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    from_hf_json_value(&value, path)
}

fn from_hf_json_value(value: &Value, path: &Path) -> Result<Tokenizer> {
    let model = &value["model"];
    match model["type"].as_str() {
        Some("BPE") => {}
        other => {
            return Err(Error::format(
                path,
                format!(
                    "model type is {}; minillm reads byte-level BPE tokenizers",
                    quoted_or_missing(other)
                ),
            ));
        }
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model[key].as_str().is_some_and(|s| !s.is_empty()) {
            return Err(Error::format(path, format!("{key} is set; byte-level BPE uses none")));
        }
    }
    // BPE-dropout skips merges at random, so a text's ids would change from call to call.
    if let Some(p) = model["dropout"].as_f64().filter(|&p| p > 0.0) {
        return Err(Error::format(
            path,
            format!("model.dropout is {p}; minillm encodes without BPE-dropout"),
        ));
    }
    // SentencePiece's BPE as HF stores it: spaces become '▁' (a Metaspace pre-tokenizer, or a
    // Prepend + Replace normalizer), and characters outside the vocabulary fall back to <0xNN>
    // byte tokens.
    let sentencepiece = model["byte_fallback"].as_bool() == Some(true)
        || value["pre_tokenizer"].to_string().contains("\"Metaspace\"")
        || value["normalizer"].to_string().contains("\"Prepend\"");
    if sentencepiece {
        return read_sentencepiece(value, path);
    }
    // A setting that changes which ids a text gets, and that minillm does not apply yet: refused
    // rather than ignored (Qwen2's files normalize to NFC).
    if !value["normalizer"].is_null() {
        return Err(Error::format(
            path,
            format!(
                "normalizer {} is not supported yet (minillm reads tokenizers without one)",
                value["normalizer"]
            ),
        ));
    }

    let pattern = hf_pattern(&value["pre_tokenizer"]).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "pre_tokenizer {} is not byte-level with the GPT-2 or GPT-4 split pattern",
                value["pre_tokenizer"]
            ),
        )
    })?;
    let vocab = vocab_map(&model["vocab"], path)?;
    let (pairs, added) = (hf_merges(model, path)?, added_tokens(value, path)?);
    let mut tok = build(&vocab, &pairs, pattern, &added, path)?;
    // HF puts the unknown token where a byte has no token; minillm drops the byte (as HF does
    // without one), so such a file is refused rather than tokenized differently.
    if let Some(unk) = model["unk_token"].as_str()
        && let Some(&b) = tok.bpe().missing_bytes().first()
    {
        return Err(Error::format(
            path,
            format!(
                "unk_token is {} and byte {b:#04x} has no token; minillm drops such bytes instead of writing an unknown token",
                quoted(unk)
            ),
        ));
    }
    tok.bpe_mut().set_ignore_merges(model["ignore_merges"] == true);
    let prefix = post_processor_prefix(&value["post_processor"], &tok, path)?;
    tok.with_prefix(prefix).map_err(|e| Error::format(path, e.to_string()))
}

/// `model.merges` of a tokenizer.json: "left right" strings or [left, right] pairs.
fn hf_merges(model: &Value, path: &Path) -> Result<Vec<(String, String)>> {
    let raw = model["merges"].as_array().ok_or_else(|| Error::format(path, "model.merges must be a list"))?;
    let mut pairs = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let pair = match m {
            Value::String(s) => s.split_once(' ').map(|(l, r)| (l.to_string(), r.to_string())),
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1).and_then(Value::as_str)) {
                (Some(l), Some(r)) if a.len() == 2 => Some((l.to_string(), r.to_string())),
                _ => None,
            },
            _ => None,
        };
        pairs.push(pair.ok_or_else(|| Error::format(path, format!("merge {i} is malformed: {m}")))?);
    }
    Ok(pairs)
}

/// `added_tokens` of a tokenizer.json as (text, id).
fn added_tokens(value: &Value, path: &Path) -> Result<Vec<(String, u32)>> {
    let mut added = Vec::new();
    for t in value["added_tokens"].as_array().into_iter().flatten() {
        match (t["content"].as_str(), t["id"].as_u64()) {
            (Some(content), Some(id)) if id < u32::MAX as u64 => added.push((content.to_string(), id as u32)),
            _ => return Err(Error::format(path, format!("added token is malformed: {t}"))),
        }
    }
    Ok(added)
}

/// A SentencePiece-style BPE tokenizer.json (Llama 2's normalizer form, or the Metaspace
/// pre-tokenizer form of newer files), with byte fallback. Added tokens are special.
fn read_sentencepiece(value: &Value, path: &Path) -> Result<Tokenizer> {
    let bad = |m: String| Err(Error::format(path, m));
    let model = &value["model"];
    if model["byte_fallback"] != true {
        return bad("SentencePiece-style BPE without byte_fallback is not supported (every file minillm knows has it)".into());
    }
    if model["ignore_merges"] == true {
        return bad("SentencePiece-style BPE with ignore_merges is not supported".into());
    }
    let (normalizer, pre) = (&value["normalizer"], &value["pre_tokenizer"]);
    let legacy = json!({"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]});
    let prepend = if *normalizer == legacy && pre.is_null() {
        Prepend::EveryStretch
    } else if normalizer.is_null()
        && pre["type"] == "Metaspace"
        && pre["replacement"] == "▁"
        && pre["split"] != true
    {
        match pre["prepend_scheme"].as_str() {
            Some("first") => Prepend::First,
            Some("always") => Prepend::Always,
            Some("never") => Prepend::Never,
            None if pre["add_prefix_space"] == true => Prepend::Always,
            None if pre["add_prefix_space"] == false => Prepend::Never,
            other => {
                return bad(format!("Metaspace prepend_scheme {} is not known", quoted_or_missing(other)));
            }
        }
    } else {
        return bad(format!(
            "SentencePiece-style BPE with normalizer {normalizer} and pre_tokenizer {pre} is not supported; minillm reads Llama 2's form (Prepend + Replace) and Metaspace without split"
        ));
    };
    let vocab = vocab_map(&model["vocab"], path)?;
    let added = added_tokens(value, path)?;
    let n_ids = vocab.values().chain(added.iter().map(|a| &a.1)).max().map_or(0, |&m| m as usize + 1);
    let mut pieces = vec![String::new(); n_ids];
    for (piece, &id) in vocab.iter().chain(added.iter().map(|(t, id)| (t, id))) {
        pieces[id as usize] = piece.clone();
    }
    if let Some(id) = pieces.iter().position(String::is_empty) {
        return bad(format!("id {id} has no token"));
    }
    let mut tokens: Vec<Vec<u8>> = pieces.iter().map(|p| SentencePiece::piece_bytes(p)).collect();
    for (_, id) in &added {
        tokens[*id as usize].clear();
    }
    let mut byte_ids = [0u32; 256];
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        *slot = *vocab.get(&format!("<0x{b:02X}>")).ok_or_else(|| {
            Error::format(path, format!("the byte-fallback token <0x{b:02X}> is missing from the vocabulary"))
        })?;
    }
    let id_of = |p: &str| vocab.get(p).copied();
    let mut merges = Vec::new();
    for (i, (l, r)) in hf_merges(model, path)?.iter().enumerate() {
        match (id_of(l), id_of(r), id_of(&format!("{l}{r}"))) {
            (Some(left), Some(right), Some(id)) => merges.push(Merge { left, right, id }),
            _ => return bad(format!("merge {i} ({l} + {r}) joins or makes a piece the vocabulary lacks")),
        }
    }
    let bpe = Bpe::from_pieces(tokens, merges, byte_ids).map_err(|e| Error::format(path, e))?;
    let tok = Tokenizer::sentencepiece_from(bpe, SentencePiece::new(pieces, prepend), added)
        .map_err(|e| Error::format(path, e.to_string()))?;
    let prefix = post_processor_prefix(&value["post_processor"], &tok, path)?;
    tok.with_prefix(prefix).map_err(|e| Error::format(path, e.to_string()))
}

/// The SentencePiece form of [`to_hf_json`].
fn sentencepiece_json(tok: &Tokenizer, sp: &SentencePiece) -> Value {
    let scheme = match sp.prepend {
        Prepend::EveryStretch => None,
        Prepend::First => Some("first"),
        Prepend::Always => Some("always"),
        Prepend::Never => Some("never"),
    };
    let (normalizer, pre_tokenizer) = match scheme {
        None => (
            json!({"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}),
            Value::Null,
        ),
        Some(scheme) => (
            Value::Null,
            json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false}),
        ),
    };
    // '▁' back to spaces, <0xNN> tokens back to their bytes, and the leading space dropped.
    let mut steps = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if sp.prepend != Prepend::Never {
        steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let decoder = json!({"type": "Sequence", "decoders": steps});
    let mut vocab = Map::new();
    for (id, piece) in sp.pieces.iter().enumerate() {
        vocab.insert(piece.clone(), json!(id));
    }
    let merges: Vec<Value> = tok
        .bpe()
        .merges()
        .iter()
        .map(|m| json!([sp.pieces[m.left as usize], sp.pieces[m.right as usize]]))
        .collect();
    let unk = tok.special_id("<unk>").map(|_| "<unk>");
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_json(tok),
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
        "post_processor": prefix_template(tok).unwrap_or(Value::Null), "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    })
}

/// The special token HF's post-processor puts before every text, if any: a TemplateProcessing
/// whose single-text template is `[special, $A]` (Llama 3's `<|begin_of_text|>`). Templates that
/// add anything else (a token after the text, BERT's) are refused by name, since minillm would
/// not add them.
fn post_processor_prefix(p: &Value, tok: &Tokenizer, path: &Path) -> Result<Option<u32>> {
    let refuse = |why: String| {
        Err(Error::format(
            path,
            format!("post_processor {why}; minillm adds at most one special token before a text"),
        ))
    };
    match p["type"].as_str() {
        None | Some("ByteLevel") => Ok(None),
        Some("Sequence") => {
            let mut found = None;
            for step in p["processors"].as_array().into_iter().flatten() {
                if let Some(id) = post_processor_prefix(step, tok, path)?
                    && found.replace(id).is_some()
                {
                    return refuse("adds tokens twice".into());
                }
            }
            Ok(found)
        }
        Some("TemplateProcessing") => {
            let single = p["single"].as_array().map(Vec::as_slice).unwrap_or_default();
            let special = |piece: &Value| piece["SpecialToken"]["id"].as_str().map(str::to_string);
            let is_text = |piece: &Value| piece["Sequence"]["id"] == "A";
            match single {
                [text] if is_text(text) => Ok(None),
                [first, text] if is_text(text) => {
                    let Some(name) = special(first) else {
                        return refuse(format!("template {} is not understood", p["single"]));
                    };
                    match tok.special_id(&name) {
                        Some(id) => Ok(Some(id)),
                        None => {
                            refuse(format!("adds {}, which is not one of the added tokens", quoted(&name)))
                        }
                    }
                }
                _ => refuse(format!("template {} adds tokens after the text or around it", p["single"])),
            }
        }
        Some(other) => refuse(format!("type {other} is not supported")),
    }
}

/// The post-processor HF needs to add `tok`'s prefix token (and the byte-level offsets).
fn post_processor(tok: &Tokenizer) -> Value {
    match prefix_template(tok) {
        None => byte_level(true),
        Some(template) => json!({"type": "Sequence", "processors": [byte_level(true), template]}),
    }
}

/// The TemplateProcessing that puts `tok`'s prefix token before every text.
fn prefix_template(tok: &Tokenizer) -> Option<Value> {
    let id = tok.prefix()?;
    let name = tok.token_text(id);
    let special = json!({"SpecialToken": {"id": name, "type_id": 0}});
    let seq = |part: &str, type_id: u32| json!({"Sequence": {"id": part, "type_id": type_id}});
    Some(json!({"type": "TemplateProcessing",
         "single": [special, seq("A", 0)],
         "pair": [special, seq("A", 0), json!({"SpecialToken": {"id": name, "type_id": 1}}), seq("B", 1)],
         "special_tokens": {name.clone(): {"id": name, "ids": [id], "tokens": [name]}}}))
}

/// Which of our split patterns an HF pre_tokenizer implements, if any.
fn hf_pattern(pre: &Value) -> Option<Pattern> {
    match pre["type"].as_str()? {
        "ByteLevel" if pre["use_regex"].as_bool() != Some(false) => Some(Pattern::Gpt2),
        "Sequence" => {
            let steps = pre["pretokenizers"].as_array()?;
            let [split, byte_level] = steps.as_slice() else {
                return None;
            };
            if split["type"] == "Digits"
                && split["individual_digits"] == true
                && byte_level["type"] == "ByteLevel"
                && byte_level["use_regex"] != false
            {
                return Some(Pattern::Gpt2Digits);
            }
            let byte_level_ok = byte_level["type"] == "ByteLevel" && byte_level["use_regex"] == false;
            let split_ok = split["type"] == "Split" && split["behavior"] == "Isolated";
            if byte_level_ok && split_ok {
                Pattern::from_regex(split["pattern"]["Regex"].as_str()?)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

/// `added_tokens` for a tokenizer.json: every special token.
fn added_json(tok: &Tokenizer) -> Vec<Value> {
    tok.specials()
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect()
}

/// The tokenizer as HF `tokenizer.json` text.
pub fn to_hf_json(tok: &Tokenizer) -> String {
    if let Some(sp) = tok.sentencepiece() {
        return serde_json::to_string_pretty(&sentencepiece_json(tok, sp)).expect("a JSON value serializes");
    }
    let pre_tokenizer = match tok.pattern() {
        Pattern::Gpt2 => byte_level(true),
        Pattern::Gpt2Digits => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        other => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": other.regex()}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]}),
    };
    let added = added_json(tok);
    let mut vocab = Map::new();
    for (id, text) in vocab_entries(tok) {
        vocab.insert(text, json!(id));
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor(tok),
        "decoder": byte_level(true),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": tok.bpe().ignores_merges(), "vocab": vocab, "merges": merge_texts(tok),
        },
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
}

/// (id, text) of every BPE token and special token, by id.
pub(crate) fn vocab_entries(tok: &Tokenizer) -> Vec<(u32, String)> {
    if let Some(sp) = tok.sentencepiece() {
        return sp.pieces.iter().enumerate().map(|(id, p)| (id as u32, p.clone())).collect();
    }
    (0..tok.vocab_size() as u32)
        .filter_map(|id| {
            let bytes = tok.bpe().token_bytes(id)?;
            if !bytes.is_empty() {
                Some((id, bytes_to_token_text(bytes)))
            } else {
                tok.specials().iter().find(|s| s.1 == id).map(|s| (id, s.0.clone()))
            }
        })
        .collect()
}

pub(crate) fn merge_texts(tok: &Tokenizer) -> Vec<[String; 2]> {
    let text = |id: u32| bytes_to_token_text(tok.bpe().token_bytes(id).expect("merge parts exist"));
    tok.bpe().merges().iter().map(|m| [text(m.left), text(m.right)]).collect()
}

/// `vocab.json` (GPT-2's `encoder.json`) text.
pub fn to_vocab_json(tok: &Tokenizer) -> String {
    let map: Map<String, Value> = vocab_entries(tok).into_iter().map(|(id, t)| (t, json!(id))).collect();
    serde_json::to_string(&Value::Object(map)).expect("a JSON value serializes")
}

/// `merges.txt` (GPT-2's `vocab.bpe`) text.
pub fn to_merges_txt(tok: &Tokenizer) -> String {
    let mut out = String::from("#version: 0.2\n");
    for [l, r] in merge_texts(tok) {
        out.push_str(&l);
        out.push(' ');
        out.push_str(&r);
        out.push('\n');
    }
    out
}

/// Writes `tokenizer.json` atomically.
pub fn save(tok: &Tokenizer, path: &Path) -> Result<()> {
    atomic_write(path, to_hf_json(tok).as_bytes())
}

/// Parses a tiktoken rank file. Rank files carry neither the split pattern nor special tokens;
/// the two published layouts are recognised by size (50256 ranks: r50k with `<|endoftext|>`,
/// 100256 ranks: cl100k with the GPT-4 pattern and its specials); others get the GPT-2 pattern.
pub fn from_tiktoken(text: &str, path: &Path) -> Result<Tokenizer> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // Ranks number the file's lines, with gaps at most for a few special tokens; a rank far
    // past the line count is an error, since it would otherwise size the table below from one
    // number in the file.
    let lines = text.lines().filter(|l| !l.is_empty()).count();
    let max_rank = 2 * lines + 256;
    let mut by_rank: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let bad = |why: &str| Error::format(path, format!("line {}: {why}", i + 1));
        let (token, rank) = line.split_once(' ').ok_or_else(|| bad("expected 'base64-token rank'"))?;
        let bytes = b64.decode(token).map_err(|_| bad("the token is not base64"))?;
        let rank: usize = rank.parse().map_err(|_| bad("the rank is not a number"))?;
        if rank >= max_rank {
            return Err(bad(&format!(
                "rank {rank} is far past the file's {lines} lines (ranks number the lines)"
            )));
        }
        if by_rank.len() <= rank {
            by_rank.resize(rank + 1, None);
        }
        if by_rank[rank].replace(bytes).is_some() {
            return Err(bad("the rank is given twice"));
        }
    }
    let rank_of: HashMap<&[u8], u32> =
        by_rank.iter().enumerate().filter_map(|(r, t)| Some((t.as_deref()?, r as u32))).collect();
    let mut byte_ids = [0u32; 256];
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        *slot = *rank_of
            .get([b as u8].as_slice())
            .ok_or_else(|| Error::format(path, format!("no rank for the single byte {b}")))?;
    }
    let mut merges = Vec::new();
    for (rank, token) in by_rank.iter().enumerate() {
        let Some(token) = token.as_deref().filter(|t| t.len() > 1) else {
            continue;
        };
        let parts = tiktoken_parts(token, rank as u32, &rank_of);
        match parts.as_slice() {
            [l, r] => merges.push(Merge { left: *l, right: *r, id: rank as u32 }),
            _ => {
                return Err(Error::format(
                    path,
                    format!("the token of rank {rank} cannot be made from two lower-ranked tokens"),
                ));
            }
        }
    }
    let n = by_rank.len() as u32;
    let (pattern, specials): (Pattern, Vec<(&str, u32)>) = match n {
        50256 => (Pattern::Gpt2, vec![(ENDOFTEXT, 50256)]),
        100256 => (
            Pattern::Gpt4,
            vec![
                (ENDOFTEXT, 100257),
                ("<|fim_prefix|>", 100258),
                ("<|fim_middle|>", 100259),
                ("<|fim_suffix|>", 100260),
                ("<|endofprompt|>", 100276),
            ],
        ),
        _ => (Pattern::Gpt2, vec![]),
    };
    let n_ids = specials.iter().map(|s| s.1 + 1).max().unwrap_or(n).max(n);
    let bpe = Bpe::new(byte_ids, merges, n_ids as usize).map_err(|e| Error::format(path, e))?;
    let specials = specials.into_iter().map(|(t, id)| (t.to_string(), id)).collect();
    Tokenizer::new(bpe, pattern, specials).map_err(|e| Error::format(path, e.to_string()))
}

/// tiktoken's rule on `token`'s bytes using only tokens ranked below `max_rank`: merge the
/// adjacent pair whose joined bytes rank lowest until none is a token.
fn tiktoken_parts(token: &[u8], max_rank: u32, rank_of: &HashMap<&[u8], u32>) -> Vec<u32> {
    let mut parts: Vec<&[u8]> = token.chunks(1).collect();
    loop {
        let best = (0..parts.len() - 1)
            .filter_map(|i| {
                let joined =
                    &token[offset(token, parts[i])..offset(token, parts[i + 1]) + parts[i + 1].len()];
                rank_of.get(joined).filter(|&&r| r < max_rank).map(|&r| (r, i, joined))
            })
            .min();
        let Some((_, i, joined)) = best else { break };
        parts[i] = joined;
        parts.remove(i + 1);
    }
    parts.iter().map(|p| rank_of[p]).collect()
}

fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}
