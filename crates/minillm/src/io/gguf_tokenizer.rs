//! Tokenizers in GGUF metadata, as llama.cpp's converter writes them: `gpt2` (byte-level BPE:
//! tokens, token types, merges and the split pattern's `pre` name) and `llama` (SentencePiece:
//! pieces, scores and token types), with the BOS/EOS/EOT ids and whether a BOS starts every text.

use super::generation_config::{GenerationConfig, TextTokens};
use super::gguf::{Gguf, Value, ValueType};
use crate::chat::ChatTemplate;
use crate::error::{Error, Result, quoted, quoted_or_missing};
use crate::tokenizer::bpe::{Bpe, Merge, MissingBytes};
use crate::tokenizer::formats::{from_token_list, merge_texts, vocab_entries};
use crate::tokenizer::sentencepiece::{Prepend, SentencePiece};
use crate::tokenizer::{END_OF_TEXT_NAMES, Pattern, Tokenizer};
use rustc_hash::FxHashMap;
use std::path::Path;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// llama.cpp's pre-tokenizer name for our split patterns (`llama-bpe` is the cl100k pattern).
fn pre_name(p: Pattern) -> &'static str {
    match p {
        Pattern::Gpt2 => "gpt-2",
        Pattern::Gpt4 => "llama-bpe",
        Pattern::Qwen2 => "qwen2",
        Pattern::Gpt2Digits => "smollm",
    }
}

/// The tokenizer's metadata: byte-level BPE as `gpt2`, SentencePiece-style as `llama`, with
/// BOS/EOS (and UNK) ids, whether a BOS starts every text, where a turn ends and the model's
/// `chat_template`. A tokenizer with no end-of-text token is refused: llama.cpp would take a
/// byte token for BOS and EOS and stop generating wherever the model wrote that byte.
pub(super) fn metadata(
    tok: &Tokenizer,
    generation: &GenerationConfig,
    chat_template: Option<&str>,
) -> Result<Vec<(String, Value)>> {
    let TextTokens { bos, eos, ends } = TextTokens::of(tok, generation);
    let Some(eos) = eos else {
        return Err(Error::Invalid(format!(
            "this tokenizer has no end-of-text token ({}), which llama.cpp needs to know where a text \
             ends; train the tokenizer with `--special '<|endoftext|>'` (`minillm prepare` then puts it \
             between the files it reads) and the model on that data",
            END_OF_TEXT_NAMES.join(", ")
        )));
    };
    let entries = vocab_entries(tok);
    if entries.len() != tok.vocab_size() || entries.iter().enumerate().any(|(i, e)| e.0 as usize != i) {
        return Err(Error::Invalid(
            "GGUF lists every token id in order, but this tokenizer's ids have gaps".into(),
        ));
    }
    let strings = |it: Vec<String>| Value::strings(it);
    let types = |f: &dyn Fn(u32, &str) -> i32| {
        Value::Array(ValueType::I32, entries.iter().map(|(id, t)| Value::I32(f(*id, t))).collect())
    };
    let mut out: Vec<(String, Value)> = Vec::new();
    match tok.sentencepiece() {
        None => {
            out.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            out.push(("tokenizer.ggml.pre".into(), Value::String(pre_name(tok.pattern()).into())));
            out.push((
                "tokenizer.ggml.tokens".into(),
                strings(entries.iter().map(|e| e.1.clone()).collect()),
            ));
            out.push((
                "tokenizer.ggml.token_type".into(),
                types(&|id, _| if tok.is_special(id) { CONTROL } else { NORMAL }),
            ));
            let merges = merge_texts(tok).into_iter().map(|[l, r]| format!("{l} {r}")).collect();
            out.push(("tokenizer.ggml.merges".into(), strings(merges)));
        }
        Some(sp) => {
            out.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
            out.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            out.push(("tokenizer.ggml.tokens".into(), strings(sp.pieces.clone())));
            // llama.cpp's SentencePiece joins the adjacent pair whose result scores highest:
            // a piece's score is minus the rank of the merge that makes it, so it joins what
            // HF's merges would join first.
            let mut scores = vec![-1e9f32; sp.pieces.len()];
            for (rank, m) in tok.bpe().merges().iter().enumerate() {
                let s = &mut scores[m.id as usize];
                *s = s.max(-(rank as f32));
            }
            out.push((
                "tokenizer.ggml.scores".into(),
                Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
            ));
            let byte_ids = tok.bpe().byte_ids();
            out.push((
                "tokenizer.ggml.token_type".into(),
                types(&|id, text| match text {
                    "<unk>" => UNKNOWN,
                    _ if tok.is_special(id) => CONTROL,
                    _ if byte_ids.contains(&id) => BYTE,
                    _ => NORMAL,
                }),
            ));
            out.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(sp.prepend != Prepend::Never)));
            if let Some(unk) = tok.special_id("<unk>") {
                out.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(unk)));
            }
        }
    }
    out.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos.unwrap_or(eos))));
    out.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
    // Where a turn ends, for llama.cpp to stop there: a second end token (Qwen2.5's
    // <|endoftext|> beside <|im_end|>), or the <|end|> of a model fine-tuned with minillm's roles.
    let end_of_turn =
        ends.iter().copied().find(|&e| e != eos).or_else(|| ChatTemplate::of(tok).map(|t| t.end_id()));
    if let Some(eot) = end_of_turn {
        out.push(("tokenizer.ggml.eot_token_id".into(), Value::U32(eot)));
    }
    out.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(tok.prefix().is_some())));
    if let Some(t) = chat_template {
        out.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    Ok(out)
}

