//! Element-wise steps of the encoder that candle does slowly on CPU, as custom ops that call
//! `taskbench-kernels` there and fall back to candle's own ops on other devices.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::config::Activation;

/// Applies the feed-forward activation the config names.
pub fn activation(xs: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::GeluErf if xs.device().is_cpu() => xs.contiguous()?.apply_op1_no_bwd(&GeluErf),
        Activation::GeluErf => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
        Activation::Relu => xs.relu(),
    }
}

/// GELU (erf form) through the vectorised f32 kernel.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu-erf-f32 takes f32 input, got {:?}", storage.dtype());
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("gelu-erf-f32 needs contiguous input".into()))?;
        let mut out = data[start..end].to_vec();
        taskbench_kernels::gelu::gelu_erf_inplace(&mut out);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}
