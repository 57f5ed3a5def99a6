//! Char-level vs word-level vs BPE on the same text: `minillm tokenizer compare` and the demo.

use super::display::{count, visible};
use anyhow::Result;
use clap::Args as ClapArgs;
use minillm::Tokenizer;
use minillm::tokenizer::Pattern;
use minillm::tokenizer::simple::{CharTokenizer, UNK, WordTokenizer};
use minillm::tokenizer::train::{BpeConfig, train};

pub const EXAMPLES: &[&str] = &[
    "The little fox found a kite under a tree.",
    "Question: What is the capital of France?",
    "Grandma's xylophone sounds wonderful!",
];

#[derive(ClapArgs)]
pub struct Args {
    /// The BPE tokenizer to compare (default: one trained on the built-in corpus).
    #[arg(long, value_name = "T")]
    tokenizer: Option<String>,
    /// Vocabulary size of the BPE trained on the built-in corpus when no --tokenizer is given.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    vocab_size: usize,
    /// Texts to tokenize (default: a few example sentences).
    texts: Vec<String>,
}

/// The three tokenizers, fitted to the same training text.
pub struct Trio {
    pub chars: CharTokenizer,
    pub words: WordTokenizer,
    pub bpe: Tokenizer,
}

impl Trio {
    pub fn fit(corpus: &str, bpe: Tokenizer) -> Trio {
        Trio { chars: CharTokenizer::fit(corpus), words: WordTokenizer::fit(corpus, usize::MAX), bpe }
    }

    /// Trains all three on `corpus`, the BPE with `vocab_size` ids (`specials` among them, the
    /// last ids) and the GPT-2 pattern.
    pub fn train(corpus: &str, vocab_size: usize, specials: &[&str]) -> Result<Trio> {
        let specials = specials.iter().map(|s| s.to_string()).collect();
        let config = BpeConfig { vocab_size, pattern: Pattern::Gpt2, specials };
        Ok(Trio::fit(corpus, train(&[corpus], &config, &mut |_| {})?))
    }

    /// Prints the text cut three ways, tokens separated by `|`.
    pub fn show(&self, text: &str) -> Result<()> {
        let chars: Vec<String> =
            self.chars.encode(text).iter().map(|&i| self.chars.token(i).to_string()).collect();
        let words: Vec<String> =
            self.words.encode(text).iter().map(|&i| self.words.token(i).to_string()).collect();
        let bpe_ids = self.bpe.encode(text, minillm::SpecialTokens::AsText)?;
        let bpe: Vec<String> = bpe_ids.iter().map(|&i| self.bpe.token_text(i)).collect();
        println!("{}", minillm::error::quoted(text));
        for (name, vocab, tokens) in [
            ("char", self.chars.vocab_size(), chars),
            ("word", self.words.vocab_size(), words),
            ("BPE", self.bpe.vocab_size(), bpe),
        ] {
            let shown: Vec<String> = tokens.iter().map(|t| visible(t)).collect();
            println!(
                "  {name:<4} (vocab {:>6}) {:>3} tokens: {}",
                count(vocab),
                tokens.len(),
                shown.join("|")
            );
        }
        Ok(())
    }

    /// Prints tokens, bytes per token and unknown tokens for each tokenizer on `text`.
    pub fn table(&self, text: &str) -> Result<()> {
        let chars = self.chars.encode(text);
        let words = self.words.encode(text);
        let bpe = self.bpe.encode_parallel(text, minillm::SpecialTokens::AsText)?;
        let gpt2 = Tokenizer::gpt2().encode_parallel(text, minillm::SpecialTokens::AsText)?;
        println!(
            "  {:<10} {:>8} {:>10} {:>16} {:>9}",
            "tokenizer", "vocab", "tokens", "bytes per token", UNK
        );
        for (name, vocab, ids, unknown) in [
            ("char", self.chars.vocab_size(), chars.len(), chars.iter().filter(|&&i| i == 0).count()),
            ("word", self.words.vocab_size(), words.len(), words.iter().filter(|&&i| i == 0).count()),
            ("BPE", self.bpe.vocab_size(), bpe.len(), 0),
            ("GPT-2 BPE", Tokenizer::gpt2().vocab_size(), gpt2.len(), 0),
        ] {
            println!(
                "  {name:<10} {:>8} {:>10} {:>16.2} {:>9}",
                count(vocab),
                count(ids),
                text.len() as f64 / ids.max(1) as f64,
                count(unknown)
            );
        }
        Ok(())
    }
}

pub fn run(a: Args) -> Result<()> {
    let corpus = minillm::corpus::builtin();
    let trio = match &a.tokenizer {
        Some(t) => Trio::fit(corpus, minillm::io::load_tokenizer(std::path::Path::new(t))?),
        None => Trio::train(corpus, a.vocab_size, &[])?,
    };
    let texts: Vec<&str> =
        if a.texts.is_empty() { EXAMPLES.to_vec() } else { a.texts.iter().map(String::as_str).collect() };
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            println!();
        }
        trio.show(text)?;
    }
    Ok(())
}
