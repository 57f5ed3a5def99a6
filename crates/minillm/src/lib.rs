//! minillm: build a GPT-style language model end to end on a CPU, and see every part work.
//!
//! Every stage is here, written by hand where it is the lesson and checked against the
//! implementations the field trusts (PyTorch, HF transformers, tiktoken, llama.cpp):
//!
//! - [`tokenizer`]: byte-level BPE (GPT-2 exact), its training, char/word tokenizers to compare,
//!   and the ecosystem's file formats (`tokenizer.json`, `vocab.json` + `merges.txt`, tiktoken).
//! - [`corpus`]: the built-in training text and fine-tuning tasks, generated (no download).
//! - [`data`]: token shards on disk and the loader that draws training windows from them.
//! - [`model`]: the GPT: its configuration, the flat parameter buffer with HF names, the
//!   weights as stored (f32, f16 or quantized blocks), the inference path through the KV cache,
//!   and [`model::Trainable`], the forward and backward that training runs.
//! - [`train`]: the loop every objective shares (pretraining, SFT, DPO), AdamW, the schedule and
//!   checkpoints that resume bit for bit.
//! - [`sample`]: samplers, generation, batched decoding and streaming text with stop strings.
//! - [`chat`]: the chat template and the conversation renderer.
//! - [`eval`]: loss, perplexity and bits per byte on held-out text.
//! - [`inspect`]: attention maps, next-token probabilities and the residual stream of a prompt.
//! - [`quant`]: f16, q8_0 and q4_0 blocks (llama.cpp's formats) and their integer kernels.
//! - [`io`]: safetensors and config.json (HF), GGUF, the HF hub cache, and loading anything a
//!   `--model` flag takes.
//! - [`kernels`]: matrix products (through the `gemm` crate) and vectorized element-wise math;
//!   only what `minillm bench` measures the machine with is public.
//! - [`rng`], [`fsutil`], [`error`]: the shared generator, atomic writes, and errors a person
//!   can act on.
//!
//! Layering (each stands only on those below it): `error`, `rng`, `fsutil`, `kernels` at the
//! bottom; `tokenizer`, `corpus`, `quant`; `model`; `data`, `sample`, `chat`, `io`; `eval`,
//! `inspect`; `train` at the top.
//!
//! A model made, trained a few steps, and asked to continue a prompt:
//!
//! ```
//! use minillm::model::{ModelConfig, Trainable};
//! use minillm::rng::Rng;
//! use minillm::sample::{SamplerConfig, generate};
//! use minillm::train::adamw::{AdamW, AdamWConfig};
//! use minillm::{SpecialTokens, Tokenizer};
//!
//! let tok = Tokenizer::bytes(); // 256 single bytes: a character-level model for ASCII
//! let config = ModelConfig { n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, vocab_size: 256, dropout: 0.0, bias: true, arch: Default::default() };
//! let mut model = Trainable::init(config, 1337)?;
//! let text = tok.encode("to be or not to be, that is the question. ", SpecialTokens::AsText)?;
//! let (inputs, targets) = (&text[..32], &text[1..33]);
//! let adam = AdamWConfig { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 };
//! let mut opt = AdamW::new(adam, &model.layout);
//! let mut losses = Vec::new();
//! for _ in 0..20 {
//!     model.zero_grad();
//!     losses.push(model.forward(inputs, Some(targets), (1, 32))?.expect("targets give a loss"));
//!     model.backward()?;
//!     let Trainable { model, grads, .. } = &mut model;
//!     opt.step(&mut model.params, grads, 1e-2);
//! }
//! assert!(losses[19] < losses[0] / 2.0, "the loss falls as it memorizes: {losses:?}");
//!
//! let model = model.into_model(); // the weights alone, for inference
//! let prompt = tok.encode("to be", SpecialTokens::AsText)?;
//! let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
//! let ids = generate(&model, &prompt, 8, &greedy, &mut Rng::new(0), &[], |_, _| true)?;
//! println!("{}", tok.decode(&ids)?);
//! # Ok::<(), minillm::Error>(())
//! ```
//!
//! `minillm::io::load` loads a trained model (a run directory, an HF model directory or hub id,
//! a `.gguf` file) with its tokenizer; the `minillm` command line tool drives every stage.

pub mod chat;
pub mod constrain;
pub mod corpus;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod inspect;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod quant;
pub mod rng;
pub mod sample;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};

/// Not API: what the allocation test (tests/no_alloc.rs) needs to tell the `gemm` crate's
/// packing buffers from allocations of ours.
#[doc(hidden)]
pub mod test_hooks {
    /// Matrix products in flight in this process.
    pub fn gemm_in_flight() -> usize {
        crate::kernels::matmul::IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst)
    }
}
pub use tokenizer::{SpecialTokens, Tokenizer};
