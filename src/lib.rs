//! taskbench: does a small fine-tuned model beat a frontier API on your task, and what does
//! each cost? The library behind the `taskbench` command.
//!
//! Layers, each depending only on those below it:
//! `cli` -> `run` -> `models` / `data` / `metrics` / `report` / `suite` / `cost` -> `runtime`
//! -> `kernels`.

pub mod cli;
pub mod cost;
pub mod data;
pub mod metrics;
pub mod models;
pub mod prompt;
pub mod report;
pub mod run;
pub mod runtime;
pub mod serve;
pub mod suite;
pub mod train;
