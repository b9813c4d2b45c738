//! Training algorithms: the linear softmax head that `train --head-only` fits on frozen
//! encoder features, and the optimizer of full fine-tuning.

pub mod optim;
pub mod softmax;

/// Index of the largest value of each row.
pub fn argmax_rows(rows: &[Vec<f32>]) -> Vec<usize> {
    rows.iter().map(|r| softmax::argmax(r)).collect()
}
