//! What a command really took: the peak resident memory the kernel counts, for
//! `--report-memory` and the benchmarks' memory columns.

use anyhow::{Result, bail};

/// This process's peak resident memory in bytes, from Linux's /proc/self/status (VmHWM, which
/// starts afresh at exec, unlike getrusage's figure, which also counts the parent's memory a
/// fork copied); `None` where there is no such file.
pub fn peak() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The peak resident memory (bytes) of `minillm ARGS` run as a child process, as it reports it
/// (`--report-memory`); `None` where the system does not say.
pub fn peak_of(args: &[&str]) -> Result<Option<usize>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .arg("--report-memory")
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("minillm {} failed: {stderr}", args.join(" "));
    }
    let mb = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak resident memory: ")?.strip_suffix(" MB")?.parse::<f64>().ok());
    Ok(mb.map(|mb| (mb * 1e6) as usize))
}
