//! Integration tests of the data module: loading files, matching labels, sampling.
mod common;
mod labels;
mod load;
mod sample;
