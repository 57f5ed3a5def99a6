//! The lab's JSON endpoints. Each answers errors in OpenAI's shape (`{"error": {"message"}}`),
//! which the page shows as it is.

use crate::cli::http::{Api, ApiError, Fields, parse_object};
use crate::cli::serve::SharedState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use minillm::SpecialTokens;
use minillm::chat::{Dialogue, Message, Role};
use minillm::inspect::{AttentionMap, Candidate, Token, Which, inspect as look_inside};
use minillm::model::Arch;
use minillm::rng::Rng;
use minillm::sample::{GenerationMemory, distribution, sample};
use serde::Serialize;
use serde_json::{Value, json};

const API: Api = Api::OpenAi;
/// The tokens view compares tokenizers on at most this many characters.
const MAX_TOKENS_TEXT: usize = 20_000;

type Answer = Result<Json<Value>, ApiError>;

/// The model card: shapes, parameters and the memory its weights take at each precision (GGUF's
/// q8_0 and q4_0 carry an f16 scale per 32 weights: half a bit more than int8 and int4).
pub async fn model(State(s): SharedState, headers: HeaderMap) -> Answer {
    s.accept_key(API, &headers)?;
    let c = &s.card.config;
    let n = c.num_params();
    let memory: Vec<Value> =
        [("fp32", 32.0), ("fp16", 16.0), ("q8_0", 8.5), ("int8", 8.0), ("q4_0", 4.5), ("int4", 4.0)]
            .iter()
            .map(
                |&(name, bits)| json!({"type": name, "bits": bits, "bytes": (n as f64 * bits / 8.0).round()}),
            )
            .collect();
    // Token (and GPT-2's position) embeddings, and an untied output layer.
    let (embeddings, per_block, architecture) = match &c.arch {
        Arch::Gpt2 => {
            let embeddings = (c.vocab_size + c.block_size) * c.n_embd;
            (
                embeddings,
                (n - embeddings - (1 + usize::from(c.bias)) * c.n_embd) / c.n_layer.max(1),
                "gpt2".into(),
            )
        }
        Arch::Llama(l) => {
            let (attention, mlp, norms) = c.llama_block_parts(l);
            let tables = if l.tied_head { 1 } else { 2 };
            let grouping = if l.n_kv_head < c.n_head { ", grouped-query attention" } else { "" };
            (
                tables * c.vocab_size * c.n_embd,
                attention + mlp + norms,
                format!("{}{grouping}", l.family.model_type()),
            )
        }
    };
    // How a conversation reaches the model: the prompt its template renders for a sample one.
    let template = match &s.dialogue {
        Dialogue::Jinja(_) => "the model's own (Jinja, from its files)",
        Dialogue::Template(_) => "minillm's (role tokens added by `minillm sft`)",
        Dialogue::Plain => "none: conversations are plain 'User:' / 'Assistant:' lines",
    };
    let sample = [
        Message::new(Role::System, "You are a helpful assistant."),
        Message::new(Role::User, "What is the capital of France?"),
    ];
    let example = s
        .dialogue
        .render_text(&s.tok, &sample)
        .unwrap_or_else(|e| format!("(the template refuses this conversation: {e})"));
    // What generating one sequence at the full context takes, as `model info` states it.
    let generating = GenerationMemory::new(c, s.card.weight_bytes, 1, c.block_size);
    Ok(Json(json!({
        "name": s.name,
        "source": s.card.source,
        "config": c,
        "architecture": architecture,
        "head_size": c.head_size(),
        "n_kv_head": c.n_kv_head(),
        "params": n,
        "params_embeddings": embeddings,
        "params_per_block": per_block,
        "memory": memory,
        "generating": generating,
        "vocab_size": s.tok.vocab_size(),
        "weights": s.card.weights,
        "run": s.run_dir.as_ref().map(|d| d.display().to_string()),
        "chat": {"template": template, "example": example},
    })))
}

