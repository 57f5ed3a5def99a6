//! `minillm._minillm`: the Rust side of `import minillm`. A thin layer over the library and the
//! command line's commands, with no logic of its own: it converts arguments, releases the GIL
//! while the work runs on minillm's thread pool, and turns errors into `minillm.Error` with the
//! library's own message. The Python package (`python/minillm/`) puts docstrings and
//! Hugging Face's `pipeline` shape on top.

mod model;
mod run;
mod tokenizer;

use pyo3::prelude::*;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

pyo3::create_exception!(
    minillm,
    Error,
    pyo3::exceptions::PyException,
    "What minillm refused or could not do, in the same words as the command line."
);

/// A library or command error as `minillm.Error`, with its chain of causes (`{:#}`).
fn error(e: impl Into<anyhow::Error>) -> PyErr {
    Error::new_err(format!("{:#}", e.into()))
}

/// Runs `work` on a worker of minillm's thread pool with the GIL released. From a worker, a
/// parallel product hands its halves to workers spinning between products; from Python's
/// thread, each would be injected into the pool and the caller put to sleep until it finished
/// (two thread wake-ups per product: half of a small model's decoding time).
fn in_pool<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
    py.detach(|| rayon::scope(|_| work()))
}

/// The next message from work running on another thread: waits with the GIL released, and
/// lets Ctrl-C through between waits (as the KeyboardInterrupt it raises). None once the
/// sender is gone.
fn receive<T: Send>(py: Python<'_>, receiver: &mut Receiver<T>) -> PyResult<Option<T>> {
    loop {
        let waiting = &mut *receiver;
        match py.detach(move || waiting.recv_timeout(Duration::from_millis(50))) {
            Ok(message) => return Ok(Some(message)),
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

/// Sets the number of worker threads (default: all cores). Only before the pool has started,
/// that is before any other call that computes.
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().map_err(|_| {
        Error::new_err(format!(
            "the thread pool has already started with {} threads: call set_threads({n}) first, before anything else of minillm",
            rayon::current_num_threads()
        ))
    })
}

/// The number of worker threads minillm computes with.
#[pyfunction]
fn threads() -> usize {
    rayon::current_num_threads()
}

#[pymodule]
fn _minillm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("Error", m.py().get_type::<Error>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_function(wrap_pyfunction!(run::settings, m)?)?;
    m.add_function(wrap_pyfunction!(run::builtin_corpus, m)?)?;
    m.add_class::<tokenizer::Tokenizer>()?;
    m.add_class::<tokenizer::SimpleTokenizer>()?;
    m.add_class::<tokenizer::CharTokenizer>()?;
    m.add_class::<tokenizer::WordTokenizer>()?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::TextStream>()?;
    m.add_class::<run::Run>()?;
    Ok(())
}
