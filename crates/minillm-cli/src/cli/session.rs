//! What `generate`, `chat`, `inspect` and `eval` share: a model loaded with its tokenizer, the
//! sampling flags, fitting a prompt into the context window, and streaming generation that
//! stops at stop strings without printing them.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use minillm::constrain::{Constraint, Grammars, Spec};
use minillm::io;
use minillm::io::generation_config::GenerationConfig;
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, TextStream, generate_batch};
use std::path::{Path, PathBuf};

pub use minillm::io::Loaded;

/// What `--model` accepts, said once for every command that takes it.
pub const MODEL_HELP: &str = "A run directory (its latest checkpoint), a checkpoint, a model directory \
(config.json, model.safetensors or shards, tokenizer.json or vocab.json + merges.txt), a .gguf file, \
or an HF hub id such as openai-community/gpt2, pinned with @REVISION (a branch, tag or commit) if you like \
(from the local HF cache, downloaded into it when missing)";

/// Loads a run directory (its latest checkpoint), a checkpoint, a model directory, a `.gguf`
/// file, or an HF hub id from the local HF cache.
pub fn load(path: &Path) -> Result<Loaded> {
    super::download::ensure_cached(path)?;
    Ok(io::load(path)?)
}

/// The sampling flags. Those marked "model's default" take the value in the model's
/// `generation_config.json` when the flag is not given, and minillm's otherwise.
#[derive(ClapArgs)]
pub struct SamplingArgs {
    /// Stop after this many new tokens [default: 100, or the model's default].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// 0 picks the most likely token every time (greedy) [default: 0.8, or the model's default].
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample only among the k most likely tokens, 0 = all [default: 40, or the model's default].
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only from the smallest set of tokens whose probability reaches p, 1 = off
    /// [default: 1, or the model's default].
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the most likely one, 0 = off
    /// [default: 0, or the model's default].
    #[arg(long)]
    min_p: Option<f32>,
    /// Divide (or multiply, if negative) the logits of tokens already in the text, 1 = off
    /// [default: 1, or the model's default].
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Subtract this times each token's count so far from its logit.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Subtract this from the logit of every token already in the text.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Add BIAS to token ID's logit before sampling (repeatable; -100 bans it).
    #[arg(long, value_name = "ID=BIAS")]
    logit_bias: Vec<String>,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Stop before this text appears (repeatable); it is not printed.
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Write only JSON valid under this JSON schema (given inline, starting with `{`, or as a
    /// file): tokens that would break it are never drawn (constrained decoding;
    /// '{"type": "object"}' allows any object).
    #[arg(long, value_name = "SCHEMA|FILE", conflicts_with = "grammar")]
    json_schema: Option<String>,
    /// Write only text of the Lark grammar in FILE (llguidance's dialect; `%json{...}` embeds a
    /// schema).
    #[arg(long, value_name = "FILE")]
    grammar: Option<PathBuf>,
}

/// The sampling flags, checked: the sampler, and when to stop.
pub struct Sampling {
    pub config: SamplerConfig,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub seed: u64,
    /// What the output must be, when constrained.
    pub output: Option<Spec>,
    /// `output` compiled for this model's vocabulary (see [`Sampling::prepare_output`]).
    constraint: Option<Constraint>,
}

impl Sampling {
    /// Compiles the schema or grammar once, so a bad one is refused before anything is printed
    /// and every continuation starts from a copy.
    pub fn prepare_output(&mut self, loaded: &Loaded) -> Result<()> {
        self.constraint = self.compile_output(loaded)?;
        Ok(())
    }

    /// The compiled constraint: the prepared one, or compiled now.
    fn compile_output(&self, loaded: &Loaded) -> Result<Option<Constraint>> {
        match (&self.output, &self.constraint) {
            (_, Some(prepared)) => Ok(Some(prepared.clone())),
            (None, None) => Ok(None),
            (Some(spec), None) => Ok(Some(Grammars::new(&loaded.tok, &loaded.end_ids())?.constraint(spec)?)),
        }
    }
}

impl SamplingArgs {
    /// What these flags describe, checked against a vocabulary of `vocab` ids (once, before
    /// any output, so that a bad flag never leaves half a line behind).
    pub fn resolve(&self, vocab: usize, model: &GenerationConfig) -> Result<Sampling> {
        let temperature = self.temperature.or(model.temperature).unwrap_or(0.8);
        let top_k = self.top_k.or(model.top_k).unwrap_or(40);
        let top_p = self.top_p.or(model.top_p).unwrap_or(1.0);
        let min_p = self.min_p.or(model.min_p).unwrap_or(0.0);
        let repetition_penalty = self.repetition_penalty.or(model.repetition_penalty).unwrap_or(1.0);
        let max_new_tokens = self.max_new_tokens.or(model.max_new_tokens).unwrap_or(100);
        let valid = top_p > 0.0 && top_p <= 1.0 && (0.0..=1.0).contains(&min_p) && repetition_penalty > 0.0;
        if !valid {
            bail!("--top-p must be in (0, 1], --min-p in [0, 1] and --repetition-penalty above 0");
        }
        let logit_bias = self
            .logit_bias
            .iter()
            .map(|spec| {
                let parsed =
                    spec.split_once('=').and_then(|(id, b)| Some((id.parse::<u32>().ok()?, b.parse().ok()?)));
                match parsed {
                    Some((id, b)) if (id as usize) < vocab && f32::is_finite(b) => Ok((id, b)),
                    Some((id, _)) if id as usize >= vocab => {
                        bail!("--logit-bias {spec}: token id {id} is outside the vocabulary of {vocab}")
                    }
                    _ => bail!("--logit-bias takes ID=BIAS, such as 198=-100, not `{spec}`"),
                }
            })
            .collect::<Result<_>>()?;
        let config = SamplerConfig {
            temperature: temperature.max(0.0),
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            logit_bias,
        };
        Ok(Sampling {
            config,
            max_new_tokens,
            stop: self.stop.clone(),
            seed: self.seed,
            output: self.output()?,
            constraint: None,
        })
    }

    fn output(&self) -> Result<Option<Spec>> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        };
        if let Some(given) = &self.json_schema {
            let text = match given.trim_start().starts_with('{') {
                true => given.clone(),
                false => read(Path::new(given))?,
            };
            let schema = serde_json::from_str(&text)
                .with_context(|| format!("--json-schema {given}: not valid JSON"))?;
            return Ok(Some(Spec::JsonSchema(schema)));
        }
        self.grammar.as_deref().map(|path| Ok(Spec::Lark(read(path)?))).transpose()
    }
}

