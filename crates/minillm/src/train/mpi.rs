//! The [`Group`] over MPI (rsmpi): what `mpirun -np N minillm train ...` runs on, on one machine
//! or many. Every operation is MPI's non-blocking form, waited for with a deadline, so a rank
//! that died or hangs stops the run with a message instead of leaving the others waiting
//! forever. rsmpi has no in-place reductions: buffers are reduced through scratch buffers of a
//! bounded size ([`CHUNK`] values), except the overlapped gradient reduction, whose buckets are
//! all in flight at once (it keeps a copy of the gradients and their sums: twice their size).

use super::group::{Group, shard};
use crate::error::Result;
use crate::model::training::Ready;
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::request::{Request, Scope, scope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::{Threading, environment::Universe};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Values per round of a chunked reduction (4 MB of f32): the bound on the scratch buffers.
const CHUNK: usize = 1 << 20;

pub struct MpiGroup {
    world: SimpleCommunicator,
    /// Finalizes MPI when dropped: the group lives as long as the run.
    _universe: Universe,
    timeout: Duration,
    waited: Duration,
    send: Vec<f32>,
    recv: Vec<f32>,
    /// The overlapped reduction's copy of the gradients and their sums.
    bucket_send: Vec<f32>,
    bucket_recv: Vec<f32>,
}

impl MpiGroup {
    /// Joins the run this process was launched into; `None` when MPI cannot start, or when there
    /// is only this process (a one-rank run trains as a plain one). `timeout` bounds every wait
    /// for the other ranks.
    pub fn start(timeout: Duration) -> Option<MpiGroup> {
        // Only the thread that started MPI calls it (the worker threads compute).
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)?;
        let world = universe.world();
        if world.size() < 2 {
            return None;
        }
        Some(MpiGroup {
            world,
            _universe: universe,
            timeout,
            waited: Duration::ZERO,
            send: vec![0.0; CHUNK],
            recv: vec![0.0; CHUNK],
            bucket_send: Vec::new(),
            bucket_recv: Vec::new(),
        })
    }

    /// Ranks on this machine (they share its cores). Every rank must ask (it is collective).
    pub fn local_size(&self) -> usize {
        self.world.split_shared(0).size() as usize
    }
}

