//! `minillm sft` and `minillm dpo`: fine-tuning a trained model on conversations (loss on the
//! assistant's replies only) and on preference pairs, through the same loop as pretraining.

use super::ranks::{Join, RankArgs};
use super::session::{Loaded, MODEL_HELP, load};
use super::train::{Flags, Watch, train_loop};
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use minillm::chat::{Dialogue, Message, Role, add_chat_tokens};
use minillm::fsutil::atomic_write;
use minillm::model::training::widening_note;
use minillm::model::{Gpt, Trainable};
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, generate};
use minillm::tokenizer::Tokenizer;
use minillm::train::finetune::{
    Chat, Examples, Preference, chat_sequences, parse_chat, parse_preference, preference_pairs, read_jsonl,
};
use minillm::train::objective::{Dpo, Objective, Sft};
use minillm::train::{Stage, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_name = "MODEL", help = MODEL_HELP, required_unless_present = "resume")]
    model: Option<PathBuf>,
    /// Training examples, one JSON object per line.
    #[arg(long, value_name = "FILE.jsonl")]
    data: PathBuf,
    /// Held-out examples (default: every tenth line of --data is held out).
    #[arg(long, value_name = "FILE.jsonl")]
    val_data: Option<PathBuf>,
    /// Run directory for checkpoints, metrics.jsonl and the resolved config.
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "model"])]
    resume: Option<PathBuf>,
    /// Skip (and count) malformed lines instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// The window each example must fit in, in tokens (default: the model's whole context).
    /// Memory for activations grows with it: a model made for 8,192 tokens fine-tunes on short
    /// conversations with e.g. --context 256. Examples longer than it are left out (and counted).
    #[arg(long, conflicts_with = "resume")]
    context: Option<usize>,
    #[command(flatten)]
    flags: Flags,
    #[command(flatten)]
    ranks: RankArgs,
}

#[derive(ClapArgs)]
pub struct DpoArgs {
    #[command(flatten)]
    common: Args,
    /// How far the policy may move from the reference: higher keeps it closer.
    #[arg(long)]
    beta: Option<f32>,
}

fn read<T>(a: &Args, parse: fn(&serde_json::Value) -> Result<T, String>) -> Result<Examples<T>> {
    let (all, skipped) = read_jsonl(&a.data, a.skip_bad_lines, parse)?;
    report_skipped(&a.data, &skipped);
    let (train, val) = match &a.val_data {
        Some(path) => {
            let (val, skipped) = read_jsonl(path, a.skip_bad_lines, parse)?;
            report_skipped(path, &skipped);
            (all, val)
        }
        None => {
            let split = Examples::hold_out_every_tenth(all);
            (split.train, split.val)
        }
    };
    if val.is_empty() || train.is_empty() {
        bail!("need training and held-out examples: pass --val-data, or give --data at least 10 lines");
    }
    Ok(Examples { train, val })
}

fn report_skipped(path: &Path, skipped: &[(usize, String)]) {
    if let Some((line, why)) = skipped.first() {
        eprintln!(
            "{}: skipped {} malformed line(s), the first at line {line}: {why}",
            path.display(),
            skipped.len()
        );
    }
}

/// The base model ready for its chat template (its own when it ships one, else minillm's, whose
/// role tokens are added), and a run config for `stage`: fine-tuning's
/// defaults, then `defaults` for the stage, then the user's flags.
fn start(
    a: &Args,
    stage: Stage,
    defaults: impl FnOnce(&mut TrainConfig),
) -> Result<(Loaded, TrainConfig, PathBuf)> {
    let base = a.model.as_ref().expect("clap requires --model without --resume");
    let out = a.out.clone().expect("clap requires --out without --resume");
    if out.join("latest.json").exists() {
        bail!(
            "the run directory {} already holds a run; continue it with --resume {0} or choose another --out",
            out.display()
        );
    }
    let loaded = load(base)?;
    if loaded.model.quantized().is_some() {
        eprintln!("{}: {}", base.display(), widening_note(&loaded.model.weight_type()));
    }
    let own = matches!(loaded.dialogue(), Dialogue::Jinja(_));
    let (tok, mut model) =
        if own { (loaded.tok, loaded.model) } else { add_chat_tokens(&loaded.tok, &loaded.model)? };
    let chat_template = loaded.chat_template.filter(|_| own);
    let mut config = TrainConfig {
        model: base.display().to_string(),
        stage,
        base_model: Some(base.display().to_string()),
        lr: 3e-4,
        min_lr: 3e-5,
        warmup_steps: 20,
        max_steps: 100,
        eval_every: 50,
        checkpoint_every: 100,
        batch_size: 16,
        weight_decay: 0.0,
        sample_tokens: 32,
        ..TrainConfig::default()
    };
    defaults(&mut config);
    a.flags.apply(&mut config);
    config.context = a.context;
    config.window(&model.config)?; // a window longer than the model's context is refused now
    model.config.dropout = config.dropout;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok((Loaded { model, tok, generation: loaded.generation, chat_template }, config, out))
}

