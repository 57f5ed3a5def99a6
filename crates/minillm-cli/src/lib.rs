//! The `minillm` command's subcommands as a library: the binary (`src/main.rs`) parses the
//! command line into [`Args`] and runs it; the Python package (`crates/minillm-py`) runs the same
//! commands from Python, so both behave alike and refuse the same bad input with the same words.

pub mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "minillm",
    version,
    about = "Build your own language model end to end, on a CPU, and see every part work."
)]
pub struct Args {
    /// Worker threads for parallel work (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// On finishing, print the process's peak resident memory to stderr (the kernel's count,
    /// VmHWM; Linux only): what a command really took.
    #[arg(long, global = true)]
    pub report_memory: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run the tour: corpus, tokenizer, a small GPT trained and sampled, its next-token probabilities
    /// (with --full, then fine-tuned into an assistant with SFT and DPO).
    Demo(cli::demo::Args),
    /// Write or show the built-in corpus of generated stories, dialogues and facts.
    Corpus(cli::corpus::Args),
    /// Train, run and inspect byte-level BPE tokenizers.
    #[command(subcommand)]
    Tokenizer(cli::tokenizer::Command),
    /// Tokenize text files into training and validation shards.
    Prepare(cli::prepare::Args),
    /// Pretrain a model on prepared shards, with checkpoints you can resume.
    Train(cli::train::Args),
    /// Supervised fine-tuning: teach a trained model to answer in the chat format, with the loss
    /// on the assistant's replies only.
    Sft(cli::finetune::Args),
    /// Preference tuning (DPO): make a fine-tuned model prefer the chosen reply over the
    /// rejected one, relative to where it started.
    Dpo(cli::finetune::DpoArgs),
    /// Continue a prompt with a trained model, streaming the text.
    Generate(cli::generate::Args),
    /// Talk to a model in a loop, with the conversation as its context.
    Chat(cli::chat::Args),
    /// Show a text's tokens, their surprisal, the next-token probabilities and attention.
    Inspect(cli::inspect::Args),
    /// Loss, perplexity and bits per byte of a model on held-out text.
    Eval(cli::eval::Args),
    /// Write a model in another tool's format: an HF transformers directory, or GGUF for llama.cpp.
    Export(cli::export::Args),
    /// Quantize a model's matrices into one .gguf file that every --model accepts (GGUF's block
    /// formats: q8_0, q6_K, q5_K_M, q4_K_M, q4_0 and more, as llama-quantize makes them):
    /// smaller, and faster to decode.
    Quantize(cli::export::QuantizeArgs),
    /// Open the lab in a browser: tokens, next-token probabilities, sampling, attention and
    /// training curves of your model, served on 127.0.0.1.
    Lab(cli::lab::Args),
    /// Serve a model over HTTP with OpenAI's and Anthropic's APIs (chat, completions, messages;
    /// streaming; concurrent requests decoded in one batch).
    Serve(cli::serve::Args),
    /// Draw a run's train and validation loss curves (SVG).
    Plot(cli::plot::Args),
    /// Inspect model shapes: parameters, memory, FLOPs.
    #[command(subcommand)]
    Model(cli::model::Command),
    /// Measure speed.
    #[command(subcommand)]
    Bench(cli::bench::Command),
}

/// Runs one parsed command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(a) => cli::demo::run(a),
        Command::Corpus(a) => cli::corpus::run(a),
        Command::Tokenizer(c) => cli::tokenizer::run(c),
        Command::Prepare(a) => cli::prepare::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Sft(a) => cli::finetune::run_sft(a),
        Command::Dpo(a) => cli::finetune::run_dpo(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Chat(a) => cli::chat::run(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Serve(a) => cli::serve::run(a, cli::lab::routes()),
        Command::Lab(a) => cli::lab::run(a),
        Command::Quantize(a) => cli::export::quantize(a),
        Command::Plot(a) => cli::plot::run(a),
        Command::Model(c) => cli::model::run(c),
        Command::Bench(c) => cli::bench::run(c),
    }
}
