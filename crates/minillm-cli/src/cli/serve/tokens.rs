//! The tokenizer over HTTP, in the two shapes clients use: llama.cpp's server (`/tokenize` with
//! `content`, `/detokenize` answering `content`) and vLLM's (`prompt`, `add_special_tokens`,
//! `/tokenizer_info`), which lm-evaluation-harness's `tokenizer_backend=remote` reads, so a model
//! trained here can be scored without a copy of its tokenizer on the client's side.

use super::{Shared, SharedState};
use crate::cli::http::{Api, ApiError, Fields, only_fields, parse_object};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use minillm::chat::{Dialogue, JINJA};
use minillm::tokenizer::SpecialTokens;
use serde_json::{Value, json};

const API: Api = Api::OpenAi;

/// `POST /tokenize`. llama.cpp's `{"content": TEXT, "add_special": bool}` keeps special-token
/// text as text; vLLM's `{"prompt": TEXT, "add_special_tokens": bool}` reads it as the special
/// token, as HF tokenizers do. Either way `add_special*` puts the tokenizer's prefix (BOS) first,
/// as prompts get it. The answer carries both servers' fields: `tokens`, `count`, `max_model_len`.
pub async fn tokenize(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    let run = || -> Result<Value, ApiError> {
        let body = accept(
            &s,
            &headers,
            &body,
            &["content", "add_special", "prompt", "add_special_tokens", "model"],
        )?;
        let fields = Fields { api: API, body: &body };
        let text = |key: &str| body.get(key).map(|v| v.as_str().ok_or_else(|| must_be_text(key)));
        let (text, specials, add) = match (text("content"), text("prompt")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    API,
                    "prompt",
                    "give 'content' (llama.cpp's form) or 'prompt' (vLLM's), not both",
                ));
            }
            (Some(t), None) => (t?, SpecialTokens::AsText, fields.flag("add_special")?),
            (None, Some(t)) => (t?, SpecialTokens::Allow, fields.flag("add_special_tokens")?),
            (None, None) => {
                return Err(ApiError::bad(API, "content", "'content' (or 'prompt') must be a string"));
            }
        };
        let mut ids: Vec<u32> = if add { s.tok.prefix().into_iter().collect() } else { Vec::new() };
        let encoded =
            s.tok.encode(text, specials).map_err(|e| ApiError::bad(API, "content", e.to_string()))?;
        ids.extend(encoded);
        Ok(json!({"tokens": ids, "count": ids.len(), "max_model_len": s.context}))
    };
    answer(run())
}

/// `POST /detokenize`: `{"tokens": [ids]}` -> the text, as `content` (llama.cpp) and `prompt` (vLLM).
pub async fn detokenize(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    let run = || -> Result<Value, ApiError> {
        let body = accept(&s, &headers, &body, &["tokens", "model"])?;
        let bad = || ApiError::bad(API, "tokens", "'tokens' must be a list of token ids");
        let ids: Vec<u32> = body
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        let text = s.tok.decode(&ids).map_err(|e| ApiError::bad(API, "tokens", e.to_string()))?;
        Ok(json!({"content": text, "prompt": text}))
    };
    answer(run())
}

/// `GET /tokenizer_info` (vLLM's): the special tokens by text, the chat template as Jinja and
/// the context length.
pub async fn tokenizer_info(State(s): SharedState, headers: HeaderMap) -> Response {
    let run = || -> Result<Value, ApiError> {
        s.accept_key(API, &headers)?;
        let text = |id: Option<u32>| id.map(|id| s.tok.token_text(id));
        let template = match &s.dialogue {
            Dialogue::Jinja(j) => Some(j.source()),
            Dialogue::Template(_) => Some(JINJA),
            Dialogue::Plain => None,
        };
        Ok(json!({
            "tokenizer_class": "minillm",
            "bos_token": text(s.tok.prefix()),
            "eos_token": text(s.tok.end_of_text()),
            "pad_token": null,
            "chat_template": template,
            "model_max_length": s.context,
            "vocab_size": s.tok.vocab_size(),
        }))
    };
    answer(run())
}

fn accept(s: &Shared, headers: &HeaderMap, body: &Bytes, fields: &[&str]) -> Result<Value, ApiError> {
    s.accept_key(API, headers)?;
    let body = parse_object(API, body)?;
    only_fields(API, &body, fields)?;
    if let Some(model) = body.get("model").filter(|m| !m.is_null() && m.as_str() != Some(s.name.as_str())) {
        return Err(ApiError::bad(API, "model", format!("model {model} is not this server's '{}'", s.name)));
    }
    Ok(body)
}

fn must_be_text(key: &str) -> ApiError {
    ApiError::bad(API, key, format!("'{key}' must be a string"))
}

fn answer(result: Result<Value, ApiError>) -> Response {
    result.map(Json).map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}