/// Makes room in a `window`-token context for a prompt and at least one new token: refuses an
/// overlong prompt, or with `truncate` = "left" keeps its end.
pub fn fit_context(mut prompt: Vec<u32>, window: usize, truncate: Option<&str>) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    if prompt.len() >= window {
        match truncate {
            Some("left") => drop(prompt.drain(..prompt.len() + 1 - window)),
            Some(other) => bail!("--truncate takes `left`, not `{other}`"),
            None => bail!(
                "the prompt is {} tokens but the model's context holds {window}; shorten it or pass --truncate left to keep its end",
                prompt.len()
            ),
        }
    }
    Ok(prompt)
}

/// What one generation produced.
pub struct Streamed {
    /// The new tokens, with the model's probability for each (softmax of its logits, before
    /// any sampler reshaped them).
    pub tokens: Vec<(u32, f64)>,
    /// The new text, up to (not including) a stop string.
    pub text: String,
    pub hit_stop: bool,
}

/// Generates after `prompt`, handing each piece of text to `show` once it is whole UTF-8 and
/// cannot be the start of a stop string.
pub fn stream(
    loaded: &mut Loaded,
    prompt: &[u32],
    s: &Sampling,
    rng: &mut Rng,
    mut show: impl FnMut(&str) -> Result<()>,
) -> Result<Streamed> {
    let mut out = stream_many(loaded, prompt, s, std::slice::from_mut(rng), |_, piece| show(piece))?;
    Ok(out.pop().expect("one continuation"))
}

/// [`stream`] for one continuation per generator in `rngs`, decoded together in one batched
/// pass per step; `show(i, piece)` receives continuation i's text.
pub fn stream_many(
    loaded: &mut Loaded,
    prompt: &[u32],
    s: &Sampling,
    rngs: &mut [Rng],
    mut show: impl FnMut(usize, &str) -> Result<()>,
) -> Result<Vec<Streamed>> {
    let eos = loaded.end_ids();
    let n = rngs.len();
    let mut texts: Vec<TextStream<_>> =
        (0..n).map(|_| TextStream::new(&loaded.tok, s.stop.clone())).collect();
    let mut outs: Vec<Streamed> =
        (0..n).map(|_| Streamed { tokens: Vec::new(), text: String::new(), hit_stop: false }).collect();
    let mut failed: Option<anyhow::Error> = None;
    let prompts = vec![prompt.to_vec(); n];
    let mut constraints = match s.compile_output(loaded)? {
        None => Vec::new(),
        Some(constraint) => vec![constraint; n],
    };
    let (model, max_new) = (&loaded.model, s.max_new_tokens);
    generate_batch(model, &prompts, max_new, &s.config, rngs, &eos, &mut constraints, |i, id, logits| {
        let out = &mut outs[i];
        out.tokens.push((id, probability(logits, id)));
        let step = texts[i].push(id).map_err(anyhow::Error::from).and_then(|piece| {
            out.hit_stop = texts[i].stopped_by().is_some();
            out.text.push_str(&piece);
            show(i, &piece)
        });
        if let Err(e) = step {
            failed = Some(e);
        }
        failed.is_none() && !out.hit_stop
    })
    .context("generation failed")?;
    if let Some(e) = failed {
        return Err(e);
    }
    for (i, (out, text)) in outs.iter_mut().zip(&mut texts).enumerate() {
        // Generation ended another way than a stop string: release what was held back.
        let tail = text.finish();
        show(i, &tail)?;
        out.text.push_str(&tail);
    }
    Ok(outs)
}

/// softmax(logits)[id], without building the whole distribution.
fn probability(logits: &[f32], id: u32) -> f64 {
    minillm::sample::log_prob(logits, id).exp()
}
