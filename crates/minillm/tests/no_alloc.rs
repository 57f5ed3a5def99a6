//! A training step allocates nothing once the activations for its shape exist: counted with a
//! global allocator that tallies every allocation in this test binary. The one exception is the
//! `gemm` crate, which allocates packing buffers inside each matrix product; those are counted
//! apart (while a product is in flight) and reported.

use minillm::kernels::matmul::IN_FLIGHT;
use minillm::model::{Gpt, ModelConfig};
use minillm::train::adamw::{AdamW, AdamWConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static GEMM_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn count() {
    if IN_FLIGHT.load(Ordering::SeqCst) > 0 {
        GEMM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    } else {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_training_step_allocates_nothing() {
    let config = ModelConfig { dropout: 0.1, ..ModelConfig::preset("baby").unwrap() };
    let mut model = Gpt::new(config, 1).unwrap();
    let mut opt = AdamW::new(
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
        &model.layout,
    );
    let (b, t) = (4, 64);
    let tokens: Vec<u32> = (0..b * t).map(|i| (i * 7 % 65) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i * 11 % 65) as u32).collect();
    let mut params = std::mem::take(&mut model.params);
    let mut step = |model: &mut Gpt, params: &mut Vec<f32>| {
        model.params = std::mem::take(params);
        model.zero_grad();
        model.forward(&tokens, Some(&targets), (b, t)).unwrap();
        model.backward().unwrap();
        *params = std::mem::take(&mut model.params);
        opt.step(params, &model.grads, 1e-3);
    };
    // Run inside the thread pool, as a training loop does: parallel loops started from a
    // worker thread use its own work queue instead of the pool's shared injector, which
    // allocates a block every 63 jobs pushed from outside.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (before, steps) = pool.install(|| {
        for _ in 0..2 {
            step(&mut model, &mut params); // warm-up: activations come to life
        }
        let before = (ALLOCATIONS.load(Ordering::Relaxed), GEMM_ALLOCATIONS.load(Ordering::Relaxed));
        for _ in 0..200 {
            step(&mut model, &mut params);
        }
        (before, 200.0)
    });
    let ours = (ALLOCATIONS.load(Ordering::Relaxed) - before.0) as f64 / steps;
    let gemm = (GEMM_ALLOCATIONS.load(Ordering::Relaxed) - before.1) as f64 / steps;
    println!("allocations per training step: {ours} by minillm, {gemm} inside the gemm crate");
    assert_eq!(ours, 0.0);
}
