//! `minillm.Tokenizer` (byte-level BPE: GPT-2's, a file's, or one trained here) and the char-
//! and word-level tokenizers it is compared with.

use crate::{Error, error, in_pool};
use minillm::SpecialTokens;
use minillm::tokenizer::simple;
use minillm::tokenizer::train::{BpeConfig, train};
use minillm::tokenizer::{Pattern, formats};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// Texts at least this long are encoded on all cores (shorter ones cost less than the hand-off).
const PARALLEL_BYTES: usize = 512 * 1024;

#[pyclass(module = "minillm", frozen)]
pub struct Tokenizer {
    pub(crate) inner: Arc<minillm::Tokenizer>,
}

/// `special`: what to do with special-token text such as `<|endoftext|>` in the input.
fn specials(special: &str) -> PyResult<SpecialTokens> {
    match special {
        "refuse" => Ok(SpecialTokens::Refuse),
        "allow" => Ok(SpecialTokens::Allow),
        "text" => Ok(SpecialTokens::AsText),
        other => Err(Error::new_err(format!(
            "special={other:?}: say \"refuse\" (the default), \"allow\" (encode it as its id) or \"text\" (as ordinary text)"
        ))),
    }
}

fn encode(tok: &minillm::Tokenizer, text: &str, special: SpecialTokens) -> PyResult<Vec<u32>> {
    tok.encode_parallel(text, special).map_err(|e| match e {
        minillm::Error::SpecialTokenInText { .. } => Error::new_err(format!(
            "{e}; pass special=\"allow\" to encode it as that id, or special=\"text\" to encode it as ordinary text"
        )),
        e => error(e),
    })
}

#[pymethods]
impl Tokenizer {
    /// GPT-2's tokenizer (built in; the ids tiktoken's `gpt2` encoding gives).
    #[staticmethod]
    fn gpt2() -> Tokenizer {
        Tokenizer { inner: Arc::new(minillm::Tokenizer::gpt2().clone()) }
    }

    /// `tokenizer.json`, `vocab.json` (+ `merges.txt`), `encoder.json` (+ `vocab.bpe`), a
    /// `.tiktoken` file, a directory holding one, or a `.gguf` model (the tokenizer in its
    /// metadata).
    #[staticmethod]
    fn from_file(path: PathBuf) -> PyResult<Tokenizer> {
        let tok = minillm::io::load_tokenizer(&path).map_err(error)?;
        Ok(Tokenizer { inner: Arc::new(tok) })
    }

    #[staticmethod]
    #[pyo3(signature = (texts, vocab_size, specials = Vec::new(), pattern = "gpt2"))]
    fn train(
        py: Python<'_>,
        texts: Vec<String>,
        vocab_size: usize,
        specials: Vec<String>,
        pattern: &str,
    ) -> PyResult<Tokenizer> {
        let pattern: Pattern = pattern.parse().map_err(Error::new_err)?;
        let config = BpeConfig { vocab_size, pattern, specials };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tok = in_pool(py, || train(&refs, &config, &mut |_| {})).map_err(error)?;
        Ok(Tokenizer { inner: Arc::new(tok) })
    }

    #[pyo3(signature = (text, special = "refuse"))]
    fn encode(&self, py: Python<'_>, text: &str, special: &str) -> PyResult<Vec<u32>> {
        let special = specials(special)?;
        match text.len() < PARALLEL_BYTES {
            true => py.detach(|| encode(&self.inner, text, special)),
            false => in_pool(py, || encode(&self.inner, text, special)),
        }
    }

    /// Each text's ids, the texts spread over the cores.
    #[pyo3(signature = (texts, special = "refuse"))]
    fn encode_batch(&self, py: Python<'_>, texts: Vec<String>, special: &str) -> PyResult<Vec<Vec<u32>>> {
        use rayon::prelude::*;
        let special = specials(special)?;
        in_pool(py, || texts.par_iter().map(|t| encode(&self.inner, t, special)).collect())
    }

    fn decode(&self, ids: Vec<u32>) -> PyResult<String> {
        self.inner.decode(&ids).map_err(error)
    }

    /// The text's tokens as text (bytes that are not whole UTF-8 show as U+FFFD).
    #[pyo3(signature = (text, special = "refuse"))]
    fn tokens(&self, py: Python<'_>, text: &str, special: &str) -> PyResult<Vec<String>> {
        let ids = self.encode(py, text, special)?;
        Ok(ids.iter().map(|&id| self.inner.token_text(id)).collect())
    }

    /// One token's exact bytes.
    fn token_bytes(&self, id: u32) -> PyResult<Vec<u8>> {
        match self.inner.token_bytes(id) {
            Some(b) => Ok(b.to_vec()),
            None => Err(Error::new_err(format!(
                "token id {id} is outside the vocabulary of {}",
                self.inner.vocab_size()
            ))),
        }
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The special tokens and their ids.
    #[getter]
    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.inner.specials().to_vec()
    }

    /// Writes the tokenizer as HF's `tokenizer.json`.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        formats::save(&self.inner, &path).map_err(error)
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer(vocab_size={})", self.inner.vocab_size())
    }
}

/// The char- and word-level tokenizers' shared methods (each is fitted to a text).
#[pyclass(module = "minillm", frozen, subclass)]
pub struct SimpleTokenizer(Simple);

enum Simple {
    Chars(simple::CharTokenizer),
    Words(simple::WordTokenizer),
}

#[pymethods]
impl SimpleTokenizer {
    fn encode(&self, text: &str) -> Vec<u32> {
        match &self.0 {
            Simple::Chars(t) => t.encode(text),
            Simple::Words(t) => t.encode(text),
        }
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let token = |id: u32| match &self.0 {
            Simple::Chars(t) => t.token(id).to_string(),
            Simple::Words(t) => t.token(id).to_string(),
        };
        self.encode(text).into_iter().map(token).collect()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        match &self.0 {
            Simple::Chars(t) => t.vocab_size(),
            Simple::Words(t) => t.vocab_size(),
        }
    }
}

/// One token per distinct character of the text it was fitted to; id 0 is `<unk>`.
#[pyclass(module = "minillm", frozen, extends = SimpleTokenizer)]
pub struct CharTokenizer;

#[pymethods]
impl CharTokenizer {
    #[staticmethod]
    fn fit(py: Python<'_>, text: &str) -> PyResult<Py<CharTokenizer>> {
        let base = SimpleTokenizer(Simple::Chars(simple::CharTokenizer::fit(text)));
        Py::new(py, PyClassInitializer::from(base).add_subclass(CharTokenizer))
    }
}

/// One token per word seen in the text it was fitted to (the most frequent `max_vocab` - 1);
/// id 0 is `<unk>`, and whitespace is not kept.
#[pyclass(module = "minillm", frozen, extends = SimpleTokenizer)]
pub struct WordTokenizer;

#[pymethods]
impl WordTokenizer {
    #[staticmethod]
    #[pyo3(signature = (text, max_vocab = 50_000))]
    fn fit(py: Python<'_>, text: &str, max_vocab: usize) -> PyResult<Py<WordTokenizer>> {
        let base = SimpleTokenizer(Simple::Words(simple::WordTokenizer::fit(text, max_vocab)));
        Py::new(py, PyClassInitializer::from(base).add_subclass(WordTokenizer))
    }
}