fn run_loop(mut trainer: Trainer, run_dir: &Path, watch: &mut Watch) -> Result<Trainer> {
    if trainer.rank().0 == 0 {
        atomic_write(&run_dir.join("config.toml"), trainer.config.to_toml().as_bytes())?;
    }
    train_loop(&mut trainer, run_dir, watch)?;
    Ok(trainer)
}

/// SFT's objective on `chats`, saying how many did not fit the context.
fn sft_objective(
    chats: &Examples<Chat>,
    dialogue: &Dialogue,
    tok: &Tokenizer,
    t: usize,
    seed: u64,
) -> Result<Box<dyn Objective>> {
    let (sequences, notes) = chat_sequences(chats, dialogue, tok, t)?;
    notes.iter().for_each(|n| eprintln!("{n}"));
    Ok(Box::new(Sft::new(sequences, seed)))
}

pub fn run_sft(a: Args) -> Result<()> {
    run_sft_watched(a, Watch::ctrl_c()?)
}

/// [`run_sft`], stopped and followed by `watch`.
pub fn run_sft_watched(a: Args, mut watch: Watch) -> Result<()> {
    let mut join = Join::start(&a.ranks)?;
    let built = build_sft(&a);
    let (mut trainer, run_dir, base, chats) = join.settle(built)?;
    join.attach(&mut trainer)?;
    let trainer = run_loop(trainer, &run_dir, &mut watch)?;
    if trainer.rank().0 != 0 {
        return Ok(());
    }
    // Held-out task accuracy: greedy answers to held-out questions that name their answer.
    let asked: Vec<&Chat> = chats.val.iter().filter(|c| c.answer.is_some()).collect();
    if asked.is_empty() {
        return Ok(());
    }
    let (tok, dialogue) = (trainer.tokenizer.clone(), trainer.dialogue());
    let after = accuracy(&trainer.model, &dialogue, &tok, &asked)?;
    let n = asked.len();
    let mut doc = serde_json::json!({"examples": n, "after": after.to_json()});
    println!("held-out instructions ({n}, about items SFT never showed), answered greedily:");
    println!("  after SFT:  {}", after.summary(n));
    if let Some(base) = base {
        let before = accuracy(&base, &dialogue, &tok, &asked)?;
        println!("  base model: {}", before.summary(n));
        doc["base"] = before.to_json();
    }
    let quoted = minillm::error::quoted;
    println!(
        "  asked {}, the fine-tuned model answers {}",
        quoted(&asked[0].messages[0].content),
        quoted(&after.first)
    );
    atomic_write(&run_dir.join("heldout.json"), serde_json::to_string_pretty(&doc)?.as_bytes())?;
    Ok(())
}