/// Waits for `request` until `timeout`, counting the time in `waited`; past the deadline the
/// run is stopped (a rank died or hangs).
fn finish<'a, R: ?Sized, S: Scope<'a>>(
    world: &SimpleCommunicator,
    mut request: Request<'a, R, S>,
    timeout: Duration,
    waited: &mut Duration,
) {
    let start = Instant::now();
    loop {
        match request.test() {
            Ok(_) => break,
            Err(pending) => request = pending,
        }
        let elapsed = start.elapsed();
        if elapsed > timeout {
            eprintln!(
                "error (rank {} of {}): no word from the other ranks for {} s: one of them died or is stuck; stopping the run (the last checkpoint is kept)",
                world.rank(),
                world.size(),
                timeout.as_secs()
            );
            world.abort(1);
        }
        // Spin while the answer is likely near (the step's collectives), then let the core go.
        if elapsed < Duration::from_millis(20) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    *waited += start.elapsed();
}

impl Group for MpiGroup {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn broadcast(&mut self, root: usize, data: &mut [f32]) {
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let root = world.process_at_rank(root as i32);
        for chunk in data.chunks_mut(CHUNK) {
            scope(|s| finish(world, root.immediate_broadcast_into(s, chunk), timeout, waited));
        }
    }

    fn broadcast_bytes(&mut self, root: usize, data: &mut Vec<u8>) {
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let from = world.process_at_rank(root as i32);
        let mut len = data.len() as u64;
        scope(|s| finish(world, from.immediate_broadcast_into(s, &mut len), timeout, waited));
        data.resize(len as usize, 0);
        scope(|s| finish(world, from.immediate_broadcast_into(s, &mut data[..]), timeout, waited));
    }

    fn sum(&mut self, data: &mut [f64]) {
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let mine = data.to_vec();
        scope(|s| {
            let request = world.immediate_all_reduce_into(s, &mine[..], data, SystemOperation::sum());
            finish(world, request, timeout, waited)
        });
    }

    fn all_reduce(&mut self, data: &mut [f32]) {
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        for chunk in data.chunks_mut(CHUNK) {
            let recv = &mut self.recv[..chunk.len()];
            scope(|s| {
                let request = world.immediate_all_reduce_into(s, &*chunk, &mut *recv, SystemOperation::sum());
                finish(world, request, timeout, waited)
            });
            chunk.copy_from_slice(recv);
        }
    }

    fn reduce_scatter(&mut self, data: &mut [f32]) {
        let (n, me) = (self.size(), self.rank());
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let each = data.len().div_ceil(n);
        // Round by round, rank r's next piece of its shard from every rank's data.
        for (at, m) in rounds(each, n) {
            for r in 0..n {
                copy_clipped(&mut self.send[r * m..(r + 1) * m], data, r * each + at);
            }
            let recv = &mut self.recv[..m];
            scope(|s| {
                let send = &self.send[..n * m];
                let request =
                    world.immediate_reduce_scatter_block_into(s, send, &mut *recv, SystemOperation::sum());
                finish(world, request, timeout, waited)
            });
            let dest = piece(shard(data.len(), n, me), at, m);
            let len = dest.len();
            data[dest].copy_from_slice(&recv[..len]);
        }
    }

    fn all_gather(&mut self, data: &mut [f32]) {
        let (n, me) = (self.size(), self.rank());
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let each = data.len().div_ceil(n);
        for (at, m) in rounds(each, n) {
            copy_clipped(&mut self.send[..m], data, me * each + at);
            let recv = &mut self.recv[..n * m];
            scope(|s| {
                let request = world.immediate_all_gather_into(s, &self.send[..m], &mut *recv);
                finish(world, request, timeout, waited)
            });
            for r in 0..n {
                let dest = piece(shard(data.len(), n, r), at, m);
                let len = dest.len();
                data[dest].copy_from_slice(&recv[r * m..r * m + len]);
            }
        }
    }

    fn overlapped(
        &mut self,
        buckets: &[Range<usize>],
        backward: &mut dyn FnMut(Ready) -> Result<()>,
    ) -> Result<()> {
        let total = buckets.iter().map(|b| b.end).max().unwrap_or(0);
        if self.bucket_send.len() != total {
            self.bucket_send = vec![0.0; total];
            self.bucket_recv = vec![0.0; total];
        }
        let (world, timeout, waited) = (&self.world, self.timeout, &mut self.waited);
        let (send, recv) = (&mut self.bucket_send[..], &mut self.bucket_recv[..]);
        scope(|s| {
            let mut pending: Vec<Option<Request<'_, [f32], _>>> = Vec::with_capacity(buckets.len());
            let (mut send_rest, mut recv_rest) = (send, recv);
            let started = std::cell::Cell::new(0);
            // Buckets arrive from the end of the buffer to its start, each just below the last.
            let mut launch = |range: Range<usize>, grads: Option<&[f32]>| {
                debug_assert_eq!(range, buckets[started.get()], "buckets reported in the layout's order");
                let at = send_rest.len() - range.len();
                let (rest, bucket) = std::mem::take(&mut send_rest).split_at_mut(at);
                send_rest = rest;
                if let Some(g) = grads {
                    bucket.copy_from_slice(g);
                }
                let (rest, sums) = std::mem::take(&mut recv_rest).split_at_mut(at);
                recv_rest = rest;
                // Testing the earlier requests lets MPI move their bytes while backward computes.
                for slot in pending.iter_mut() {
                    if let Some(request) = slot.take() {
                        *slot = request.test().err();
                    }
                }
                pending.push(Some(world.immediate_all_reduce_into(
                    s,
                    &*bucket,
                    sums,
                    SystemOperation::sum(),
                )));
                started.set(started.get() + 1);
            };
            let result = backward(&mut |range, grads| launch(range, Some(grads)));
            for range in &buckets[started.get()..] {
                launch(range.clone(), None);
            }
            for request in pending.into_iter().flatten() {
                finish(world, request, timeout, waited);
            }
            result
        })
    }

    fn overlapped_sums(&self, grads: &mut [f32]) {
        grads.copy_from_slice(&self.bucket_recv[..grads.len()]);
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn abort(&self, message: &str) -> ! {
        eprintln!("error (rank {} of {}): {message}", self.world.rank(), self.world.size());
        self.world.abort(1)
    }
}

/// The rounds of a sharded operation over shards of `each` values on `n` ranks: (offset within
/// the shard, values) pieces small enough that all `n` ranks' pieces fit a [`CHUNK`] buffer.
fn rounds(each: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let round = (CHUNK / n).max(1);
    (0..each).step_by(round).map(move |at| (at, round.min(each - at)))
}

/// The `m` values of `shard` from `at` on, clipped to it (the last shard may be short).
fn piece(shard: Range<usize>, at: usize, m: usize) -> Range<usize> {
    (shard.start + at).min(shard.end)..(shard.start + at + m).min(shard.end)
}

/// `dest` filled from `src[from..]`, zeros past the end of `src` (the padding of the last shard).
fn copy_clipped(dest: &mut [f32], src: &[f32], from: usize) {
    let have = src.len().saturating_sub(from).min(dest.len());
    dest[..have].copy_from_slice(&src[from..from + have]);
    dest[have..].fill(0.0);
}
