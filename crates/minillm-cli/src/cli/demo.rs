//! `minillm demo`: the whole pipeline as far as it goes, on the built-in corpus, no download.
//! Today: the corpus, a tokenizer, then a small GPT trained on it and sampled before and after.

use super::compare::{EXAMPLES, Trio};
use super::display::visible;
use super::display::{count, token};
use anyhow::Result;
use minillm::data::{ShardInfo, tokenizer_hash, write_shard};
use minillm::model::Gpt;
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, generate};
use minillm::train::{TrainConfig, Trainer};
use std::path::PathBuf;
use std::time::Instant;

const VOCAB: usize = 1024;
/// Ends every document in the demo's data, so the model learns where a text stops and
/// generation (here, in llama.cpp, behind the server) stops there too.
const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(clap::Args)]
pub struct Args {
    /// Go on past pretraining: supervised fine-tuning on instructions, DPO on preferences, and
    /// a short scripted chat with the result.
    #[arg(long)]
    full: bool,
    /// The model's architecture: GPT-2's, or the LLaMA family's (RMSNorm, rotary positions,
    /// SwiGLU, grouped-query attention), at the same depth.
    #[arg(long, value_parser = ["gpt2", "llama"], default_value = "gpt2")]
    arch: String,
}

pub fn run(a: Args) -> Result<()> {
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
    let trio = Trio::train(train_text, VOCAB, &[END_OF_TEXT])?;
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
    let run = train_and_talk(&trio.bpe, corpus, &a.arch)?;
    if a.full {
        fine_tune(&run)?;
    } else {
        println!(
            "\n`minillm demo --full` goes on to fine-tune this model into an assistant (SFT, then DPO)."
        );
    }
    println!(
        "\nRead more: docs/guide/ (tokenization, the transformer, pretraining, generation, looking inside, fine-tuning, serving, interop, quantization, the LLaMA family); `minillm demo --arch llama` runs this tour on a LLaMA-shaped model; try `minillm --help`."
    );
    Ok(())
}

const PROMPTS: &[&str] =
    &["Once upon a time,", "Question: What is the capital of France?\nAnswer:", "Tom: Hello, Mia!"];

/// Prints a continuation of each prompt, stopped at the end of a document, with the prompt and
/// its continuation together.
fn samples(model: &mut Gpt, bpe: &minillm::Tokenizer) -> Result<()> {
    let config = SamplerConfig { temperature: 0.8, top_k: 40, ..Default::default() };
    let mut rng = Rng::new(7);
    let end: Vec<u32> = bpe.special_id(END_OF_TEXT).into_iter().collect();
    for prompt in PROMPTS {
        let ids = bpe.encode(prompt, minillm::SpecialTokens::AsText)?;
        let out = generate(model, &ids, 48, &config, &mut rng, &end, |_, _| true)?;
        let new = &out[ids.len()..];
        let text = bpe.decode(new.strip_suffix(end.as_slice()).unwrap_or(new))?;
        for line in format!("{prompt}{text}").lines() {
            println!("    {}", visible(line));
        }
        println!();
    }
    Ok(())
}

