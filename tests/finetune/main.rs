//! Full fine-tuning (`taskbench train` without `--head-only`): library-level checks of the
//! training step (gradients reach every weight and match finite differences) and end-to-end
//! runs of the binary on the tiny fixture models (checkpoints and `--resume`, Ctrl-C, bad
//! input, the folders written, early stopping, class weights), plus the head-only recipe's
//! promise to leave the backbone untouched.
//!
//! Every bad input must exit with code 2 and print one `taskbench: ...` line, never a panic
//! (the binary runs with `RUST_BACKTRACE=1` so a panic would show).

mod common;
mod errors;
mod gradients;
mod head_only;
mod outputs;
mod pytorch_steps;
mod resume;
