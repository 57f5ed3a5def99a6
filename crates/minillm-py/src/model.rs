//! `minillm.Model`: a model loaded from anything `--model` takes, generating text (whole or
//! streamed) and showing its insides (next-token probabilities, attention, the residual
//! stream, embeddings) as Python lists and numpy arrays.

use crate::tokenizer::Tokenizer;
use crate::{Error, error, in_pool, receive};
use clap::Parser;
use minillm::rng::Rng;
use minillm_cli::cli::generate::prompt_ids;
use minillm_cli::cli::session::{self, Loaded, Sampling, SamplingArgs};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, MutexGuard};

/// `generate`'s sampling settings, read as the command line reads them, so that defaults (the
/// model's `generation_config.json`, then minillm's) and refusals are the same.
#[derive(Parser)]
#[command(name = "generate", no_binary_name = true)]
struct SamplingFlags {
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The sampling settings `generate` takes (their flags' names without the leading dashes).
pub fn sampling_settings() -> Vec<String> {
    use clap::CommandFactory;
    SamplingFlags::command().get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect()
}

fn parse_sampling(flags: &[String], loaded: &Loaded) -> anyhow::Result<Sampling> {
    let parsed = SamplingFlags::try_parse_from(flags).map_err(|e| anyhow::anyhow!(clap_message(&e)))?;
    let mut sampling = parsed.sampling.resolve(loaded.model.config.vocab_size, &loaded.generation)?;
    sampling.prepare_output(loaded)?;
    Ok(sampling)
}

/// clap's error as one line, without its "error: " prefix and usage, its flags named as
/// Python's keywords: `'--top-p <TOP_P>'` becomes `top_p`.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let said: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let joined = said.join(" ");
    let text = joined.strip_prefix("error: ").unwrap_or(&joined);
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let quoted = rest[..at].ends_with('\'');
        out.push_str(&rest[..at - usize::from(quoted)]);
        let name_end = rest[at + 2..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(rest.len(), |n| at + 2 + n);
        out.push_str(&rest[at + 2..name_end].replace('-', "_"));
        rest = &rest[name_end..];
        // The value's placeholder (` <TOP_P>`) and the closing quote go with the flag.
        if let Some(after) = rest.strip_prefix(" <").and_then(|r| r.find('>').map(|n| &r[n + 1..])) {
            rest = after;
        }
        if quoted {
            rest = rest.strip_prefix('\'').unwrap_or(rest);
        }
    }
    out + rest
}

/// A candidate next token: id, text, probability, and probability under the sampler.
type NextToken = (u32, String, f64, Option<f64>);

#[pyclass(module = "minillm", frozen)]
pub struct Model {
    loaded: Arc<Mutex<Loaded>>,
    tok: Py<Tokenizer>,
}

impl Model {
    /// The model, waiting for a generation another thread is running on it.
    fn lock(&self) -> MutexGuard<'_, Loaded> {
        lock(&self.loaded)
    }

    /// Runs `work` on the model in the thread pool, with the GIL released. The lock is taken
    /// here, outside the pool: a pool worker waiting for it could be the very thread that holds
    /// it, deeper in its stack (a worker waiting inside a parallel product runs queued jobs).
    fn with_model<T: Send>(&self, py: Python<'_>, work: impl FnOnce(&mut Loaded) -> T + Send) -> T {
        py.detach(|| {
            let mut loaded = self.lock();
            let loaded = &mut *loaded;
            rayon::scope(|_| work(loaded))
        })
    }
}

fn lock(loaded: &Mutex<Loaded>) -> MutexGuard<'_, Loaded> {
    loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a generation running on the pool sends to the caller's thread.
enum Piece {
    /// A piece of the first continuation's text (when streaming).
    Text(String),
    /// The end, or what went wrong.
    Done(Result<Vec<String>, String>),
}

/// Starts `prompt`, sending the first continuation's pieces as they come. Setting `cancel`
/// (Ctrl-C, or the stream dropped) stops it at the next token.
fn start(loaded: Arc<Mutex<Loaded>>, prompt: Prompt, cancel: Arc<AtomicBool>) -> Receiver<Piece> {
    // Unbounded: the generation never waits for its reader, so it always ends and frees the model.
    let (tx, rx) = channel();
    // A thread of its own takes the model's lock (never a pool worker: see `with_model`), then
    // runs the generation in the pool.
    std::thread::spawn(move || {
        let mut guard = lock(&loaded);
        let loaded = &mut *guard;
        let result = rayon::scope(|_| {
            prompt.run(loaded, |i, piece| {
                if cancel.load(Ordering::Relaxed) {
                    anyhow::bail!("generation stopped");
                }
                if i == 0 && !piece.is_empty() {
                    tx.send(Piece::Text(piece.to_string()))
                        .map_err(|_| anyhow::anyhow!("the reader went away"))?;
                }
                Ok(())
            })
        });
        drop(guard);
        let _ = tx.send(Piece::Done(result.map_err(|e| format!("{e:#}"))));
    });
    rx
}