/// The tokenizer and the ids generation ends at (EOS, and the end of turn where named).
pub(super) fn read(file: &Gguf, path: &Path) -> Result<(Tokenizer, Vec<u32>)> {
    let bad = |m: String| Error::format(path, m);
    let id = |key: &str| file.get(key).and_then(Value::as_u64).map(|x| x as u32);
    let tok = match file.get("tokenizer.ggml.model").and_then(Value::as_str) {
        Some("gpt2") => byte_level_tokenizer(file, path)?,
        Some("llama") => sentencepiece_tokenizer(file, path)?,
        other => {
            return Err(bad(format!(
                "tokenizer.ggml.model is {}; minillm reads 'gpt2' and 'llama' tokenizers",
                quoted_or_missing(other)
            )));
        }
    };
    // An end token after every text changes what a model reads; minillm adds none, so it refuses
    // rather than tokenize such a model's prompts differently (embedding models set this).
    if file.get("tokenizer.ggml.add_eos_token") == Some(&Value::Bool(true)) {
        return Err(bad(
            "tokenizer.ggml.add_eos_token is true: minillm does not put an end token after every text".into(),
        ));
    }
    // Without the key, llama.cpp adds a BOS for SentencePiece vocabularies and not for BPE ones.
    let add_bos = match file.get("tokenizer.ggml.add_bos_token") {
        Some(v) => *v == Value::Bool(true),
        None => tok.sentencepiece().is_some(),
    };
    let tok = match id("tokenizer.ggml.bos_token_id").filter(|_| add_bos) {
        Some(bos) if tok.is_special(bos) => tok.with_prefix(Some(bos))?,
        Some(bos) => return Err(bad(format!("the BOS token {bos} is not a special (control) token"))),
        None => tok,
    };
    let mut ends: Vec<u32> = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(end) = id(key) {
            if end as usize >= tok.vocab_size() {
                return Err(bad(format!("{key} {end} is outside the vocabulary of {}", tok.vocab_size())));
            }
            if !ends.contains(&end) {
                ends.push(end);
            }
        }
    }
    Ok((tok, ends))
}

