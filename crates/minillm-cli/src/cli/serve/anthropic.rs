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
use minillm::chat::tools::CallSieve;
use serde_json::{Value, json};
use std::collections::VecDeque;
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
    generation.constraint = s.compile(API, "tool_choice", tools.grammar(API, "tool_choice")?.as_ref())?;
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
    if generation.stream {
        return Ok(with_seed(stream(s, rx, generation.stop, prompt.len(), id, tools), seed));
    }
    let reply = collect(&s, API, rx, generation.stop).await?;
    let (content, calls) = tools.anthropic_content(&reply.text);
    let response = Json(json!({
        "id": id, "type": "message", "role": "assistant", "model": s.name, "content": content,
        "stop_reason": if calls { "tool_use" } else { stop_reason(&reply) }, "stop_sequence": reply.stopped_by,
        "usage": {"input_tokens": prompt.len(), "output_tokens": reply.tokens()},
    }))
    .into_response();
    Ok(with_seed(response, seed))
}

/// message_start, content_block_start, content_block_delta per piece of text,
/// content_block_stop, message_delta (stop reason, usage), message_stop. With tools that may be
/// called, the text passes through a [`CallSieve`] (text as it comes, a call held until the
/// reply ends) and each call follows the text block as a `tool_use` block whose input comes as
/// one `input_json_delta`.
fn stream(
    s: Arc<Shared>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    stop: Vec<String>,
    input_tokens: usize,
    id: String,
    tools: Tools,
) -> Response {
    let event = |name: &str, data: Value| Sse::default().event(name).data(data.to_string());
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": s.name, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 0}}});
    let block_start =
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
    let deadline = tokio::time::Instant::now() + s.timeout;
    let reply = Reply::new(s.tok.clone(), stop);
    let sieve = (tools.choice != Choice::None).then(CallSieve::default);
    // Events ready to send; `true` once the last of them has been queued.
    let queue = VecDeque::from([event("message_start", start), event("content_block_start", block_start)]);
    let tools = Arc::new(tools);
    let events = futures_util::stream::unfold(
        (rx, reply, sieve, queue, false),
        move |(mut rx, mut reply, mut sieve, mut queue, mut ended)| {
            let tools = tools.clone();
            async move {
                while queue.is_empty() && !ended {
                    if reply.done() {
                        let (rest, calls) = match sieve.take() {
                            Some(sieve) => sieve.finish(&tools.tools),
                            None => (String::new(), Vec::new()),
                        };
                        let text_delta = |text: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
                        if !rest.is_empty() {
                            queue.push_back(event("content_block_delta", text_delta(&rest)));
                        }
                        queue.push_back(event(
                            "content_block_stop",
                            json!({"type": "content_block_stop", "index": 0}),
                        ));
                        let calling = !calls.is_empty();
                        for (k, (name, input)) in calls.into_iter().enumerate() {
                            let block = json!({"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": {}});
                            let delta =
                                json!({"type": "input_json_delta", "partial_json": input.to_string()});
                            queue.push_back(event("content_block_start", json!({"type": "content_block_start", "index": k + 1, "content_block": block})));
                            queue.push_back(event(
                                "content_block_delta",
                                json!({"type": "content_block_delta", "index": k + 1, "delta": delta}),
                            ));
                            queue.push_back(event(
                                "content_block_stop",
                                json!({"type": "content_block_stop", "index": k + 1}),
                            ));
                        }
                        let reason = if calling { "tool_use" } else { stop_reason(&reply) };
                        queue.push_back(event(
                            "message_delta",
                            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": reply.stopped_by}, "usage": {"output_tokens": reply.tokens()}}),
                        ));
                        queue.push_back(event("message_stop", json!({"type": "message_stop"})));
                        ended = true;
                        break;
                    }
                    let e = match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(e)) => e,
                        Ok(None) | Err(_) => Event::Done(Finish::Length),
                    };
                    let mut text = reply.take(e);
                    if let Some(sieve) = &mut sieve {
                        text = sieve.push(&text);
                    }
                    if !text.is_empty() {
                        let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
                        queue.push_back(event("content_block_delta", delta));
                    }
                }
                let next = queue.pop_front()?;
                Some((Ok::<_, Infallible>(next), (rx, reply, sieve, queue, ended)))
            }
        },
    );
    axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