/// The text of a generation as it is made: `for piece in model.generate(..., stream=True)`.
/// Dropping it stops the generation.
#[pyclass(module = "minillm")]
pub struct TextStream {
    pieces: Mutex<Receiver<Piece>>,
    cancel: Arc<AtomicBool>,
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let mut pieces = self.pieces.lock().unwrap_or_else(|p| p.into_inner());
        match receive(py, &mut pieces) {
            Ok(Some(Piece::Text(text))) => Ok(Some(text)),
            Ok(Some(Piece::Done(Ok(_))) | None) => Ok(None),
            Ok(Some(Piece::Done(Err(message)))) => Err(Error::new_err(message)),
            Err(interrupt) => {
                self.cancel.store(true, Ordering::Relaxed);
                Err(interrupt)
            }
        }
    }
}

impl Drop for TextStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// A prompt and how to continue it.
struct Prompt {
    text: String,
    chat: bool,
    truncate: Option<String>,
    flags: Vec<String>,
    samples: usize,
}

impl Prompt {
    /// Generates `samples` continuations (sample i draws with seed + i, as `generate -n`),
    /// handing continuation i's pieces to `show(i, piece)`.
    fn run(
        &self,
        loaded: &mut Loaded,
        show: impl FnMut(usize, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<String>> {
        // A chat turn stops at the template's end tokens; the model keeps its own list after.
        let eos = loaded.generation.eos_token_ids.clone();
        let result = (|| {
            let ids = prompt_ids(loaded, &self.text, self.chat, self.truncate.as_deref())?;
            let sampling = parse_sampling(&self.flags, loaded)?;
            let mut rngs: Vec<Rng> =
                (0..self.samples as u64).map(|i| Rng::new(sampling.seed.wrapping_add(i))).collect();
            let outs = session::stream_many(loaded, &ids, &sampling, &mut rngs, show)?;
            Ok(outs.into_iter().map(|o| o.text).collect())
        })();
        loaded.generation.eos_token_ids = eos;
        result
    }
}

#[pymethods]
impl Model {
    /// A run directory, checkpoint, model directory, `.gguf` file or HF hub id (from the local
    /// cache, downloaded into it when missing): whatever `--model` takes.
    #[staticmethod]
    fn load(py: Python<'_>, model: PathBuf) -> PyResult<Model> {
        let loaded = in_pool(py, || session::load(&model)).map_err(error)?;
        let tok = Py::new(py, Tokenizer { inner: Arc::new(loaded.tok.clone()) })?;
        Ok(Model { loaded: Arc::new(Mutex::new(loaded)), tok })
    }

    #[getter]
    fn tokenizer(&self, py: Python<'_>) -> Py<Tokenizer> {
        self.tok.clone_ref(py)
    }

    /// The new text after `prompt` (a list of `samples` texts when `samples` > 1), or with
    /// `stream` an iterator over its pieces. `flags`: `generate`'s sampling flags.
    #[pyo3(signature = (prompt, flags, chat = false, truncate = None, stream = false, samples = 1))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one by one
    fn generate(
        &self,
        py: Python<'_>,
        prompt: String,
        flags: Vec<String>,
        chat: bool,
        truncate: Option<String>,
        stream: bool,
        samples: usize,
    ) -> PyResult<Py<PyAny>> {
        if !(1..=64).contains(&samples) {
            return Err(Error::new_err(format!("samples must be 1..=64, not {samples}")));
        }
        let prompt = Prompt { text: prompt, chat, truncate, flags, samples };
        if stream && samples > 1 {
            return Err(Error::new_err("stream=True streams one continuation; ask for samples=1"));
        }
        if stream {
            let cancel = Arc::new(AtomicBool::new(false));
            let pieces = start(self.loaded.clone(), prompt, cancel.clone());
            return Ok(Py::new(py, TextStream { pieces: Mutex::new(pieces), cancel })?.into_any());
        }
        // On this thread, in the pool: a thread of its own per call (as a stream has, so that
        // Ctrl-C could reach it) measured a fifth slower on the demo model.
        let texts = self.with_model(py, |loaded| prompt.run(loaded, |_, _| Ok(()))).map_err(error)?;
        Ok(match samples {
            1 => PyString::new(py, &texts[0]).into_any().unbind(),
            _ => texts.into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// The `top` most likely next tokens after `text` as (id, text, probability, shaped):
    /// `shaped` is the probability under the sampler that `flags` describe (None without flags).
    #[pyo3(signature = (text, top, flags = None))]
    fn next_tokens(
        &self,
        py: Python<'_>,
        text: &str,
        top: usize,
        flags: Option<Vec<String>>,
    ) -> PyResult<Vec<NextToken>> {
        if top == 0 {
            return Err(Error::new_err("top must be at least 1"));
        }
        self.with_model(py, |loaded| {
            let ids = loaded.tok.encode_prompt(text).map_err(error)?;
            let seen =
                minillm::inspect::inspect(&loaded.model, &loaded.tok, &ids, top, None).map_err(error)?;
            let kept = match &flags {
                Some(flags) => {
                    let sampler = parse_sampling(flags, loaded).map_err(error)?.config;
                    Some(minillm::sample::distribution(&seen.logits, &ids, &sampler))
                }
                None => None,
            };
            let shaped = |id: u32| kept.as_ref().map(|k| k.iter().find(|k| k.0 == id).map_or(0.0, |k| k.1));
            Ok(seen.next.into_iter().map(|c| (c.id, c.text, c.prob, shaped(c.id))).collect())
        })
    }

    /// The tokens the model sees for `text` (with its BOS token where it has one), as text.
    fn tokens(&self, py: Python<'_>, text: &str) -> PyResult<Vec<String>> {
        // Waiting (for a generation to free the model) without the GIL.
        py.detach(|| {
            let loaded = self.lock();
            let ids = loaded.tok.encode_prompt(text)?;
            Ok::<_, minillm::Error>(ids.iter().map(|&id| loaded.tok.token_text(id)).collect())
        })
        .map_err(error)
    }

    /// The logits after `text` (vocabulary,), f32.
    fn logits<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let seen = self.look(py, text)?;
        Ok(PyArray1::from_vec(py, seen.logits))
    }

    /// Every layer's and head's attention over `text`: (layers, heads, T, T), f32.
    fn attention<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
        let (maps, shape) = self
            .with_model(py, |loaded| {
                let ids = loaded.tok.encode_prompt(text)?;
                let c = &loaded.model.config;
                let maps = minillm::inspect::attention_maps(&loaded.model, &ids)?;
                Ok::<_, minillm::Error>((maps, [c.n_layer, c.n_head, ids.len(), ids.len()]))
            })
            .map_err(error)?;
        Ok(PyArray1::from_vec(py, maps).reshape(shape)?.into_any())
    }

    /// The residual stream's L2 norm at each position after each stage: (layers + 1, T), f32
    /// (stage 0 is the embedding).
    fn residual_norms<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
        let seen = self.look(py, text)?;
        let (stages, t) = (seen.residual_norms.len(), seen.tokens.len());
        Ok(PyArray1::from_vec(py, seen.residual_norms.concat()).reshape([stages, t])?.into_any())
    }

    /// The token embedding table: (vocabulary, width), f32.
    fn embeddings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (table, shape) = self.with_model(py, |loaded| {
            let c = &loaded.model.config;
            (loaded.model.embedding_f32().into_owned(), [c.vocab_size, c.n_embd])
        });
        Ok(PyArray1::from_vec(py, table).reshape(shape)?.into_any())
    }

    /// Loss, perplexity and bits per byte of the model on `text`, as `minillm eval` scores a
    /// text file (JSON).
    fn eval(&self, py: Python<'_>, text: &str) -> PyResult<String> {
        self.with_model(py, |loaded| {
            minillm_cli::cli::eval::score(loaded, &loaded.tok.encode_prompt(text)?, None)
        })
        .map_err(error)
        .map(|score| serde_json::to_string(&score).expect("a score serializes"))
    }

    /// The model's configuration, parameter count and weight types (JSON).
    fn info(&self, py: Python<'_>) -> String {
        py.detach(|| {
            let loaded = self.lock();
            let m = &loaded.model;
            let mut doc = serde_json::to_value(&m.config).expect("a config serializes");
            doc["parameters"] = m.config.num_params().into();
            doc["weight_type"] = m.weight_type().into();
            doc["weight_bytes"] = m.weight_bytes().into();
            doc.to_string()
        })
    }
}

impl Model {
    fn look(&self, py: Python<'_>, text: &str) -> PyResult<minillm::inspect::Inspection> {
        self.with_model(py, |loaded| {
            let ids = loaded.tok.encode_prompt(text)?;
            minillm::inspect::inspect(&loaded.model, &loaded.tok, &ids, 1, None)
        })
        .map_err(error)
    }
}
