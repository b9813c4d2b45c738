//! Training algorithms: the linear softmax head that `train --head-only` fits on frozen
//! encoder features. Full fine-tuning will live beside it.

pub mod softmax;