/// SFT's trainer (new or resumed), its run directory, the base model (for a new run) and the
/// conversations.
#[allow(clippy::type_complexity)]
fn build_sft(a: &Args) -> Result<(Trainer, PathBuf, Option<Gpt>, Examples<Chat>)> {
    let chats = read(a, parse_chat)?;
    let (trainer, run_dir, base) = match &a.resume {
        Some(run) => {
            let trainer = Trainer::resume_with(run, |config, model, tok, dialogue| {
                sft_objective(&chats, dialogue, tok, config.window(&model.config)?, config.seed)
            })?;
            (trainer, run.clone(), None)
        }
        None => {
            let ask = first_question(&chats.val[0].messages);
            let (loaded, config, out) = start(a, Stage::Sft, |c| c.sample_prompt = ask)?;
            let dialogue = loaded.dialogue();
            let window = config.window(&loaded.model.config)?;
            let objective = sft_objective(&chats, &dialogue, &loaded.tok, window, config.seed)?;
            // The base model, for the before/after accuracy: a quantized one in f32, as training
            // will widen the model it starts from.
            let base =
                Gpt::from_params(loaded.model.config.clone(), loaded.model.full_params().into_owned())?;
            let mut trainer = Trainer::with_objective(config, loaded.model, loaded.tok, objective)?;
            trainer.chat_template = loaded.chat_template;
            (trainer, out, Some(base))
        }
    };
    Ok((trainer, run_dir, base, chats))
}

/// How a model did on held-out questions.
struct Accuracy {
    correct: usize,
    /// Replies that ended their turn within the token budget: the template's format.
    ended: usize,
    /// The token that ends a turn, as text.
    end: String,
    first: String,
}

impl Accuracy {
    fn summary(&self, n: usize) -> String {
        format!(
            "{}/{n} correct ({:.1}%), {}/{n} replies end their turn with {}",
            self.correct,
            pct(self.correct, n),
            self.ended,
            self.end
        )
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"correct": self.correct, "ended_turn": self.ended, "first_reply": self.first})
    }
}

fn pct(k: usize, n: usize) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

/// How many of `chats` the model answers (greedy, up to 32 tokens) with a reply containing
/// their answer, and how many replies end their turn.
fn accuracy(model: &Gpt, dialogue: &Dialogue, tok: &Tokenizer, chats: &[&Chat]) -> Result<Accuracy> {
    const BUDGET: usize = 32;
    let ends = dialogue.end_ids();
    let end = ends.first().map_or_else(String::new, |&id| tok.token_text(id));
    let greedy = SamplerConfig { temperature: 0.0, ..Default::default() };
    let mut acc = Accuracy { correct: 0, ended: 0, end, first: String::new() };
    for (i, chat) in chats.iter().enumerate() {
        let last = chat.messages.iter().rposition(|m| m.role == Role::Assistant).expect("parse_chat checked");
        let prompt = dialogue.render(tok, &chat.messages[..last])?;
        let ids = generate(model, &prompt, BUDGET, &greedy, &mut Rng::new(0), &ends, |_, _| true)?;
        let new = &ids[prompt.len()..];
        let reply = tok.decode(new)?;
        acc.correct += usize::from(reply.contains(chat.answer.as_deref().expect("filtered")));
        // generate leaves the stop token out: a reply shorter than the budget stopped at it.
        acc.ended += usize::from(new.len() < BUDGET);
        if i == 0 {
            acc.first = reply;
        }
    }
    Ok(acc)
}

/// DPO's objective on `prefs` against the frozen `reference`, saying how many pairs did not fit
/// the context.
fn dpo_objective(
    prefs: &Examples<Preference>,
    dialogue: &Dialogue,
    tok: &Tokenizer,
    reference: &mut Trainable,
    config: &TrainConfig,
) -> Result<Box<dyn Objective>> {
    if !dialogue.has_template() {
        bail!("the model has no chat template: fine-tune it with `minillm sft` first");
    }
    let window = config.window(&reference.config)?;
    let (pairs, notes) = preference_pairs(prefs, dialogue, tok, reference, (config.batch_size, window))?;
    notes.iter().for_each(|n| eprintln!("{n}"));
    Ok(Box::new(Dpo::new(pairs, config.beta, config.seed)))
}

pub fn run_dpo(a: DpoArgs) -> Result<()> {
    run_dpo_watched(a, Watch::ctrl_c()?)
}

