//! `minillm tokenizer ...`: train, encode, decode, stats, compare.

use super::display::{count, progress, token};
use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use minillm::tokenizer::train::{BpeConfig, TrainProgress, train};
use minillm::tokenizer::{Pattern, formats};
use minillm::{SpecialTokens, Tokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum Command {
    /// Learn a byte-level BPE vocabulary from text files and save it as tokenizer.json.
    Train(TrainArgs),
    /// Turn text into token ids.
    Encode(EncodeArgs),
    /// Turn token ids back into text.
    Decode(DecodeArgs),
    /// Tokenize files and report tokens, bytes per token and the most common tokens.
    Stats(StatsArgs),
    /// Show char-level, word-level and BPE tokenizations of the same text side by side.
    Compare(super::compare::Args),
}

#[derive(ClapArgs)]
pub struct TrainArgs {
    /// Text files to learn from.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    input: Vec<PathBuf>,
    /// Vocabulary size: 256 byte tokens + merges + special tokens.
    #[arg(long, value_name = "N")]
    vocab_size: usize,
    /// Where to write the tokenizer (HF tokenizer.json format).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// A special token such as <|endoftext|> (repeatable); they take the last ids.
    #[arg(long = "special", value_name = "TOKEN")]
    specials: Vec<String>,
    /// Split pattern: gpt2, gpt4 (cl100k, as Llama 3 uses it) or qwen2 (gpt4 with single digits).
    #[arg(long, default_value = "gpt2")]
    pattern: Pattern,
}

/// Which tokenizer to use and how to treat special-token text.
#[derive(ClapArgs)]
pub struct TokenizerChoice {
    /// `gpt2` (built in), or a path to tokenizer.json, vocab.json (+ merges.txt), encoder.json
    /// (+ vocab.bpe), a .tiktoken file, a directory holding one, or a .gguf model (its tokenizer).
    #[arg(long, default_value = "gpt2", value_name = "T")]
    pub tokenizer: String,
    /// Encode special-token text (e.g. <|endoftext|>) as its special id.
    #[arg(long, conflicts_with = "special_as_text")]
    allow_special: bool,
    /// Encode special-token text as ordinary text.
    #[arg(long)]
    special_as_text: bool,
}

impl TokenizerChoice {
    pub fn load(&self) -> Result<Tokenizer> {
        Ok(minillm::io::load_tokenizer(Path::new(&self.tokenizer))?)
    }

    fn specials(&self) -> SpecialTokens {
        match (self.allow_special, self.special_as_text) {
            (true, _) => SpecialTokens::Allow,
            (_, true) => SpecialTokens::AsText,
            _ => SpecialTokens::Refuse,
        }
    }

    fn encode(&self, tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
        tok.encode_parallel(text, self.specials()).map_err(|e| match e {
            minillm::Error::SpecialTokenInText { .. } => anyhow::anyhow!(
                "{e}; pass --allow-special to encode it as that id, or --special-as-text to \
                 encode it as ordinary text"
            ),
            e => e.into(),
        })
    }
}

#[derive(ClapArgs)]
pub struct EncodeArgs {
    #[command(flatten)]
    choice: TokenizerChoice,
    /// Print JSON: ids and each token's text and bytes.
    #[arg(long)]
    json: bool,
    /// Read the text from a file instead of the command line.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    file: Option<PathBuf>,
    /// The text to encode.
    text: Option<String>,
}

#[derive(ClapArgs)]
pub struct DecodeArgs {
    #[command(flatten)]
    choice: TokenizerChoice,
    /// Token ids, separated by spaces or commas.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    ids: Vec<String>,
}

#[derive(ClapArgs)]
pub struct StatsArgs {
    #[command(flatten)]
    choice: TokenizerChoice,
    /// How many of the most frequent tokens to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Text files to tokenize.
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(a) => train_cmd(a),
        Command::Encode(a) => encode(a),
        Command::Decode(a) => decode(a),
        Command::Stats(a) => stats(a),
        Command::Compare(a) => super::compare::run(a),
    }
}

