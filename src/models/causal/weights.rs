//! Weight matrices of a causal LM in the layout both GGUF and HF checkpoints use: `[out][in]`
//! row-major, so `y = x · Wᵀ`. The product is the hot loop of generation; it lives here so
//! that a quantized kernel can replace the f32 one without touching the model.

use taskbench_kernels::linear::linear_bias;
use taskbench_kernels::quant::{dequantize_row, qmatmul_quantized, QuantKind, QuantizedActs};

/// `rows x cols` with `rows` = output features.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    storage: Storage,
}

enum Storage {
    /// Stored transposed (`cols x rows`): the layout the gemm kernel streams fastest for
    /// one row and for many.
    F32 {
        transposed: Vec<f32>,
        zeros: Vec<f32>,
    },
    /// GGUF's block bytes as in the file, each row `cols / 32` blocks; products run on
    /// integer dot-product kernels against quantized activations, as llama.cpp's do.
    Quant { kind: QuantKind, bytes: Vec<u8> },
}

impl Matrix {
    /// From `[rows][cols]` row-major data (GGUF's and PyTorch's layout).
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        let mut transposed = vec![0.0; data.len()];
        for (r, row) in data.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                transposed[c * rows + r] = v;
            }
        }
        Matrix {
            rows,
            cols,
            storage: Storage::F32 {
                transposed,
                zeros: vec![0.0; rows],
            },
        }
    }

    /// From GGUF block bytes of `rows` rows of `cols` weights.
    pub fn from_quantized(rows: usize, cols: usize, kind: QuantKind, bytes: Vec<u8>) -> Self {
        assert_eq!(
            bytes.len(),
            rows * kind.row_bytes(cols),
            "block bytes do not match the shape"
        );
        Matrix {
            rows,
            cols,
            storage: Storage::Quant { kind, bytes },
        }
    }

    pub fn parameters(&self) -> usize {
        self.rows * self.cols
    }

    /// Appends row `i` as floats (an embedding lookup).
    pub fn row_into(&self, i: usize, out: &mut Vec<f32>) {
        match &self.storage {
            Storage::F32 { transposed, .. } => {
                out.extend((0..self.cols).map(|c| transposed[c * self.rows + i]))
            }
            Storage::Quant { kind, bytes } => {
                let row_bytes = kind.row_bytes(self.cols);
                let start = out.len();
                out.resize(start + self.cols, 0.0);
                dequantize_row(
                    *kind,
                    &bytes[i * row_bytes..(i + 1) * row_bytes],
                    &mut out[start..],
                );
            }
        }
    }

    /// The block kind and GGUF bytes of a quantized matrix (`None` for f32 weights).
    pub fn quantized(&self) -> Option<(QuantKind, &[u8])> {
        match &self.storage {
            Storage::Quant { kind, bytes } => Some((*kind, bytes)),
            Storage::F32 { .. } => None,
        }
    }

    /// `y (m x rows) = x (m x cols) · selfᵀ`.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        Self::matmuls(x, m, &mut [(self, y)]);
    }

    /// `y_i = x · W_iᵀ` for several matrices that read the same input (a layer's Q, K and
    /// V, or its gate and up projections): the input is quantized once for all the
    /// quantized ones, whatever their kinds.
    pub fn matmuls(x: &[f32], m: usize, products: &mut [(&Matrix, &mut [f32])]) {
        let mut acts: Option<QuantizedActs> = None;
        for (w, y) in products.iter_mut() {
            assert!(x.len() == m * w.cols && y.len() == m * w.rows);
            match &w.storage {
                Storage::F32 { transposed, zeros } => {
                    let threads = rayon::current_num_threads().max(1);
                    linear_bias(x, m, transposed, w.cols, w.rows, zeros, threads, y);
                }
                Storage::Quant { kind, bytes } => {
                    let acts = acts.get_or_insert_with(|| QuantizedActs::new(x, w.cols));
                    qmatmul_quantized(*kind, bytes, w.rows, acts, y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(w: &Matrix, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0.0; m * w.rows];
        for i in 0..m {
            for j in 0..w.rows {
                let mut row = Vec::new();
                w.row_into(j, &mut row);
                y[i * w.rows + j] = (0..w.cols).map(|c| x[i * w.cols + c] * row[c]).sum();
            }
        }
        y
    }

    /// Every quantized kind reads its GGUF bytes as candle (and so ggml) does: candle
    /// quantizes varied rows to each format, and each row dequantized here equals candle's
    /// dequantization exactly; the products then agree with the dequantized weights' product.
    #[test]
    fn quantized_rows_read_as_candle_writes_them() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        let (rows, cols) = (6, 512);
        // Rows of different scales and signs, some with outliers, so scales and mins vary.
        let data: Vec<f32> = taskbench_kernels::test_values(rows * cols, 7, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let r = i / cols;
                let outlier = if i % 97 == 0 { 6.0 } else { 1.0 };
                v * outlier * (0.05 + r as f32 * 0.4) + if r % 2 == 1 { 0.3 } else { 0.0 }
            })
            .collect();
        let tensor = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        for (kind, dtype) in [
            (QuantKind::Q4_0, GgmlDType::Q4_0),
            (QuantKind::Q4_1, GgmlDType::Q4_1),
            (QuantKind::Q5_0, GgmlDType::Q5_0),
            (QuantKind::Q5_1, GgmlDType::Q5_1),
            (QuantKind::Q8_0, GgmlDType::Q8_0),
            (QuantKind::Q4_K, GgmlDType::Q4K),
            (QuantKind::Q5_K, GgmlDType::Q5K),
            (QuantKind::Q6_K, GgmlDType::Q6K),
        ] {
            let q = QTensor::quantize(&tensor, dtype).unwrap();
            let want: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let bytes = q.data().unwrap().into_owned();
            let w = Matrix::from_quantized(rows, cols, kind, bytes);
            for r in 0..rows {
                let mut got = Vec::new();
                w.row_into(r, &mut got);
                assert_eq!(got, want[r * cols..(r + 1) * cols], "{kind:?} row {r}");
            }
            let x = taskbench_kernels::test_values(3 * cols, 8, 1.0);
            let mut y = vec![0.0; 3 * rows];
            w.matmul(&x, 3, &mut y);
            let dense = Matrix::from_f32(rows, cols, want);
            let mut exact = vec![0.0; 3 * rows];
            dense.matmul(&x, 3, &mut exact);
            let err = y
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>();
            let norm = exact.iter().map(|a| a * a).sum::<f32>();
            // Only the 8-bit activations separate them.
            assert!(
                err.sqrt() <= 0.01 * norm.sqrt(),
                "{kind:?}: {err} vs {norm}"
            );
        }
    }

    #[test]
    fn matmul_matches_naive_product_for_vectors_and_batches() {
        for (rows, cols, m) in [(7, 5, 1), (300, 64, 1), (130, 33, 3), (70, 48, 17)] {
            let w = Matrix::from_f32(
                rows,
                cols,
                taskbench_kernels::test_values(rows * cols, 1, 1.0),
            );
            let x = taskbench_kernels::test_values(m * cols, 2, 1.0);
            let mut y = vec![f32::NAN; m * rows];
            w.matmul(&x, m, &mut y);
            for (a, b) in y.iter().zip(naive(&w, &x, m)) {
                assert!((a - b).abs() < 1e-4, "{rows}x{cols} m={m}: {a} vs {b}");
            }
        }
    }
}
