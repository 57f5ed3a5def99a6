//! OpenAI's API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

use super::engine::{Event, Finish};
use super::openai_tools;
use super::reply::{Reply, TokenLogprob, collect};
use super::tool_use::{Choice, Tools};
use super::{Shared, SharedState, with_seed};
use crate::cli::http::{Api, ApiError, Fields, Generation, new_id, only_fields, refuse_fields};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use minillm::chat::tools::CallSieve;
use minillm::constrain::Spec;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;

const API: Api = Api::OpenAi;

pub async fn models(State(s): SharedState, headers: HeaderMap) -> Response {
    if let Err(e) = s.accept_key(API, &headers) {
        return e.into_response();
    }
    Json(json!({"object": "list", "data": [card(&s)]})).into_response()
}

/// `GET /v1/models/{id}`: the model, or a 404 naming the one this server has.
pub async fn model(State(s): SharedState, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(e) = s.accept_key(API, &headers) {
        return e.into_response();
    }
    if id != s.name {
        let message = format!("model '{id}' does not exist; this server serves '{}'", s.name);
        return ApiError::status(API, StatusCode::NOT_FOUND, message).param("model").into_response();
    }
    Json(card(&s)).into_response()
}

/// The model as `/v1/models` lists it, with its context as vLLM reports it (`max_model_len`),
/// which clients such as lm-eval need to size their requests.
fn card(s: &Shared) -> Value {
    json!({"id": s.name, "object": "model", "created": s.created, "owned_by": "minillm", "max_model_len": s.context})
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

/// Fields of OpenAI's API this server does not implement yet: refused by name rather than
/// ignored, since ignoring them changes what the client gets without a word.
const NOT_YET: &[(&str, &str)] = &[
    ("functions", "the deprecated function calls are not implemented; use 'tools'"),
    ("function_call", "the deprecated function calls are not implemented; use 'tool_choice'"),
    ("suffix", "insertion (text after the completion) is not implemented"),
    ("audio", "this is a text model"),
    ("prediction", "predicted outputs are not implemented"),
];

/// Every field the two endpoints read (the shared ones, then each one's own; besides
/// [`NOT_YET`]'s, refused with their own reason); any other is refused by name. `user` only
/// identifies the caller to OpenAI, so it changes nothing.
const SAMPLING_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "response_format",
    "user",
];
const CHAT_FIELDS: &[&str] =
    &["messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls"];
const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "best_of"];

/// At most this many prompts in one completions request.
const MAX_PROMPTS: usize = 64;

/// A completions request's `prompt`: a string, a list of strings, a list of token ids or a list
/// of lists of token ids; each is one prompt.
fn prompts(s: &Shared, body: &Value) -> Result<Vec<Vec<u32>>, ApiError> {
    let bad = |m: String| ApiError::bad(API, "prompt", m);
    let shape =
        "'prompt' must be a string, a list of strings, a list of token ids, or a list of lists of token ids";
    let vocab = s.tok.vocab_size();
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| match v.as_u64() {
                Some(id) if (id as usize) < vocab => Ok(id as u32),
                Some(id) => Err(bad(format!("token id {id} is past the vocabulary ({vocab} tokens)"))),
                None => Err(bad(shape.into())),
            })
            .collect()
    };
    let encode = |text: &str| s.tok.encode_prompt(text).map_err(|e| bad(e.to_string()));
    let list = match body.get("prompt") {
        Some(Value::String(text)) => return Ok(vec![encode(text)?]),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(bad("'prompt' is an empty list".into())),
        _ => return Err(bad(shape.into())),
    };
    if list.len() > MAX_PROMPTS {
        return Err(bad(format!("'prompt' holds {} prompts; at most {MAX_PROMPTS} per request", list.len())));
    }
    if list.iter().all(Value::is_number) {
        return Ok(vec![ids(list)?]);
    }
    list.iter()
        .map(|item| match item {
            Value::String(text) => encode(text),
            Value::Array(items) => ids(items),
            _ => Err(bad(shape.into())),
        })
        .collect()
}

/// `response_format`: `text` (no constraint), `json_object` (any JSON object) or `json_schema`
/// (`{"json_schema": {"name", "schema", "strict"}}`), enforced by constrained decoding, so the
/// reply parses whatever the model; only a token budget that runs out first can cut it short.
fn response_format(body: &Value) -> Result<Option<Spec>, ApiError> {
    let bad = |m: &str| ApiError::bad(API, "response_format", m);
    let Some(format) = body.get("response_format").filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Spec::JsonObject)),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").filter(|s| s.is_object() || s.is_boolean());
            let schema = schema
                .ok_or_else(|| bad("'response_format.json_schema.schema' must be a JSON schema object"))?;
            Ok(Some(Spec::JsonSchema(schema.clone())))
        }
        _ => Err(bad("'response_format.type' must be text, json_object or json_schema")),
    }
}

