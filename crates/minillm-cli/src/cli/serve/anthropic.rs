//! Anthropic's Messages API: `/v1/messages`, with its streaming event sequence.

use super::engine::{Event, Finish};
use super::reply::{Reply, collect};
use super::{Shared, SharedState, with_seed};
use crate::cli::http::{
    Api, ApiError, Fields, content_text, message_list, new_id, only_fields, refuse_fields,
};
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

const API: Api = Api::Anthropic;

/// Every field `/v1/messages` reads (besides the tool and thinking fields, refused with their
/// own reason); any other is refused by name. `metadata` only identifies the caller, so it
/// changes nothing. `seed`, `min_p` and the penalties are minillm's additions.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop_sequences",
    "stream",
    "metadata",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
];
const COUNT_FIELDS: &[&str] = &["model", "messages", "system"];

pub async fn messages(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    respond(s, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

fn conversation(body: &Value) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => out.push(Message::new(Role::System, content_text(API, "system", system)?)),
    }
    let role_of = |name: &str| match name {
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    };
    out.extend(message_list(API, body, role_of, "user or assistant")?);
    Ok(out)
}

/// `POST /v1/messages/count_tokens`: the tokens the conversation takes as the model sees it
/// (rendered through its template), without generating.
pub async fn count_tokens(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    let count = || -> Result<Response, ApiError> {
        let body = s.accept(API, &headers, &body)?;
        refuse_fields(API, &body, &[("tools", "tool use is not implemented yet")])?;
        only_fields(API, &body, COUNT_FIELDS)?;
        let prompt = s
            .dialogue
            .render(&s.tok, &conversation(&body)?)
            .map_err(|e| ApiError::bad(API, "messages", e.to_string()))?;
        Ok(Json(json!({"input_tokens": prompt.len()})).into_response())
    };
    count().unwrap_or_else(IntoResponse::into_response)
}

fn stop_reason(reply: &Reply) -> &'static str {
    match (reply.finish, &reply.stopped_by) {
        (_, Some(_)) => "stop_sequence",
        (Some(Finish::Length), _) => "max_tokens",
        _ => "end_turn",
    }
}

async fn respond(s: Arc<Shared>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body = s.accept(API, &headers, &body)?;
    refuse_fields(
        API,
        &body,
        &[
            ("tools", "tool use is not implemented yet"),
            ("tool_choice", "tool use is not implemented yet"),
            ("thinking", "extended thinking is not offered by these models"),
        ],
    )?;
    only_fields(API, &body, FIELDS)?;
    let fields = Fields { api: API, body: &body };
    if fields.whole("max_tokens")?.is_none() {
        return Err(ApiError::bad(API, "max_tokens", "'max_tokens' is required"));
    }
    let generation = fields.generation(&["max_tokens"], "stop_sequences")?;
    let conversation = conversation(&body)?;
    // A last assistant message is a prefill: the reply continues it (and holds only what follows).
    let prefill = conversation.last().filter(|m| m.role == Role::Assistant);
    if prefill.is_some_and(|m| m.content.ends_with(char::is_whitespace)) {
        return Err(ApiError::bad(
            API,
            "messages",
            "final assistant content cannot end with trailing whitespace",
        ));
    }
    let rendered = match prefill {
        Some(_) => s.dialogue.render_continuing(&s.tok, &conversation),
        None => s.dialogue.render(&s.tok, &conversation),
    };
    let prompt = rendered.map_err(|e| ApiError::bad(API, "messages", e.to_string()))?;
    let rx = s.start(API, &generation, &prompt, 0)?;
    let id = new_id("msg_");
    let seed = generation.seed;
    if generation.stream {
        return Ok(with_seed(stream(s, rx, generation.stop, prompt.len(), id), seed));
    }
    let reply = collect(&s, API, rx, generation.stop).await?;
    let response = Json(json!({
        "id": id, "type": "message", "role": "assistant", "model": s.name,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": stop_reason(&reply), "stop_sequence": reply.stopped_by,
        "usage": {"input_tokens": prompt.len(), "output_tokens": reply.tokens()},
    }))
    .into_response();
    Ok(with_seed(response, seed))
}

/// message_start, content_block_start, content_block_delta per piece of text,
/// content_block_stop, message_delta (stop reason, usage), message_stop.
fn stream(
    s: Arc<Shared>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    stop: Vec<String>,
    input_tokens: usize,
    id: String,
) -> Response {
    let event = |name: &str, data: Value| Sse::default().event(name).data(data.to_string());
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": s.name, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 0}}});
    let deadline = tokio::time::Instant::now() + s.timeout;
    let reply = Reply::new(s.tok.clone(), stop);
    enum Phase {
        MessageStart,
        BlockStart,
        Deltas,
        MessageDelta,
        MessageStop,
        End,
    }
    let events = futures_util::stream::unfold(
        (rx, reply, Phase::MessageStart),
        move |(mut rx, mut reply, phase)| {
            let start = start.clone();
            async move {
                let (out, next) = match phase {
                    Phase::MessageStart => (event("message_start", start), Phase::BlockStart),
                    Phase::BlockStart => (
                        event(
                            "content_block_start",
                            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                        ),
                        Phase::Deltas,
                    ),
                    Phase::Deltas => loop {
                        if reply.done() {
                            break (
                                event(
                                    "content_block_stop",
                                    json!({"type": "content_block_stop", "index": 0}),
                                ),
                                Phase::MessageDelta,
                            );
                        }
                        let e = match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(e)) => e,
                            Ok(None) | Err(_) => Event::Done(Finish::Length),
                        };
                        let text = reply.take(e);
                        if !text.is_empty() {
                            break (
                                event(
                                    "content_block_delta",
                                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                                ),
                                Phase::Deltas,
                            );
                        }
                    },
                    Phase::MessageDelta => (
                        event(
                            "message_delta",
                            json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(&reply), "stop_sequence": reply.stopped_by},
                        "usage": {"output_tokens": reply.tokens()}}),
                        ),
                        Phase::MessageStop,
                    ),
                    Phase::MessageStop => {
                        (event("message_stop", json!({"type": "message_stop"})), Phase::End)
                    }
                    Phase::End => return None,
                };
                Some((Ok::<_, Infallible>(out), (rx, reply, next)))
            }
        },
    );
    axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
