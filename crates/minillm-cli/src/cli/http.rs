//! The HTTP conventions `serve` and `lab` share: errors in the OpenAI or Anthropic shape, typed
//! access to a JSON body's fields, and the sampling settings every endpoint reads.

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minillm::constrain::Constraint;
use minillm::sample::SamplerConfig;
use serde_json::{Value, json};

/// Stop strings a request may give (OpenAI allows 4; vLLM and llama.cpp, any number).
const MAX_STOP_STRINGS: usize = 16;
const MAX_STOP_BYTES: usize = 1024;
/// Which API's error shape to answer in.
#[derive(Clone, Copy, PartialEq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// An error with its HTTP status, in the caller's API's shape.
pub struct ApiError {
    api: Api,
    status: StatusCode,
    message: String,
    param: Option<String>,
}

impl ApiError {
    pub fn bad(api: Api, param: &str, message: impl Into<String>) -> ApiError {
        ApiError { api, status: StatusCode::BAD_REQUEST, message: message.into(), param: Some(param.into()) }
    }

    pub fn status(api: Api, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { api, status, message: message.into(), param: None }
    }

    /// Names the request field the error is about.
    pub fn param(mut self, param: &str) -> ApiError {
        self.param = Some(param.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.api {
            Api::OpenAi => {
                let kind = match self.status {
                    StatusCode::UNAUTHORIZED => "authentication_error",
                    StatusCode::NOT_FOUND => "not_found_error",
                    StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
                    s if s.is_server_error() => "server_error",
                    _ => "invalid_request_error",
                };
                json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": null}})
            }
            Api::Anthropic => {
                let kind = match self.status {
                    StatusCode::UNAUTHORIZED => "authentication_error",
                    StatusCode::NOT_FOUND => "not_found_error",
                    StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
                    StatusCode::GATEWAY_TIMEOUT => "timeout_error",
                    s if s.is_server_error() => "api_error",
                    _ => "invalid_request_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": self.message}})
            }
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // When to try again: a slot frees as soon as any request in flight finishes.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, 1.into());
        }
        response
    }
}

/// Parses a request body that must be a JSON object.
pub fn parse_object(api: Api, body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::status(api, StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::status(api, StatusCode::BAD_REQUEST, "the body must be a JSON object"));
    }
    Ok(value)
}

/// The sampling settings both APIs share, read from the body with errors that name the field.
pub struct Generation {
    /// Where the prompt came from, for errors about it.
    pub prompt_field: &'static str,
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    /// The request's `seed`, or one drawn for this request alone (so that requests without a
    /// seed get fresh randomness, as OpenAI's do); either way reported back in the
    /// `x-minillm-seed` header, so any reply can be reproduced.
    pub seed: u64,
    pub stop: Vec<String>,
    pub stream: bool,
    pub logprobs: bool,
    pub top_logprobs: usize,
    /// What the output must be (constrained decoding), compiled once for every choice.
    pub constraint: Option<Constraint>,
}

/// Typed access to an optional field of a JSON body.
pub struct Fields<'a> {
    pub api: Api,
    pub body: &'a Value,
}

