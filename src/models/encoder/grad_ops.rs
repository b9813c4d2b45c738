//! The CPU training path's fused ops, each one candle op with its own backward on
//! `taskbench-kernels`.
//!
//! candle's autograd zero-fills a gradient for every node and adds each contribution into
//! it, also for constants (a dropout mask, an attention mask), and reduces broadcast
//! gradients with a strided sum. Composed of candle ops, a linear layer's bias gradient,
//! LayerNorm's backward and the masked softmax made half of a training step's single-threaded
//! time. As single ops they cost one pass each.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use crate::models::device::cpu_f32;

/// Runs `f` on the values of CPU f32 tensors, read where they live (made contiguous first).
fn with_cpu_f32<R>(tensors: &[&Tensor], name: &str, f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let contiguous = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = contiguous.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let Storage::Cpu(storage) = &**storage else {
            candle_core::bail!("{name}: expected a CPU tensor");
        };
        slices.push(cpu_f32(storage, layout, name)?);
    }
    Ok(f(&slices))
}

fn cpu_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
}

fn map_cpu_f32(
    storage: &CpuStorage,
    layout: &Layout,
    name: &str,
    f: impl FnOnce(&mut [f32]),
) -> Result<(CpuStorage, Shape)> {
    let mut out = cpu_f32(storage, layout, name)?.to_vec();
    f(&mut out);
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

/// `x · wᵀ + b` for `x` of shape `(rows, in)` and `w` as HF stores it, `(out, in)`. The
/// backward is two products and a column sum for the bias.
pub(super) struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear-with-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            cpu_f32(s1, l1, name)?,
            cpu_f32(s2, l2, name)?,
            cpu_f32(s3, l3, name)?,
        );
        let (rows, k) = l1.shape().dims2()?;
        let n = b.len();
        if l2.shape().dims2()? != (n, k) {
            candle_core::bail!(
                "{name}: weight {:?} does not match input {:?} and bias {n}",
                l2.shape(),
                l1.shape()
            );
        }
        let mut out = vec![0.0f32; rows * n];
        let threads = candle_core::utils::get_num_threads();
        taskbench_kernels::linear::linear_bias_nt(x, rows, w, k, n, b, threads, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = g.matmul(w)?;
        let dw = g.t()?.matmul(x)?;
        let n = g.dim(1)?;
        let db = with_cpu_f32(&[&g], self.name(), |v| {
            taskbench_kernels::linear::sum_rows(v[0], n)
        })?;
        Ok((Some(dx), Some(dw), Some(cpu_tensor(db, n)?)))
    }
}

/// LayerNorm over the last dimension with `gamma` and `beta`, saving only its input: the
/// backward recomputes the normalised values.
pub(super) struct LayerNormOp {
    pub eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-with-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (gamma, beta) = (cpu_f32(s2, l2, name)?, cpu_f32(s3, l3, name)?);
        map_cpu_f32(s1, l1, name, |x| {
            taskbench_kernels::layernorm::layer_norm_inplace(x, gamma, beta, self.eps)
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, d_gamma, d_beta) = with_cpu_f32(&[x, gamma, g], self.name(), |v| {
            taskbench_kernels::layernorm::layer_norm_backward(v[0], v[1], v[2], self.eps)
        })?;
        let width = d_gamma.len();
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(d_gamma, width)?),
            Some(cpu_tensor(d_beta, width)?),
        ))
    }
}

/// Softmax of `scale * scores` over the last dimension of `(batch, heads, queries, keys)`
/// scores, with the keys at and past each sequence's length masked out (probability 0).
pub(super) struct MaskedSoftmaxOp {
    pub scale: f32,
    /// Real keys of each sequence in the batch.
    pub key_lens: Vec<usize>,
}

impl CustomOp1 for MaskedSoftmaxOp {
    fn name(&self) -> &'static str {
        "masked-softmax-with-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, _, _, keys) = layout.shape().dims4()?;
        if batch != self.key_lens.len() || self.key_lens.iter().any(|&l| l == 0 || l > keys) {
            candle_core::bail!(
                "{}: key lengths {:?} do not fit scores {:?}",
                self.name(),
                self.key_lens,
                layout.shape()
            );
        }
        map_cpu_f32(storage, layout, self.name(), |scores| {
            let per_sequence = scores.len() / batch;
            for (block, &len) in scores.chunks_mut(per_sequence).zip(&self.key_lens) {
                for row in block.chunks_mut(keys) {
                    let (real, padding) = row.split_at_mut(len);
                    real.iter_mut().for_each(|s| *s *= self.scale);
                    taskbench_kernels::attention::softmax_rows(real, len);
                    padding.fill(0.0);
                }
            }
        })
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let keys = res.dim(3)?;
        let ds = with_cpu_f32(&[res, grad_res], self.name(), |v| {
            taskbench_kernels::attention::softmax_backward_rows(v[0], v[1], keys, self.scale)
        })?;
        Ok(Some(cpu_tensor(ds, res.shape())?))
    }
}

/// `x * mask` for a constant mask (dropout's): candle's product would also compute, zero-fill
/// and accumulate a gradient for the mask.
pub(super) struct ScaleByMask {
    pub mask: Vec<f32>,
}

impl ScaleByMask {
    fn times_mask(&self, values: &[f32]) -> Vec<f32> {
        values.iter().zip(&self.mask).map(|(v, m)| v * m).collect()
    }
}