fn read(path: &Path) -> Result<String> {
    Ok(minillm::fsutil::read_text(path)?)
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    // Fail before the work, not after it, if the result has nowhere to go.
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        bail!("cannot write {}: the directory {} does not exist", a.out.display(), dir.display());
    }
    let texts = a.input.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let total: usize = refs.iter().map(|t| t.len()).sum();
    let config = BpeConfig { vocab_size: a.vocab_size, pattern: a.pattern, specials: a.specials };
    let started = Instant::now();
    let counting = progress(total as u64, "counting", true);
    let merging = progress(0, "merging", false);
    let tok = train(&refs, &config, &mut |p| match p {
        TrainProgress::Counted { bytes, .. } => counting.set_position(bytes as u64),
        TrainProgress::Merged { merges, total } => {
            counting.finish_and_clear();
            merging.set_length(total as u64);
            merging.set_position(merges as u64);
        }
    })?;
    counting.finish_and_clear();
    merging.finish_and_clear();
    let merges = tok.bpe().merges().len();
    println!(
        "trained {} tokens (256 bytes + {} merges + {} special) on {} bytes in {:.2}s",
        count(tok.vocab_size()),
        count(merges),
        tok.specials().len(),
        count(total),
        started.elapsed().as_secs_f64()
    );
    if tok.vocab_size() < a.vocab_size {
        println!(
            "note: the text ran out of pairs to merge; the vocabulary is {} instead of {}",
            count(tok.vocab_size()),
            count(a.vocab_size)
        );
    }
    formats::save(&tok, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn encode(a: EncodeArgs) -> Result<()> {
    let tok = a.choice.load()?;
    let text = match (&a.file, &a.text) {
        (Some(path), _) => read(path)?,
        (None, Some(text)) => text.clone(),
        (None, None) => bail!("give the text to encode, or --file FILE"),
    };
    let ids = a.choice.encode(&tok, &text)?;
    if a.json {
        let tokens: Vec<serde_json::Value> = ids
            .iter()
            .map(|&id| {
                let bytes = tok.token_bytes(id).unwrap_or_default();
                serde_json::json!({"id": id, "text": String::from_utf8_lossy(bytes), "bytes": bytes})
            })
            .collect();
        let doc = serde_json::json!({"ids": ids, "tokens": tokens, "count": ids.len(), "bytes": text.len()});
        println!("{}", serde_json::to_string(&doc)?);
        return Ok(());
    }
    println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    println!(
        "{} tokens, {} bytes, {:.2} bytes per token",
        count(ids.len()),
        count(text.len()),
        text.len() as f64 / ids.len().max(1) as f64
    );
    if ids.len() <= 200 {
        for &id in &ids {
            println!("{id:>8}  {}", token(tok.token_bytes(id).unwrap_or_default()));
        }
    }
    Ok(())
}

fn parse_ids(args: &[String]) -> Result<Vec<u32>> {
    args.iter()
        .flat_map(|a| a.split([',', ' ', '[', ']', '\n', '\t']))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().with_context(|| format!("'{s}' is not a token id (a whole number >= 0)")))
        .collect()
}

fn decode(a: DecodeArgs) -> Result<()> {
    let tok = a.choice.load()?;
    let ids = parse_ids(&a.ids)?;
    println!("{}", tok.decode(&ids)?);
    Ok(())
}

fn stats(a: StatsArgs) -> Result<()> {
    let tok = a.choice.load()?;
    let mut counts = vec![0usize; tok.vocab_size()];
    let (mut tokens, mut bytes) = (0usize, 0usize);
    for path in &a.files {
        let text = read(path)?;
        let ids = a.choice.encode(&tok, &text).with_context(|| format!("in {}", path.display()))?;
        for &id in &ids {
            counts[id as usize] += 1;
        }
        tokens += ids.len();
        bytes += text.len();
    }
    let used = counts.iter().filter(|&&c| c > 0).count();
    println!(
        "tokenizer:       {} ({} ids, {})",
        a.choice.tokenizer,
        count(tok.vocab_size()),
        match tok.sentencepiece() {
            Some(_) => "SentencePiece-style: '▁' for spaces, no split".to_string(),
            None => format!("{} pattern", tok.pattern()),
        }
    );
    println!("bytes:           {}", count(bytes));
    println!("tokens:          {}", count(tokens));
    println!("bytes per token: {:.3}", bytes as f64 / tokens.max(1) as f64);
    println!(
        "ids used:        {} of {} ({:.1}%)",
        count(used),
        count(tok.vocab_size()),
        100.0 * used as f64 / tok.vocab_size() as f64
    );
    let mut ranked: Vec<(usize, u32)> =
        counts.iter().enumerate().filter(|e| *e.1 > 0).map(|(id, &c)| (c, id as u32)).collect();
    ranked.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    if a.top > 0 && !ranked.is_empty() {
        println!("most frequent tokens:");
        println!("{:>10} {:>7} {:>7}  token", "count", "share", "id");
        for &(c, id) in ranked.iter().take(a.top) {
            let share = 100.0 * c as f64 / tokens as f64;
            println!(
                "{:>10} {share:>6.2}% {id:>7}  {}",
                count(c),
                token(tok.token_bytes(id).unwrap_or_default())
            );
        }
    }
    Ok(())
}
