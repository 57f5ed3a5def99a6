//! The processes of a data-parallel run, as training sees them: a [`Group`] of ranks that can
//! broadcast, sum and shard buffers. [`super::mpi`] is the one over MPI (the `mpi` feature);
//! the trainer asks for nothing else, so the step's logic (who computes which micro-batch, what
//! is reduced when) reads the same whatever carries the bytes.

use crate::error::Result;
use crate::model::training::Ready;
use std::ops::Range;
use std::time::Duration;

/// One process's view of a data-parallel run. Every rank calls the same operations in the same
/// order with buffers of the same lengths (MPI's rule for collectives); an operation returns
/// when this rank's part of it is done.
pub trait Group {
    /// This process's number, 0 to `size - 1`; rank 0 writes checkpoints, metrics and output.
    fn rank(&self) -> usize;
    /// Processes in the run.
    fn size(&self) -> usize;
    /// Rank `root`'s `data` on every rank.
    fn broadcast(&mut self, root: usize, data: &mut [f32]);
    /// Rank `root`'s bytes on every rank (their length too).
    fn broadcast_bytes(&mut self, root: usize, data: &mut Vec<u8>);
    /// Element-wise sums over the ranks, in place: a step's losses and flags (a few numbers).
    fn sum(&mut self, data: &mut [f64]);
    /// Element-wise sums over the ranks, in place: the gradients.
    fn all_reduce(&mut self, data: &mut [f32]);
    /// The sums over the ranks of this rank's [`shard`] of `data`, written there; the rest of
    /// `data` is left as it was (ZeRO-1's reduce-scatter).
    fn reduce_scatter(&mut self, data: &mut [f32]);
    /// Every rank's [`shard`] of `data` copied to every rank (ZeRO-1's all-gather).
    fn all_gather(&mut self, data: &mut [f32]);
    /// Runs `backward`, starting the sum over the ranks of each of `buckets` (contiguous ranges
    /// of the gradients covering them all, from the last to the first, as the layout's
    /// `backward_buckets`) as `backward` reports it ready, and waits for all of them; the sums are
    /// then read with [`overlapped_sums`](Self::overlapped_sums). If `backward` fails or stops
    /// early, the buckets it did not report are summed anyway (every rank must take part in the
    /// same operations), and its error is returned.
    fn overlapped(
        &mut self,
        buckets: &[Range<usize>],
        backward: &mut dyn FnMut(Ready) -> Result<()>,
    ) -> Result<()>;
    /// The sums of the last [`overlapped`](Self::overlapped) reduction, written into `grads`.
    fn overlapped_sums(&self, grads: &mut [f32]);
    /// Stops every rank of the run at once, this one saying why: for an error only this rank
    /// knows of, after which the others would wait for it in vain.
    fn abort(&self, message: &str) -> !;
    /// Time spent in communication so far (waiting for other ranks included).
    fn waited(&self) -> Duration;
}

/// The number of processes, when this one was started by an MPI launcher (mpirun, mpiexec,
/// srun: the variables OpenMPI, MPICH and Slurm's PMI set). A build without the `mpi` feature
/// refuses such a launch rather than train N unrelated copies of the run into one directory.
pub fn launched_by_mpi() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Rank `rank`'s shard of `len` values over `size` ranks: ceil(len / size) values each (the
/// last ranks' shards are shorter, or empty, when `len` does not divide evenly).
pub fn shard(len: usize, size: usize, rank: usize) -> Range<usize> {
    let each = len.div_ceil(size);
    (rank * each).min(len)..((rank + 1) * each).min(len)
}

/// The lowest rank that reports `failed`, with its message, known on every rank: what each
/// rank does before going on after a part that can fail on one rank alone, so that all stop
/// together (naming the rank that failed) instead of the others waiting on it forever.
pub fn first_failure(group: &mut dyn Group, failed: Option<&str>) -> Option<(usize, String)> {
    let rank = *ranks_where(group, failed.is_some()).first()?;
    let mut text = failed.map(|m| m.as_bytes().to_vec()).unwrap_or_default();
    group.broadcast_bytes(rank, &mut text);
    Some((rank, String::from_utf8_lossy(&text).into_owned()))
}

/// The ranks whose `value` differs from rank 0's (empty when all agree).
pub fn differing(group: &mut dyn Group, value: u64) -> Vec<usize> {
    let mut bytes = value.to_le_bytes().to_vec();
    group.broadcast_bytes(0, &mut bytes);
    let theirs = u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
    ranks_where(group, theirs != value)
}

/// The ranks where `flag` is set, in order, known on every rank.
fn ranks_where(group: &mut dyn Group, flag: bool) -> Vec<usize> {
    let mut flags = vec![0.0; group.size()];
    flags[group.rank()] = if flag { 1.0 } else { 0.0 };
    group.sum(&mut flags);
    flags.iter().enumerate().filter(|&(_, &f)| f > 0.0).map(|(r, _)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_cover_the_buffer_once() {
        for (len, size) in [(10, 3), (9, 3), (2, 4), (0, 2), (1_000_003, 8)] {
            let shards: Vec<_> = (0..size).map(|r| shard(len, size, r)).collect();
            assert_eq!(shards[0].start, 0);
            assert_eq!(shards[size - 1].end, len);
            assert!(shards.windows(2).all(|w| w[0].end == w[1].start));
            assert!(shards.iter().all(|s| s.len() <= len.div_ceil(size)));
        }
    }
}
