//! The model's own checks: checkpoint round trip and its errors, the inference path, dropout,
//! bad input, and a whole-model finite-difference check independent of PyTorch.

mod common;

use minillm::io::{hf_config, load_model, safetensors as st, save_model};
use minillm::model::{Gpt, ModelConfig, Trainable};
use minillm::rng::Rng;

fn tiny(dropout: f32) -> ModelConfig {
    ModelConfig {
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        block_size: 8,
        vocab_size: 50,
        dropout,
        bias: true,
        arch: Default::default(),
    }
}

fn batch(seed: u64, b: usize, t: usize, v: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    (tokens, targets)
}

#[test]
fn checkpoints_round_trip_with_hf_names() {
    let dir = common::temp_dir("roundtrip");
    let model = Gpt::new(tiny(0.0), 5).unwrap();
    save_model(&dir, &model, None).unwrap();
    let loaded = load_model(&dir).unwrap();
    assert_eq!(loaded.params, model.params);
    assert_eq!(loaded.config, model.config);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    // Streamed to the file, the checkpoint is byte for byte what the in-memory serializer makes.
    assert_eq!(bytes, st::to_bytes(&model.config, &model.params).unwrap());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("transformer.wte.weight").unwrap().shape(), [50, 16]); // no padding rows
    assert_eq!(file.tensor("transformer.h.1.mlp.c_fc.weight").unwrap().shape(), [16, 64]);
}