/// Stages 2 and 3: a small GPT over that vocabulary, trained on the corpus, with samples before
/// and after. Leaves the run in ./minillm-demo for the other commands.
fn train_and_talk(bpe: &minillm::Tokenizer, corpus: &str, arch: &str) -> Result<PathBuf> {
    let root = PathBuf::from("minillm-demo");
    let (data, run) = (root.join("data"), root.join("run"));
    if run.join("latest.json").exists() {
        println!("\n(replacing the previous demo run in {})", root.display());
        std::fs::remove_dir_all(&run)?;
    }
    std::fs::create_dir_all(&data)?;
    let ids = documents(bpe, corpus)?;
    let split = ids.len() * 9 / 10;
    let info = ShardInfo { vocab_size: bpe.vocab_size() as u32, tokenizer_hash: tokenizer_hash(bpe) };
    write_shard(&data.join("train.bin"), &ids[..split], info)?;
    write_shard(&data.join("val.bin"), &ids[split..], info)?;
    minillm::tokenizer::formats::save(bpe, &data.join("tokenizer.json"))?;
    let config = TrainConfig {
        model: "d3".into(),
        arch: Some(arch.into()),
        context: Some(64),
        batch_size: 16,
        max_steps: 800,
        lr: 2e-3,
        min_lr: 2e-4,
        warmup_steps: 50,
        eval_every: 200,
        eval_batches: 20,
        checkpoint_every: 800,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, &data)?;
    println!(
        "\n== 5. Before training, the model babbles (loss near ln {} = {:.2}):",
        count(bpe.vocab_size()),
        (bpe.vocab_size() as f64).ln()
    );
    samples(&mut trainer.model, bpe)?;
    println!("\n== 6. Training it on the corpus ({} tokens)", count(ids.len()));
    std::fs::create_dir_all(&run)?;
    // Ctrl-C ends the demo as any program (no checkpoint to resume: it is a tour).
    let mut watch = super::train::Watch { stop: Default::default(), on_step: Box::new(|_| {}) };
    super::train::train_loop(&mut trainer, &run, &mut watch)?;
    println!("\n== 7. After training, it writes the corpus's kind of sentences:");
    samples(&mut trainer.model, bpe)?;
    println!("\n== 8. Every token is a draw from the model's next-token probabilities:");
    let text = "Question: What is the capital of France?\nAnswer: The capital of France is";
    let ids = bpe.encode(text, minillm::SpecialTokens::AsText)?;
    let seen = minillm::inspect::inspect(&trainer.model, bpe, &ids, 5, None)?;
    super::inspect::print_next(&seen, text);
    let r = run.display();
    println!("\nThe run is in {r} (checkpoint, metrics.jsonl); continue it with");
    println!("`minillm train --data {} --resume {r} --max-steps 2000`;", data.display());
    println!(
        "talk to it with `minillm chat --model {r}` or `minillm generate --model {r} \"Once upon a time\"`;"
    );
    println!(
        "look inside with `minillm inspect --model {r} \"The capital of France is\" --layer 0 --head 0`."
    );
    Ok(run)
}

/// The corpus's documents (separated by blank lines) as token ids, each followed by the
/// end-of-text token, as GPT-2's training data was.
fn documents(bpe: &minillm::Tokenizer, corpus: &str) -> Result<Vec<u32>> {
    let end = bpe.special_id(END_OF_TEXT).expect("the demo's tokenizer has an end-of-text token");
    use rayon::prelude::*;
    let docs: Vec<&str> = corpus.split("\n\n").filter(|d| !d.is_empty()).collect();
    let encoded: Vec<Vec<u32>> = docs
        .par_iter()
        .map(|doc| bpe.encode(doc, minillm::SpecialTokens::AsText))
        .collect::<Result<_, _>>()?;
    Ok(encoded
        .into_iter()
        .flat_map(|mut ids| {
            ids.push(end);
            ids
        })
        .collect())
}

/// Stages 4 and 5 of the seed's picture: SFT and DPO on data about the corpus's world, then a
/// scripted chat on questions neither stage showed.
fn fine_tune(base: &std::path::Path) -> Result<()> {
    let root = PathBuf::from("minillm-demo");
    for stale in ["sft", "dpo"] {
        if root.join(stale).exists() {
            std::fs::remove_dir_all(root.join(stale))?;
        }
    }
    println!("\n== 9. Supervised fine-tuning on instructions in a chat template, then DPO on preferences");
    println!(
        "(questions about capitals, animals, colours, opposites and sums; SFT's loss counts only the replies)"
    );
    let tasks = root.join("tasks");
    let data = super::corpus::write_tasks(&tasks)?;
    let dpo = super::finetune::sft_then_dpo(base, &tasks, &root)?;
    println!("\n== 10. A short chat with the fine-tuned model, on questions it was never trained on:");
    let loaded = super::session::load(&dpo)?;
    let template = minillm::chat::ChatTemplate::of(&loaded.tok).expect("SFT added the chat tokens");
    let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
    let held_out = &data.sft_val;
    for v in [
        &held_out[0],
        &held_out[held_out.len() / 3],
        &held_out[2 * held_out.len() / 3],
        &held_out[held_out.len() - 1],
    ] {
        let q = v["messages"][0]["content"].as_str().unwrap_or_default();
        let ask = [minillm::chat::Message::new(minillm::chat::Role::User, q)];
        let prompt = template.render(&loaded.tok, &ask, true).ids;
        let out =
            generate(&loaded.model, &prompt, 32, &greedy, &mut Rng::new(0), &[template.end_id()], |_, _| {
                true
            })?;
        println!("    you> {q}\n    assistant> {}", loaded.tok.decode(&out[prompt.len()..])?);
    }
    println!("\nTalk to it: `minillm chat --model {}`.", dpo.display());
    Ok(())
}
