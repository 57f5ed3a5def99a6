//! Fine-tuning: the chat template's loss mask, growing a model for new tokens, and DPO's loss,
//! metrics and gradients against PyTorch (scripts/reference/dpo_tiny.py).

use minillm::chat::{ASSISTANT, ChatTemplate, END, Message, Role, USER, add_chat_tokens};
use minillm::io::load_model;
use minillm::model::IGNORE;
use minillm::model::{Gpt, ModelConfig, Trainable};
use minillm::tokenizer::formats;
use minillm::train::finetune::{Examples, Pair, Sequence, sequence};
use minillm::train::objective::Dpo;
use minillm::train::{Stage, TrainConfig, Trainer};
use safetensors::SafeTensors;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny")
}

fn conversation() -> Vec<Message> {
    vec![
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "The capital of France?"),
        Message::new(Role::Assistant, "Paris."),
        Message::new(Role::User, "And Italy? <|end|>"),
        Message::new(Role::Assistant, "Rome."),
    ]
}

#[test]
fn only_the_assistants_tokens_are_targets() {
    let tok = formats::read_hf_json(&fixture().join("tokenizer.json")).unwrap();
    let model = load_model(&fixture()).unwrap();
    let (tok, model) = add_chat_tokens(&tok, &model).unwrap();
    let mut model = Trainable::new(model, 0).0;
    let template = ChatTemplate::of(&tok).unwrap();
    let r = template.render(&tok, &conversation(), false);
    // The rendering is the documented text, with role tokens as single special ids.
    let text = tok.decode(&r.ids).unwrap();
    assert_eq!(
        text,
        "<|system|>\nBe brief.<|end|>\n<|user|>\nThe capital of France?<|end|>\n<|assistant|>\nParis.<|end|>\n\
         <|user|>\nAnd Italy? <|end|><|end|>\n<|assistant|>\nRome.<|end|>\n"
    );
    let end = tok.special_id(END).unwrap();
    assert_eq!(r.ids.iter().filter(|&&id| id == end).count(), 5, "user text cannot forge <|end|>");
    // The trainable tokens decode to exactly the replies, each closed by <|end|>.
    let trainable: Vec<u32> = r.ids.iter().zip(&r.trainable).filter(|x| *x.1).map(|x| *x.0).collect();
    assert_eq!(tok.decode(&trainable).unwrap(), "Paris.<|end|>Rome.<|end|>");

    let dialogue = minillm::chat::Dialogue::Template(template);
    let seq = sequence(&dialogue, &tok, &conversation(), model.config.block_size).unwrap().unwrap();
    assert_eq!(seq.counted(), trainable.len());
    for (i, &target) in seq.targets.iter().enumerate() {
        assert_eq!(target != IGNORE, r.trainable[i + 1], "position {i}");
    }
    // The loss is the mean over the replies' positions alone: prompt tokens change nothing.
    let t = seq.tokens.len();
    let masked = model.forward(&seq.tokens, Some(&seq.targets), (1, t)).unwrap().unwrap();
    let all: Vec<u32> = r.ids[1..].to_vec();
    model.forward(&seq.tokens, Some(&all), (1, t)).unwrap();
    let per_position = model.token_losses().to_vec();
    let want: f64 =
        seq.targets.iter().zip(&per_position).filter(|x| *x.0 != IGNORE).map(|x| *x.1 as f64).sum::<f64>()
            / seq.counted() as f64;
    assert!((masked as f64 - want).abs() < 1e-5, "{masked} vs {want}");
    // A generation prompt ends by opening the assistant's turn.
    let prompt = template.render(&tok, &conversation()[..2], true);
    assert!(tok.decode(&prompt.ids).unwrap().ends_with("<|assistant|>\n"));
    assert!(prompt.trainable.iter().all(|t| !t));
}

