//! `minillm demo`: the whole pipeline as far as it goes, on the built-in corpus, no download.
//! Today that is tokenization and an untrained model; each later stage adds its step here.

use super::compare::{EXAMPLES, Trio};
use super::display::{count, token};
use anyhow::Result;
use minillm::model::{Gpt, ModelConfig};
use std::time::Instant;

const VOCAB: usize = 1024;

pub fn run() -> Result<()> {
    let corpus = minillm::corpus::builtin();
    let split = corpus.len() * 9 / 10;
    let split = corpus[split..].find("\n\n").map_or(split, |i| split + i + 2);
    let (train_text, held_out) = corpus.split_at(split);
    println!("== 1. The built-in corpus");
    println!(
        "{} bytes of generated stories, dialogues, questions and facts (seed {}); no download.",
        count(corpus.len()),
        minillm::corpus::SEED
    );
    println!("It begins:\n");
    for line in corpus.lines().take(4) {
        println!("    {line}");
    }

    println!("\n== 2. Training a byte-level BPE tokenizer ({} tokens) on the first 90%", count(VOCAB));
    let started = Instant::now();
    let trio = Trio::train(train_text, VOCAB)?;
    println!(
        "done in {:.2}s. The first merges it learned, most frequent pair first:",
        started.elapsed().as_secs_f64()
    );
    let bpe = &trio.bpe;
    for (rank, m) in bpe.bpe().merges().iter().take(8).enumerate() {
        let part = |id| token(bpe.token_bytes(id).unwrap_or_default());
        println!("    merge {rank}: {} + {} -> {}", part(m.left), part(m.right), part(m.id));
    }
    let last = bpe.bpe().merges().last().map(|m| token(bpe.token_bytes(m.id).unwrap_or_default()));
    println!("    ... and the last, merge {}: {}", bpe.bpe().merges().len() - 1, last.unwrap_or_default());

    println!("\n== 3. Three ways to cut the same text (tokens separated by |)\n");
    for text in EXAMPLES {
        trio.show(text)?;
    }

    println!("\n== 4. The held-out 10% ({} bytes), tokenized by each", count(held_out.len()));
    trio.table(held_out)?;
    println!(
        "\nChars never meet an unknown symbol but make the longest sequences; words make the \
         shortest\nbut turn every unseen word into {}; BPE keeps sequences short with no unknowns.",
        minillm::tokenizer::simple::UNK
    );
    untrained_model(&trio.bpe, held_out)?;
    println!("\nRead more: docs/guide/01-tokenization.md and 02-transformer.md; try `minillm --help`.");
    Ok(())
}

/// Stage 2: a GPT over that vocabulary, before any training. Its loss should be about
/// ln(vocabulary), the loss of guessing every token with equal probability.
fn untrained_model(bpe: &minillm::Tokenizer, text: &str) -> Result<()> {
    let config = ModelConfig { block_size: 128, ..ModelConfig::depth(4, bpe.vocab_size()) };
    println!("\n== 5. A GPT over these tokens, before training");
    println!(
        "depth 4: {} layers, {} heads, width {}, context {}: {} parameters",
        config.n_layer,
        config.n_head,
        config.n_embd,
        config.block_size,
        count(config.num_params())
    );
    let ids = bpe.encode(text, minillm::SpecialTokens::AsText)?;
    let (b, t) = (4, config.block_size);
    let mut model = Gpt::new(config, 2026)?;
    let started = Instant::now();
    let loss = model.forward(&ids[..b * t], Some(&ids[1..b * t + 1]), (b, t))?.unwrap_or(f32::NAN);
    model.backward()?;
    println!(
        "loss on {} held-out tokens: {loss:.3}, close to ln({}) = {:.3}, the loss of a uniform guess",
        count(b * t),
        count(bpe.vocab_size()),
        (bpe.vocab_size() as f64).ln()
    );
    println!(
        "one forward + backward pass took {:.0} ms; training arrives in the next stage.",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
