//! OpenAI's API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

use super::engine::{Event, Finish};
use super::reply::{Reply, collect};
use super::{Shared, SharedState};
use crate::cli::http::{Api, ApiError, Fields, Generation, message_list, new_id};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use minillm::chat::{Message, Role};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;

const API: Api = Api::OpenAi;

pub async fn models(State(s): SharedState, headers: HeaderMap) -> Response {
    if let Err(e) = s.accept_key(API, &headers) {
        return e.into_response();
    }
    Json(json!({"object": "list", "data": [{"id": s.name, "object": "model", "created": s.created, "owned_by": "minillm"}]}))
        .into_response()
}

/// Whether the reply is a chat message or a completion's text.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

pub async fn chat(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    respond(s, headers, body, Kind::Chat).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    respond(s, headers, body, Kind::Text).await.unwrap_or_else(IntoResponse::into_response)
}

fn messages(body: &Value) -> Result<Vec<Message>, ApiError> {
    let role_of = |name: &str| match name {
        "system" | "developer" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    };
    message_list(API, body, role_of, "system, user or assistant")
}

async fn respond(s: Arc<Shared>, headers: HeaderMap, body: Bytes, kind: Kind) -> Result<Response, ApiError> {
    let body = s.accept(API, &headers, &body)?;
    let fields = Fields { api: API, body: &body };
    let mut generation = fields.generation(&["max_tokens", "max_completion_tokens"], "stop")?;
    let prompt = match kind {
        Kind::Chat => s
            .dialogue
            .render(&s.tok, &messages(&body)?)
            .map_err(|e| ApiError::bad(API, "messages", e.to_string()))?,
        Kind::Text => {
            let text = body
                .get("prompt")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad(API, "prompt", "'prompt' must be a string"))?;
            s.tok.encode_prompt(text).map_err(|e| ApiError::bad(API, "prompt", e.to_string()))?
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::bad(API, "prompt", "the prompt is empty"));
    }
    let wants_logprobs = match kind {
        Kind::Chat => fields.flag("logprobs")?,
        Kind::Text => fields.whole("logprobs")?.is_some(),
    };
    generation.logprobs = wants_logprobs;
    generation.top_logprobs = match kind {
        Kind::Chat => fields.whole("top_logprobs")?.unwrap_or(0) as usize,
        Kind::Text => fields.whole("logprobs")?.unwrap_or(0) as usize,
    }
    .min(20);
    let n = fields.whole("n")?.unwrap_or(1) as usize;
    if !(1..=16).contains(&n) {
        return Err(ApiError::bad(API, "n", "'n' must be 1..=16"));
    }
    let include_usage =
        body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    if generation.stream {
        if n != 1 {
            return Err(ApiError::bad(API, "n", "streaming supports n = 1"));
        }
        let rx = s.start(API, &generation, &prompt, 0)?;
        return Ok(stream(s, rx, generation, prompt.len(), kind, wants_logprobs, include_usage));
    }
    // Every choice is submitted before any is awaited, so they decode in one batch.
    let receivers =
        (0..n as u64).map(|i| s.start(API, &generation, &prompt, i)).collect::<Result<Vec<_>, _>>()?;
    let mut choices = Vec::with_capacity(n);
    let mut completion_tokens = 0;
    for (i, rx) in receivers.into_iter().enumerate() {
        let reply = collect(&s, API, rx, generation.stop.clone()).await?;
        completion_tokens += reply.tokens();
        let logprobs = wants_logprobs.then(|| logprobs_json(&reply, kind));
        choices.push(match kind {
            Kind::Chat => json!({"index": i, "message": {"role": "assistant", "content": reply.text}, "logprobs": logprobs, "finish_reason": reason(reply.finish)}),
            Kind::Text => json!({"index": i, "text": reply.text, "logprobs": logprobs, "finish_reason": reason(reply.finish)}),
        });
    }
    let (id, object) = ids(kind);
    Ok(Json(json!({
        "id": id, "object": object, "created": now(), "model": s.name, "choices": choices,
        "usage": {"prompt_tokens": prompt.len(), "completion_tokens": completion_tokens, "total_tokens": prompt.len() + completion_tokens},
    }))
    .into_response())
}