/// `{"text"}` cut by three tokenizers: char- and word-level fitted to the built-in corpus, and
/// the model's own BPE.
pub async fn tokens(State(s): SharedState, headers: HeaderMap, body: Bytes) -> Answer {
    s.accept_key(API, &headers)?;
    let body = parse_object(API, &body)?;
    let text = match body.get("text") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ApiError::bad(API, "text", "'text' must be a string")),
    };
    if text.chars().count() > MAX_TOKENS_TEXT {
        return Err(ApiError::bad(
            API,
            "text",
            format!(
                "the text is longer than {MAX_TOKENS_TEXT} characters; the tokens view shows at most that"
            ),
        ));
    }
    let bpe =
        s.tok.encode(&text, SpecialTokens::AsText).map_err(|e| ApiError::bad(API, "text", e.to_string()))?;
    let shared = s.clone();
    // Fitting the simple tokenizers reads the whole built-in corpus once: off the async threads.
    let doc = tokio::task::spawn_blocking(move || {
        let (chars, words) = super::simple_tokenizers();
        let row = |id: u32, text: &str, unknown: bool| json!({"id": id, "text": text, "bytes": text.len(), "unknown": unknown});
        let listed = |name: &str, vocab: usize, fitted: &str, tokens: Vec<Value>| {
            json!({"name": name, "vocab_size": vocab, "fitted": fitted, "count": tokens.len(), "tokens": tokens})
        };
        let char_rows: Vec<Value> = text
            .chars()
            .zip(chars.encode(&text))
            .map(|(c, id)| row(id, &c.to_string(), id == 0))
            .collect();
        let word_rows: Vec<Value> = minillm::tokenizer::simple::words(&text)
            .zip(words.encode(&text))
            .map(|(w, id)| row(id, w, id == 0))
            .collect();
        let bpe_rows: Vec<Value> = bpe
            .iter()
            .map(|&id| {
                let bytes = shared.tok.token_bytes(id).unwrap_or_default();
                json!({"id": id, "text": String::from_utf8_lossy(bytes), "bytes": bytes.len(), "unknown": false})
            })
            .collect();
        json!({
            "bytes": text.len(),
            "tokenizers": [
                listed("char", chars.vocab_size(), "the built-in corpus", char_rows),
                listed("word", words.vocab_size(), "the built-in corpus", word_rows),
                listed("BPE", shared.tok.vocab_size(), "this model's tokenizer", bpe_rows),
            ],
        })
    })
    .await
    .map_err(|e| ApiError::status(API, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(doc))
}

