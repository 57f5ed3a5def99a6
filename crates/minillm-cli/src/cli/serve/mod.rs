//! `minillm serve`: an HTTP server speaking OpenAI's and Anthropic's APIs, so their client
//! libraries work with a minillm model by changing only `base_url`.
//!
//! The model runs on one engine thread ([`engine`]) that batches all requests in flight; the
//! async handlers parse, render the conversation ([`minillm::chat::Dialogue`]), submit a job and
//! turn the tokens coming back into each API's JSON or server-sent events.

mod anthropic;
pub mod engine;
mod openai;

use super::lab::{self, Lab};
use super::session::{MODEL_HELP, load};
use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::{Engine, Event, Finish, Job};
use minillm::Tokenizer;
use minillm::chat::Dialogue;
use minillm::chat::{Message, Role};
use minillm::sample::SamplerConfig;
use minillm::sample::TextStream;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    pub model: PathBuf,
    /// Address to listen on (loopback by default: only this machine can connect).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require this key (as `Authorization: Bearer KEY` or `x-api-key: KEY`).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests decoded together in one batch; as many again may wait, more get 429.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_concurrent: usize,
    /// The name clients use for the model (default: the model path's last component).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// Seconds a request may take before it is cut off (a stream then ends as if its token
    /// budget ran out; a plain request gets 504). Fractions allowed.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,
}

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 1 << 20;

pub struct Shared {
    pub engine: Engine,
    pub tok: Arc<Tokenizer>,
    dialogue: Dialogue,
    pub name: String,
    pub context: usize,
    api_key: Option<String>,
    timeout: Duration,
    created: u64,
    /// What the lab's pages need besides the model.
    pub lab: Lab,
}

pub fn run(a: Args) -> Result<()> {
    // A run directory given as the model also feeds the lab's training view.
    let run_dir = a.model.join("metrics.jsonl").is_file().then(|| a.model.clone());
    launch(a, run_dir, false)
}

/// Loads the model and serves the APIs and the lab until Ctrl-C. `lab_first` announces the
/// address as the lab's (for `minillm lab`) rather than the APIs'.
pub fn launch(a: Args, run_dir: Option<PathBuf>, lab_first: bool) -> Result<()> {
    if a.max_concurrent == 0 || a.max_concurrent > 256 {
        anyhow::bail!("--max-concurrent must be 1..=256");
    }
    if !(a.timeout > 0.0 && a.timeout <= 1e7) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let loaded = load(&a.model)?;
    let lab = Lab::new(&a.model, &loaded.model, run_dir);
    let dialogue = Dialogue::of(&loaded.tok);
    let end = dialogue
        .end_id()
        .or(loaded.generation.eos_token_id)
        .or_else(|| loaded.tok.special_id("<|endoftext|>"));
    let name = a.model_name.clone().unwrap_or_else(|| {
        a.model.file_name().map_or("minillm".into(), |n| n.to_string_lossy().into_owned())
    });
    let context = loaded.model.config.block_size;
    let shared = Arc::new(Shared {
        engine: Engine::start(loaded.model, end, a.max_concurrent),
        tok: Arc::new(loaded.tok),
        dialogue,
        name: name.clone(),
        context,
        api_key: a.api_key.clone(),
        timeout: Duration::from_secs_f64(a.timeout),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        lab,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
        let address = listener.local_addr()?;
        if lab_first {
            println!("the lab for {}: open http://{address}/ in a browser (Ctrl-C stops it)", a.model.display());
        } else {
            println!(
                "serving {name} on http://{address}/ (the lab: open it in a browser; OpenAI: /v1/chat/completions, /v1/completions; Anthropic: /v1/messages)"
            );
        }
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    })
}

fn router(shared: Arc<Shared>) -> Router {
    lab::routes()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/messages", post(anthropic::messages))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

use axum::Json;

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
        (self.status, Json(body)).into_response()
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

impl Shared {
    /// Checks the key (when the server has one) and parses the body as a JSON object.
    pub fn accept(&self, api: Api, headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
        self.accept_key(api, headers)?;
        let value = parse_object(api, body)?;
        match value.get("model").map(|m| m.as_str()) {
            None => return Err(ApiError::bad(api, "model", "'model' is required")),
            Some(None) => return Err(ApiError::bad(api, "model", "'model' must be a string")),
            Some(Some(m)) if m != self.name => {
                return Err(ApiError {
                    api,
                    status: StatusCode::NOT_FOUND,
                    message: format!("model '{m}' does not exist; this server serves '{}'", self.name),
                    param: Some("model".into()),
                });
            }
            _ => {}
        }
        Ok(value)
    }

    /// Checks the API key, when the server has one.
    pub fn accept_key(&self, api: Api, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(key) = &self.api_key {
            let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
            let given = header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .or_else(|| header("x-api-key"));
            if given != Some(key.as_str()) {
                return Err(ApiError::status(api, StatusCode::UNAUTHORIZED, "missing or wrong API key"));
            }
        }
        Ok(())
    }

    /// Queues one generation of `prompt`; the new-token budget is `max_tokens` capped by what
    /// is left of the context.
    pub fn start(
        &self,
        api: Api,
        req: &Generation,
        prompt: &[u32],
        seed_offset: u64,
    ) -> Result<UnboundedReceiver<Event>, ApiError> {
        let left = self.context.saturating_sub(prompt.len());
        if left == 0 {
            return Err(ApiError::bad(
                api,
                req.prompt_field,
                format!(
                    "the prompt is {} tokens; the model's context holds {} including the reply",
                    prompt.len(),
                    self.context
                ),
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            prompt: prompt.to_vec(),
            max_new: req.max_tokens.unwrap_or(left).min(left),
            sampler: req.sampler.clone(),
            seed: req.seed.wrapping_add(seed_offset),
            logprobs: req.logprobs,
            top_logprobs: req.top_logprobs,
            events: tx,
        };
        self.engine.submit(job).map_err(|_| {
            ApiError::status(api, StatusCode::TOO_MANY_REQUESTS, "the server is at capacity; retry shortly")
        })?;
        Ok(rx)
    }
}

/// The sampling settings both APIs share, read from the body with errors that name the field.
pub struct Generation {
    /// Where the prompt came from, for errors about it.
    pub prompt_field: &'static str,
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    pub seed: u64,
    pub stop: Vec<String>,
    pub stream: bool,
    pub logprobs: bool,
    pub top_logprobs: usize,
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
            ..Default::default()
        })
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
        Ok(Generation {
            prompt_field: if self.body.get("prompt").is_some() { "prompt" } else { "messages" },
            max_tokens,
            sampler,
            seed: self.whole("seed")?.unwrap_or(0),
            stop,
            stream: self.flag("stream")?,
            logprobs: false,
            top_logprobs: 0,
        })
    }
}

