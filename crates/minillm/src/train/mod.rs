//! Training: a run's [`TrainConfig`], the [`Trainer`] loop shared by every objective
//! (pretraining, SFT, DPO in [`objective`]), AdamW, the learning-rate schedule, crash-safe
//! checkpoints, and the fine-tuning datasets (conversations and preference pairs).

pub mod adamw;
mod checkpoint;
mod config;
pub mod finetune;
pub mod group;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod objective;
pub mod schedule;
mod trainer;

pub use config::{EvalStats, Stage, StepStats, TrainConfig};
pub use trainer::Trainer;
