//! `minillm inspect`: the prompt's tokens, how surprising each was to the model, the most likely
//! next tokens as a bar chart, and one attention head's weights as a table.

use super::display::visible;
use super::session::{MODEL_HELP, load};
use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::inspect::{AttentionMap, Inspection, Which, inspect};
use std::path::PathBuf;

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP)]
    model: PathBuf,
    /// The text to look at (at most the model's context).
    text: String,
    /// How many of the most likely next tokens to show.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Show the attention weights of this layer (counting from 0).
    #[arg(long, value_name = "L")]
    layer: Option<usize>,
    /// ... of this head (counting from 0); without it, the mean over the layer's heads.
    #[arg(long, value_name = "H", requires = "layer")]
    head: Option<usize>,
    /// Print everything as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let loaded = load(&a.model)?;
    let ids = loaded.tok.encode_prompt(&a.text)?;
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let which = a.layer.map(|layer| Which { layer, head: a.head });
    let seen = inspect(&loaded.model, &loaded.tok, &ids, a.top_k, which)?;
    if a.json {
        println!("{}", serde_json::to_string(&seen)?);
        return Ok(());
    }
    print_tokens(&seen);
    print_next(&seen, &a.text);
    if let Some(map) = &seen.attention {
        print_attention(map, &seen);
    }
    Ok(())
}

fn print_tokens(seen: &Inspection) {
    println!("{} tokens, and how surprising each was to the model (-log2 p, in bits):", seen.tokens.len());
    for (t, s) in seen.tokens.iter().zip(&seen.surprisal) {
        let bits = s.map_or("     -".to_string(), |b| format!("{b:6.2}"));
        println!("  {:>6}  {:<16} {bits}", t.id, format!("\"{}\"", visible(&t.text)));
    }
}

pub fn print_next(seen: &Inspection, text: &str) {
    println!("next token after \"{}\":", visible(text));
    const WIDTH: f64 = 40.0;
    for c in &seen.next {
        // Eighths of a character cell, so small probabilities still show.
        let eighths = (c.prob * WIDTH * 8.0).round() as usize;
        let mut bar = "█".repeat(eighths / 8);
        if !eighths.is_multiple_of(8) {
            bar.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
        }
        println!("  {:<16} {:.4}  {bar}", format!("\"{}\"", visible(&c.text)), c.prob);
    }
}

fn print_attention(map: &AttentionMap, seen: &Inspection) {
    let mut head = map.head.map_or("the mean over heads".to_string(), |h| format!("head {h}"));
    if let Some(kv) = map.kv_head {
        head += &format!(" (reads KV head {}, shared by heads {}-{})", kv.index, kv.first, kv.last);
    }
    println!("attention in layer {}, {head}: row i shows how token i spreads its attention", map.layer);
    let label = |i: usize| {
        let text = visible(&seen.tokens[i].text);
        let short: String = text.chars().take(6).collect();
        short
    };
    let mut header = format!("  {:<8}", "");
    for j in 0..map.weights.len() {
        header.push_str(&format!("{:>7}", label(j)));
    }
    println!("{header}");
    for (i, row) in map.weights.iter().enumerate() {
        let mut line = format!("  {:<8}", label(i));
        for (j, w) in row.iter().enumerate() {
            line.push_str(&if j > i { format!("{:>7}", "·") } else { format!("{w:>7.2}") });
        }
        println!("{line}");
    }
}
