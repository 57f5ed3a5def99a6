//! Every parser of outside input, as the fuzzers drive it: the file it reads, a valid input (the
//! seed every mutation starts from), the files it reads beside it, and the call. Shared by the
//! bounded fuzz test (`tests/fuzz_parsers.rs`), the corpus of past failures and the `cargo fuzz`
//! targets (`fuzz/`), so the three always test the same thing.

use minillm::train::TrainConfig;
use std::path::{Path, PathBuf};

pub struct Parser {
    pub name: &'static str,
    /// The name the input is written under (some parsers read the kind from it).
    pub file: &'static str,
    pub valid: Vec<u8>,
    /// Files the parser reads next to its input.
    pub beside: Vec<(&'static str, Vec<u8>)>,
    pub parse: fn(&Path) -> Result<(), String>,
}

impl Parser {
    /// Writes the files beside the input into `dir`, once before many runs.
    pub fn prepare(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, bytes) in &self.beside {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// Parses `input` written into `dir` (which [`Parser::prepare`] made): `Ok`, or the error
    /// when it is a sentence; a message that is empty or a Rust debug dump is a failure too.
    pub fn run(&self, dir: &Path, input: &[u8]) -> Result<(), Failure> {
        let path = dir.join(self.file);
        std::fs::write(&path, input).unwrap();
        match (self.parse)(&path) {
            Ok(()) => Ok(()),
            Err(message) if is_sentence(&message) => Err(Failure::Refused(message)),
            Err(message) => Err(Failure::NotASentence(message)),
        }
    }
}

#[derive(Debug)]
pub enum Failure {
    /// A clean refusal: what a parser should answer bad input with.
    Refused(String),
    /// An error a person cannot act on.
    NotASentence(String),
}

/// True for a message a person can read: not empty, not a Rust `Debug` dump.
pub fn is_sentence(message: &str) -> bool {
    !message.is_empty() && !message.contains("Error {") && !message.contains("{ kind:")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn read_tokenizer(p: &Path) -> Result<(), String> {
    minillm::tokenizer::formats::read_file(p).map(drop).map_err(text)
}

fn read_hf_json(p: &Path) -> Result<(), String> {
    minillm::tokenizer::formats::read_hf_json(p).map(drop).map_err(text)
}

fn load_dir(p: &Path) -> Result<(), String> {
    minillm::io::load_model(p.parent().unwrap()).map(drop).map_err(text)
}

/// Every parser, with valid inputs made from the committed fixtures in `fixtures` (and, for the
/// formats no fixture holds, written by minillm itself into `scratch`).
pub fn all(fixtures: &Path, scratch: &Path) -> Vec<Parser> {
    use minillm::train::finetune::{parse_chat, parse_preference, read_jsonl};
    let (gpt2, llama) = (fixtures.join("gpt2_tiny"), fixtures.join("llama_tiny"));
    let tok = minillm::tokenizer::formats::read_hf_json(&gpt2.join("tokenizer.json")).unwrap();
    let vocab = minillm::tokenizer::formats::to_vocab_json(&tok).into_bytes();
    let merges = minillm::tokenizer::formats::to_merges_txt(&tok).into_bytes();
    let ranks: String = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        (0..tok.vocab_size() as u32)
            .filter(|&id| !tok.is_special(id))
            .filter_map(|id| Some(format!("{} {id}\n", b64.encode(tok.token_bytes(id)?))))
            .collect()
    };
    std::fs::create_dir_all(scratch).unwrap();
    let shard = scratch.join("seed-shard.bin");
    let info = minillm::data::ShardInfo { vocab_size: 300, tokenizer_hash: 42 };
    minillm::data::write_shard(&shard, &(0..500).map(|i| i % 300).collect::<Vec<u32>>(), info).unwrap();
    let chats = concat!(
        r#"{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#,
        "\n",
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "answer": "4"}"#,
        "\n"
    );
    let prefs = concat!(r#"{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}"#, "\n");
    let parser = |name, file, valid, beside, parse| Parser { name, file, valid, beside, parse };
    vec![
        parser("gguf", "model.gguf", read(gpt2.join("gpt2_tiny.gguf")), vec![], |p| {
            minillm::io::load(p).map(drop).map_err(text)
        }),
        parser(
            "safetensors",
            "model.safetensors",
            read(llama.join("model.safetensors")),
            vec![("config.json", read(llama.join("config.json")))],
            load_dir,
        ),
        parser(
            "config-llama",
            "config.json",
            read(llama.join("config.json")),
            vec![("model.safetensors", read(llama.join("model.safetensors")))],
            load_dir,
        ),
        parser(
            "config-gpt2",
            "config.json",
            read(gpt2.join("config.json")),
            vec![("model.safetensors", read(gpt2.join("model.safetensors")))],
            load_dir,
        ),
        parser(
            "generation-config",
            "generation_config.json",
            read(llama.join("generation_config.json")),
            vec![],
            |p| {
                minillm::io::generation_config::GenerationConfig::read(p.parent().unwrap())
                    .map(drop)
                    .map_err(text)
            },
        ),
        parser("tokenizer-gpt2", "tokenizer.json", read(gpt2.join("tokenizer.json")), vec![], read_hf_json),
        parser("tokenizer-llama", "tokenizer.json", read(llama.join("tokenizer.json")), vec![], read_hf_json),
        parser(
            "vocab-json",
            "vocab.json",
            vocab.clone(),
            vec![("merges.txt", merges.clone())],
            read_tokenizer,
        ),
        parser("merges-txt", "merges.txt", merges, vec![("vocab.json", vocab)], read_tokenizer),
        parser("tiktoken", "small.tiktoken", ranks.into_bytes(), vec![], read_tokenizer),
        parser("shard", "train.bin", read(shard), vec![], |p| {
            minillm::data::read_shard(p).map(drop).map_err(text)
        }),
        parser("chat-jsonl", "chats.jsonl", chats.as_bytes().to_vec(), vec![], |p| {
            read_jsonl(p, false, parse_chat).map(drop).map_err(text)
        }),
        parser("preference-jsonl", "prefs.jsonl", prefs.as_bytes().to_vec(), vec![], |p| {
            read_jsonl(p, true, parse_preference).map(drop).map_err(text)
        }),
        parser("toml", "config.toml", TrainConfig::default().to_toml().into_bytes(), vec![], |p| {
            let bytes = std::fs::read(p).map_err(text)?;
            TrainConfig::from_toml(&String::from_utf8_lossy(&bytes), p).map(drop).map_err(text)
        }),
    ]
}