impl CustomOp1 for ScaleByMask {
    fn name(&self) -> &'static str {
        "scale-by-mask"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let values = cpu_f32(storage, layout, self.name())?;
        if values.len() != self.mask.len() {
            candle_core::bail!("{}: mask and input sizes differ", self.name());
        }
        Ok((
            CpuStorage::F32(self.times_mask(values)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_cpu_f32(&[grad_res], self.name(), |v| self.times_mask(v[0]))?;
        Ok(Some(cpu_tensor(dx, grad_res.shape())?))
    }
}

/// GELU (erf form) through `taskbench-kernels`, with its backward.
pub(super) struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_cpu_f32(
            storage,
            layout,
            self.name(),
            taskbench_kernels::gelu::gelu_erf_inplace,
        )
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_cpu_f32(&[arg, grad_res], self.name(), |v| {
            let mut derivative = v[0].to_vec();
            taskbench_kernels::gelu::gelu_erf_derivative_inplace(&mut derivative);
            derivative.iter_mut().zip(v[1]).for_each(|(d, g)| *d *= g);
            derivative
        })?;
        Ok(Some(cpu_tensor(dx, arg.shape())?))
    }
}

#[cfg(test)]
mod tests {
    //! Each fused op against the candle composition it replaces: the same values and the
    //! same gradients (candle's autograd is the reference), through a weighted sum loss.
    use std::sync::Arc;

    use candle_core::{Device, Var, D};

    use super::*;

    fn random(shape: &[usize], seed: u64) -> Var {
        let n: usize = shape.iter().product();
        let values = taskbench_kernels::test_values(n, seed, 1.0);
        Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Output and input gradients of `f` under the loss `Σ f(inputs) * weights`.
    fn outputs_and_grads(
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
        inputs: &[&Var],
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let tensors: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&tensors).unwrap();
        let weights = random(out.dims(), 99);
        let loss = (&out * weights.as_tensor()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let grads = tensors
            .iter()
            .map(|t| flat(grads.get(t).expect("a gradient for every input")))
            .collect();
        (flat(&out), grads)
    }

    fn assert_same(fused: (Vec<f32>, Vec<Vec<f32>>), composed: (Vec<f32>, Vec<Vec<f32>>)) {
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{what}[{i}]: {x} vs {y}"
                );
            }
        };
        close(&fused.0, &composed.0, "output");
        for (i, (a, b)) in fused.1.iter().zip(&composed.1).enumerate() {
            close(a, b, &format!("gradient of input {i}"));
        }
    }

    #[test]
    fn linear_matches_matmul_plus_bias() {
        let (x, w, b) = (random(&[5, 7], 1), random(&[3, 7], 2), random(&[3], 3));
        let fused = outputs_and_grads(
            |t| t[0].apply_op3_arc(&t[1], &t[2], Arc::new(Box::new(LinearOp))),
            &[&x, &w, &b],
        );
        let composed = outputs_and_grads(
            |t| t[0].matmul(&t[1].t()?)?.broadcast_add(&t[2]),
            &[&x, &w, &b],
        );
        assert_same(fused, composed);
    }

    #[test]
    fn layer_norm_matches_the_composition() {
        let (x, gamma, beta) = (random(&[4, 9], 4), random(&[9], 5), random(&[9], 6));
        let eps = 1e-5;
        let fused = outputs_and_grads(
            |t| t[0].apply_op3_arc(&t[1], &t[2], Arc::new(Box::new(LayerNormOp { eps }))),
            &[&x, &gamma, &beta],
        );
        let composed = outputs_and_grads(
            |t| {
                let centered = t[0].broadcast_sub(&t[0].mean_keepdim(D::Minus1)?)?;
                let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = centered.broadcast_div(&(var + eps as f64)?.sqrt()?)?;
                normed.broadcast_mul(&t[1])?.broadcast_add(&t[2])
            },
            &[&x, &gamma, &beta],
        );
        assert_same(fused, composed);
    }

    #[test]
    fn masked_softmax_matches_scale_mask_and_softmax() {
        // Two sequences of 4 and 2 keys padded to 4, 3 heads.
        let scores = random(&[2, 3, 4, 4], 7);
        let scale = 0.35;
        let fused = outputs_and_grads(
            |t| {
                t[0].apply_op1(MaskedSoftmaxOp {
                    scale,
                    key_lens: vec![4, 2],
                })
            },
            &[&scores],
        );
        let mask = Tensor::new(&[0f32, 0., 0., 0., 0., 0., -1e9, -1e9], &Device::Cpu)
            .unwrap()
            .reshape((2, 1, 1, 4))
            .unwrap();
        let composed = outputs_and_grads(
            |t| candle_nn::ops::softmax(&(&t[0] * scale as f64)?.broadcast_add(&mask)?, D::Minus1),
            &[&scores],
        );
        assert_same(fused, composed);
    }

    #[test]
    fn scale_by_mask_matches_a_product_with_the_mask() {
        let x = random(&[3, 5], 8);
        let mask: Vec<f32> = (0..15)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.25 })
            .collect();
        let fused = outputs_and_grads(
            |t| t[0].apply_op1(ScaleByMask { mask: mask.clone() }),
            &[&x],
        );
        let mask = Tensor::from_vec(mask.clone(), (3, 5), &Device::Cpu).unwrap();
        let composed = outputs_and_grads(|t| &t[0] * &mask, &[&x]);
        assert_same(fused, composed);
    }

    #[test]
    fn gelu_matches_candle_gelu_erf() {
        let x = random(&[6, 11], 9);
        let fused = outputs_and_grads(|t| t[0].apply_op1(GeluErf), &[&x]);
        let composed = outputs_and_grads(|t| t[0].gelu_erf(), &[&x]);
        assert_same(fused, composed);
    }
}