impl Fields<'_> {
    pub fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(self.api, key, format!("'{key}' must be a number"))),
        }
    }

    pub fn whole(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ApiError::bad(self.api, key, format!("'{key}' must be a non-negative integer"))
            }),
        }
    }

    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| ApiError::bad(self.api, key, format!("'{key}' must be true or false"))),
        }
    }

    /// A string or a list of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ApiError> {
        let bad = || ApiError::bad(self.api, key, format!("'{key}' must be a string or a list of strings"));
        match self.body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(bad)).collect()
            }
            Some(_) => Err(bad()),
        }
    }

    /// The sampler settings: temperature, top_k, top_p, min_p and OpenAI's two penalties.
    pub fn sampler(&self) -> Result<SamplerConfig, ApiError> {
        let temperature = self.number("temperature")?.unwrap_or(1.0);
        let top_p = self.number("top_p")?.unwrap_or(1.0);
        let min_p = self.number("min_p")?.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad(self.api, "temperature", "'temperature' must be between 0 and 2"));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad(self.api, "top_p", "'top_p' must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::bad(self.api, "min_p", "'min_p' must be between 0 and 1"));
        }
        Ok(SamplerConfig {
            temperature: temperature as f32,
            top_k: self.whole("top_k")?.unwrap_or(0) as usize,
            top_p: top_p as f32,
            min_p: min_p as f32,
            frequency_penalty: self.number("frequency_penalty")?.unwrap_or(0.0) as f32,
            presence_penalty: self.number("presence_penalty")?.unwrap_or(0.0) as f32,
            logit_bias: self.logit_bias()?,
            ..Default::default()
        })
    }

    /// OpenAI's `logit_bias`: token id (as a string) -> a bias in -100..=100 added to its logit;
    /// at most 300 entries, as OpenAI allows. Ids past the vocabulary are refused by the caller.
    fn logit_bias(&self) -> Result<Vec<(u32, f32)>, ApiError> {
        let key = "logit_bias";
        let bad = |m: String| ApiError::bad(self.api, key, m);
        let map = match self.body.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(bad("'logit_bias' must be an object of token id -> bias".into())),
        };
        if map.len() > 300 {
            return Err(bad(format!("'logit_bias' has {} entries; at most 300 are allowed", map.len())));
        }
        map.iter()
            .map(|(id, bias)| {
                let id: u32 =
                    id.parse().map_err(|_| bad(format!("'logit_bias' key '{id}' is not a token id")))?;
                match bias.as_f64() {
                    Some(b) if (-100.0..=100.0).contains(&b) => Ok((id, b as f32)),
                    _ => Err(bad(format!("'logit_bias' value for token {id} must be a number in -100..100"))),
                }
            })
            .collect()
    }

    /// The settings common to every endpoint; `max_keys` names the token-budget fields.
    pub fn generation(&self, max_keys: &[&str], stop_key: &str) -> Result<Generation, ApiError> {
        let mut max_tokens = None;
        for key in max_keys {
            if let Some(n) = self.whole(key)? {
                max_tokens = Some(n as usize);
            }
        }
        let sampler = self.sampler()?;
        let stop = self.strings(stop_key)?;
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::bad(self.api, stop_key, "stop strings must not be empty"));
        }
        // Every new token is checked against every stop string: bound the work a request buys.
        if stop.len() > MAX_STOP_STRINGS || stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::bad(
                self.api,
                stop_key,
                format!("at most {MAX_STOP_STRINGS} stop strings of at most {MAX_STOP_BYTES} bytes each"),
            ));
        }
        Ok(Generation {
            prompt_field: if self.body.get("prompt").is_some() { "prompt" } else { "messages" },
            max_tokens,
            sampler,
            seed: match self.whole("seed")? {
                Some(seed) => seed,
                None => fresh_seed(),
            },
            stop,
            stream: self.flag("stream")?,
            logprobs: false,
            top_logprobs: 0,
            constraint: None,
        })
    }
}

/// A seed no earlier request drew: std's hasher keys are random per process and differ for
/// every `RandomState`, so hashing nothing gives a new 64-bit number each time.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Refuses the request fields of `names` that the body carries and this server does not
/// implement, each with `why`: a field accepted and ignored would change the answer silently.
pub fn refuse_fields(api: Api, body: &Value, names: &[(&str, &str)]) -> Result<(), ApiError> {
    for (name, why) in names {
        if body.get(*name).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad(api, name, format!("'{name}' is not supported by this server: {why}")));
        }
    }
    Ok(())
}

/// Refuses a field the endpoint does not know, by name: a misspelt or unsupported setting
/// accepted and ignored would change the answer silently.
pub fn only_fields(api: Api, body: &Value, known: &[&str]) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else { return Ok(()) };
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(ApiError::bad(
            api,
            key,
            format!("'{key}' is not a field this endpoint takes; it takes {}", known.join(", ")),
        )),
    }
}

/// The body's `messages`: a non-empty list (each API reads its messages' shapes itself).
pub fn message_list(api: Api, body: &Value) -> Result<&Vec<Value>, ApiError> {
    let bad = |m: &str| ApiError::bad(api, "messages", m);
    match body.get("messages").and_then(Value::as_array) {
        None => Err(bad("'messages' must be a list")),
        Some(list) if list.is_empty() => Err(bad("'messages' must not be empty")),
        Some(list) => Ok(list),
    }
}

/// Parses a message's content: a string, or a list of `{"type": "text", "text": ...}` blocks.
pub fn content_text(api: Api, field: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(t)) => Ok(t),
                _ => Err(ApiError::bad(
                    api,
                    field,
                    format!("'{field}' blocks must be {{\"type\": \"text\", \"text\": ...}}"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.concat()),
        _ => Err(ApiError::bad(api, field, format!("'{field}' must be a string or a list of text blocks"))),
    }
}

pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed) ^ 0x5eed_0000_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_says_when_to_retry() {
        let r = ApiError::status(Api::OpenAi, StatusCode::TOO_MANY_REQUESTS, "busy").into_response();
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        let r = ApiError::bad(Api::Anthropic, "x", "no").into_response();
        assert!(r.headers().get("retry-after").is_none());
    }
}
