//! `minillm serve`: an HTTP server speaking OpenAI's and Anthropic's APIs, so their client
//! libraries work with a minillm model by changing only `base_url`.
//!
//! The model runs on one engine thread ([`engine`]) that batches all requests in flight; the
//! async handlers parse (with [`crate::cli::http`]'s conventions), render the conversation
//! ([`minillm::chat::Dialogue`]), submit a job and turn the tokens coming back ([`reply`]) into
//! each API's JSON or server-sent events. Other pages (the lab's) are mounted beside the APIs by
//! whoever launches the server, so this module knows nothing of them.

mod anthropic;
mod anthropic_tools;
pub mod engine;
mod metrics;
mod openai;
mod openai_tools;
mod reply;
mod tokens;
mod tool_use;

use super::http::{Api, ApiError, Generation, parse_object};
use super::session::{MODEL_HELP, load};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::{Engine, Event, Job};
use minillm::Tokenizer;
use minillm::chat::Dialogue;
use minillm::constrain::{Constraint, Grammars, Spec};
use minillm::model::ModelConfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
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
    /// Seconds a client may take to send a request's headers, and again its body (a slow or
    /// stalled client is cut off instead of holding a connection). Fractions allowed.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub read_timeout: f64,
}

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 1 << 20;

pub struct Shared {
    pub engine: Engine,
    pub tok: Arc<Tokenizer>,
    pub dialogue: Dialogue,
    pub name: String,
    pub context: usize,
    api_key: Option<String>,
    timeout: Duration,
    created: u64,
    /// What the model is, for pages that describe it.
    pub card: ModelCard,
    /// A training run whose metrics pages may show.
    pub run_dir: Option<PathBuf>,
    /// The tokens that end a reply.
    end: Vec<u32>,
    metrics: Arc<metrics::Metrics>,
    /// The vocabulary as constrained decoding reads it, made on first use (it costs a pass
    /// over every token).
    grammars: OnceLock<Result<Grammars, String>>,
}

/// What the model is, besides its weights (which the engine thread owns).
pub struct ModelCard {
    /// Where the model came from.
    pub source: String,
    pub config: ModelConfig,
    /// How the weights are stored: "f32", or the quantized types; and their bytes as stored.
    pub weights: String,
    pub weight_bytes: usize,
}

/// Pages served beside the APIs, on the same state.
pub type Pages = Router<Arc<Shared>>;

/// `minillm serve`, with `pages` (the lab) at `/`.
pub fn run(a: Args, pages: Pages) -> Result<()> {
    // A run directory given as the model also feeds the lab's training view.
    let run_dir = a.model.join("metrics.jsonl").is_file().then(|| a.model.clone());
    launch(a, run_dir, pages, false)
}

/// Loads the model and serves the APIs and `pages` until Ctrl-C. `pages_first` announces the
/// address as the pages' (for `minillm lab`) rather than the APIs'.
pub fn launch(a: Args, run_dir: Option<PathBuf>, pages: Pages, pages_first: bool) -> Result<()> {
    if a.max_concurrent == 0 || a.max_concurrent > 256 {
        anyhow::bail!("--max-concurrent must be 1..=256");
    }
    for (flag, seconds) in [("--timeout", a.timeout), ("--read-timeout", a.read_timeout)] {
        if !(seconds > 0.0 && seconds <= 1e7) {
            anyhow::bail!("{flag} must be a positive number of seconds");
        }
    }
    let loaded = load(&a.model)?;
    let card = ModelCard::of(&a.model, &loaded.model);
    let dialogue = loaded.dialogue();
    // What ends a reply: the template's end of turn, else the model's end tokens, else its
    // end of text.
    let end: Vec<u32> = match dialogue.end_ids() {
        ids if !ids.is_empty() => ids,
        _ => loaded.end_ids(),
    };
    let name = a.model_name.clone().unwrap_or_else(|| {
        a.model.file_name().map_or("minillm".into(), |n| n.to_string_lossy().into_owned())
    });
    let context = loaded.model.config.block_size;
    // Every slot holds a whole context's keys and values from the start: a long-context model
    // (Llama 3's 131,072 positions take 8.6 GB per slot at 1B parameters) is refused here with
    // the sum, not aborted by the allocator.
    let cache =
        minillm::model::kv_cache::CacheShape::generating(&loaded.model.config, a.max_concurrent, context);
    minillm::memory::ensure_fits(
        &format!("serving {} requests at once with a context of {context}", a.max_concurrent),
        &[
            ("weights", loaded.model.weight_bytes()),
            ("KV cache", cache.kv_bytes(&loaded.model.config)),
            ("scratch", cache.scratch_bytes(&loaded.model.config)),
        ],
        "lower --max-concurrent",
    )?;
    let metrics = Arc::new(metrics::Metrics::default());
    let shared = Arc::new(Shared {
        engine: Engine::start(loaded.model, end.clone(), a.max_concurrent, metrics.clone()),
        metrics,
        end,
        grammars: OnceLock::new(),
        tok: Arc::new(loaded.tok),
        dialogue,
        name: name.clone(),
        context,
        api_key: a.api_key.clone(),
        timeout: Duration::from_secs_f64(a.timeout),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        card,
        run_dir,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() && a.api_key.is_none() {
            eprintln!(
                "warning: listening on {address}, reachable from other machines, without --api-key: anyone who can reach it can use the model"
            );
        }
        if pages_first {
            println!("the lab for {}: open http://{address}/ in a browser (Ctrl-C stops it)", a.model.display());
        } else {
            println!(
                "serving {name} on http://{address}/ (the lab: open it in a browser; OpenAI: /v1/chat/completions, /v1/completions; Anthropic: /v1/messages)"
            );
        }
        let read_timeout = Duration::from_secs_f64(a.read_timeout);
        accept(listener, router(shared, pages, read_timeout), read_timeout).await;
        Ok(())
    })
}