#[test]
fn broken_checkpoints_say_what_is_wrong() {
    let dir = common::temp_dir("broken");
    let config = tiny(0.0);
    let model = Gpt::new(config.clone(), 5).unwrap();
    let good = st::to_bytes(&config, &model.params).unwrap();
    let path = dir.join("model.safetensors");
    let load =
        |bytes: &[u8], config: &ModelConfig| st::from_bytes(bytes, config, &path).unwrap_err().to_string();

    let wider = ModelConfig { n_embd: 32, ..config.clone() };
    assert!(load(&good, &wider).contains("has shape [50, 16], the configuration needs [50, 32]"));
    let deeper = ModelConfig { n_layer: 3, ..config.clone() };
    assert!(load(&good, &deeper).contains("'transformer.h.2.ln_1.weight' is missing"));
    let shallower = ModelConfig { n_layer: 1, ..config.clone() };
    assert!(load(&good, &shallower).contains("unexpected tensor 'transformer.h.1"));
    assert!(load(b"not a safetensors file", &config).contains("not a safetensors file"));

    // An integer tensor is named, not misread.
    let file = safetensors::SafeTensors::deserialize(&good).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = file.tensors();
    let ints = vec![0u8; 4 * 16];
    let i = tensors.iter().position(|(n, _)| n == "transformer.ln_f.weight").unwrap();
    tensors[i].1 = safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![16], &ints).unwrap();
    let int_file = safetensors::serialize(tensors, None).unwrap();
    assert!(load(&int_file, &config).contains("'transformer.ln_f.weight' is I32"));

    let json = |text: &str| hf_config::from_json(text, &dir.join("config.json")).unwrap_err().to_string();
    assert!(json(r#"{"model_type": "bert"}"#).contains("model_type is 'bert'"));
    assert!(json(r#"{"model_type": "llama"}"#).contains("'num_attention_heads' is missing"));
    assert!(json(r#"{"model_type": "gpt2", "n_layer": 2}"#).contains("'n_head' is missing"));
    assert!(json("{").contains("not valid JSON"));
}

/// The training forward's logits (V each) at `positions` of one sequence, with dropout off: the
/// reference the inference path is checked against.
fn forward_logits(model: &mut Trainable, seq: &[u32], positions: &[usize]) -> Vec<f32> {
    let training = std::mem::replace(&mut model.training, false);
    model.forward(seq, None, (1, seq.len())).unwrap();
    model.training = training;
    let (v, vp) = (model.config.vocab_size, model.config.padded_vocab_size());
    positions.iter().flat_map(|&p| model.logits()[p * vp..p * vp + v].to_vec()).collect()
}

#[test]
fn loading_for_inference_allocates_no_training_state() {
    let (tokens, targets) = batch(1, 1, 8, 50);
    let mut model = Trainable::init(tiny(0.0), 6).unwrap();
    assert!(model.grads.is_empty(), "gradients wait for the first step");
    model.zero_grad();
    model.forward(&tokens, Some(&targets), (1, 8)).unwrap();
    model.backward().unwrap();
    assert_eq!(model.grads.len(), model.params.len());
    // The model alone is its configuration and weights: nothing else to drop or forget.
    let gpt: Gpt = model.into_model();
    assert_eq!(gpt.weight_bytes(), 4 * gpt.params.len());
}

#[test]
fn dropout_is_seeded_and_off_at_inference() {
    let (tokens, targets) = batch(2, 2, 8, 50);
    let mut plain = Trainable::init(tiny(0.0), 7).unwrap();
    let mut dropped = Trainable::new(Gpt::from_params(tiny(0.3), plain.params.clone()).unwrap(), 7).0;
    let base = plain.forward(&tokens, Some(&targets), (2, 8)).unwrap().unwrap();
    dropped.training = false;
    assert_eq!(dropped.forward(&tokens, Some(&targets), (2, 8)).unwrap().unwrap(), base);
    dropped.training = true;
    let a = dropped.forward(&tokens, Some(&targets), (2, 8)).unwrap().unwrap();
    let b = dropped.forward(&tokens, Some(&targets), (2, 8)).unwrap().unwrap();
    assert!(a != base && a != b, "fresh masks each step");
    let mut again = Trainable::new(Gpt::from_params(tiny(0.3), plain.params.clone()).unwrap(), 7).0;
    assert_eq!(again.forward(&tokens, Some(&targets), (2, 8)).unwrap().unwrap(), a, "same seed, same masks");
    again.zero_grad();
    again.backward().unwrap();
    assert!(again.grads.iter().all(|g| g.is_finite()));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut model = Trainable::init(tiny(0.0), 8).unwrap();
    let err = |r: minillm::Result<Option<f32>>| r.unwrap_err().to_string();
    assert!(
        err(model.forward(&[1, 2, 50], None, (1, 3))).contains("token id 50 is outside the vocabulary of 50")
    );
    assert!(matches!(
        model.forward(&[1; 9], None, (1, 9)),
        Err(minillm::Error::TooLong { tokens: 9, context: 8 })
    ));
    assert!(err(model.forward(&[1; 4], None, (2, 3))).contains("do not make a batch"));
    assert!(err(model.forward(&[1; 4], Some(&[1; 3]), (1, 4))).contains("3 targets for 4 tokens"));
    model.forward(&[1; 4], None, (1, 4)).unwrap();
    assert!(model.backward().unwrap_err().to_string().contains("forward pass with targets"));
    let bad = ModelConfig { n_head: 3, ..tiny(0.0) };
    assert!(Gpt::new(bad, 1).is_err());
}

#[test]
fn whole_model_gradients_match_finite_differences() {
    gradient_check(tiny(0.0));
}

#[test]
fn models_without_biases_train_and_save_as_hf_gpt2() {
    let config = ModelConfig { bias: false, ..tiny(0.0) };
    gradient_check(config.clone());
    // Saved with zero biases (HF's GPT-2 always has them), the model loads and computes the same.
    let dir = common::temp_dir("no-bias");
    let mut model = Trainable::init(config, 3).unwrap();
    save_model(&dir, &model, None).unwrap();
    let mut loaded = Trainable::new(load_model(&dir).unwrap(), 0).0;
    assert!(loaded.config.bias);
    let (tokens, _) = batch(5, 1, 8, 50);
    model.forward(&tokens, None, (1, 8)).unwrap();
    loaded.forward(&tokens, None, (1, 8)).unwrap();
    assert_eq!(model.logits(), loaded.logits());
}

fn gradient_check(config: ModelConfig) {
    let (tokens, mut targets) = batch(3, 2, 6, 50);
    targets[1] = minillm::model::IGNORE;
    let mut model = Trainable::init(config, 9).unwrap();
    model.zero_grad();
    model.forward(&tokens, Some(&targets), (2, 6)).unwrap();
    model.backward().unwrap();
    let grads = model.grads.clone();
    // The largest gradient of every tensor, plus a few random entries of each.
    let mut rng = Rng::new(4);
    let mut checked = 0;
    for tensor in model.layout.tensors.clone() {
        let r = tensor.range();
        let biggest = r.clone().max_by(|&a, &b| grads[a].abs().total_cmp(&grads[b].abs())).unwrap();
        let picks = [biggest, r.start + rng.below(r.len()), r.start + rng.below(r.len())];
        for i in picks {
            let eps = 1e-2f32;
            let orig = model.params[i];
            model.params[i] = orig + eps;
            let up = model.forward(&tokens, Some(&targets), (2, 6)).unwrap().unwrap() as f64;
            model.params[i] = orig - eps;
            let down = model.forward(&tokens, Some(&targets), (2, 6)).unwrap().unwrap() as f64;
            model.params[i] = orig;
            let numeric = (up - down) / (2.0 * eps as f64);
            let analytic = grads[i] as f64;
            let tol = 2e-4 + 0.03 * analytic.abs();
            assert!(
                (numeric - analytic).abs() < tol,
                "{} [{}]: analytic {analytic} numeric {numeric}",
                tensor.name,
                i - r.start
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * model.layout.tensors.len());
}

#[test]
fn cached_decoding_equals_the_full_forward_across_batched_sequences() {
    use minillm::model::kv_cache::KvCache;
    let mut model = Trainable::init(tiny(0.0), 11).unwrap();
    let v = 50;
    let mut rng = Rng::new(12);
    // Three sequences with prompts of different lengths, decoded together.
    let mut seqs: Vec<Vec<u32>> =
        [1usize, 3, 5].iter().map(|&n| (0..n).map(|_| rng.below(v) as u32).collect()).collect();
    let mut cache = KvCache::new(&model, 3);
    let mut worst = 0.0f32;
    let mut compare = |model: &mut Trainable, seq: &[u32], cached: &[f32]| {
        let full = forward_logits(model, seq, &[seq.len() - 1]);
        let scale = full.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        for (a, b) in cached.iter().zip(&full) {
            worst = worst.max((a - b).abs() / scale);
        }
    };
    for (slot, seq) in seqs.clone().iter().enumerate() {
        let logits = model.prefill(&mut cache, slot, seq).unwrap();
        compare(&mut model, seq, &logits);
    }
    for step in 0..3 {
        let next: Vec<u32> = (0..3).map(|_| rng.below(v) as u32).collect();
        let slots = [0usize, 1, 2];
        let logits = model.decode(&mut cache, &slots, &next).unwrap().to_vec();
        for (i, seq) in seqs.iter_mut().enumerate() {
            seq.push(next[i]);
            compare(&mut model, seq, &logits[i * v..(i + 1) * v]);
        }
        assert_eq!(cache.len(2), 5 + step + 1);
    }
    assert!(worst < 1e-5, "cached vs full forward: relative error {worst}");
    // Slot 2 now holds all 8 positions of the context: one more token is refused, not wrapped.
    let err = model.decode(&mut cache, &[2], &[1]).unwrap_err().to_string();
    assert!(err.contains("slot 2 is full"), "{err}");
    assert!(model.decode(&mut cache, &[0, 0], &[1, 2]).is_err());
    cache.clear(2);
    assert!(model.prefill(&mut cache, 2, &[1, 2]).is_ok());
}

#[test]
fn generation_through_the_cache_equals_rereading_the_window() {
    use minillm::sample::{SamplerConfig, generate};
    let mut model = Trainable::init(tiny(0.0), 13).unwrap();
    let prompt = [3u32, 14, 15];
    let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
    // 12 new tokens with a context of 8: the window slides after the fifth.
    let cached = generate(&model, &prompt, 12, &greedy, &mut Rng::new(1), &[], |_, _| true).unwrap();
    let mut naive = prompt.to_vec();
    for _ in 0..12 {
        let window = &naive[naive.len().saturating_sub(8)..];
        let logits = forward_logits(&mut model, window, &[window.len() - 1]);
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        naive.push(next);
    }
    assert_eq!(cached, naive);
    // Any of several end tokens ends it (generation_config.json may list several), before it.
    let first_new = cached[prompt.len()];
    let unused = (0..tiny(0.0).vocab_size as u32).find(|id| !cached.contains(id)).unwrap();
    let ended =
        generate(&model, &prompt, 12, &greedy, &mut Rng::new(1), &[unused, first_new], |_, _| true).unwrap();
    assert_eq!(ended, prompt);
}

#[test]
fn eval_scores_every_token_once_whatever_the_batching() {
    let mut model = Trainable::init(tiny(0.1), 5).unwrap();
    let t = model.config.block_size;
    let v = model.config.vocab_size;
    let mut rng = Rng::new(9);
    // Three full windows and a remainder of 5, so the tail and a short last batch both occur.
    let tokens: Vec<u32> = (0..3 * t + 6).map(|_| rng.below(v) as u32).collect();
    let mut want = 0.0f64;
    for start in (0..tokens.len() - 1).step_by(t) {
        let end = (start + t).min(tokens.len() - 1);
        let window = &tokens[start..end];
        let positions: Vec<usize> = (0..window.len()).collect();
        let logits = forward_logits(&mut model, window, &positions);
        for (i, row) in logits.chunks_exact(v).enumerate() {
            let p = minillm::sample::probabilities(row)[tokens[start + i + 1] as usize];
            want -= p.ln();
        }
    }
    let score = minillm::eval::evaluate(&model, &tokens, 100).unwrap();
    assert_eq!(score.tokens, tokens.len() - 1);
    let got = score.loss * score.tokens as f64;
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
    assert!((score.bits_per_byte - want / std::f64::consts::LN_2 / 100.0).abs() < 1e-4);
    assert!((score.perplexity - score.loss.exp()).abs() < 1e-9);
    // Token by token through the KV cache, the same windows score the same.
    for batch in [1, 3] {
        let score = minillm::eval::evaluate_decoding(&model, &tokens, batch, 100).unwrap();
        assert_eq!(score.tokens, tokens.len() - 1);
        let got = score.loss * score.tokens as f64;
        assert!((got - want).abs() < 1e-3 * want, "decoding, batch {batch}: {got} vs {want}");
    }
    assert!(minillm::eval::evaluate(&model, &tokens[..1], 1).is_err());
    assert!(minillm::eval::evaluate_decoding(&model, &tokens[..1], 1, 1).is_err());
}

#[test]
fn chunked_eval_scores_the_second_half_of_each_bos_led_chunk_as_llama_perplexity_does() {
    // Byte tokens and a <s> that starts every text, on a model of their 257 ids.
    let tok =
        minillm::Tokenizer::bytes().with_added_specials(&["<s>"]).unwrap().with_prefix(Some(256)).unwrap();
    let mut model = Trainable::init(ModelConfig { vocab_size: 257, ..tiny(0.1) }, 5).unwrap();
    let (n, v) = (model.config.block_size, 257);
    let mut rng = Rng::new(4);
    // Three whole chunks and a partial one, which is left out.
    let tokens: Vec<u32> = (0..3 * n + 5).map(|_| rng.below(256) as u32).collect();
    let first = n / 2;
    let mut want = 0.0f64;
    for start in (0..3 * n).step_by(n) {
        let mut chunk = tokens[start..start + n].to_vec();
        chunk[0] = 256;
        let positions: Vec<usize> = (first..n - 1).collect();
        let logits = forward_logits(&mut model, &chunk[..n - 1], &positions);
        for (row, &p) in logits.chunks_exact(v).zip(&positions) {
            want -= minillm::sample::probabilities(row)[chunk[p + 1] as usize].ln();
        }
    }
    let score = minillm::eval::evaluate_chunks(&model, &tokens, n, &tok).unwrap();
    assert_eq!((score.tokens, score.bytes), (3 * (n - 1 - first), 3 * (n - 1 - first)));
    let got = score.loss * score.tokens as f64;
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    assert!(minillm::eval::evaluate_chunks(&model, &tokens[..n - 1], n, &tok).is_err());
    assert!(minillm::eval::evaluate_chunks(&model, &tokens, n + 1, &tok).is_err());
}

#[test]
fn batched_generation_gives_each_sequence_what_it_would_get_alone() {
    use minillm::sample::{SamplerConfig, generate, generate_batch};
    let model = Gpt::new(tiny(0.0), 21).unwrap();
    // Prompts of different lengths; 10 new tokens with a context of 8, so windows slide at
    // different steps; temperature sampling, so the generators must stay paired with sequences.
    let prompts = vec![vec![1u32, 2, 3], vec![4u32], vec![5u32, 6, 7, 8, 9, 10]];
    let config = SamplerConfig { temperature: 1.0, top_k: 10, ..Default::default() };
    let mut rngs: Vec<Rng> = (0..3).map(|i| Rng::new(100 + i)).collect();
    // The second sequence is cut after 4 tokens by its callback; the others run to the end.
    let mut counts = [0usize; 3];
    let batched = generate_batch(&model, &prompts, 10, &config, &mut rngs, &[], &mut [], |i, _, _| {
        counts[i] += 1;
        !(i == 1 && counts[i] == 4)
    })
    .unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let mut n = 0;
        let alone = generate(&model, prompt, 10, &config, &mut Rng::new(100 + i as u64), &[], |_, _| {
            n += 1;
            !(i == 1 && n == 4)
        })
        .unwrap();
        assert_eq!(batched[i], alone, "sequence {i}");
    }
    assert_eq!(batched[1].len(), 1 + 4);
}

/// What the server's `echo` + `logprobs` returns: each token's log-probability given the ones
/// before it sums to the loss `evaluate` reports, and the alternatives are the likeliest tokens.
#[test]
fn prompt_log_probabilities_add_up_to_the_evaluated_loss() {
    let model = Gpt::new(tiny(0.0), 3).unwrap();
    let tokens: Vec<u32> = (0..8).map(|i| (i * 7 + 3) % 50).collect();
    let scored = minillm::eval::prompt_logprobs(&model, &tokens, 3).unwrap();
    assert_eq!(scored.len(), tokens.len() - 1);
    let total: f64 = scored.iter().map(|(lp, _)| -(*lp as f64)).sum();
    let score = minillm::eval::evaluate(&model, &tokens, 8).unwrap();
    assert!((total / 7.0 - score.loss).abs() < 1e-5, "{total} vs {}", score.loss);
    // And the training forward's loss (the path checked against PyTorch), computed apart from
    // the inference path the log-probabilities come through.
    let (mut trainable, _) = Trainable::new(Gpt::new(tiny(0.0), 3).unwrap(), 0);
    trainable.training = false;
    let loss = trainable.forward(&tokens[..7], Some(&tokens[1..]), (1, 7)).unwrap().unwrap();
    assert!((total / 7.0 - loss as f64).abs() < 1e-5, "{total} vs training forward {loss}");
    for (lp, top) in &scored {
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "most likely first");
        assert!(top[0].1 >= *lp && *lp <= 0.0);
    }
    assert!(minillm::eval::prompt_logprobs(&model, &[1], 3).unwrap().is_empty());
    let long: Vec<u32> = vec![1; 10];
    assert!(minillm::eval::prompt_logprobs(&model, &long, 0).unwrap_err().to_string().contains("context"));
}

/// Prompts prefilled together get what each gets alone, bit for bit: short ones (the
/// matrix-vector kernels), long ones (GEMM, chunked past a pass's 256 rows), mixed in one call,
/// for GPT-2's and the LLaMA family's layers, in f32 and in blocks, and with matrices too large
/// for the cache. Then one decoding step of all of them gives each what it gets stepping alone
/// (for the large matrices, the matrix-vector kernels up to 63 sequences, not 15).
#[test]
fn prompts_prefilled_together_get_what_each_gets_alone() {
    use minillm::model::kv_cache::KvCache;
    use minillm::quant::QuantType;
    let mut llama = ModelConfig::preset("smollm2-135m").unwrap();
    (llama.n_layer, llama.vocab_size, llama.block_size) = (1, 300, 600);
    let gpt2 = ModelConfig { block_size: 600, n_embd: 32, ..tiny(0.0) };
    let wide = ModelConfig { n_layer: 1, n_head: 4, n_embd: 512, vocab_size: 300, ..gpt2.clone() };
    let mut rng = Rng::new(31);
    for (config, quantize) in [(gpt2.clone(), false), (llama, false), (gpt2, true), (wide, false)] {
        let mut model = Gpt::new(config, 5).unwrap();
        if quantize {
            model.quantize(QuantType::Q8_0, None).unwrap();
        }
        let v = model.config.vocab_size;
        let prompts: Vec<Vec<u32>> =
            [3usize, 1, 40, 7, 300, 16, 5, 520, 2, 63, 64, 20, 1, 2, 3, 4, 5, 6, 7, 8]
                .iter()
                .map(|&n| (0..n).map(|_| rng.below(v) as u32).collect())
                .collect();
        let slots = prompts.len() + 1;
        let mut alone = KvCache::new(&model, slots);
        let want: Vec<Vec<f32>> =
            prompts.iter().enumerate().map(|(s, p)| model.prefill(&mut alone, s + 1, p).unwrap()).collect();
        let mut together = KvCache::new(&model, slots);
        let batch: Vec<(usize, &[u32])> = prompts.iter().enumerate().map(|(s, p)| (s + 1, &p[..])).collect();
        let got = model.prefill_batch(&mut together, &batch).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "prompt {i} ({} tokens), quantized {quantize}", prompts[i].len());
            assert_eq!(together.len(i + 1), prompts[i].len());
        }
        // And the caches hold the same keys and values: the next step decodes the same, all
        // sequences in one step as each stepping alone.
        // (Up to 15 sequences in a step for small matrices, 63 for large ones, as the 512- and
        // 576-wide models' are: from there on the step goes through GEMM, whose sums run in
        // another order.)
        let step = if model.config.n_embd >= 512 { prompts.len() } else { 15 };
        let (slots, next): (Vec<usize>, Vec<u32>) = (1..=step).map(|s| (s, s as u32)).unzip();
        let stepped = model.decode(&mut together, &slots, &next).unwrap().to_vec();
        for (i, (&slot, &token)) in slots.iter().zip(&next).enumerate() {
            let a = model.decode(&mut alone, &[slot], &[token]).unwrap();
            assert!(a == &stepped[i * v..(i + 1) * v], "decoding slot {slot}, quantized {quantize}");
        }
        // Refused before anything runs: a slot twice, a used slot, an empty or unknown prompt.
        let mut cache = KvCache::new(&model, 3);
        for bad in [vec![(0, &[1u32][..]), (0, &[2][..])], vec![(1, &[][..])], vec![(2, &[v as u32][..])]] {
            assert!(model.prefill_batch(&mut cache, &bad).is_err());
            assert!((0..3).all(|s| cache.is_empty(s)));
        }
        model.prefill(&mut cache, 0, &[1]).unwrap();
        assert!(model.prefill_batch(&mut cache, &[(0, &[1][..])]).is_err());
    }
}
