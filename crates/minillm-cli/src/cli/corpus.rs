//! `minillm corpus`: the built-in training text.

use super::display::count;
use anyhow::Result;
use clap::Args as ClapArgs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    /// Write the corpus to this file (default: print it).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print only the first N documents.
    #[arg(long, value_name = "N", conflicts_with = "out")]
    documents: Option<usize>,
    /// Write fine-tuning data about the corpus's world into DIR instead: sft-train.jsonl,
    /// sft-val.jsonl (instructions), dpo-train.jsonl, dpo-val.jsonl (preferences); the -val
    /// files ask about items the -train files never mention.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "documents"])]
    tasks: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(dir) = &a.tasks {
        return write_tasks(dir).map(|_| ());
    }
    let text = minillm::corpus::builtin();
    if let Some(path) = &a.out {
        minillm::fsutil::atomic_write(path, text.as_bytes())?;
        println!(
            "wrote {} bytes ({} documents: stories, dialogues, questions and facts) to {}",
            count(text.len()),
            count(text.split("\n\n").count()),
            path.display()
        );
        return Ok(());
    }
    let shown = match a.documents {
        Some(n) => text.split("\n\n").take(n).collect::<Vec<_>>().join("\n\n") + "\n",
        None => text.to_string(),
    };
    std::io::stdout().lock().write_all(shown.as_bytes())?;
    Ok(())
}

/// Writes the fine-tuning data sets into `dir`, saying what it wrote; returns them.
pub fn write_tasks(dir: &Path) -> Result<minillm::corpus::tasks::TaskData> {
    std::fs::create_dir_all(dir)?;
    let data = minillm::corpus::tasks::generate(minillm::corpus::SEED);
    for (name, lines) in [
        ("sft-train.jsonl", &data.sft_train),
        ("sft-val.jsonl", &data.sft_val),
        ("dpo-train.jsonl", &data.dpo_train),
        ("dpo-val.jsonl", &data.dpo_val),
    ] {
        let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
        minillm::fsutil::atomic_write(&dir.join(name), text.as_bytes())?;
        println!("wrote {} ({} examples)", dir.join(name).display(), lines.len());
    }
    Ok(data)
}
