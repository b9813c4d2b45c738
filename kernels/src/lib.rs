//! CPU kernels for the hot element-wise loops of taskbench's models.
//!
//! Each kernel works on plain `f32` slices so that it can be tested against its scalar
//! reference on random inputs and benchmarked without a model. The model code in the main
//! crate wraps them as candle custom ops; nothing here knows about tensors.

pub mod gelu;