async fn respond(s: Arc<Shared>, headers: HeaderMap, body: Bytes, kind: Kind) -> Result<Response, ApiError> {
    let body = s.accept(API, &headers, &body)?;
    refuse_fields(API, &body, NOT_YET)?;
    let own = if kind == Kind::Chat { CHAT_FIELDS } else { COMPLETION_FIELDS };
    only_fields(API, &body, &[SAMPLING_FIELDS, own].concat())?;
    let fields = Fields { api: API, body: &body };
    let mut generation = fields.generation(&["max_tokens", "max_completion_tokens"], "stop")?;
    let tools = Tools::from_openai(&body)?;
    let (output, field) = match (response_format(&body)?, tools.grammar(API, "tool_choice")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                API,
                "tool_choice",
                "a required tool call cannot also follow 'response_format'",
            ));
        }
        (None, Some(calls)) => (Some(calls), "tool_choice"),
        (format, None) => (format, "response_format"),
    };
    generation.constraint = s.compile(API, field, output.as_ref())?;
    let prompts = match kind {
        Kind::Chat => vec![
            s.dialogue
                .render_with_tools(&s.tok, &openai_tools::messages(&body)?, &tools.tools)
                .map_err(|e| ApiError::bad(API, "messages", e.to_string()))?,
        ],
        Kind::Text => prompts(&s, &body)?,
    };
    if prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::bad(API, "prompt", "the prompt is empty"));
    }
    let echo = kind == Kind::Text && fields.flag("echo")?;
    let (wants_logprobs, top, top_key) = match kind {
        Kind::Chat => (fields.flag("logprobs")?, fields.whole("top_logprobs")?, "top_logprobs"),
        Kind::Text => (fields.whole("logprobs")?.is_some(), fields.whole("logprobs")?, "logprobs"),
    };
    if top.is_some_and(|k| k > 20) {
        return Err(ApiError::bad(API, top_key, format!("'{top_key}' must be at most 20")));
    }
    generation.logprobs = wants_logprobs;
    generation.top_logprobs = top.unwrap_or(0) as usize;
    let n = fields.whole("n")?.unwrap_or(1) as usize;
    if !(1..=16).contains(&n) {
        return Err(ApiError::bad(API, "n", "'n' must be 1..=16"));
    }
    if fields.whole("best_of")?.is_some_and(|b| b > 1) {
        return Err(ApiError::bad(
            API,
            "best_of",
            "'best_of' above 1 (sampling several and returning the likeliest) is not supported; use 'n'",
        ));
    }
    // max_tokens 0 scores the prompt without generating (with echo and logprobs, what
    // lm-evaluation-harness asks); a chat reply needs at least one token.
    let generate = generation.max_tokens != Some(0);
    if !generate && kind == Kind::Chat {
        return Err(ApiError::bad(API, "max_tokens", "'max_tokens' must be at least 1"));
    }
    let include_usage = include_usage(&body)?;
    if generation.stream {
        if prompts.len() != 1 || echo || !generate {
            return Err(ApiError::bad(
                API,
                "stream",
                "streaming supports one prompt, no echo and max_tokens of at least 1",
            ));
        }
        let receivers = (0..n as u64)
            .map(|i| s.start(API, &generation, &prompts[0], i))
            .collect::<Result<Vec<_>, _>>()?;
        let seed = generation.seed;
        let (options, tools) = (Streaming { kind, wants_logprobs, include_usage }, Arc::new(tools));
        let response = stream(s, receivers, generation, prompts[0].len(), options, tools);
        return Ok(with_seed(response, seed));
    }
    // Every choice of every prompt is submitted before any is awaited, so they decode in one
    // batch; each choice gets its own seed (the request's plus its index).
    let mut receivers = Vec::with_capacity(prompts.len() * n);
    if generate {
        for (p, prompt) in prompts.iter().enumerate() {
            for i in 0..n {
                receivers.push(s.start(API, &generation, prompt, (p * n + i) as u64)?);
            }
        }
    }
    let mut receivers = receivers.into_iter();
    let mut choices = Vec::with_capacity(prompts.len() * n);
    let mut completion_tokens = 0;
    for (p, prompt) in prompts.iter().enumerate() {
        let scored = match echo && wants_logprobs {
            true => Some(s.prompt_logprobs(API, prompt, generation.top_logprobs).await?),
            false => None,
        };
        for i in 0..n {
            let reply = match receivers.next() {
                Some(rx) => collect(&s, API, rx, generation.stop.clone()).await?,
                None => Reply::new(s.tok.clone(), Vec::new()),
            };
            completion_tokens += reply.tokens();
            let finish = if generate { reason(reply.finish) } else { "length" };
            let index = p * n + i;
            choices.push(match kind {
                Kind::Chat => {
                    let logprobs = wants_logprobs.then(|| chat_logprobs(&reply.logprobs));
                    let (message, calls) = tools.openai_message(&reply.text);
                    json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": calls.unwrap_or(finish)})
                }
                Kind::Text => {
                    let echoed = match echo {
                        true => s.tok.decode(prompt).map_err(|e| ApiError::bad(API, "prompt", e.to_string()))?,
                        false => String::new(),
                    };
                    let logprobs = wants_logprobs.then(|| {
                        let prompt_part = scored.as_ref().map(|lp| (prompt.as_slice(), lp.as_slice()));
                        text_logprobs(&s, prompt_part, &reply.logprobs, 0)
                    });
                    json!({"index": index, "text": echoed + &reply.text, "logprobs": logprobs, "finish_reason": finish})
                }
            });
        }
    }
    let (id, object) = ids(kind);
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    let response = Json(json!({
        "id": id, "object": object, "created": now(), "model": s.name, "choices": choices, "usage": usage,
    }))
    .into_response();
    Ok(with_seed(response, generation.seed))
}

