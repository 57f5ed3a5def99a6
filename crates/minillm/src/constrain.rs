//! Constrained decoding: output that must match a JSON schema (or any JSON object, or a Lark
//! grammar) whatever the model would rather say.
//!
//! Before each token is drawn, the grammar says which tokens could continue a valid output from
//! here; every other token's logit becomes -inf, so the sampler cannot pick it. When the output
//! is complete, only the end token is left. The model still chooses among the valid tokens, so
//! it fills a schema's values with what it thinks likely; a token budget that runs out first
//! still cuts the output short (the finish reason says so).
//!
//! The hard part, deciding quickly which of 50,000 tokens (each several bytes) can extend a
//! partial parse, is llguidance's: an Earley parser over a token trie, the engine llama.cpp and
//! vLLM use, about 50 µs per token. This module only gives it minillm's vocabulary and applies
//! its masks to the logits.

use crate::error::{Error, Result};
use crate::tokenizer::{SpecialTokens, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use std::sync::Arc;

/// The grammars of one tokenizer: the token trie is built once and shared by every constraint.
#[derive(Clone)]
pub struct Grammars {
    factory: Arc<ParserFactory>,
    ends: Vec<u32>,
}

/// What an output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// Any JSON object (OpenAI's `response_format: json_object`).
    JsonObject,
    /// A value valid under this JSON schema.
    JsonSchema(Value),
    /// Text of a Lark grammar (llguidance's dialect, with `%json{...}` for embedded schemas).
    Lark(String),
}

/// One generation's constraint: where its parse stands.
pub struct Constraint {
    /// Boxed: a parser's state is large, and constraints travel inside jobs.
    matcher: Box<Matcher>,
    ends: Vec<u32>,
}

/// minillm's vocabulary as llguidance reads it: each token's bytes, special tokens marked with
/// the 0xFF byte no UTF-8 text contains.
struct Vocabulary {
    trie: TokTrie,
    tok: Tokenizer,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(bytes).map(|text| self.tok.encode(text, SpecialTokens::AsText)) {
            Ok(Ok(ids)) => ids,
            _ => self.trie.greedy_tokenize(bytes),
        }
    }
}

impl Grammars {
    /// The grammars of `tok`'s vocabulary; `ends` are the ids that end a reply (the first is the
    /// one a finished grammar allows, the others are treated alike).
    pub fn new(tok: &Tokenizer, ends: &[u32]) -> Result<Grammars> {
        let &eos = ends.first().ok_or_else(|| {
            Error::Invalid("constrained output needs an end token, and this tokenizer has none".into())
        })?;
        // An end id is marked special even where it is ordinary text (a config may name any id
        // its `eos_token_id`): the engine ends the reply whenever it is drawn, so the grammar
        // must never allow it as text, only as the end of a complete output.
        let words: Vec<Vec<u8>> = (0..tok.vocab_size() as u32)
            .map(|id| match tok.is_special(id) || ends.contains(&id) {
                true => {
                    [&[TokTrie::SPECIAL_TOKEN_MARKER][..], tok.token_bytes(id).unwrap_or_default()].concat()
                }
                false => tok.token_bytes(id).unwrap_or_default().to_vec(),
            })
            .collect();
        let info = TokRxInfo::new(tok.vocab_size() as u32, eos);
        let env: TokEnv = Arc::new(Vocabulary { trie: TokTrie::from(&info, &words), tok: tok.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Invalid(e.to_string()))?;
        factory.quiet();
        Ok(Grammars { factory: Arc::new(factory), ends: ends.to_vec() })
    }

    /// A fresh constraint for one output; a schema or grammar llguidance cannot compile is an
    /// error that says why.
    pub fn constraint(&self, spec: &Spec) -> Result<Constraint> {
        let grammar = match spec {
            Spec::JsonObject => TopLevelGrammar::from_json_schema(compact(&json!({"type": "object"}))?),
            Spec::JsonSchema(schema) => TopLevelGrammar::from_json_schema(compact(schema)?),
            Spec::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| Error::Invalid(format!("the output constraint cannot be used: {e}")))?;
        Ok(Constraint { matcher: Box::new(Matcher::new(Ok(parser))), ends: self.ends.clone() })
    }
}

/// The largest magnitude a schema's numbers may have: 2^53, the integers a JSON number holds
/// exactly (RFC 7493, I-JSON).
const LARGEST_NUMBER: f64 = 9_007_199_254_740_992.0;

/// Refuses a schema with a number past [`LARGEST_NUMBER`]. Beyond it llguidance 1.9 turns an
/// integer such as -9223372036854775807 into a range whose bounds overflow, and recurses until
/// the stack runs out: the process aborts, which no caller can catch.
fn interoperable_numbers(schema: &Value) -> Result<()> {
    match schema {
        Value::Number(n) if n.as_f64().is_none_or(|x| x.abs() > LARGEST_NUMBER) => {
            Err(Error::Invalid(format!(
                "the output constraint cannot be used: the schema's number {n} is past ±2^53, \
             the integers a JSON number holds exactly"
            )))
        }
        Value::Array(items) => items.iter().try_for_each(interoperable_numbers),
        Value::Object(fields) => fields.values().try_for_each(interoperable_numbers),
        _ => Ok(()),
    }
}

/// JSON written as Python's `json.dumps` writes it (`", "` and `": "`, no other whitespace): a
/// small model allowed free whitespace can spend its whole budget on newlines. (Tool-call
/// grammars embed their schemas through this too, so it is also where a schema llguidance
/// would crash on is refused.)
pub(crate) fn compact(schema: &Value) -> Result<Value> {
    interoperable_numbers(schema)?;
    let mut schema = schema.clone();
    if let Some(map) = schema.as_object_mut() {
        map.entry("x-guidance").or_insert(json!({
            "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "
        }));
    }
    Ok(schema)
}

/// A copy at the same point of the parse, with state of its own: one compiled schema serves
/// every choice of a request.
impl Clone for Constraint {
    fn clone(&self) -> Constraint {
        Constraint { matcher: Box::new(self.matcher.deep_clone()), ends: self.ends.clone() }
    }
}

impl Constraint {
    /// Sets the logit of every token the grammar does not allow next to -inf; the end tokens
    /// are allowed exactly when the output is complete.
    pub fn restrict(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| self.error(e))?;
        let end_allowed = mask.is_allowed(self.ends[0]);
        for (id, logit) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let allowed = if self.ends.contains(&id) { end_allowed } else { mask.is_allowed(id) };
            if !allowed {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past the token the sampler drew.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        let id = if self.ends.contains(&id) { self.ends[0] } else { id };
        self.matcher.consume_token(id).map_err(|e| self.error(e))
    }

    /// Whether the output is complete and nothing but the end may follow.
    pub fn finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        let detail = self.matcher.get_error().unwrap_or_else(|| e.to_string());
        Error::Invalid(format!("constrained decoding failed: {detail}"))
    }
}
