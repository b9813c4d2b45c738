//! Integration tests of model resolution: local folders and the Hugging Face cache.
mod common;
mod env;
mod resolve;