/// `stream_options`: an object whose only known key is `include_usage` (true or false).
fn include_usage(body: &Value) -> Result<bool, ApiError> {
    let Some(options) = body.get("stream_options").filter(|o| !o.is_null()) else { return Ok(false) };
    if !options.is_object() {
        return Err(ApiError::bad(API, "stream_options", "'stream_options' must be an object"));
    }
    only_fields(API, options, &["include_usage"])?;
    Fields { api: API, body: options }.flag("include_usage")
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

/// The chat API's logprobs of `tokens`: an entry per token with its alternatives.
fn chat_logprobs(tokens: &[TokenLogprob]) -> Value {
    let entry = |text: &str, lp: f32| json!({"token": text, "logprob": lp, "bytes": text.as_bytes()});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.text, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|(text, lp)| entry(text, *lp)).collect::<Vec<_>>().into();
            e
        })
        .collect();
    json!({"content": content})
}

/// The completions API's logprobs: parallel lists of tokens, their log-probabilities, the top
/// alternatives (an object of token text -> log-probability) and each token's offset in the
/// text. With echo, the prompt's tokens come first, the first of them with `null`s (nothing
/// predicts it), as OpenAI's API did. `offset` is where the first token starts in the text (a
/// streamed chunk's token follows those sent before it).
fn text_logprobs(
    s: &Shared,
    prompt: Option<(&[u32], &[minillm::sample::Logprobs])>,
    generated: &[TokenLogprob],
    mut offset: usize,
) -> Value {
    let top_object = |top: &mut dyn Iterator<Item = (String, f32)>| {
        Value::Object(top.map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<_, _>>())
    };
    let (mut tokens, mut logprobs, mut tops) = (Vec::new(), Vec::new(), Vec::new());
    if let Some((ids, scored)) = prompt {
        for (i, &id) in ids.iter().enumerate() {
            tokens.push(s.tok.token_text(id));
            match i.checked_sub(1).map(|j| &scored[j]) {
                None => {
                    logprobs.push(Value::Null);
                    tops.push(Value::Null);
                }
                Some((lp, top)) => {
                    logprobs.push(json!(lp));
                    tops.push(top_object(&mut top.iter().map(|(t, v)| (s.tok.token_text(*t), *v))));
                }
            }
        }
    }
    for t in generated {
        tokens.push(t.text.clone());
        logprobs.push(json!(t.logprob));
        tops.push(top_object(&mut t.top.iter().cloned()));
    }
    let offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let at = offset;
            offset += t.len();
            at
        })
        .collect();
    json!({"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets})
}

/// Server-sent events: a chunk per piece of text of each choice (choices interleaved as their
/// tokens come, each chunk naming its `index`), a last chunk per choice with its finish reason,
/// the usage when asked, and `data: [DONE]`.
/// How a stream is shaped.
struct Streaming {
    kind: Kind,
    wants_logprobs: bool,
    include_usage: bool,
}

/// Server-sent events for `receivers`' choices. With tools that may be called, each choice's
/// text passes through a [`CallSieve`]: text is sent as it comes, a call is held until the reply
/// ends and then sent as one `tool_calls` delta (its name and whole arguments), before the finish
/// reason `tool_calls`.
fn stream(
    s: Arc<Shared>,
    receivers: Vec<tokio::sync::mpsc::UnboundedReceiver<Event>>,
    generation: Generation,
    prompt_tokens: usize,
    Streaming { kind, wants_logprobs, include_usage }: Streaming,
    tools: Arc<Tools>,
) -> Response {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (id, _) = ids(kind);
    let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
    let created = now();
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
    let delta = move |index: usize,
                      text: Option<&str>,
                      role: bool,
                      finish: Option<&str>,
                      lp: Option<Value>|
          -> Value {
        match kind {
            Kind::Chat => {
                let mut d = json!({});
                if role {
                    d["role"] = "assistant".into();
                }
                if let Some(t) = text {
                    d["content"] = t.into();
                }
                json!([{"index": index, "delta": d, "logprobs": lp, "finish_reason": finish}])
            }
            Kind::Text => {
                json!([{"index": index, "text": text.unwrap_or(""), "logprobs": lp, "finish_reason": finish}])
            }
        }
    };
    enum Phase {
        Start,
        Tokens,
        /// Chunks left to send once the reply has ended.
        Closing(std::collections::VecDeque<Value>),
    }
    // Completion tokens of every choice, added as each finishes, for the usage chunk.
    let made = Arc::new(AtomicUsize::new(0));
    let choices = receivers.into_iter().enumerate().map(|(index, rx)| {
        let (made, reply) = (made.clone(), Reply::new(s.tok.clone(), generation.stop.clone()));
        let sieve = (kind == Kind::Chat && tools.choice != Choice::None).then(CallSieve::default);
        let (s, tools) = (s.clone(), tools.clone());
        let state = (rx, reply, sieve, Phase::Start);
        futures_util::stream::unfold(state, move |(mut rx, mut reply, mut sieve, phase)| {
            let (made, s, tools) = (made.clone(), s.clone(), tools.clone());
            async move {
                match phase {
                    Phase::Start if kind == Kind::Chat => {
                        Some((delta(index, Some(""), true, None, None), (rx, reply, sieve, Phase::Tokens)))
                    }
                    Phase::Start | Phase::Tokens => loop {
                        if reply.done() {
                            made.fetch_add(reply.tokens(), Ordering::SeqCst);
                            let mut finish = if reply.error.is_some() { "length" } else { reason(reply.finish) };
                            let mut closing = std::collections::VecDeque::new();
                            if let Some(sieve) = sieve.take() {
                                let (rest, calls) = sieve.finish(&tools.tools);
                                if !rest.is_empty() {
                                    closing.push_back(delta(index, Some(&rest), false, None, None));
                                }
                                if !calls.is_empty() {
                                    let calls: Vec<Value> = (calls.iter().enumerate())
                                        .map(|(k, (name, args))| {
                                            let mut call = openai_tools::call_json(name, args);
                                            call["index"] = k.into();
                                            call
                                        })
                                        .collect();
                                    closing.push_back(json!([{"index": index, "delta": {"tool_calls": calls}, "logprobs": null, "finish_reason": null}]));
                                    finish = "tool_calls";
                                }
                            }
                            closing.push_back(delta(index, None, false, Some(finish), None));
                            let first = closing.pop_front().expect("the finish chunk is there");
                            return Some((first, (rx, reply, sieve, Phase::Closing(closing))));
                        }
                        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(e)) => e,
                            Ok(None) | Err(_) => Event::Done(Finish::Length),
                        };
                        let before = reply.logprobs.len();
                        let mut text = reply.take(event);
                        if let Some(sieve) = &mut sieve {
                            text = sieve.push(&text);
                        }
                        let new_logprob = wants_logprobs && reply.logprobs.len() > before;
                        if !text.is_empty() || new_logprob {
                            let lp = new_logprob.then(|| {
                                let token = &reply.logprobs[before..before + 1];
                                match kind {
                                    Kind::Chat => chat_logprobs(token),
                                    Kind::Text => {
                                        let offset =
                                            reply.logprobs[..before].iter().map(|t| t.text.len()).sum();
                                        text_logprobs(&s, None, token, offset)
                                    }
                                }
                            });
                            return Some((
                                delta(index, Some(&text), false, None, lp),
                                (rx, reply, sieve, Phase::Tokens),
                            ));
                        }
                    },
                    Phase::Closing(mut rest) => {
                        let next = rest.pop_front()?;
                        Some((next, (rx, reply, sieve, Phase::Closing(rest))))
                    }
                }
            }
        })
        .boxed()
    });
    let body = futures_util::stream::select_all(choices).map({
        let chunk = chunk.clone();
        move |choices| chunk(choices, None)
    });
    // Polled only once every choice has ended, so the count is complete.
    let usage = futures_util::stream::once(async move {
        let n = made.load(Ordering::SeqCst);
        include_usage.then(|| {
            let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n});
            chunk(json!([]), Some(usage))
        })
    })
    .filter_map(|event| async move { event });
    let done = futures_util::stream::once(async { Sse::default().data("[DONE]") });
    let events = body.chain(usage).chain(done).map(Ok::<_, Infallible>);
    axum::response::sse::Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
