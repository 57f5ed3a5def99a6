//! Test data the tests make themselves, and the optional shared data when it is present.
#![allow(dead_code)]

pub mod mutate;
pub mod parsers;
mod tricky;

#[allow(unused_imports)] // each test file uses its own part of this module
pub use tricky::{tricky_strings, tricky_text};

use std::path::PathBuf;

/// A file under `../shared/data`, or `None` with a printed reason when it is absent.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(relative);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipping the part that needs {}: not present", path.display());
        None
    }
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// HF `tokenizers`' byte-level BPE trainer with the GPT-2 pre-tokenizer, fed line by line as
/// `train_from_files` would: the reference our trainer is compared with.
pub fn hf_train(text: &str, vocab_size: usize) -> tokenizers::Tokenizer {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(byte_level));
    tok.with_decoder(Some(byte_level));
    tok.train(&mut trainer, text.split_inclusive('\n')).unwrap();
    tok
}

/// A LLaMA-family model as an f32 GGUF file, with no generation settings or chat template: the
/// plain file the GGUF tests start from.
pub fn llama_f32_gguf(model: &minillm::model::Gpt, tok: &minillm::Tokenizer) -> Vec<u8> {
    let f32 = minillm::io::gguf::recipe(minillm::io::gguf::TensorType::F32, None);
    minillm::io::gguf_llama::to_bytes(model, tok, &Default::default(), None, f32.as_ref(), "t").unwrap()
}
