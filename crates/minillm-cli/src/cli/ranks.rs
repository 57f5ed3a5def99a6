//! Data-parallel training from the command line: `mpirun -np N minillm train|sft|dpo ...` (a
//! build with the `mpi` feature). Every rank runs the same command; this file joins the run,
//! makes the ranks agree that each built its trainer, gives each its share of the machine's
//! cores, and keeps every rank but 0 quiet.

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use minillm::train::Trainer;
use minillm::train::group::{Group, first_failure, launched_by_mpi};

#[derive(ClapArgs, Default)]
pub struct RankArgs {
    /// In a data-parallel run (mpirun -np N): each rank keeps AdamW's moments for 1/N of the
    /// parameters only (ZeRO-1), gradients reduce-scattered and weights all-gathered.
    #[arg(long)]
    shard_optimizer: bool,
    /// In a data-parallel run: seconds to wait for the other ranks before stopping the run (a
    /// rank that died or hangs); default 300.
    #[arg(long, value_name = "SECONDS")]
    comm_timeout: Option<u64>,
}

/// An error every rank met (they agreed on it): rank 0 prints it, the others exit quietly.
#[derive(Debug)]
pub struct Quiet;

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("another rank reported the error")
    }
}

impl std::error::Error for Quiet {}

/// The run this process belongs to: `None` when it trains alone.
pub struct Join {
    group: Option<Box<dyn Group>>,
    shard_optimizer: bool,
}

impl Join {
    /// Joins the data-parallel run this process was launched into, if any. A flag that only
    /// means something in such a run is refused outside one.
    pub fn start(args: &RankArgs) -> Result<Join> {
        let group = group(args)?;
        if group.is_none() && (args.shard_optimizer || args.comm_timeout.is_some()) {
            bail!(
                "--shard-optimizer and --comm-timeout apply to data-parallel runs: launch with `mpirun -np N minillm ...` (a build with `--features mpi`)"
            );
        }
        if let Some(g) = &group
            && g.rank() > 0
        {
            silence_stdout();
        }
        Ok(Join { group, shard_optimizer: args.shard_optimizer })
    }

    /// `built` on every rank, once all have built theirs; if any failed, every rank stops with
    /// the first failure (rank 0 says which rank and why).
    pub fn settle<T>(&mut self, built: Result<T>) -> Result<T> {
        let Some(group) = self.group.as_mut() else { return built };
        let failed = built.as_ref().err().map(|e| format!("{e:#}"));
        let Some((rank, message)) = first_failure(group.as_mut(), failed.as_deref()) else { return built };
        Err(said_once(group.as_mut(), &format!("rank {rank} failed: {message}")))
    }

    /// Makes `trainer` this process's rank of the run (nothing when it trains alone). What it
    /// refuses is refused on every rank alike: rank 0 says it.
    pub fn attach(self, trainer: &mut Trainer) -> Result<()> {
        let Some(mut group) = self.group else { return Ok(()) };
        if let Err(e) = trainer.check_ranks(group.as_mut()) {
            return Err(said_once(group.as_mut(), &e.to_string()));
        }
        Ok(trainer.distribute(group, self.shard_optimizer)?)
    }
}

/// An error every rank met: rank 0 says it here, and every rank waits until it has, while the
/// group is still theirs. (A rank that exits with an error makes mpirun stop the others, which
/// could stop rank 0 before it had spoken: CI saw it.) Every rank then returns [`Quiet`].
fn said_once(group: &mut dyn Group, message: &str) -> anyhow::Error {
    if group.rank() == 0 {
        eprintln!("error: {message}");
    }
    group.sum(&mut [0.0]);
    Quiet.into()
}

/// What a rank returns when `result` is an error: one every rank met is said by rank 0 alone;
/// one only this rank met stops every rank at once (the others would wait for it).
pub fn outcome(trainer: &Trainer, result: Result<()>) -> Result<()> {
    let Err(e) = result else { return Ok(()) };
    let (rank, ranks) = trainer.rank();
    if ranks == 1 {
        return Err(e);
    }
    let everywhere = matches!(
        e.downcast_ref::<minillm::Error>(),
        Some(minillm::Error::Rank { .. } | minillm::Error::Diverged { .. })
    ) || e.is::<Quiet>();
    match (everywhere, rank) {
        (true, 0) => Err(e),
        (true, _) => Err(Quiet.into()),
        (false, _) => {
            trainer.abort_ranks(&format!("{e:#}"));
            Err(e)
        }
    }
}

#[cfg(feature = "mpi")]
fn group(args: &RankArgs) -> Result<Option<Box<dyn Group>>> {
    if launched_by_mpi().is_none_or(|n| n < 2) {
        return Ok(None);
    }
    let timeout = std::time::Duration::from_secs(args.comm_timeout.unwrap_or(300));
    let Some(group) = minillm::train::mpi::MpiGroup::start(timeout) else {
        bail!("launched by an MPI launcher, but MPI did not start (is this the MPI minillm was built with?)");
    };
    // The machine's cores are shared by the ranks on it, unless --threads or RAYON_NUM_THREADS
    // said otherwise (then the pool exists already, or rayon reads the variable).
    let local = group.local_size().max(1);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let _ = rayon::ThreadPoolBuilder::new().num_threads((cores / local).max(1)).build_global();
    }
    Ok(Some(Box::new(group)))
}

#[cfg(not(feature = "mpi"))]
fn group(_: &RankArgs) -> Result<Option<Box<dyn Group>>> {
    match launched_by_mpi() {
        Some(n) if n > 1 => bail!(
            "launched as one of {n} MPI processes, but this minillm was built without MPI, so each would train alone into the same directory; build it with `cargo build --release --features mpi` (needs OpenMPI and libclang)"
        ),
        _ => Ok(None),
    }
}

/// Ranks other than 0 print nothing unless they fail: their standard output goes nowhere
/// (errors still reach standard error).
fn silence_stdout() {
    #[cfg(unix)]
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto descriptor 1 replaces standard output; `null` stays open until then.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}