#[test]
fn adding_chat_tokens_keeps_every_old_id_and_its_logits() {
    let tok = formats::read_hf_json(&fixture().join("tokenizer.json")).unwrap();
    let model = load_model(&fixture()).unwrap();
    let (grown_tok, grown) = add_chat_tokens(&tok, &model).unwrap();
    let (mut model, mut grown) = (Trainable::new(model, 0).0, Trainable::new(grown, 0).0);
    assert_eq!(grown_tok.vocab_size(), tok.vocab_size() + 4);
    assert_eq!(grown.config.vocab_size, grown_tok.vocab_size());
    let text = "It was the best of times";
    let ids = tok.encode_ordinary(text);
    assert_eq!(grown_tok.encode_ordinary(text), ids);
    assert_eq!(grown_tok.special_id(USER), Some(513));
    assert_eq!(grown_tok.special_id(ASSISTANT), Some(514));
    model.forward(&ids, None, (1, ids.len())).unwrap();
    grown.forward(&ids, None, (1, ids.len())).unwrap();
    let (v, vp, gvp) = (512, model.config.padded_vocab_size(), grown.config.padded_vocab_size());
    for (row, grown_row) in model.logits().chunks(vp).zip(grown.logits().chunks(gvp)) {
        assert_eq!(&row[..v], &grown_row[..v], "old tokens' logits changed");
    }
    // New rows are the mean embedding, not noise and not zero.
    let c = grown.config.n_embd;
    let wte = &grown.params[grown.layout.wte.clone()];
    let mean: f32 = (0..v).map(|r| wte[r * c]).sum::<f32>() / v as f32;
    assert!((wte[512 * c] - mean).abs() < 1e-6);
    // Adding them again changes nothing.
    let (again, _) = add_chat_tokens(&grown_tok, &grown).unwrap();
    assert_eq!(again.vocab_size(), grown_tok.vocab_size());
}

fn reference() -> (Vec<u8>, serde_json::Value) {
    let bytes = std::fs::read(fixture().join("dpo_reference.safetensors")).unwrap();
    let settings =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("dpo_reference.json")).unwrap())
            .unwrap();
    (bytes, settings)
}

fn values<T: Copy>(st: &SafeTensors, name: &str, width: usize, f: impl Fn(&[u8]) -> T) -> Vec<T> {
    st.tensor(name)
        .unwrap_or_else(|_| panic!("fixture lacks {name}"))
        .data()
        .chunks_exact(width)
        .map(f)
        .collect()
}

fn rel_error(ours: &[f32], theirs: &[f32]) -> f64 {
    let diff = ours.iter().zip(theirs).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / theirs.iter().fold(1e-12f64, |m, &b| m.max((b as f64).abs()))
}

#[test]
fn dpo_loss_metrics_and_gradients_match_pytorch() {
    let (bytes, settings) = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (pairs, t) =
        (settings["pairs"].as_u64().unwrap() as usize, settings["context"].as_u64().unwrap() as usize);
    let ints = |name: &str| -> Vec<u32> {
        values(&st, name, 4, |c| i32::from_le_bytes(c.try_into().unwrap()))
            .into_iter()
            .map(|x| if x < 0 { IGNORE } else { x as u32 })
            .collect()
    };
    let floats = |name: &str| values(&st, name, 4, |c| f32::from_le_bytes(c.try_into().unwrap()));
    let doubles = |name: &str| values(&st, name, 8, |c| f64::from_le_bytes(c.try_into().unwrap()));
    let (ct, cg, rt, rg) =
        (ints("chosen_tokens"), ints("chosen_targets"), ints("rejected_tokens"), ints("rejected_targets"));
    let (ref_c, ref_r) = (doubles("ref_chosen"), doubles("ref_rejected"));
    let make = || -> Vec<Pair> {
        (0..pairs)
            .map(|i| {
                let row = i * t..(i + 1) * t;
                Pair {
                    chosen: Sequence { tokens: ct[row.clone()].to_vec(), targets: cg[row.clone()].to_vec() },
                    rejected: Sequence { tokens: rt[row.clone()].to_vec(), targets: rg[row].to_vec() },
                    ref_chosen: ref_c[i],
                    ref_rejected: ref_r[i],
                }
            })
            .collect()
    };
    let model = load_model(&fixture()).unwrap();
    let tok = formats::read_hf_json(&fixture().join("tokenizer.json")).unwrap();
    let config = TrainConfig {
        stage: Stage::Dpo,
        beta: settings["beta"].as_f64().unwrap() as f32,
        batch_size: pairs,
        grad_clip: 0.0,
        max_steps: 1,
        warmup_steps: 0,
        ..TrainConfig::default()
    };
    let dpo = Dpo::new(Examples { train: make(), val: make() }, config.beta, 1);
    let mut trainer = Trainer::with_objective(config, model, tok, Box::new(dpo)).unwrap();
    let stats = trainer.train_step().unwrap();
    let want_loss = doubles("loss")[0];
    let mut worst = vec![("loss".to_string(), ((stats.loss as f64 - want_loss) / want_loss).abs())];
    let d = stats.dpo.unwrap();
    let m = doubles("metrics");
    for (name, ours, theirs) in [
        ("rewards/chosen", d.chosen_reward, m[0]),
        ("rewards/rejected", d.rejected_reward, m[1]),
        ("rewards/accuracies", d.accuracy, m[2]),
        ("rewards/margins", d.margin, m[3]),
    ] {
        worst.push((name.into(), (ours as f64 - theirs).abs() / theirs.abs().max(1e-3)));
    }
    let (v, c) = (trainer.model.config.vocab_size, trainer.model.config.n_embd);
    for tensor in &trainer.model.layout.tensors {
        let mut ours = &trainer.model.grads[tensor.range()];
        if tensor.name == "wte.weight" {
            ours = &ours[..v * c];
        }
        worst.push((
            format!("grad {}", tensor.name),
            rel_error(ours, &floats(&format!("grad.transformer.{}", tensor.name))),
        ));
    }
    worst.sort_by(|x, y| y.1.total_cmp(&x.1));
    for (name, err) in &worst {
        assert!(*err < 1e-4, "{name}: relative error {err:.2e}");
    }
}

