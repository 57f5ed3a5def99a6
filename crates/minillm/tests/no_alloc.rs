//! A training step and a decoding step allocate nothing once their buffers exist, and loading a
//! model to run it allocates its weights and nothing of training: counted with a global
//! allocator that tallies every allocation in this test binary (and the bytes live at the
//! peak). The one exception is the `gemm` crate, which allocates packing buffers inside each
//! matrix product; those are counted apart (while a product is in flight) and reported.

mod common;

use minillm::model::kv_cache::KvCache;
use minillm::model::{Gpt, ModelConfig, Trainable};
use minillm::quant::QuantType;
use minillm::train::adamw::{AdamW, AdamWConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static GEMM_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The counters are global: the tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn grow(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

fn count() {
    if minillm::test_hooks::gemm_in_flight() > 0 {
        GEMM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    } else {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        grow(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_training_step_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = ModelConfig { dropout: 0.1, ..ModelConfig::preset("baby").unwrap() };
    let mut model = Trainable::init(config, 1).unwrap();
    let mut opt = AdamW::new(
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
        &model.layout,
    );
    let (b, t) = (4, 64);
    let tokens: Vec<u32> = (0..b * t).map(|i| (i * 7 % 65) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| (i * 11 % 65) as u32).collect();
    let mut params = std::mem::take(&mut model.params);
    let mut step = |model: &mut Trainable, params: &mut Vec<f32>| {
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

#[test]
fn a_decoding_step_allocates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut f32_model = Gpt::new(ModelConfig::preset("d4").unwrap(), 1).unwrap();
    let steps = 40;
    for quantized in [false, true] {
        if quantized {
            f32_model.quantize(QuantType::Q4_0, Some(QuantType::Q8_0)).unwrap();
        }
        let model = &f32_model;
        let per_step = pool.install(|| {
            // Made in the pool that decodes, so every worker's attention scores are sized with it
            // (made outside, the pool's threads grew theirs on first use: a rare allocation in a
            // step, whenever one thread had no attention task in the warm-up).
            let mut cache = KvCache::new(model, 2);
            model.prefill(&mut cache, 0, &[1, 2, 3]).unwrap();
            model.prefill(&mut cache, 1, &[4]).unwrap();
            model.decode(&mut cache, &[0, 1], &[5, 6]).unwrap(); // warm-up: per-thread buffers
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for i in 0..steps {
                model.decode(&mut cache, &[0, 1], &[i as u32 % 50, 7]).unwrap();
            }
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / steps as f64
        });
        println!("allocations per decoding step (quantized: {quantized}): {per_step}");
        assert_eq!(per_step, 0.0, "quantized: {quantized}");
    }
}

#[test]
fn loading_a_model_to_run_it_allocates_its_weights_and_nothing_more() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = common::temp_dir("load-peak");
    let config = ModelConfig::depth(4, 257);
    let model = Gpt::new(config, 3).unwrap();
    minillm::io::save_model(&dir, &model, None).unwrap();
    let mut quantized = Gpt::new(model.config.clone(), 3).unwrap();
    quantized.quantize(QuantType::Q4_0, Some(QuantType::Q8_0)).unwrap();
    let tok = minillm::tokenizer::Tokenizer::bytes().with_added_specials(&["<|endoftext|>"]).unwrap();
    let gguf = dir.join("model.gguf");
    let bytes =
        minillm::io::gguf_gpt2::to_bytes(&quantized, &tok, minillm::io::gguf::TensorType::Q4_0, "t").unwrap();
    std::fs::write(&gguf, &bytes).unwrap();
    drop((model, quantized, bytes));

    let measure = |load: &dyn Fn() -> Gpt| {
        let base = LIVE.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        let loaded = load();
        let peak = PEAK.load(Ordering::SeqCst) - base;
        (loaded.weight_bytes(), peak)
    };
    // f32 safetensors: the flat buffer, no second copy of the file, no gradients.
    let (weights, peak) = measure(&|| minillm::io::load_model(&dir).unwrap());
    println!("f32: weights {weights} B, peak allocated while loading {peak} B");
    assert!(peak < weights + weights / 20, "f32 load peaked at {peak} B for {weights} B of weights");
    // q4_0 GGUF: the blocks stay in the mapped file and only the small f32 tensors are
    // allocated; or, where the CPU multiplies q8_0 and q4_0 interleaved, each matrix is copied
    // once into that layout (its file pages handed back), and nothing more.
    let (weights, peak) = measure(&|| minillm::io::load(&gguf).unwrap().model);
    let interleaved =
        minillm::quant::QMatrix::quantize(QuantType::Q4_0, &[0.0; 32], 1, 32).unwrap().is_interleaved();
    println!("q4_0: weights {weights} B (interleaved: {interleaved}), peak allocated while loading {peak} B");
    let limit = if interleaved { weights + weights / 20 } else { weights / 2 };
    assert!(peak < limit, "q4_0 load allocated {peak} B for {weights} B of blocks");
}
