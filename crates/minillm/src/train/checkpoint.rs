//! Crash-safe checkpoints that resume bit for bit: weights, AdamW's moments, the data order's
//! generator and the run's config (dropout's masks follow from the step number), written under a
//! temporary name and renamed into place. They hold all of the optimizer's state whatever the
//! number of ranks that wrote them, so a run resumes on any number.

use super::objective::{Objective, Pretrain};
use super::{TrainConfig, Trainer};
use crate::chat::Dialogue;
use crate::chat::jinja::JinjaTemplate;
use crate::error::{Error, Result};
use crate::fsutil::{atomic_write, read_text};
use crate::io::generation_config::GenerationConfig;
use crate::io::{load_model, safetensors as st, save_model};
use crate::model::Gpt;
use crate::rng::Rng;
use crate::tokenizer::{Tokenizer, formats};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Saved beside the weights in each checkpoint.
#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    loader_rng: [u64; 4],
    adam_step: u32,
    best_val: Option<f32>,
    config: TrainConfig,
}

impl Trainer {
    /// Writes `run/ckpt-STEP/` (weights, optimizer, state, tokenizer) under a temporary name,
    /// renames it into place, then points `run/latest.json` at it, so a crash at any moment
    /// leaves the previous checkpoint loadable. Older checkpoints are removed afterwards.
    pub fn save_checkpoint(&mut self, run: &Path) -> Result<PathBuf> {
        self.save_as(run, "ckpt", "latest.json")
    }

    /// The same for the best validation loss so far: `run/best-STEP/`, pointed at by `best.json`.
    pub fn save_best(&mut self, run: &Path) -> Result<PathBuf> {
        self.save_as(run, "best", "best.json")
    }

    /// In a data-parallel run every rank calls this (sharded moments are gathered first) and
    /// rank 0 alone writes.
    fn save_as(&mut self, run: &Path, prefix: &str, pointer: &str) -> Result<PathBuf> {
        let name = format!("{prefix}-{:08}", self.step);
        let moments = self.gathered_moments();
        if self.rank().0 != 0 {
            return Ok(run.join(&name));
        }
        let tmp = run.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        // One level only: a run directory that vanished mid-run is an error here, not quietly
        // made again (the run would go on writing into a directory nobody is looking at).
        std::fs::create_dir(&tmp).map_err(|cause| Error::Write { path: tmp.clone(), cause })?;
        // A failed write (a full disk, a vanished directory) leaves nothing behind: the
        // previous checkpoint, which latest.json still names, is untouched.
        if let Err(e) = self.write_checkpoint(&tmp, moments.as_ref()) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dest = run.join(&name);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(|cause| Error::Write { path: dest.clone(), cause })?;
        let latest = serde_json::json!({ "checkpoint": name, "step": self.step, "best_val": self.best_val });
        atomic_write(&run.join(pointer), latest.to_string().as_bytes())?;
        for entry in
            std::fs::read_dir(run).map_err(|cause| Error::Read { path: run.to_path_buf(), cause })?.flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(&format!("{prefix}-")) && file != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(dest)
    }

    /// The checkpoint's files, into `dir`.
    fn write_checkpoint(&self, dir: &Path, moments: Option<&(Vec<f32>, Vec<f32>)>) -> Result<()> {
        save_model(dir, &self.model, self.tokenizer.end_of_text())?;
        if let Some(t) = &self.chat_template {
            save_chat_template(dir, t)?;
        }
        // AdamW's moments share the parameters' layout, so they are saved the same way.
        let (m, v) = match moments {
            Some((m, v)) => (&m[..], &v[..]),
            None => (self.opt.state().0, self.opt.state().1),
        };
        let adam_step = self.opt.state().2;
        atomic_write(&dir.join("optimizer_m.safetensors"), &st::to_bytes(&self.model.config, m)?)?;
        atomic_write(&dir.join("optimizer_v.safetensors"), &st::to_bytes(&self.model.config, v)?)?;
        formats::save(&self.tokenizer, &dir.join("tokenizer.json"))?;
        let state = State {
            step: self.step,
            loader_rng: self.objective.rng().state(),
            adam_step,
            best_val: self.best_val,
            config: self.config.clone(),
        };
        let text = serde_json::to_string_pretty(&state).expect("state serializes");
        atomic_write(&dir.join("state.json"), text.as_bytes())?;
        Ok(())
    }

