//! End-to-end tests of the `taskbench` command line: the binary run with assert_cmd on small
//! data files written to temporary folders and the tiny fixture models.
//!
//! Every bad input must exit with code 2 and print exactly one `taskbench: ...` line on stderr
//! naming the file and what was expected, never a panic or a backtrace (the tests run the
//! binary with `RUST_BACKTRACE=1` so a panic would show).

mod bench;
mod common;
mod data_errors;
mod device;
mod eval;
#[path = "../support/fault_server.rs"]
mod fault_server;
mod generative;
mod hub;
mod labels;
mod model_errors;
mod remote;
mod remote_faults;
mod remote_logprobs;
mod suite;
mod train;