/// [`run_dpo`], stopped and followed by `watch`.
pub fn run_dpo_watched(a: DpoArgs, mut watch: Watch) -> Result<()> {
    let mut join = Join::start(&a.common.ranks)?;
    let built = build_dpo(&a);
    let (mut trainer, run_dir) = join.settle(built)?;
    join.attach(&mut trainer)?;
    let before = trainer.evaluate()?.dpo.expect("DPO data evaluates to DPO numbers");
    trainer.best_val = None;
    println!("held-out preference accuracy before DPO: {:.1}% (policy = reference)", 100.0 * before.accuracy);
    trainer = run_loop(trainer, &run_dir, &mut watch)?;
    if trainer.rank().0 != 0 {
        return Ok(());
    }
    let after = trainer.evaluate()?.dpo.expect("DPO data evaluates to DPO numbers");
    println!(
        "held-out preference accuracy: {:.1}% before DPO, {:.1}% after (reward margin {:.3}, chosen {:.3}, rejected {:.3})",
        100.0 * before.accuracy,
        100.0 * after.accuracy,
        after.margin,
        after.chosen_reward,
        after.rejected_reward
    );
    let doc = serde_json::json!({"accuracy_before": before.accuracy, "accuracy_after": after.accuracy, "margin_after": after.margin});
    atomic_write(&run_dir.join("heldout.json"), serde_json::to_string_pretty(&doc)?.as_bytes())?;
    Ok(())
}

/// DPO's trainer (new or resumed) and its run directory.
fn build_dpo(a: &DpoArgs) -> Result<(Trainer, PathBuf)> {
    let prefs = read(&a.common, parse_preference)?;
    Ok(match &a.common.resume {
        Some(run) => {
            let trainer = Trainer::resume_with(run, |config, _, tok, dialogue| {
                // The reference is the model the run started from, not the checkpoint.
                let base = config.base_model.as_deref().context("the run names no base model")?;
                let loaded = minillm::io::load(Path::new(base))?;
                let reference = match dialogue {
                    Dialogue::Jinja(_) => loaded.model,
                    _ => add_chat_tokens(&loaded.tok, &loaded.model)?.1,
                };
                let mut reference = Trainable::new(reference, config.seed).0;
                dpo_objective(&prefs, dialogue, tok, &mut reference, config)
            })?;
            (trainer, run.clone())
        }
        None => {
            let ask = first_question(&prefs.val[0].prompt);
            let (mut loaded, mut config, out) = start(&a.common, Stage::Dpo, |c| {
                (c.lr, c.min_lr, c.max_steps, c.eval_every, c.sample_prompt) = (5e-5, 5e-6, 25, 5, ask);
            })?;
            config.beta = a.beta.unwrap_or(config.beta);
            // DPO compares log-probabilities with the reference's: dropout would make them noise.
            config.dropout = 0.0;
            loaded.model.config.dropout = 0.0;
            let dialogue = loaded.dialogue();
            let mut reference = Trainable::new(loaded.model, config.seed).0;
            let objective = dpo_objective(&prefs, &dialogue, &loaded.tok, &mut reference, &config)?;
            let mut trainer = Trainer::with_objective(config, reference.into_model(), loaded.tok, objective)?;
            trainer.chat_template = loaded.chat_template;
            (trainer, out)
        }
    })
}

fn first_question(messages: &[Message]) -> String {
    messages.iter().find(|m| m.role == Role::User).map_or_else(String::new, |m| m.content.clone())
}

/// SFT then DPO with their defaults, for `minillm demo --full`: `tasks` holds the files that
/// `minillm corpus --tasks` writes; the runs go to `out/sft` and `out/dpo`.
pub fn sft_then_dpo(base: &Path, tasks: &Path, out: &Path) -> Result<PathBuf> {
    let args = |model: &Path, kind: &str, run: &str| Args {
        model: Some(model.to_path_buf()),
        data: tasks.join(format!("{kind}-train.jsonl")),
        val_data: Some(tasks.join(format!("{kind}-val.jsonl"))),
        out: Some(out.join(run)),
        resume: None,
        skip_bad_lines: false,
        context: None,
        flags: Flags::default(),
        ranks: RankArgs::default(),
    };
    run_sft(args(base, "sft", "sft"))?;
    println!();
    run_dpo(DpoArgs { common: args(&out.join("sft"), "dpo", "dpo"), beta: None })?;
    Ok(out.join("dpo"))
}