fn router(shared: Arc<Shared>, pages: Pages, read_timeout: Duration) -> Router {
    pages
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/metrics",
            get(|State(s): SharedState| async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
            }),
        )
        .route("/v1/embeddings", axum::routing::any(|uri: axum::http::Uri| async move { not_offered(&uri) }))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models/{id}", get(openai::model))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/tokenize", post(tokens::tokenize))
        .route("/detokenize", post(tokens::detokenize))
        .route("/tokenizer_info", get(tokens::tokenizer_info))
        .layer(axum::middleware::from_fn_with_state(read_timeout, read_body_in_time))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(errors_in_api_shape))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count_requests))
        .with_state(shared)
}

/// Serves `app` on `listener` until Ctrl-C, then lets the open connections finish. Each
/// connection must send a request's headers within `read_timeout` (hyper closes it otherwise);
/// bodies have their own deadline (`read_body_in_time`).
async fn accept(listener: tokio::net::TcpListener, app: Router, read_timeout: Duration) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new()).header_read_timeout(read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: wait instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
}

/// Reads the whole body within `read_timeout` (408 otherwise), up to [`BODY_LIMIT`] (413).
async fn read_body_in_time(
    State(read_timeout): State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, bytes.into())).await,
        Ok(Err(_)) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// Counts every answered request (errors included) for `/metrics`.
async fn count_requests(
    State(s): SharedState,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    s.metrics.answered(&path, response.status().as_u16());
    response
}

/// `/v1/embeddings`: a JSON 404 that says why, rather than the generic one.
fn not_offered(uri: &axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message =
        format!("{} is not offered: minillm serves generative models, not embedding models", uri.path());
    ApiError::status(Api::OpenAi, StatusCode::NOT_FOUND, message).into_response()
}

/// axum answers an unknown path (404), a wrong method (405) and an oversized body (413) by
/// itself, with an empty or plain-text body; clients of either API read errors from its JSON
/// shape, so those answers are rewritten into it (Anthropic's under `/v1/messages`).
async fn errors_in_api_shape(
    uri: axum::http::Uri,
    response: axum::response::Response,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = response.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/event-stream")
    });
    let status = response.status();
    let message = match status {
        StatusCode::NOT_FOUND => format!("{} is not an endpoint of this server", uri.path()),
        StatusCode::METHOD_NOT_ALLOWED => format!("{} does not take this method", uri.path()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than the server takes ({BODY_LIMIT} bytes)")
        }
        StatusCode::REQUEST_TIMEOUT => "the body did not arrive in time".to_string(),
        _ => return response,
    };
    if json {
        return response;
    }
    let api = if uri.path().starts_with("/v1/messages") { Api::Anthropic } else { Api::OpenAi };
    let mut rewritten = ApiError::status(api, status, message).into_response();
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        rewritten.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    rewritten
}

pub type SharedState = State<Arc<Shared>>;