fn ids(kind: Kind) -> (String, &'static str) {
    match kind {
        Kind::Chat => (new_id("chatcmpl-"), "chat.completion"),
        Kind::Text => (new_id("cmpl-"), "text_completion"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn reason(finish: Option<Finish>) -> &'static str {
    match finish {
        Some(Finish::Length) => "length",
        _ => "stop",
    }
}

fn logprobs_json(reply: &Reply, kind: Kind) -> Value {
    match kind {
        Kind::Chat => {
            let entry = |text: &str, lp: f32| json!({"token": text, "logprob": lp, "bytes": text.as_bytes()});
            let content: Vec<Value> = reply
                .logprobs
                .iter()
                .map(|t| {
                    let mut e = entry(&t.text, t.logprob);
                    e["top_logprobs"] =
                        t.top.iter().map(|(text, lp)| entry(text, *lp)).collect::<Vec<_>>().into();
                    e
                })
                .collect();
            json!({"content": content})
        }
        Kind::Text => json!({
            "tokens": reply.logprobs.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
            "token_logprobs": reply.logprobs.iter().map(|t| t.logprob).collect::<Vec<_>>(),
            "top_logprobs": reply.logprobs.iter().map(|t| t.top.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
        }),
    }
}

/// Server-sent events: a chunk per piece of text, a last chunk with the finish reason, the usage
/// when asked, and `data: [DONE]`.
fn stream(
    s: Arc<Shared>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    generation: Generation,
    prompt_tokens: usize,
    kind: Kind,
    wants_logprobs: bool,
    include_usage: bool,
) -> Response {
    let (id, _) = ids(kind);
    let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
    let created = now();
    let reply = Reply::new(s.tok.clone(), generation.stop);
    let deadline = tokio::time::Instant::now() + s.timeout;
    let chunk = {
        let (id, name) = (id.clone(), s.name.clone());
        move |choices: Value, usage: Option<Value>| {
            let mut c =
                json!({"id": id, "object": object, "created": created, "model": name, "choices": choices});
            if let Some(u) = usage {
                c["usage"] = u;
            }
            Sse::default().data(c.to_string())
        }
    };
    let delta = move |text: Option<&str>, role: bool, finish: Option<&str>, lp: Option<Value>| -> Value {
        match kind {
            Kind::Chat => {
                let mut d = json!({});
                if role {
                    d["role"] = "assistant".into();
                }
                if let Some(t) = text {
                    d["content"] = t.into();
                }
                json!([{"index": 0, "delta": d, "logprobs": lp, "finish_reason": finish}])
            }
            Kind::Text => {
                json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": lp, "finish_reason": finish}])
            }
        }
    };
    enum Phase {
        Start,
        Tokens,
        Usage,
        Done,
        End,
    }
    let state = (rx, reply, Phase::Start);
    let events = futures_util::stream::unfold(state, move |(mut rx, mut reply, phase)| {
        let (chunk, delta) = (chunk.clone(), delta);
        async move {
            match phase {
                Phase::Start if kind == Kind::Chat => Some((
                    Ok::<_, Infallible>(chunk(delta(Some(""), true, None, None), None)),
                    (rx, reply, Phase::Tokens),
                )),
                Phase::Start | Phase::Tokens => loop {
                    if reply.done() {
                        let finish = if reply.error.is_some() { "length" } else { reason(reply.finish) };
                        let next = if include_usage { Phase::Usage } else { Phase::Done };
                        return Some((
                            Ok(chunk(delta(None, false, Some(finish), None), None)),
                            (rx, reply, next),
                        ));
                    }
                    let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(e)) => e,
                        Ok(None) | Err(_) => Event::Done(Finish::Length),
                    };
                    let before = reply.logprobs.len();
                    let text = reply.take(event);
                    if !text.is_empty() || (wants_logprobs && reply.logprobs.len() > before) {
                        let lp = (wants_logprobs && reply.logprobs.len() > before).then(|| {
                            let t = &reply.logprobs[before];
                            json!({"content": [{"token": t.text, "logprob": t.logprob, "bytes": t.text.as_bytes(),
                                "top_logprobs": t.top.iter().map(|(k, v)| json!({"token": k, "logprob": v, "bytes": k.as_bytes()})).collect::<Vec<_>>()}]})
                        });
                        return Some((
                            Ok(chunk(delta(Some(&text), false, None, lp), None)),
                            (rx, reply, Phase::Tokens),
                        ));
                    }
                },
                Phase::Usage => {
                    let n = reply.tokens();
                    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n});
                    Some((Ok(chunk(json!([]), Some(usage))), (rx, reply, Phase::Done)))
                }
                Phase::Done => Some((Ok(Sse::default().data("[DONE]")), (rx, reply, Phase::End))),
                Phase::End => None,
            }
        }
    });
    axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
