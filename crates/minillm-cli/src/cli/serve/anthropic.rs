//! Anthropic's Messages API: `/v1/messages`, with its streaming event sequence.

use super::anthropic_tools::conversation;
use super::engine::{Event, Finish};
use super::reply::{Reply, collect};
use super::tool_use::{Choice, Tools};
use super::{Shared, SharedState, with_seed};
use crate::cli::http::{Api, ApiError, Fields, new_id, only_fields, refuse_fields};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use minillm::chat::Role;
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
    "tools",
    "tool_choice",
];
const COUNT_FIELDS: &[&str] = &["model", "messages", "system", "tools", "tool_choice"];

pub async fn messages(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    respond(s, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/messages/count_tokens`: the tokens the conversation takes as the model sees it
/// (rendered through its template), without generating.
pub async fn count_tokens(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Response {
    let count = || -> Result<Response, ApiError> {
        let body = s.accept(API, &headers, &body)?;
        only_fields(API, &body, COUNT_FIELDS)?;
        let tools = Tools::from_anthropic(&body)?;
        let prompt = s
            .dialogue
            .render_with_tools(&s.tok, &conversation(&body)?, &tools.tools)
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
    refuse_fields(API, &body, &[("thinking", "extended thinking is not offered by these models")])?;
    only_fields(API, &body, FIELDS)?;
    let fields = Fields { api: API, body: &body };
    if fields.whole("max_tokens")?.is_none() {
        return Err(ApiError::bad(API, "max_tokens", "'max_tokens' is required"));
    }
    let mut generation = fields.generation(&["max_tokens"], "stop_sequences")?;
    let tools = Tools::from_anthropic(&body)?;
    generation.output = tools.grammar(API, "tool_choice")?;
    generation.output_field = "tool_choice";
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
    if prefill.is_some_and(|m| !m.tool_calls.is_empty()) {
        return Err(ApiError::bad(
            API,
            "messages",
            "a final assistant message with tool_use blocks cannot be continued; send the tool_result",
        ));
    }
    let rendered = match prefill {
        Some(_) if !tools.tools.is_empty() => {
            return Err(ApiError::bad(
                API,
                "messages",
                "a final assistant message (prefill) cannot be combined with 'tools'",
            ));
        }
        Some(_) => s.dialogue.render_continuing(&s.tok, &conversation),
        None => s.dialogue.render_with_tools(&s.tok, &conversation, &tools.tools),
    };
    let prompt = rendered.map_err(|e| ApiError::bad(API, "messages", e.to_string()))?;
    let rx = s.start(API, &generation, &prompt, 0)?;
    let id = new_id("msg_");
    let seed = generation.seed;
    // A reply that may call tools is read whole before it is sent (see whole_as_events).
    let buffered = tools.choice != Choice::None;
    if generation.stream && !buffered {
        return Ok(with_seed(stream(s, rx, generation.stop, prompt.len(), id), seed));
    }
    let reply = collect(&s, API, rx, generation.stop).await?;
    let (content, calls) = tools.anthropic_content(&reply.text);
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": s.name, "content": content,
        "stop_reason": if calls { "tool_use" } else { stop_reason(&reply) }, "stop_sequence": reply.stopped_by,
        "usage": {"input_tokens": prompt.len(), "output_tokens": reply.tokens()},
    });
    let response = match generation.stream {
        true => whole_as_events(message),
        false => Json(message).into_response(),
    };
    Ok(with_seed(response, seed))
}

/// A finished message as the stream's events: message_start, then per block its start, one
/// delta (the whole text, or the call's input as one `input_json_delta`) and its stop, then
/// message_delta and message_stop.
fn whole_as_events(message: Value) -> Response {
    let event = |name: &str, data: Value| Sse::default().event(name).data(data.to_string());
    let mut start = message.clone();
    start["content"] = json!([]);
    (start["stop_reason"], start["stop_sequence"], start["usage"]["output_tokens"]) =
        (Value::Null, Value::Null, 0.into());
    let mut events = vec![event("message_start", json!({"type": "message_start", "message": start}))];
    for (index, block) in message["content"].as_array().into_iter().flatten().enumerate() {
        let (opening, delta) = match block["type"].as_str() {
            Some("tool_use") => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
            _ => (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": block["text"]})),
        };
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": opening}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    let delta = json!({"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]});
    let usage = json!({"output_tokens": message["usage"]["output_tokens"]});
    events.push(event("message_delta", json!({"type": "message_delta", "delta": delta, "usage": usage})));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    let events = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
    axum::response::sse::Sse::new(events).into_response()
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