/// One forward pass over `{"text"}` or `{"ids"}`: the tokens and their surprisal, the next-token
/// probabilities before and after the sampler's settings (`temperature`, `top_k`, `top_p`,
/// `min_p`), the residual stream's norms, an attention map (`layer`, `head`: null for the mean)
/// and, given a `seed`, one token drawn by the sampler itself.
pub async fn inspect(
    State(s): SharedState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Looked>, ApiError> {
    s.accept_key(API, &headers)?;
    let body = parse_object(API, &body)?;
    let f = Fields { api: API, body: &body };
    let ids = prompt_ids(&s.tok, &body)?;
    if ids.len() > s.context {
        return Err(ApiError::bad(
            API,
            "text",
            format!(
                "the text is {} tokens but the model's context holds {}; shorten it",
                ids.len(),
                s.context
            ),
        ));
    }
    let top = f.whole("top")?.unwrap_or(20) as usize;
    if !(1..=200).contains(&top) {
        return Err(ApiError::bad(API, "top", "'top' must be 1..=200"));
    }
    let sampler = f.sampler()?;
    let c = &s.card.config;
    let which = match (f.whole("layer")?, f.whole("head")?) {
        (None, None) => None,
        (None, Some(_)) => return Err(ApiError::bad(API, "head", "'head' needs a 'layer'")),
        (Some(l), _) if l as usize >= c.n_layer => {
            return Err(ApiError::bad(
                API,
                "layer",
                format!("there is no layer {l}: the model has {} layer(s), counted from 0", c.n_layer),
            ));
        }
        (Some(_), Some(h)) if h as usize >= c.n_head => {
            return Err(ApiError::bad(
                API,
                "head",
                format!("there is no head {h}: each layer has {} head(s), counted from 0", c.n_head),
            ));
        }
        (Some(l), h) => Some(Which { layer: l as usize, head: h.map(|h| h as usize) }),
    };
    let seed = f.whole("seed")?;
    let tok = s.tok.clone();
    let done = s
        .engine
        .look(move |model| -> minillm::Result<Looked> {
            let seen = look_inside(model, &tok, &ids, top, which)?;
            let last = &seen.logits;
            let kept = distribution(last, &ids, &sampler);
            let shaped = |id: u32| kept.iter().find(|k| k.0 == id).map_or(0.0, |k| k.1);
            let next = seen.next.into_iter().map(|n| Bar { shaped: shaped(n.id), next: n }).collect();
            let sampled = seed.map(|seed| {
                let id = sample(last, &ids, &sampler, &mut Rng::new(seed));
                Sampled { id, text: tok.token_text(id), shaped: shaped(id) }
            });
            Ok(Looked {
                tokens: seen.tokens,
                surprisal: seen.surprisal,
                residual_norms: seen.residual_norms,
                attention: seen.attention,
                next,
                kept: kept.len(),
                sampled,
            })
        })
        .await
        .ok_or_else(|| {
            ApiError::status(API, StatusCode::INTERNAL_SERVER_ERROR, "the model's thread has stopped")
        })?;
    done.map(Json).map_err(|e| ApiError::bad(API, "text", e.to_string()))
}

/// What `inspect` answers: `inspect --json`'s fields (serialized the same way, f32 as f32) and
/// the sampler's view of the next token.
#[derive(Serialize)]
pub struct Looked {
    tokens: Vec<Token>,
    surprisal: Vec<Option<f64>>,
    residual_norms: Vec<Vec<f32>>,
    attention: Option<AttentionMap>,
    next: Vec<Bar>,
    /// How many tokens the sampler can pick from at these settings.
    kept: usize,
    sampled: Option<Sampled>,
}

/// A next-token bar: the model's probability and the sampler's (0 = dropped).
#[derive(Serialize)]
struct Bar {
    #[serde(flatten)]
    next: Candidate,
    shaped: f64,
}

#[derive(Serialize)]
struct Sampled {
    id: u32,
    text: String,
    shaped: f64,
}

/// The token ids to look at: `ids` as given, or `text` encoded by the model's tokenizer.
fn prompt_ids(tok: &minillm::Tokenizer, body: &Value) -> Result<Vec<u32>, ApiError> {
    match (body.get("ids"), body.get("text")) {
        (Some(Value::Array(list)), _) => list
            .iter()
            .map(|v| {
                v.as_u64().filter(|&id| (id as usize) < tok.vocab_size()).map(|id| id as u32).ok_or_else(
                    || {
                        ApiError::bad(
                            API,
                            "ids",
                            format!("'ids' must be token ids below {}", tok.vocab_size()),
                        )
                    },
                )
            })
            .collect::<Result<Vec<u32>, ApiError>>()
            .and_then(|ids| match ids.is_empty() {
                true => Err(ApiError::bad(API, "ids", "'ids' is empty: nothing to look at")),
                false => Ok(ids),
            }),
        (Some(Value::Null) | None, Some(Value::String(text))) => {
            if text.is_empty() {
                return Err(ApiError::bad(API, "text", "the text is empty: type something to look at"));
            }
            tok.encode_prompt(text).map_err(|e| ApiError::bad(API, "text", e.to_string()))
        }
        _ => Err(ApiError::bad(API, "text", "give 'text' (a string) or 'ids' (a list of token ids)")),
    }
}

/// The training run's metrics: every row of metrics.jsonl with the fields the charts use. Read
/// afresh at each call, so the page follows a run while it trains.
pub async fn run(State(s): SharedState, headers: HeaderMap) -> Answer {
    s.accept_key(API, &headers)?;
    let Some(dir) = s.run_dir.clone() else {
        return Err(ApiError::status(
            API,
            StatusCode::NOT_FOUND,
            "this lab has no training run: start it with --run RUN_DIR (a directory `minillm train` wrote)",
        ));
    };
    let path = dir.join("metrics.jsonl");
    let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
        ApiError::status(API, StatusCode::NOT_FOUND, format!("cannot read {}: {e}", path.display()))
    })?;
    const KEEP: &[&str] = &["step", "loss", "val_loss", "lr", "sample", "elapsed_s"];
    // A line still being written by the trainer does not parse yet; it comes next time.
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|row| row.get("step").is_some())
        .map(|row| KEEP.iter().filter_map(|&k| row.get(k).map(|v| (k.to_string(), v.clone()))).collect())
        .collect();
    Ok(Json(json!({"dir": dir.display().to_string(), "rows": rows})))
}