#[test]
fn dpo_gradients_match_finite_differences_through_the_model() {
    let config = ModelConfig {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 8,
        vocab_size: 20,
        dropout: 0.0,
        bias: true,
        arch: Default::default(),
    };
    let model = Gpt::new(config, 3).unwrap();
    let seq = |tokens: [u32; 6], first_target: usize| {
        let targets =
            (0..6).map(|i| if i >= first_target && i < 5 { tokens[i + 1] } else { IGNORE }).collect();
        Sequence { tokens: tokens.to_vec(), targets }
    };
    let pairs = || {
        vec![
            Pair {
                chosen: seq([1, 2, 3, 4, 5, 6], 1),
                rejected: seq([1, 2, 9, 9, 8, 0], 1),
                ref_chosen: -12.0,
                ref_rejected: -11.0,
            },
            Pair {
                chosen: seq([7, 3, 3, 1, 0, 0], 2),
                rejected: seq([7, 3, 5, 5, 5, 0], 2),
                ref_chosen: -8.0,
                ref_rejected: -9.5,
            },
        ]
    };
    let tok = minillm::Tokenizer::bytes();
    let train = |params: &[f32]| -> (f32, Vec<f32>) {
        let m = Gpt::from_params(model.config.clone(), params.to_vec()).unwrap();
        let cfg = TrainConfig {
            stage: Stage::Dpo,
            beta: 0.5,
            batch_size: 2,
            grad_clip: 0.0,
            lr: 1e-9,
            min_lr: 0.0,
            ..TrainConfig::default()
        };
        let dpo = Dpo::new(Examples { train: pairs(), val: pairs() }, cfg.beta, 1);
        let mut t = Trainer::with_objective(cfg, m, tok.clone(), Box::new(dpo)).unwrap();
        let loss = t.train_step().unwrap().loss;
        (loss, t.model.grads.clone())
    };
    let (_, grads) = train(&model.params);
    let mut rng = minillm::rng::Rng::new(5);
    for _ in 0..12 {
        let i = rng.below(model.params.len());
        let h = 1e-2f32;
        let (mut plus, mut minus) = (model.params.clone(), model.params.clone());
        plus[i] += h;
        minus[i] -= h;
        let fd = (train(&plus).0 as f64 - train(&minus).0 as f64) / (2.0 * h as f64);
        let tol = 2e-3 + 2e-2 * fd.abs();
        assert!(
            (fd - grads[i] as f64).abs() < tol,
            "parameter {i}: finite difference {fd}, gradient {}",
            grads[i]
        );
    }
}
