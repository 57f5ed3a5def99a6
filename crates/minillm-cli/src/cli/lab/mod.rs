//! `minillm lab`: a page in the browser that shows the learner's own model at work: tokens,
//! next-token probabilities under the sampler's settings, attention maps, the residual stream,
//! and training curves. It is `minillm serve` with the page at `/`: the same process, model and
//! engine, so the page's "generate" is the server's own `/v1/completions` stream.
//!
//! The page (`web/`) is compiled into the binary and draws everything with plain HTML and SVG:
//! no network, no build step, and a learner can read all of it. Its JSON endpoints ([`api`])
//! call the library's `inspect`, `sample::distribution` and tokenizers: nothing is computed twice
//! in JavaScript.

mod api;

use super::serve::{self, Pages};
use super::session::MODEL_HELP;
use anyhow::Result;
use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minillm::tokenizer::simple::{CharTokenizer, WordTokenizer};
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// A training run directory whose metrics.jsonl the training view plots, live while it
    /// grows (default: the model itself, when it is a run).
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 7878)]
    port: u16,
}

pub fn run(a: Args) -> Result<()> {
    let run_dir = match a.run {
        Some(dir) if !dir.join("metrics.jsonl").is_file() => {
            anyhow::bail!("{} is not a training run: it has no metrics.jsonl", dir.display())
        }
        Some(dir) => Some(dir),
        None => a.model.join("metrics.jsonl").is_file().then(|| a.model.clone()),
    };
    let options = serve::Args {
        model: a.model,
        host: "127.0.0.1".into(),
        port: a.port,
        api_key: None,
        max_concurrent: 4,
        model_name: None,
        timeout: 300.0,
        read_timeout: 30.0,
    };
    serve::launch(options, run_dir, routes(), true)
}

/// Char- and word-level tokenizers fitted to the built-in corpus, made on first use.
pub fn simple_tokenizers() -> &'static (CharTokenizer, WordTokenizer) {
    static SIMPLE: OnceLock<(CharTokenizer, WordTokenizer)> = OnceLock::new();
    SIMPLE.get_or_init(|| {
        let corpus = minillm::corpus::builtin();
        (CharTokenizer::fit(corpus), WordTokenizer::fit(corpus, usize::MAX))
    })
}

/// The page, its script and style, the guide chapters it links to, and its JSON endpoints.
pub fn routes() -> Pages {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", include_str!("../../../web/index.html")) }),
        )
        .route(
            "/lab/lab.js",
            get(|| async { page("text/javascript; charset=utf-8", include_str!("../../../web/lab.js")) }),
        )
        .route(
            "/lab/lab.css",
            get(|| async { page("text/css; charset=utf-8", include_str!("../../../web/lab.css")) }),
        )
        .route("/lab/guide/{chapter}", get(guide))
        .route("/lab/api/model", get(api::model))
        .route("/lab/api/tokens", post(api::tokens))
        .route("/lab/api/inspect", post(api::inspect))
        .route("/lab/api/run", get(api::run))
}

fn page(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The guide's chapters, compiled in so the page's links work without the repository.
const GUIDE: &[(&str, &str)] = &[
    ("01-tokenization.md", include_str!("../../../../../docs/guide/01-tokenization.md")),
    ("02-transformer.md", include_str!("../../../../../docs/guide/02-transformer.md")),
    ("03-pretraining.md", include_str!("../../../../../docs/guide/03-pretraining.md")),
    ("04-generation.md", include_str!("../../../../../docs/guide/04-generation.md")),
    ("05-attention.md", include_str!("../../../../../docs/guide/05-attention.md")),
];

async fn guide(UrlPath(chapter): UrlPath<String>) -> Response {
    match GUIDE.iter().find(|(name, _)| *name == chapter) {
        Some((_, text)) => page("text/plain; charset=utf-8", text),
        None => (StatusCode::NOT_FOUND, format!("no guide chapter named {chapter}")).into_response(),
    }
}
