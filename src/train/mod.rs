//! Training algorithms: the linear softmax head that `train --head-only` fits on frozen
//! encoder features, and the optimizer of full fine-tuning.

pub mod optim;
pub mod softmax;
