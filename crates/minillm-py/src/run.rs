//! The command line's commands run inside Python: `minillm.train`, `sft` and `dpo` (whose
//! runs yield each step's metrics), `prepare`, `corpus`, `quantize` and `export`. Each runs
//! exactly as `minillm COMMAND ...` would, on a thread of its own with the GIL released; what
//! it prints goes to the process's output (a notebook shows it under the cell).

use crate::model::{clap_message, sampling_settings};
use crate::{Error, error, receive};
use clap::{CommandFactory, Parser};
use minillm_cli::cli::{finetune, train};
use minillm_cli::{Args, Command};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

/// The settings `command` takes: its flags' long names (`generate`: the sampling settings).
#[pyfunction]
pub fn settings(command: &str) -> PyResult<Vec<String>> {
    if command == "generate" {
        return Ok(sampling_settings());
    }
    let cli = Args::command();
    let sub = cli.find_subcommand(command).ok_or_else(|| Error::new_err(format!("no command {command}")))?;
    let flags =
        sub.get_arguments().filter_map(|a| a.get_long()).filter(|l| !matches!(*l, "help" | "version"));
    Ok(flags.map(str::to_string).collect())
}

/// The built-in corpus's text (what `minillm corpus` prints).
#[pyfunction]
pub fn builtin_corpus() -> &'static str {
    minillm::corpus::builtin()
}

enum Event {
    /// A step's line of metrics.jsonl.
    Step(String),
    Done(Result<(), String>),
}

/// A command running: iterate it for the metrics of each training step; it ends when the
/// command does, raising `minillm.Error` if the command failed.
#[pyclass(module = "minillm", frozen)]
pub struct Run {
    events: Mutex<Receiver<Event>>,
    stop: Arc<AtomicBool>,
}

#[pymethods]
impl Run {
    /// Starts `minillm ARGV...` (without the program's name).
    #[new]
    fn new(argv: Vec<String>) -> PyResult<Run> {
        let args = Args::try_parse_from(std::iter::once("minillm".to_string()).chain(argv))
            .map_err(|e| Error::new_err(clap_message(&e)))?;
        if args.threads.is_some() || args.report_memory {
            return Err(Error::new_err(
                "threads are set once per process with minillm.set_threads(n); report_memory is the command line's",
            ));
        }
        if matches!(args.command, Command::Serve(_) | Command::Lab(_)) {
            return Err(Error::new_err(
                "serve and lab run as their own process: `minillm serve --model ...` or `minillm lab --model ...`",
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let flag = stop.clone();
        std::thread::spawn(move || {
            let steps = tx.clone();
            let watch = train::Watch {
                stop: flag,
                on_step: Box::new(move |line| drop(steps.send(Event::Step(line.to_string())))),
            };
            let result = rayon::scope(|_| match args.command {
                Command::Train(a) => train::run_watched(a, watch),
                Command::Sft(a) => finetune::run_sft_watched(a, watch),
                Command::Dpo(a) => finetune::run_dpo_watched(a, watch),
                other => minillm_cli::run(other),
            });
            let _ = tx.send(Event::Done(result.map_err(|e| format!("{e:#}"))));
        });
        Ok(Run { events: Mutex::new(rx), stop })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next step's metrics (a line of metrics.jsonl); Ctrl-C stops the run with a
    /// checkpoint (as on the command line) and then raises KeyboardInterrupt.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match receive(py, &mut events) {
            Ok(Some(Event::Step(line))) => Ok(Some(line)),
            Ok(Some(Event::Done(Ok(())))) | Ok(None) => Ok(None),
            Ok(Some(Event::Done(Err(message)))) => Err(Error::new_err(message)),
            Err(interrupt) => {
                self.stop.store(true, Ordering::SeqCst);
                // The checkpoint is written before the exception reaches the caller.
                let receiver = &mut *events;
                let ended = py.detach(move || {
                    receiver.iter().find_map(|e| match e {
                        Event::Done(result) => Some(result),
                        Event::Step(_) => None,
                    })
                });
                Err(match ended {
                    Some(Err(message)) => error(anyhow::anyhow!(message)),
                    _ => interrupt,
                })
            }
        }
    }

    /// Asks the run to stop after its current step, with a checkpoint.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
