//! `minillm corpus`: the built-in training text.

use super::display::count;
use anyhow::Result;
use clap::Args as ClapArgs;
use std::io::Write;
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    /// Write the corpus to this file (default: print it).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print only the first N documents.
    #[arg(long, value_name = "N", conflicts_with = "out")]
    documents: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
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
