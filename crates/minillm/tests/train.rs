//! The training loop: exact resume, a NaN stops the run, bad input is refused before work.

mod common;

use minillm::Tokenizer;
use minillm::data::{ShardInfo, tokenizer_hash, write_shard};
use minillm::tokenizer::formats;
use minillm::train::{TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// Character-level shards of the built-in corpus, as `minillm prepare --tokenizer bytes` makes.
fn data(name: &str) -> PathBuf {
    let dir = common::temp_dir(name);
    let tok = Tokenizer::bytes();
    let ids: Vec<u32> = minillm::corpus::builtin()[..60_000].bytes().map(u32::from).collect();
    let info = ShardInfo { vocab_size: 256, tokenizer_hash: tokenizer_hash(&tok) };
    write_shard(&dir.join("train.bin"), &ids[..54_000], info).unwrap();
    write_shard(&dir.join("val.bin"), &ids[54_000..], info).unwrap();
    formats::save(&tok, &dir.join("tokenizer.json")).unwrap();
    dir
}

fn config() -> TrainConfig {
    TrainConfig {
        model: "d1".into(),
        context: Some(32),
        dropout: 0.1,
        batch_size: 4,
        grad_accum: 2,
        max_steps: 8,
        warmup_steps: 2,
        eval_every: 4,
        eval_batches: 3,
        checkpoint_every: 4,
        ..TrainConfig::default()
    }
}

fn run(trainer: &mut Trainer, steps: usize) -> Vec<f32> {
    (0..steps).map(|_| trainer.train_step().unwrap().loss).collect()
}

#[test]
fn resuming_gives_the_same_losses_and_weights_bit_for_bit() {
    let data = data("resume-data");
    let mut straight = Trainer::new(config(), &data).unwrap();
    let all = run(&mut straight, 8);
    assert!(all[7] < all[0], "training should lower the loss: {all:?}");

    let run_dir = common::temp_dir("resume-run");
    let mut first = Trainer::new(config(), &data).unwrap();
    let mut losses = run(&mut first, 4);
    first.evaluate().unwrap(); // evaluation must not disturb the training stream
    first.save_checkpoint(&run_dir).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&run_dir, &data).unwrap();
    assert_eq!(resumed.step, 4);
    losses.extend(run(&mut resumed, 4));
    assert_eq!(losses, all);
    assert_eq!(resumed.model.params, straight.model.params);
}

#[test]
fn a_nan_stops_the_run_and_keeps_the_last_checkpoint() {
    let data = data("nan-data");
    let run_dir = common::temp_dir("nan-run");
    let mut trainer = Trainer::new(config(), &data).unwrap();
    run(&mut trainer, 2);
    trainer.save_checkpoint(&run_dir).unwrap();
    trainer.model.params[0] = f32::NAN; // wte row 0 reaches every logit through the tied head
    let err = trainer.train_step().unwrap_err().to_string();
    assert!(err.contains("at step 3") && err.contains("NaN"), "{err}");
    let again = Trainer::resume(&run_dir, &data).unwrap();
    assert_eq!(again.step, 2);
    assert!(again.model.params.iter().all(|p| p.is_finite()));
}

#[test]
fn evaluation_reports_loss_perplexity_and_bits_per_byte() {
    let data = data("eval-data");
    let mut trainer = Trainer::new(TrainConfig { eval_batches: 0, ..config() }, &data).unwrap();
    let e = trainer.evaluate().unwrap();
    // An untrained model over 256 byte tokens is close to uniform: ln 256 nats, 8 bits per byte.
    assert!((e.val_loss - 256f32.ln()).abs() < 0.2, "{e:?}");
    assert!((e.bits_per_byte - 8.0).abs() < 0.3, "{e:?}");
    assert!((e.perplexity - e.val_loss.exp()).abs() < 1e-3);
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let path = Path::new("train.toml");
    let err = TrainConfig::from_toml("learning_rate = 0.1", path).unwrap_err().to_string();
    assert!(err.contains("unknown field `learning_rate`"), "{err}");
    let data = data("bad-data");
    let err = |c: TrainConfig| Trainer::new(c, &data).err().expect("should fail").to_string();
    assert!(err(TrainConfig { context: Some(60_000), model: "baby".into(), ..config() }).contains("context"));
    assert!(err(TrainConfig { model: "huge".into(), ..config() }).contains("unknown preset"));
    assert!(err(TrainConfig { batch_size: 0, ..config() }).contains("at least 1"));
    let missing = Trainer::new(config(), Path::new("/nonexistent/data")).err().unwrap().to_string();
    assert!(missing.contains("/nonexistent/data holds no train.bin"), "{missing}");
    // Shards made with another tokenizer.
    formats::save(Tokenizer::gpt2(), &data.join("tokenizer.json")).unwrap();
    assert!(Trainer::new(config(), &data).err().unwrap().to_string().contains("different tokenizer"));
    let run_missing = Trainer::resume(Path::new("/nonexistent/run"), &data).err().unwrap().to_string();
    assert!(run_missing.contains("holds no run to resume"), "{run_missing}");
}