/// `response` with the seed its sampling used, so a reply without a requested seed can be
/// reproduced by sending it.
pub fn with_seed(mut response: axum::response::Response, seed: u64) -> axum::response::Response {
    response.headers_mut().insert("x-minillm-seed", seed.into());
    response
}

impl ModelCard {
    fn of(source: &Path, model: &minillm::model::Gpt) -> ModelCard {
        ModelCard {
            source: source.display().to_string(),
            config: model.config.clone(),
            weights: model.weight_type(),
            weight_bytes: model.weight_bytes(),
        }
    }
}

impl Shared {
    /// Checks the key (when the server has one) and parses the body as a JSON object.
    pub fn accept(&self, api: Api, headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
        self.accept_key(api, headers)?;
        let kind = headers.get(axum::http::header::CONTENT_TYPE).map(|v| v.as_bytes());
        if kind.is_some_and(|k| !k.starts_with(b"application/json")) {
            return Err(ApiError::status(
                api,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let value = parse_object(api, body)?;
        match value.get("model").map(|m| m.as_str()) {
            None => return Err(ApiError::bad(api, "model", "'model' is required")),
            Some(None) => return Err(ApiError::bad(api, "model", "'model' must be a string")),
            Some(Some(m)) if m != self.name => {
                return Err(ApiError::status(
                    api,
                    StatusCode::NOT_FOUND,
                    format!("model '{m}' does not exist; this server serves '{}'", self.name),
                )
                .param("model"));
            }
            _ => {}
        }
        Ok(value)
    }

    /// Each token's log-probability given those before it (the first has none) and the `top`
    /// likeliest alternatives, computed on the engine thread between decode steps.
    pub async fn prompt_logprobs(
        &self,
        api: Api,
        prompt: &[u32],
        top: usize,
    ) -> Result<Vec<minillm::sample::Logprobs>, ApiError> {
        let tokens = prompt.to_vec();
        let scored = self
            .engine
            .look(move |model| minillm::eval::prompt_logprobs(model, &tokens, top))
            .await
            .ok_or_else(|| ApiError::status(api, StatusCode::SERVICE_UNAVAILABLE, "the model stopped"))?;
        scored.map_err(|e| ApiError::bad(api, "prompt", e.to_string()))
    }

    /// Checks the API key, when the server has one.
    pub fn accept_key(&self, api: Api, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(key) = &self.api_key {
            let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
            let given = header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .or_else(|| header("x-api-key"));
            if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
                return Err(ApiError::status(api, StatusCode::UNAUTHORIZED, "missing or wrong API key"));
            }
        }
        Ok(())
    }

    /// `spec` compiled for this model's vocabulary (what `field` asked for), once per request:
    /// each choice starts from a copy.
    pub fn compile(
        &self,
        api: Api,
        field: &str,
        spec: Option<&Spec>,
    ) -> Result<Option<Constraint>, ApiError> {
        let Some(spec) = spec else { return Ok(None) };
        let grammars =
            self.grammars.get_or_init(|| Grammars::new(&self.tok, &self.end).map_err(|e| e.to_string()));
        let grammars = grammars.as_ref().map_err(|e| ApiError::bad(api, field, e.clone()))?;
        grammars.constraint(spec).map(Some).map_err(|e| ApiError::bad(api, field, e.to_string()))
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
        let vocab = self.tok.vocab_size();
        if let Some((id, _)) = req.sampler.logit_bias.iter().find(|(id, _)| *id as usize >= vocab) {
            return Err(ApiError::bad(
                api,
                "logit_bias",
                format!("'logit_bias' names token {id}; the vocabulary has {vocab}"),
            ));
        }
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
            constraint: req.constraint.clone(),
            prompt: prompt.to_vec(),
            max_new: req.max_tokens.unwrap_or(left).min(left),
            sampler: req.sampler.clone(),
            seed: req.seed.wrapping_add(seed_offset),
            logprobs: req.logprobs,
            top_logprobs: req.top_logprobs,
            events: tx,
            submitted: std::time::Instant::now(),
        };
        self.engine.submit(job).map_err(|_| {
            ApiError::status(api, StatusCode::TOO_MANY_REQUESTS, "the server is at capacity; retry shortly")
        })?;
        Ok(rx)
    }
}

/// Compares a presented key with the server's in time that depends on their lengths only, not
/// on where they first differ (which a client could time, guessing the key byte by byte).
fn same_secret(given: &[u8], key: &[u8]) -> bool {
    let differ = given.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(differ) == 0 && given.len() == key.len()
}
