//! The load scenarios (`taskbench::runtime::load`): single-stream, offline, server and the
//! max-QPS search, checked exactly on a virtual clock against analytically known answers, and
//! on real threads for structure only (no timing is asserted).

mod common;
mod search;
mod threaded;
mod virtual_time;