/// One token's log-probability, with alternatives, as the reply was made.
pub struct TokenLogprob {
    pub text: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// Turns the engine's tokens into text: whole UTF-8 only, stop strings held back and cut.
pub struct Reply {
    tok: Arc<Tokenizer>,
    /// Tokens received (only counted: the stream holds what text needs).
    tokens: usize,
    stream: TextStream<Arc<Tokenizer>>,
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
    /// The stop string that ended the reply.
    pub stopped_by: Option<String>,
    pub error: Option<String>,
}

impl Reply {
    pub fn new(tok: Arc<Tokenizer>, stop: Vec<String>) -> Reply {
        Reply {
            stream: TextStream::new(tok.clone(), stop),
            tok,
            tokens: 0,
            text: String::new(),
            logprobs: Vec::new(),
            finish: None,
            stopped_by: None,
            error: None,
        }
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn done(&self) -> bool {
        self.finish.is_some() || self.error.is_some()
    }

    /// Takes one event; returns the text it adds to the reply (possibly empty).
    pub fn take(&mut self, event: Event) -> String {
        match event {
            Event::Token { id, logprob, top } => {
                self.tokens += 1;
                self.logprobs.push(TokenLogprob {
                    text: self.tok.token_text(id),
                    logprob,
                    top: top.into_iter().map(|(t, lp)| (self.tok.token_text(t), lp)).collect(),
                });
                let safe = match self.stream.push(id) {
                    Ok(safe) => safe,
                    Err(e) => {
                        self.error = Some(e.to_string());
                        return String::new();
                    }
                };
                self.text.push_str(&safe);
                if let Some(stop) = self.stream.stopped_by() {
                    self.finish = Some(Finish::Stop);
                    self.stopped_by = Some(stop.to_string());
                }
                safe
            }
            Event::Done(finish) => {
                self.finish = Some(finish);
                let tail = self.stream.finish();
                self.text.push_str(&tail);
                tail
            }
            Event::Failed(message) => {
                self.error = Some(message);
                String::new()
            }
        }
    }
}

/// Runs `rx` to the end (or the deadline) for a non-streaming answer.
pub async fn collect(
    shared: &Shared,
    api: Api,
    mut rx: UnboundedReceiver<Event>,
    stop: Vec<String>,
) -> Result<Reply, ApiError> {
    let mut reply = Reply::new(shared.tok.clone(), stop);
    let deadline = tokio::time::Instant::now() + shared.timeout;
    while !reply.done() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => {
                reply.take(event);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::status(
                    api,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the request took longer than the server's timeout",
                ));
            }
        }
    }
    if let Some(e) = reply.error.take() {
        return Err(ApiError::status(
            api,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generation failed: {e}"),
        ));
    }
    Ok(reply)
}

/// The body's `messages`: a non-empty list of `{"role", "content"}`, each role named by `role_of`
/// (`roles` lists the accepted ones for the error).
pub fn message_list(
    api: Api,
    body: &Value,
    role_of: fn(&str) -> Option<Role>,
    roles: &str,
) -> Result<Vec<Message>, ApiError> {
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad(api, "messages", "'messages' must be a list"))?;
    if list.is_empty() {
        return Err(ApiError::bad(api, "messages", "'messages' must not be empty"));
    }
    list.iter()
        .map(|m| {
            let name = m.get("role").and_then(Value::as_str);
            let role = name
                .and_then(role_of)
                .ok_or_else(|| ApiError::bad(api, "messages", format!("role {name:?} is not {roles}")))?;
            Ok(Message::new(role, content_text(api, "content", m.get("content").unwrap_or(&Value::Null))?))
        })
        .collect()
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

pub type SharedState = State<Arc<Shared>>;