    /// The whole of AdamW's moments when each rank holds only its shard (a collective: every
    /// rank calls it), so that a checkpoint resumes on any number of ranks.
    fn gathered_moments(&mut self) -> Option<(Vec<f32>, Vec<f32>)> {
        let r = self.ranks.as_mut().filter(|r| r.sharded)?;
        let range = self.opt.range();
        let (m, v, _) = self.opt.state();
        let mut whole = |part: &[f32]| {
            let mut all = vec![0.0; self.model.params.len()];
            all[range.clone()].copy_from_slice(part);
            r.group.all_gather(&mut all);
            all
        };
        Some((whole(m), whole(v)))
    }

    /// Continues the run in `run` from its latest checkpoint, exactly: same weights, optimizer
    /// moments, data position and dropout masks as if it had never stopped.
    pub fn resume(run: &Path, data: &Path) -> Result<Trainer> {
        Trainer::resume_with(run, |config, model, tok, _| {
            Ok(Box::new(Pretrain::from_shards(data, tok, model.config.block_size, config.seed)?)
                as Box<dyn Objective>)
        })
    }

    /// [`resume`](Self::resume) for any objective: `make_objective` rebuilds the run's objective
    /// for its saved config, checkpointed model and tokenizer (its errors pass through as they are).
    pub fn resume_with<E: From<Error>>(
        run: &Path,
        make_objective: impl FnOnce(
            &TrainConfig,
            &mut Gpt,
            &Tokenizer,
            &Dialogue,
        ) -> std::result::Result<Box<dyn Objective>, E>,
    ) -> std::result::Result<Trainer, E> {
        let latest_path = run.join("latest.json");
        if !latest_path.is_file() {
            return Err(Error::Invalid(format!(
                "{} holds no run to resume (no latest.json); start one with `minillm train --out {0}`",
                run.display()
            ))
            .into());
        }
        let dir = crate::io::model_dir(run)?;
        let state_path = dir.join("state.json");
        let state: State = serde_json::from_str(&read_text(&state_path)?)
            .map_err(|e| Error::format(&state_path, format!("not a training state: {e}")))?;
        let mut model = load_model(&dir)?;
        model.config.dropout = state.config.dropout;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = formats::read_hf_json(&tok_path)?;
        let generation = GenerationConfig::read(&dir)?;
        let chat_template = crate::io::chat_template::read(&dir, &tokenizer, &generation)?;
        let dialogue = Dialogue::of(&tokenizer, chat_template.as_ref());
        let objective = make_objective(&state.config, &mut model, &tokenizer, &dialogue)?;
        let mut trainer = Trainer::with_objective(state.config.clone(), model, tokenizer, objective)?;
        trainer.chat_template = chat_template;
        let read_moment = |file: &str| -> Result<Vec<f32>> {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|cause| Error::Read { path: path.clone(), cause })?;
            st::from_bytes(&bytes, &trainer.model.config, &path)
        };
        let (m, v) = (read_moment("optimizer_m.safetensors")?, read_moment("optimizer_v.safetensors")?);
        trainer.opt.set_state(m, v, state.adam_step)?;
        trainer.objective.set_rng(Rng::from_state(state.loader_rng));
        trainer.step = state.step;
        trainer.best_val = state.best_val;
        Ok(trainer)
    }
}

/// A model's own chat template beside its weights, as HF keeps it: `tokenizer_config.json`
/// (template, beginning and end tokens) and `generation_config.json` (the ids replies end at).
pub(crate) fn save_chat_template(dir: &Path, t: &JinjaTemplate) -> Result<()> {
    let config = serde_json::json!({
        "chat_template": t.source(), "bos_token": t.bos_token(), "eos_token": t.eos_token(),
    });
    let config = serde_json::to_string_pretty(&config).expect("JSON values serialize");
    atomic_write(&dir.join("tokenizer_config.json"), config.as_bytes())?;
    let generation = serde_json::json!({"eos_token_id": t.ends()});
    atomic_write(&dir.join("generation_config.json"), generation.to_string().as_bytes())
}