/// A `llama` (SentencePiece) tokenizer: pieces, scores and token types. Its merges are the
/// splits of every piece into two others, the highest-scoring result first: llama.cpp's
/// SentencePiece joins the adjacent pair whose result scores highest, which is the BPE of
/// these merges.
fn sentencepiece_tokenizer(file: &Gguf, path: &Path) -> Result<Tokenizer> {
    let bad = |m: String| Error::format(path, m);
    let array = |key: &str| {
        file.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("metadata '{key}' is missing or not an array")))
    };
    let pieces: Vec<String> = array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("a token is not text".into())))
        .collect::<Result<_>>()?;
    let n = pieces.len();
    let scores: Vec<f64> =
        array("tokenizer.ggml.scores")?.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect();
    let types: Vec<i64> = array("tokenizer.ggml.token_type")?
        .iter()
        .map(|v| v.as_u64().map_or(NORMAL as i64, |x| x as i64))
        .collect();
    if scores.len() != n || types.len() != n {
        return Err(bad(format!("{n} tokens but {} scores and {} token types", scores.len(), types.len())));
    }
    let special = |id: usize| matches!(types[id] as i32, CONTROL | UNKNOWN | USER_DEFINED);
    let mut tokens: Vec<Vec<u8>> = pieces
        .iter()
        .enumerate()
        .map(|(id, p)| if special(id) { Vec::new() } else { SentencePiece::piece_bytes(p) })
        .collect();
    let mut byte_ids = [u32::MAX; 256];
    for (id, p) in pieces.iter().enumerate() {
        if types[id] as i32 == BYTE
            && let [b] = SentencePiece::piece_bytes(p).as_slice()
        {
            byte_ids[*b as usize] = id as u32;
        }
    }
    if let Some(b) = byte_ids.iter().position(|&id| id == u32::MAX) {
        return Err(bad(format!(
            "the byte-fallback token <0x{b:02X}> is missing; minillm reads SentencePiece vocabularies with byte fallback"
        )));
    }
    let ids: FxHashMap<&str, u32> = pieces
        .iter()
        .enumerate()
        .filter(|(id, _)| !special(*id) && types[*id] as i32 != BYTE)
        .map(|(id, p)| (p.as_str(), id as u32))
        .collect();
    let mut candidates: Vec<(f64, u32, u32, u32)> = Vec::new();
    for (id, p) in pieces.iter().enumerate() {
        if special(id) || types[id] as i32 == BYTE {
            continue;
        }
        for (at, _) in p.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&p[..at]), ids.get(&p[at..])) {
                candidates.push((scores[id], id as u32, l, r));
            }
        }
    }
    // Highest score first; among one piece's splits, the one with the better-scored left part.
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(scores[b.2 as usize].total_cmp(&scores[a.2 as usize]))
    });
    let merges: Vec<Merge> =
        candidates.iter().map(|&(_, id, left, right)| Merge { left, right, id }).collect();
    for t in tokens.iter_mut().enumerate().filter(|(id, _)| special(*id)).map(|x| x.1) {
        t.clear();
    }
    let bpe = Bpe::from_pieces(tokens, merges, byte_ids).map_err(&bad)?;
    let specials: Vec<(String, u32)> = pieces
        .iter()
        .enumerate()
        .filter(|(id, _)| special(*id))
        .map(|(id, p)| (p.clone(), id as u32))
        .collect();
    // llama.cpp puts the '▁' before the text and after every special token, whatever follows:
    // Llama 2's normalizer does the same.
    let prepend = match file.get("tokenizer.ggml.add_space_prefix") {
        Some(Value::Bool(false)) => Prepend::Never,
        _ => Prepend::EveryStretch,
    };
    Tokenizer::sentencepiece_from(bpe, SentencePiece::new(pieces, prepend), specials)
        .map_err(|e| bad(e.to_string()))
}

/// A `gpt2` (byte-level BPE) tokenizer: tokens, merges and the split pattern's `pre` name.
pub(super) fn byte_level_tokenizer(file: &Gguf, path: &Path) -> Result<Tokenizer> {
    match file.get("tokenizer.ggml.model").and_then(Value::as_str) {
        Some("gpt2") => {}
        other => {
            return Err(Error::format(
                path,
                format!(
                    "tokenizer.ggml.model is {}; minillm reads byte-level BPE ('gpt2') tokenizers",
                    quoted_or_missing(other)
                ),
            ));
        }
    }
    let strings = |key: &str| -> Result<Vec<String>> {
        let items = file
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| Error::format(path, format!("metadata '{key}' is missing or not an array")))?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::format(path, format!("'{key}' holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let mut merges = Vec::new();
    for (i, m) in strings("tokenizer.ggml.merges")?.into_iter().enumerate() {
        let (l, r) = m
            .split_once(' ')
            .ok_or_else(|| Error::format(path, format!("merge {i} ({}) is not 'left right'", quoted(&m))))?;
        merges.push((l.to_string(), r.to_string()));
    }
    let pattern = match file.get("tokenizer.ggml.pre").and_then(Value::as_str) {
        None | Some("gpt-2" | "default") => Pattern::Gpt2,
        Some("llama-bpe" | "dbrx") => Pattern::Gpt4,
        Some("qwen2") => Pattern::Qwen2,
        Some("smollm") => Pattern::Gpt2Digits,
        Some(other) => {
            return Err(Error::format(
                path,
                format!(
                    "pre-tokenizer '{other}' is not one minillm implements (gpt-2, llama-bpe, qwen2, smollm)"
                ),
            ));
        }
    };
    let mut tok = from_token_list(&tokens, &merges, pattern, path)?;
    // llama.cpp keeps a byte that has no token as a symbol no merge touches and drops it at the
    // end; HF removes it first (see `MissingBytes`). A GGUF file encodes as llama.cpp does.
    tok.bpe_mut().set_missing_bytes(MissingBytes::Split);
    Ok(tok)
}
