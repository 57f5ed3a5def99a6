//! Training: the optimizer (the loop, data and schedules arrive with the pretraining stage).

pub mod adamw;
pub mod data;
pub mod finetune;
pub mod schedule;
pub mod trainer;
