//! The whole model against PyTorch + HF transformers: logits, loss, every parameter's gradient,
//! ten AdamW steps, greedy generation, attention and residual norms, from fixtures written by
//! scripts/reference/gpt2_tiny.py (GPT-2) and scripts/reference/llama_tiny.py (a Llama with
//! grouped-query attention, an untied head and llama3 rope scaling; a Qwen2 with q/k/v biases
//! and one key/value head).

use minillm::io::load_model;
use minillm::model::IGNORE;
use minillm::model::Trainable;
use minillm::model::params::has_vocabulary_rows;
use minillm::train::adamw::{AdamW, AdamWConfig};
use safetensors::SafeTensors;
use std::path::PathBuf;

const FIXTURES: [&str; 3] = ["gpt2_tiny", "llama_tiny", "qwen2_tiny"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture lacks {name}"));
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn i32s(st: &SafeTensors, name: &str) -> Vec<i32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// max |ours - theirs| / max |theirs|: the error relative to the tensor's scale.
fn rel_error(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    let diff = ours.iter().zip(theirs).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    let scale = theirs.iter().fold(1e-12f64, |m, &b| m.max((b as f64).abs()));
    diff / scale
}

#[test]
fn logits_loss_gradients_and_adamw_match_pytorch() {
    for name in FIXTURES {
        logits_loss_gradients_and_adamw_match_pytorch_for(name);
    }
}

fn logits_loss_gradients_and_adamw_match_pytorch_for(fixture_name: &str) {
    let dir = fixture(fixture_name);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let (b, t) =
        (settings["batch"].as_u64().unwrap() as usize, settings["context"].as_u64().unwrap() as usize);
    let tokens: Vec<u32> = i32s(&reference, "tokens").into_iter().map(|x| x as u32).collect();
    let targets: Vec<u32> =
        i32s(&reference, "targets").into_iter().map(|x| if x < 0 { IGNORE } else { x as u32 }).collect();

    let mut model = Trainable::new(load_model(&dir).unwrap(), 0).0;
    let (v, vp, c) = (model.config.vocab_size, model.config.padded_vocab_size(), model.config.n_embd);
    model.forward(&tokens, None, (b, t)).unwrap();
    let logits: Vec<f32> = model.logits().chunks(vp).flat_map(|row| &row[..v]).copied().collect();
    let mut worst = vec![("logits".to_string(), rel_error(&logits, &f32s(&reference, "logits")))];

    let loss = model.forward(&tokens, Some(&targets), (b, t)).unwrap().unwrap();
    let want_loss = f32s(&reference, "loss")[0];
    worst.push(("loss".into(), ((loss - want_loss) / want_loss).abs() as f64));

    model.zero_grad();
    model.backward().unwrap();
    let prefix = if fixture_name == "gpt2_tiny" { "transformer." } else { "" };
    for tensor in &model.layout.tensors {
        let mut ours = &model.grads[tensor.range()];
        if has_vocabulary_rows(&tensor.name) {
            ours = &ours[..v * c];
        }
        let theirs = f32s(&reference, &format!("grad.{prefix}{}", tensor.name));
        worst.push((format!("grad {}", tensor.name), rel_error(ours, &theirs)));
    }

    let a = &settings["adamw"];
    let f = |k: &str| a[k].as_f64().unwrap() as f32;
    let config = AdamWConfig {
        lr: f("lr"),
        beta1: a["betas"][0].as_f64().unwrap() as f32,
        beta2: a["betas"][1].as_f64().unwrap() as f32,
        eps: f("eps"),
        weight_decay: f("weight_decay"),
    };
    let mut model = Trainable::new(load_model(&dir).unwrap(), 0).0;
    let mut opt = AdamW::new(config.clone(), &model.layout);
    let mut losses = Vec::new();
    for _ in 0..10 {
        model.zero_grad();
        losses.push(model.forward(&tokens, Some(&targets), (b, t)).unwrap().unwrap());
        model.backward().unwrap();
        let mut params = std::mem::take(&mut model.params);
        opt.step(&mut params, &model.grads, config.lr);
        model.params = params;
    }
    worst.push(("10 AdamW losses".into(), rel_error(&losses, &f32s(&reference, "adamw_losses"))));

    worst.sort_by(|x, y| y.1.total_cmp(&x.1));
    println!("{fixture_name}: worst relative errors against PyTorch:");
    for (name, err) in worst.iter().take(5) {
        println!("  {err:.2e}  {name}");
    }
    for (name, err) in &worst {
        assert!(*err < 1e-4, "{fixture_name} {name}: relative error {err:.2e}");
    }
}

fn load_reference(name: &str) -> (Vec<u8>, serde_json::Value) {
    let dir = fixture(name);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let settings =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    (bytes, settings)
}

#[test]
fn greedy_generation_matches_hf_generate_token_for_token() {
    for name in FIXTURES {
        greedy_generation_matches_hf_generate_token_for_token_for(name);
    }
}

fn greedy_generation_matches_hf_generate_token_for_token_for(fixture_name: &str) {
    use minillm::rng::Rng;
    use minillm::sample::{SamplerConfig, generate};
    let (bytes, settings) = load_reference(fixture_name);
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let n_prompt = settings["greedy_prompt"].as_u64().unwrap() as usize;
    let n_new = settings["greedy_new"].as_u64().unwrap() as usize;
    let penalty = settings["repetition_penalty"].as_f64().unwrap() as f32;
    let model = load_model(&fixture(fixture_name)).unwrap();
    for (name, repetition_penalty) in [("greedy_tokens", 1.0), ("greedy_penalized_tokens", penalty)] {
        let want: Vec<u32> = i32s(&reference, name).into_iter().map(|x| x as u32).collect();
        let config = SamplerConfig { temperature: 0.0, repetition_penalty, ..Default::default() };
        let got =
            generate(&model, &want[..n_prompt], n_new, &config, &mut Rng::new(0), &[], |_, _| true).unwrap();
        assert_eq!(got, want, "{fixture_name} {name}: HF transformers generated otherwise");
    }
}

#[test]
fn inspect_matches_pytorch_attention_and_softmax() {
    for name in FIXTURES {
        inspect_matches_pytorch_attention_and_softmax_for(name);
    }
}

fn inspect_matches_pytorch_attention_and_softmax_for(fixture_name: &str) {
    use minillm::inspect::{Which, attention_maps, inspect};
    use minillm::sample::probabilities;
    let (bytes, settings) = load_reference(fixture_name);
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let t = settings["context"].as_u64().unwrap() as usize;
    let tokens: Vec<u32> = i32s(&reference, "tokens")[..t].iter().map(|&x| x as u32).collect();
    let logits = f32s(&reference, "logits");
    let model = load_model(&fixture(fixture_name)).unwrap();
    let (v, nh, layers) = (model.config.vocab_size, model.config.n_head, model.config.n_layer);
    let tok = minillm::Tokenizer::bytes(); // any tokenizer: only the texts of tokens depend on it
    let all = attention_maps(&model, &tokens).unwrap();
    assert_eq!(all.len(), layers * nh * t * t);
    for layer in 0..layers {
        let theirs = f32s(&reference, &format!("attentions.{layer}"));
        let err = rel_error(&all[layer * nh * t * t..(layer + 1) * nh * t * t], &theirs);
        assert!(err < 1e-5, "{fixture_name} layer {layer}: attention_maps differs by {err:.2e}");
        for head in 0..nh {
            let seen = inspect(&model, &tok, &tokens, v, Some(Which { layer, head: Some(head) })).unwrap();
            let ours: Vec<f32> = seen.attention.unwrap().weights.concat();
            let err = rel_error(&ours, &theirs[head * t * t..(head + 1) * t * t]);
            assert!(err < 1e-5, "{fixture_name} layer {layer} head {head}: attention differs by {err:.2e}");
        }
        // The mean over heads is the mean of the heads.
        let seen = inspect(&model, &tok, &tokens, 1, Some(Which { layer, head: None })).unwrap();
        let mean = &seen.attention.unwrap().weights;
        let want = (0..nh).map(|h| theirs[h * t * t + (t - 1) * t]).sum::<f32>() / nh as f32;
        assert!((mean[t - 1][0] - want).abs() < 1e-5);
    }
    let seen = inspect(&model, &tok, &tokens, v, None).unwrap();
    let want = probabilities(&logits[(t - 1) * v..t * v]);
    let total: f64 = seen.next.iter().map(|c| c.prob).sum();
    assert!((total - 1.0).abs() < 1e-9, "probabilities sum to {total}");
    assert!(seen.next.windows(2).all(|w| w[0].prob >= w[1].prob), "not sorted");
    for c in &seen.next {
        assert!(
            (c.prob - want[c.id as usize]).abs() < 1e-6,
            "token {}: {} vs {}",
            c.id,
            c.prob,
            want[c.id as usize]
        );
    }
    // The residual stream's length at each stage, against HF's hidden states.
    let norms = f32s(&reference, "residual_norms");
    assert_eq!(seen.residual_norms.len(), layers + 1);
    for (stage, ours) in seen.residual_norms.iter().enumerate() {
        let err = rel_error(ours, &norms[stage * t..(stage + 1) * t]);
        assert!(err < 1e-5, "{fixture_name}: residual norm at stage {stage} differs by {err:.2e}");
    }
    assert_eq!(seen.surprisal[0], None);
    for i in 1..t {
        let p = probabilities(&logits[(i - 1) * v..i * v])[tokens[i] as usize];
        let ours = seen.surprisal[i].unwrap();
        assert!((ours - -p.log2()).abs() < 1e-4, "surprisal {i}: {ours} vs {}", -p.log2());
    }
}
