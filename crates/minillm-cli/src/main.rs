//! `minillm`: every stage of a language model from one binary. The commands live in the
//! `minillm_cli` library (which the Python package runs too); this file sets up the process,
//! parses the command line and reports errors.

use clap::Parser;
use minillm_cli::{Args, Command, cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`minillm corpus | head`) would
    // panic; the default action ends the process quietly instead, as for `cat`.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The gemm crate allocates its packing buffers on every matrix product; some are larger
    // than glibc's mmap threshold, so each would be fresh pages the kernel must zero. Keeping
    // them in the heap lets freed buffers be reused (a few percent of a GPT-2-sized step).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any allocation-heavy work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    let args = Args::parse();
    if let Some(n) = args.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global()
    {
        eprintln!("error: cannot start {n} threads: {e}");
        return ExitCode::FAILURE;
    }
    let result = match args.command {
        // A server's handlers and engine bring threads of their own (see `serve::engine`).
        command @ (Command::Serve(_) | Command::Lab(_)) => run(command),
        // Everything else runs on a worker of the pool: a parallel product started there hands
        // its halves to workers that are spinning between products; started from this thread,
        // each would be injected into the pool and this thread put to sleep until it finished,
        // two thread wake-ups per product (half of a small model's decoding time).
        command => rayon::scope(|_| run(command)),
    };
    if args.report_memory {
        match cli::memory::peak() {
            Some(bytes) => eprintln!("peak resident memory: {:.1} MB", bytes as f64 / 1e6),
            None => eprintln!("peak resident memory: unknown here (it is read from /proc/self/status)"),
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // In a data-parallel run, an error every rank met is said once, by rank 0.
        Err(e) if e.is::<cli::ranks::Quiet>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
