//! Optimizer for full fine-tuning: AdamW with resumable state, global-norm
//! gradient clipping and the linear warm-up/decay learning-rate schedule.
//!
//! candle-nn ships an `AdamW`, but its moment buffers are private, so an
//! interrupted run cannot be resumed exactly. This one keeps the moments as
//! plain tensors and can [`AdamW::save_state`] / [`AdamW::load_state`] them
//! (safetensors: tensors `m.<name>`, `v.<name>`; metadata `step`, plus
//! `step.<name>` for each parameter's own count).
//!
//! Semantics follow PyTorch:
//!
//! * [`AdamW::step`] is `torch.optim.AdamW` (decoupled weight decay, non-amsgrad):
//!   `p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²;
//!   p -= lr * m̂ / (sqrt(v̂) + eps)` with `m̂ = m/(1-b1^t)`, `v̂ = v/(1-b2^t)`.
//!   A parameter with no gradient in the [`GradStore`] is skipped entirely
//!   (no decay, no moment update), as PyTorch skips `p.grad is None`; a zero
//!   gradient is still a step (the weight decays). As in PyTorch, `t` is
//!   counted per parameter, so a parameter that was skipped has a smaller `t`.
//! * [`clip_grad_norm`] is `torch.nn.utils.clip_grad_norm_`.
//! * [`linear_warmup_decay`] is transformers' `get_linear_schedule_with_warmup`.
//!
//! Everything runs as tensor ops on the parameters' own device; the only
//! host round trips are the norm in [`clip_grad_norm`] and the copies made by
//! save/load. Moments have the parameter's dtype (keep f32 master weights for
//! training; bf16/f16 moments are saved widened to f32, losslessly).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor, Var};
use safetensors::tensor::TensorView;
use safetensors::{Dtype as StDtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::models::device::{cpu_f32, cpu_f32_mut};

/// Metadata key holding the number of [`AdamW::step`] calls.
const STEP_KEY: &str = "step";
/// Metadata key prefix for a parameter's own step count (`step.<name>`).
const PARAM_STEP_PREFIX: &str = "step.";

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate (usually overwritten each step from a schedule via [`AdamW::set_lr`]).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (applied as `p -= lr * weight_decay * p`).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's AdamW defaults, except `lr = 1e-4` and `weight_decay = 0.01`
    /// (the Hugging Face fine-tuning convention).
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Errors from saving or loading optimizer state. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("optimizer state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("optimizer state {}: safetensors: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("optimizer state {}: tensor error: {source}", path.display())]
    Candle {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("optimizer state {}: missing tensor `{name}`", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error(
        "optimizer state {}: tensor `{name}` has shape {found:?}, the parameter has shape {expected:?}",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "optimizer state {}: tensor `{name}` has dtype {dtype}, expected a float dtype (F32, F64, BF16, F16)",
        path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(
        "optimizer state {}: unexpected entry `{name}` (no parameter of that name in this optimizer)",
        path.display()
    )]
    UnexpectedEntry { path: PathBuf, name: String },
    #[error("optimizer state {}: bad step metadata `{key}`: {reason}", path.display())]
    InvalidStep {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// AdamW over a fixed list of named parameters, with inspectable, savable state.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<(String, Var)>,
    /// First moments, one per parameter (same shape, dtype and device).
    m: Vec<Tensor>,
    /// Second moments, one per parameter.
    v: Vec<Tensor>,
    /// Per-parameter step counts (PyTorch's `state[p]["step"]`).
    param_steps: Vec<u64>,
    /// Number of `step` calls.
    steps: u64,
    config: AdamWConfig,
}

impl AdamW {
    /// Creates the optimizer with zero moments. Errors on a duplicate name or a
    /// non-float parameter.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> candle_core::Result<Self> {
        let mut seen = HashSet::new();
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for (name, var) in &params {
            if !seen.insert(name.as_str()) {
                candle_core::bail!("AdamW: duplicate parameter name `{name}`");
            }
            if !var.dtype().is_float() {
                candle_core::bail!(
                    "AdamW: parameter `{name}` has non-float dtype {:?}",
                    var.dtype()
                );
            }
            m.push(var.as_tensor().detach().zeros_like()?);
            v.push(var.as_tensor().detach().zeros_like()?);
        }
        let n = params.len();
        Ok(Self {
            params,
            m,
            v,
            param_steps: vec![0; n],
            steps: 0,
            config,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Number of [`AdamW::step`] calls so far (restored by [`AdamW::load_state`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The named parameters, in the order given to [`AdamW::new`].
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// First and second moments of the parameter called `name`.
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        let i = self.params.iter().position(|(n, _)| n == name)?;
        Some((&self.m[i], &self.v[i]))
    }

    /// One update from the gradients (params without a gradient are skipped, as PyTorch does).
    ///
    /// Not transactional: if a tensor op fails part-way, earlier parameters
    /// have already been updated.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let decay = 1.0 - lr * weight_decay;
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            self.param_steps[i] += 1;
            let t = self.param_steps[i] as f64;
            let step_size = lr / (1.0 - beta1.powf(t));
            let inv_bc2_sqrt = 1.0 / (1.0 - beta2.powf(t)).sqrt();

            if var.device().is_cpu() && var.dtype() == DType::F32 && g.dtype() == DType::F32 {
                fused_cpu_update(
                    var,
                    g,
                    &self.m[i],
                    &self.v[i],
                    &self.config,
                    step_size,
                    inv_bc2_sqrt,
                )?;
                continue;
            }
            // Detached so that no op graph is recorded (the moments would
            // otherwise keep every previous step's tensors alive).
            let g = g.detach();
            let theta = var.as_tensor().detach();
            let m = (self.m[i].affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?;
            let v = (self.v[i].affine(beta2, 0.0)? + g.sqr()?.affine(1.0 - beta2, 0.0)?)?;
            // denom = sqrt(v) / sqrt(1 - b2^t) + eps, as torch arranges it.
            let denom = v.sqrt()?.affine(inv_bc2_sqrt, eps)?;
            let update = m.div(&denom)?.affine(step_size, 0.0)?;
            let next = theta.affine(decay, 0.0)?.sub(&update)?;
            var.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Saves moments and step counts to a safetensors file: tensors `m.<name>`
    /// and `v.<name>`, metadata `step` (number of `step` calls) and
    /// `step.<name>` (each parameter's own count). Written to a temporary
    /// file first and renamed, so an interrupted save leaves any previous
    /// file intact.
    pub fn save_state(&self, path: &Path) -> Result<(), OptimError> {
        let candle_err = |source| OptimError::Candle {
            path: path.to_path_buf(),
            source,
        };
        let mut buffers: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> =
            Vec::with_capacity(2 * self.params.len());
        let mut metadata = HashMap::with_capacity(self.params.len() + 1);
        metadata.insert(STEP_KEY.to_string(), self.steps.to_string());
        for (i, (name, _)) in self.params.iter().enumerate() {
            metadata.insert(
                format!("{PARAM_STEP_PREFIX}{name}"),
                self.param_steps[i].to_string(),
            );
            for (prefix, t) in [("m.", &self.m[i]), ("v.", &self.v[i])] {
                let (dtype, bytes) = tensor_to_le_bytes(t).map_err(candle_err)?;
                buffers.push((format!("{prefix}{name}"), dtype, t.dims().to_vec(), bytes));
            }
        }
        let mut views = Vec::with_capacity(buffers.len());
        for (key, dtype, shape, bytes) in &buffers {
            let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|source| {
                OptimError::Safetensors {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            views.push((key.as_str(), view));
        }

        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        if let Err(source) = safetensors::serialize_to_file(views, Some(metadata), &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(OptimError::Safetensors {
                path: path.to_path_buf(),
                source,
            });
        }
        std::fs::rename(&tmp, path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            OptimError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Loads state written by [`AdamW::save_state`]. Every parameter must have
    /// `m.<name>` and `v.<name>` of its shape, there must be no other tensors,
    /// and `step` must be present. Per-parameter `step.<name>` entries are
    /// optional (default: `step`). On error the optimizer is left unchanged.
    /// Moments are placed on each parameter's device and converted to its dtype.
    pub fn load_state(&mut self, path: &Path) -> Result<(), OptimError> {
        let p = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|source| OptimError::Io { path: p(), source })?;
        let st_err = |source| OptimError::Safetensors { path: p(), source };
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(st_err)?;
        let st = SafeTensors::deserialize(&bytes).map_err(st_err)?;

        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let parse_step = |key: &str| -> Result<Option<u64>, OptimError> {
            meta.get(key)
                .map(|s| {
                    s.parse::<u64>().map_err(|e| OptimError::InvalidStep {
                        path: p(),
                        key: key.to_string(),
                        reason: format!("`{s}` is not a step count: {e}"),
                    })
                })
                .transpose()
        };
        let steps = parse_step(STEP_KEY)?.ok_or_else(|| OptimError::InvalidStep {
            path: p(),
            key: STEP_KEY.to_string(),
            reason: "missing".to_string(),
        })?;

        let names: HashSet<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        // Sorted so that the reported entry does not depend on hash order.
        let tensor_names: BTreeSet<&str> = st.names().into_iter().collect();
        for key in &tensor_names {
            let known = ["m.", "v."]
                .iter()
                .any(|prefix| key.strip_prefix(prefix).is_some_and(|n| names.contains(n)));
            if !known {
                return Err(OptimError::UnexpectedEntry {
                    path: p(),
                    name: key.to_string(),
                });
            }
        }
        let meta_keys: BTreeSet<&String> = meta.keys().collect();
        for key in meta_keys {
            if let Some(n) = key.strip_prefix(PARAM_STEP_PREFIX) {
                if !names.contains(n) {
                    return Err(OptimError::UnexpectedEntry {
                        path: p(),
                        name: key.clone(),
                    });
                }
            }
        }

        let mut m = Vec::with_capacity(self.params.len());
        let mut v = Vec::with_capacity(self.params.len());
        let mut param_steps = Vec::with_capacity(self.params.len());
        for (name, var) in &self.params {
            let key = format!("{PARAM_STEP_PREFIX}{name}");
            let ps = parse_step(&key)?.unwrap_or(steps);
            if ps > steps {
                return Err(OptimError::InvalidStep {
                    path: p(),
                    key,
                    reason: format!("{ps} exceeds the total step count {steps}"),
                });
            }
            param_steps.push(ps);
            for (prefix, out) in [("m.", &mut m), ("v.", &mut v)] {
                let key = format!("{prefix}{name}");
                let view = st.tensor(&key).map_err(|_| OptimError::MissingTensor {
                    path: p(),
                    name: key.clone(),
                })?;
                if view.shape() != var.dims() {
                    return Err(OptimError::ShapeMismatch {
                        path: p(),
                        name: key,
                        expected: var.dims().to_vec(),
                        found: view.shape().to_vec(),
                    });
                }
                let dtype = match view.dtype() {
                    StDtype::F32 => DType::F32,
                    StDtype::F64 => DType::F64,
                    StDtype::BF16 => DType::BF16,
                    StDtype::F16 => DType::F16,
                    other => {
                        return Err(OptimError::UnsupportedDtype {
                            path: p(),
                            name: key,
                            dtype: format!("{other:?}"),
                        })
                    }
                };
                let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), var.device())
                    .and_then(|t| t.to_dtype(var.dtype()))
                    .map_err(|source| OptimError::Candle { path: p(), source })?;
                out.push(t);
            }
        }
        self.m = m;
        self.v = v;
        self.param_steps = param_steps;
        self.steps = steps;
        Ok(())
    }
}

/// Host copy of `t` as little-endian bytes; bf16/f16 are widened to f32 (exact).
fn tensor_to_le_bytes(t: &Tensor) -> candle_core::Result<(StDtype, Vec<u8>)> {
    let flat = t.flatten_all()?;
    match t.dtype() {
        DType::F64 => Ok((
            StDtype::F64,
            flat.to_vec1::<f64>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        )),
        DType::F32 | DType::BF16 | DType::F16 => Ok((
            StDtype::F32,
            flat.to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        )),
        other => candle_core::bail!("AdamW state: unsupported dtype {other:?}"),
    }
}

/// Global L2 norm of all gradients of `vars`; if above `max_norm`, scales every
/// gradient of `vars` in `grads` by `max_norm / (norm + 1e-6)` (as
/// `torch.nn.utils.clip_grad_norm_`, which scales whenever that factor is
/// below 1). Returns the norm before clipping.
///
/// Vars without a gradient are ignored; other entries of `grads` (gradients
/// of intermediate tensors) are left alone. The sum of squares is accumulated
/// in f32 (f64 if every gradient is f64) and read back to the host once. A
/// non-finite norm is returned as is and nothing is scaled: check it and skip
/// the step. `max_norm = f64::INFINITY` only measures.
pub fn clip_grad_norm(
    vars: &[(String, Var)],
    grads: &mut GradStore,
    max_norm: f64,
) -> candle_core::Result<f64> {
    if max_norm.is_nan() || max_norm <= 0.0 {
        candle_core::bail!("clip_grad_norm: max_norm must be positive, got {max_norm}");
    }
    let mut seen = HashSet::new();
    let mut with_grad: Vec<(&Var, Tensor)> = Vec::with_capacity(vars.len());
    for (_, var) in vars {
        if !seen.insert(var.as_tensor().id()) {
            continue;
        }
        if let Some(g) = grads.get(var.as_tensor()) {
            with_grad.push((var, g.detach()));
        }
    }
    if with_grad.is_empty() {
        return Ok(0.0);
    }
    let acc = if with_grad.iter().all(|(_, g)| g.dtype() == DType::F64) {
        DType::F64
    } else {
        DType::F32
    };
    let sums = with_grad
        .iter()
        .map(|(_, g)| g.to_dtype(acc)?.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let total = Tensor::stack(&sums, 0)?.sum_all()?;
    let sum_sq = match acc {
        DType::F64 => total.to_scalar::<f64>()?,
        _ => total.to_scalar::<f32>()? as f64,
    };
    let norm = sum_sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (var, g) in with_grad {
            grads.insert(var.as_tensor(), g.affine(coef, 0.0)?);
        }
    }
    Ok(norm)
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then linear decay to 0
/// at `total` (transformers' `get_linear_schedule_with_warmup`): lr at step
/// `step` (0-based, the step about to run).
pub fn linear_warmup_decay(step: u64, warmup: u64, total: u64, peak: f64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup.max(1) as f64
    } else {
        peak * total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64
    }
}

/// One AdamW update on CPU f32 tensors, in place: the moments, then the parameter, each a
/// pass over its own storage (copying out and back cost a tenth of a training step).
fn fused_cpu_update(
    var: &Var,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    config: &AdamWConfig,
    step_size: f64,
    inv_bc2_sqrt: f64,
) -> candle_core::Result<()> {
    let g = g.detach().contiguous()?;
    m.inplace_op2(
        &g,
        &MomentUpdate {
            beta: config.beta1 as f32,
            squared: false,
        },
    )?;
    v.inplace_op2(
        &g,
        &MomentUpdate {
            beta: config.beta2 as f32,
            squared: true,
        },
    )?;
    let update = ParamUpdate {
        decay: (1.0 - config.lr * config.weight_decay) as f32,
        step_size: step_size as f32,
        inv_bc2_sqrt: inv_bc2_sqrt as f32,
        eps: config.eps as f32,
    };
    var.as_tensor().inplace_op3(m, v, &update)
}

/// Elements per parallel chunk of the in-place updates.
const UPDATE_CHUNK: usize = 1 << 14;

/// `m = beta * m + (1 - beta) * g`, or with `g²` for the second moment.
struct MomentUpdate {
    beta: f32,
    squared: bool,
}

impl InplaceOp2 for MomentUpdate {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let moment = cpu_f32_mut(s1, l1, self.name())?;
        let g = cpu_f32(s2, l2, self.name())?;
        let (beta, squared) = (self.beta, self.squared);
        moment
            .par_chunks_mut(UPDATE_CHUNK)
            .zip(g.par_chunks(UPDATE_CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = if squared { g * g } else { g };
                    *m = beta * *m + (1.0 - beta) * g;
                }
            });
        Ok(())
    }
}

/// `p = p * decay - step_size * m / (sqrt(v) * inv_bc2_sqrt + eps)`, as torch arranges it.
struct ParamUpdate {
    decay: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
    eps: f32,
}

impl InplaceOp3 for ParamUpdate {
    fn name(&self) -> &'static str {
        "adamw-param"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let p = cpu_f32_mut(s1, l1, self.name())?;
        let m = cpu_f32(s2, l2, self.name())?;
        let v = cpu_f32(s3, l3, self.name())?;
        let Self {
            decay,
            step_size,
            inv_bc2_sqrt,
            eps,
        } = *self;
        p.par_chunks_mut(UPDATE_CHUNK)
            .zip(m.par_chunks(UPDATE_CHUNK))
            .zip(v.par_chunks(UPDATE_CHUNK))
            .for_each(|((p, m), v)| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    let denom = v.sqrt() * inv_bc2_sqrt + eps;
                    *p = *p * decay - step_size * (m / denom);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    const TOL: f64 = 1e-6;

    fn var(data: &[f64], shape: &[usize], dtype: DType) -> Var {
        let t = Tensor::new(data, &Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        Var::from_tensor(&t).unwrap()
    }

    fn grad_like(v: &Var, data: &[f64]) -> Tensor {
        Tensor::new(data, &Device::Cpu)
            .unwrap()
            .reshape(v.shape())
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{what}[{i}]: got {g}, torch {w} (diff {})",
                (g - w).abs()
            );
        }
    }

    // Gradients and per-step learning rates of the torch reference run.
    const GW: [[f64; 6]; 3] = [
        [0.3, -0.7, 1.9, 0.05, -2.2, 0.6],
        [-0.4, 0.1, 1.2, 0.25, -1.7, -0.9],
        [0.8, -0.2, 0.0, -0.35, 0.45, 2.5],
    ];
    const GB: [[f64; 3]; 3] = [[1.0, -0.5, 0.25], [-0.75, 0.125, 2.0], [0.5, 0.5, -1.5]];
    const GLATE: [Option<[f64; 2]>; 3] = [None, Some([0.7, -0.2]), Some([-0.3, 0.9])];
    const LRS: [f64; 3] = [1e-2, 5e-3, 2e-2];

    /// w, b: ordinary params; z: zero gradient every step; n: no gradient ever;
    /// late: no gradient at step 1 only.
    fn reference_params(dtype: DType) -> Vec<(String, Var)> {
        vec![
            (
                "w".into(),
                var(&[0.5, -1.25, 2.0, 0.75, -0.3, 1.1], &[2, 3], dtype),
            ),
            ("b".into(), var(&[0.1, -0.2, 0.3], &[3], dtype)),
            ("z".into(), var(&[1.5, -2.5], &[2], dtype)),
            ("n".into(), var(&[3.0, -4.0], &[2], dtype)),
            ("late".into(), var(&[0.6, -0.9], &[2], dtype)),
        ]
    }

    fn reference_config() -> AdamWConfig {
        AdamWConfig {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }

    /// The gradients of step `s` (0-based) of the reference run.
    fn reference_grads(params: &[(String, Var)], s: usize) -> GradStore {
        let mut grads = GradStore::default();
        let p = |name: &str| &params.iter().find(|(n, _)| n == name).unwrap().1;
        grads.insert(p("w"), grad_like(p("w"), &GW[s]));
        grads.insert(p("b"), grad_like(p("b"), &GB[s]));
        grads.insert(p("z"), grad_like(p("z"), &[0.0, 0.0]));
        if let Some(g) = GLATE[s] {
            grads.insert(p("late"), grad_like(p("late"), &g));
        }
        grads
    }

    // Produced by PyTorch 2.x (float64, CPU) with:
    //
    //   w = torch.tensor([[0.5, -1.25, 2.0], [0.75, -0.3, 1.1]], dtype=torch.float64, requires_grad=True)
    //   b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    //   z = torch.tensor([1.5, -2.5], dtype=torch.float64, requires_grad=True)     # grad zero every step
    //   n = torch.tensor([3.0, -4.0], dtype=torch.float64, requires_grad=True)     # grad None every step
    //   late = torch.tensor([0.6, -0.9], dtype=torch.float64, requires_grad=True)  # grad None at step 1
    //   opt = torch.optim.AdamW([w, b, z, n, late], lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
    //                           weight_decay=0.1, foreach=False)
    //   for s in range(3):
    //       for g in opt.param_groups: g['lr'] = LRS[s]          # [1e-2, 5e-3, 2e-2]
    //       w.grad = torch.tensor(GW[s]).reshape(2, 3); b.grad = torch.tensor(GB[s])
    //       z.grad = torch.zeros(2); n.grad = None
    //       late.grad = None if s == 0 else torch.tensor(GLATE[s])
    //       opt.step()
    //       print(w, b, z, n, late)
    //   print(opt.state[w]['exp_avg'], opt.state[w]['exp_avg_sq'])
    const TORCH_W: [[f64; 6]; 3] = [
        [
            0.4895000003333333,
            -1.238750000142857,
            1.9880000000526317,
            0.7392500019999996,
            -0.2897000000454545,
            1.0889000001666667,
        ],
        [
            0.4902228023514845,
            -1.2353404814644546,
            1.982186240406705,
            0.734575145927417,
            -0.28462889519644274,
            1.089594059231063,
        ],
        [
            0.47999084317819324,
            -1.221088473822859,
            1.9633191152452114,
            0.7355996622357959,
            -0.27106653171425155,
            1.0772076892182851,
        ],
    ];
    const TORCH_B: [[f64; 3]; 3] = [
        [0.0899000001, -0.1898000002, 0.28970000039999994],
        [0.08940842506797679, -0.1873577594082853, 0.2854478216369447],
        [
            0.08319921045044548,
            -0.19067683563833285,
            0.2823208046972803,
        ],
    ];
    const TORCH_Z: [[f64; 2]; 3] = [
        [1.4985, -2.4975],
        [1.49775075, -2.4962512500000003],
        [1.4947552485, -2.4912587475000003],
    ];
    const TORCH_LATE: [[f64; 2]; 3] = [
        [0.6, -0.9],
        [0.5947000000714285, -0.8945500002500001],
        [0.5870590175548825, -0.9043838413662014],
    ];
    const TORCH_M_W: [f64; 6] = [
        0.06829999999999999,
        -0.06769999999999998,
        0.26189999999999997,
        -0.008449999999999992,
        -0.28619999999999995,
        0.21759999999999996,
    ];
    const TORCH_V_W: [f64; 6] = [
        0.000889660090000001,
        0.0005390104900000004,
        0.005041343610000004,
        0.00018743250250000015,
        0.007919934840000007,
        0.007418470360000007,
    ];

    fn check_against_torch(dtype: DType, tol: f64) {
        let params = reference_params(dtype);
        let mut opt = AdamW::new(params.clone(), reference_config()).unwrap();
        for s in 0..3 {
            opt.set_lr(LRS[s]);
            opt.step(&reference_grads(&params, s)).unwrap();
            let get = |i: usize| values(params[i].1.as_tensor());
            assert_close(
                &format!("w after step {}", s + 1),
                &get(0),
                &TORCH_W[s],
                tol,
            );
            assert_close(
                &format!("b after step {}", s + 1),
                &get(1),
                &TORCH_B[s],
                tol,
            );
            assert_close(
                &format!("z after step {}", s + 1),
                &get(2),
                &TORCH_Z[s],
                tol,
            );
            assert_eq!(get(3), vec![3.0, -4.0], "no-grad param must not move");
            assert_close(
                &format!("late after step {}", s + 1),
                &get(4),
                &TORCH_LATE[s],
                tol,
            );
        }
        assert_eq!(opt.steps(), 3);
        let (m, v) = opt.moments("w").unwrap();
        assert_close("exp_avg(w)", &values(m), &TORCH_M_W, tol);
        assert_close("exp_avg_sq(w)", &values(v), &TORCH_V_W, tol);
        let (m, v) = opt.moments("n").unwrap();
        assert_eq!(values(m), vec![0.0, 0.0]);
        assert_eq!(values(v), vec![0.0, 0.0]);
    }

    #[test]
    fn three_steps_match_torch_f64() {
        check_against_torch(DType::F64, TOL);
    }

    #[test]
    fn three_steps_match_torch_f32() {
        check_against_torch(DType::F32, TOL);
    }

    #[test]
    fn zero_grad_decays_but_missing_grad_is_skipped() {
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let zero = var(&[2.0, -4.0], &[2], DType::F64);
        let missing = var(&[2.0, -4.0], &[2], DType::F64);
        let mut opt = AdamW::new(
            vec![
                ("zero".into(), zero.clone()),
                ("missing".into(), missing.clone()),
            ],
            cfg,
        )
        .unwrap();
        for k in 1..=4 {
            let mut grads = GradStore::default();
            grads.insert(&zero, zero.as_tensor().zeros_like().unwrap());
            opt.step(&grads).unwrap();
            // m = v = 0, so the Adam term is 0 / (0 + eps) = 0: pure decay.
            let f = (1.0f64 - 0.1 * 0.5).powi(k);
            assert_close(
                "zero-grad param",
                &values(zero.as_tensor()),
                &[2.0 * f, -4.0 * f],
                1e-12,
            );
            assert_eq!(values(missing.as_tensor()), vec![2.0, -4.0]);
        }
        assert_eq!(opt.steps(), 4);
    }

    #[test]
    fn step_records_no_autograd_graph() {
        let params = reference_params(DType::F32);
        let mut opt = AdamW::new(params.clone(), reference_config()).unwrap();
        for s in 0..3 {
            opt.step(&reference_grads(&params, s)).unwrap();
        }
        for (name, v) in &params {
            let (m1, m2) = opt.moments(name).unwrap();
            assert!(
                !m1.track_op() && !m2.track_op(),
                "moments of {name} track ops"
            );
            assert!(v.as_tensor().is_variable());
        }
    }

    #[test]
    fn new_rejects_duplicates_and_non_float() {
        let a = var(&[1.0], &[1], DType::F32);
        let err = AdamW::new(
            vec![("a".into(), a.clone()), ("a".into(), a)],
            AdamWConfig::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("duplicate parameter name `a`"),
            "{err}"
        );
        let ints = Var::from_tensor(&Tensor::new(&[1u32, 2], &Device::Cpu).unwrap()).unwrap();
        let err = AdamW::new(vec![("ids".into(), ints)], AdamWConfig::default()).unwrap_err();
        assert!(err.to_string().contains("`ids`"), "{err}");
    }

    #[test]
    fn trains_a_linear_model_through_backward() {
        // y = x . [2, -3] + 0.5, learned from scratch with real autograd gradients.
        let dev = Device::Cpu;
        let w = Var::zeros((1, 2), DType::F32, &dev).unwrap();
        let b = Var::zeros(1, DType::F32, &dev).unwrap();
        let lin = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let x = Tensor::new(
            &[[1f32, 0.], [0., 1.], [1., 1.], [2., -1.], [-1., 0.5]],
            &dev,
        )
        .unwrap();
        let y = Tensor::new(&[[2.5f32], [-2.5], [-0.5], [7.5], [-3.0]], &dev).unwrap();
        let cfg = AdamWConfig {
            lr: 0.05,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt =
            AdamW::new(vec![("w".into(), w.clone()), ("b".into(), b.clone())], cfg).unwrap();
        let loss = |lin: &candle_nn::Linear| {
            lin.forward(&x)
                .unwrap()
                .sub(&y)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
        };
        let first = loss(&lin).to_scalar::<f32>().unwrap();
        for _ in 0..800 {
            let mut grads = loss(&lin).backward().unwrap();
            clip_grad_norm(opt.params(), &mut grads, 10.0).unwrap();
            opt.step(&grads).unwrap();
        }
        let last = loss(&lin).to_scalar::<f32>().unwrap();
        assert!(last < 1e-3 && last < first, "loss {first} -> {last}");
        assert_close("w", &values(w.as_tensor()), &[2.0, -3.0], 0.02);
        assert_close("b", &values(b.as_tensor()), &[0.5], 0.02);
    }

    /// Runs the reference schedule; if `save_at` is set, saves after that many
    /// steps and continues in a fresh optimizer (with fresh vars holding the
    /// same parameter values) that loads the file.
    fn run_reference(save_at: Option<usize>, dir: &Path) -> (Vec<Vec<f64>>, AdamW) {
        let mut params = reference_params(DType::F32);
        let mut opt = AdamW::new(params.clone(), reference_config()).unwrap();
        for (s, &lr) in LRS.iter().enumerate() {
            if save_at == Some(s) {
                let path = dir.join("optim.safetensors");
                opt.save_state(&path).unwrap();
                // "Restart": new vars with the checkpointed values, new optimizer.
                params = params
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.clone(),
                            Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
                        )
                    })
                    .collect();
                opt = AdamW::new(params.clone(), reference_config()).unwrap();
                opt.load_state(&path).unwrap();
                assert_eq!(opt.steps(), s as u64);
            }
            opt.set_lr(lr);
            opt.step(&reference_grads(&params, s)).unwrap();
        }
        (
            params.iter().map(|(_, v)| values(v.as_tensor())).collect(),
            opt,
        )
    }

    #[test]
    fn save_load_resumes_bit_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (straight, opt_a) = run_reference(None, dir.path());
        // Save after step 1 (where `late` has had no gradient yet, so its own
        // step count differs from the global one) and after step 2.
        for save_at in [1, 2] {
            let (resumed, opt_b) = run_reference(Some(save_at), dir.path());
            assert_eq!(
                straight, resumed,
                "params differ when resuming after step {save_at}"
            );
            assert_eq!(opt_a.steps(), opt_b.steps());
            for (name, _) in opt_a.params() {
                let (ma, va) = opt_a.moments(name).unwrap();
                let (mb, vb) = opt_b.moments(name).unwrap();
                assert_eq!(values(ma), values(mb), "m.{name}");
                assert_eq!(values(va), values(vb), "v.{name}");
            }
        }
        assert!(!dir.path().join("optim.safetensors.tmp").exists());
    }

    #[test]
    fn bf16_moments_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let p = var(&[0.5, -1.0, 2.0], &[3], DType::BF16);
        let mut opt = AdamW::new(vec![("p".into(), p.clone())], AdamWConfig::default()).unwrap();
        let mut grads = GradStore::default();
        grads.insert(&p, grad_like(&p, &[0.3, -0.1, 0.7]));
        opt.step(&grads).unwrap();
        opt.save_state(&path).unwrap();
        let mut other = AdamW::new(vec![("p".into(), p.clone())], AdamWConfig::default()).unwrap();
        other.load_state(&path).unwrap();
        let (m, v) = other.moments("p").unwrap();
        assert_eq!(m.dtype(), DType::BF16);
        assert_eq!(values(m), values(opt.moments("p").unwrap().0));
        assert_eq!(values(v), values(opt.moments("p").unwrap().1));
    }

    /// Writes a state file by hand: `entries` are (name, shape), all f32 zeros.
    fn write_state(path: &Path, entries: &[(&str, &[usize])], meta: &[(&str, &str)]) {
        let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = entries
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.to_vec(),
                    vec![0u8; 4 * s.iter().product::<usize>()],
                )
            })
            .collect();
        let views: Vec<(&str, TensorView)> = bufs
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(StDtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        safetensors::serialize_to_file(views, Some(meta), path).unwrap();
    }

    fn two_param_opt() -> AdamW {
        AdamW::new(
            vec![
                ("enc.w".into(), var(&[1.0; 6], &[2, 3], DType::F32)),
                ("enc.b".into(), var(&[1.0; 3], &[3], DType::F32)),
            ],
            AdamWConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn load_rejects_bad_files_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        let shown = path.display().to_string();
        let full: [(&str, &[usize]); 4] = [
            ("m.enc.w", &[2, 3]),
            ("v.enc.w", &[2, 3]),
            ("m.enc.b", &[3]),
            ("v.enc.b", &[3]),
        ];
        let step = [("step", "7")];

        // Sanity: the well-formed file loads.
        let mut opt = two_param_opt();
        write_state(&path, &full, &step);
        opt.load_state(&path).unwrap();
        assert_eq!(opt.steps(), 7);

        // (tensors in the file, metadata, expected error text)
        type Case<'a> = (
            Vec<(&'a str, &'a [usize])>,
            Vec<(&'a str, &'a str)>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                full[..3].to_vec(),
                step.to_vec(),
                "missing tensor `v.enc.b`",
            ),
            (
                vec![full[0], ("v.enc.w", &[3, 2]), full[2], full[3]],
                step.to_vec(),
                "tensor `v.enc.w` has shape [3, 2], the parameter has shape [2, 3]",
            ),
            (
                [&full[..], &[("m.pooler.w", &[3][..])]].concat(),
                step.to_vec(),
                "unexpected entry `m.pooler.w`",
            ),
            (full.to_vec(), vec![], "bad step metadata `step`: missing"),
            (
                full.to_vec(),
                vec![("step", "x")],
                "bad step metadata `step`",
            ),
            (
                full.to_vec(),
                vec![("step", "7"), ("step.enc.w", "9")],
                "bad step metadata `step.enc.w`",
            ),
            (
                full.to_vec(),
                vec![("step", "7"), ("step.gone", "1")],
                "unexpected entry `step.gone`",
            ),
        ];
        for (entries, meta, expect) in cases {
            write_state(&path, &entries, &meta);
            let mut opt = two_param_opt();
            let err = opt.load_state(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "expected `{expect}` in: {err}");
            assert!(err.contains(&shown), "path missing from: {err}");
            assert_eq!(
                opt.steps(),
                0,
                "failed load must leave the optimizer unchanged"
            );
        }

        let missing = dir.path().join("nope.safetensors");
        let err = two_param_opt().load_state(&missing).unwrap_err();
        assert!(matches!(err, OptimError::Io { .. }));
        assert!(err.to_string().contains("nope.safetensors"), "{err}");

        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = two_param_opt().load_state(&path).unwrap_err();
        assert!(matches!(err, OptimError::Safetensors { .. }), "{err}");
    }

    #[test]
    fn save_into_missing_directory_errors_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/s.safetensors");
        let err = two_param_opt().save_state(&path).unwrap_err();
        assert!(
            err.to_string().contains("no/such/dir/s.safetensors"),
            "{err}"
        );
    }

    // Produced with:
    //   p1 = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    //   p2 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    //   p1.grad = torch.tensor([[3.0, -4.0], [1.0, 2.0]]); p2.grad = torch.tensor([0.5, -1.5, 2.5])
    //   torch.nn.utils.clip_grad_norm_([p1, p2], max_norm=1.0, foreach=False)  -> 6.224949798994366
    //   p1.grad, p2.grad  -> the CLIPPED_* values below
    //   p1.grad = torch.tensor([[0.1, -0.2], [0.05, 0.3]]); p2.grad = torch.tensor([0.01, -0.02, 0.03])
    //   torch.nn.utils.clip_grad_norm_([p1, p2], max_norm=1.0, foreach=False)  -> 0.3793415347678132
    //   (gradients unchanged)
    const CLIPPED_1: [f64; 4] = [
        0.4819315199221569,
        -0.6425753598962092,
        0.1606438399740523,
        0.3212876799481046,
    ];
    const CLIPPED_2: [f64; 3] = [
        0.08032191998702615,
        -0.24096575996107844,
        0.40160959993513073,
    ];

    fn check_clip(dtype: DType, tol: f64) {
        let p1 = var(&[0.0; 4], &[2, 2], dtype);
        let p2 = var(&[0.0; 3], &[3], dtype);
        let no_grad = var(&[0.0; 2], &[2], dtype);
        let vars = vec![
            ("p1".to_string(), p1.clone()),
            ("p2".to_string(), p2.clone()),
            ("no_grad".to_string(), no_grad.clone()),
        ];
        let mut grads = GradStore::default();
        grads.insert(&p1, grad_like(&p1, &[3.0, -4.0, 1.0, 2.0]));
        grads.insert(&p2, grad_like(&p2, &[0.5, -1.5, 2.5]));
        // A gradient that is not one of `vars` must be left alone.
        let other = var(&[0.0; 2], &[2], dtype);
        grads.insert(&other, grad_like(&other, &[100.0, 100.0]));
        let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((norm - 6.224949798994366).abs() <= tol, "norm {norm}");
        assert_close(
            "clipped p1",
            &values(grads.get(&p1).unwrap()),
            &CLIPPED_1,
            tol,
        );
        assert_close(
            "clipped p2",
            &values(grads.get(&p2).unwrap()),
            &CLIPPED_2,
            tol,
        );
        assert!(grads.get(&no_grad).is_none());
        assert_eq!(values(grads.get(&other).unwrap()), vec![100.0, 100.0]);

        let mut grads = GradStore::default();
        grads.insert(&p1, grad_like(&p1, &[0.1, -0.2, 0.05, 0.3]));
        grads.insert(&p2, grad_like(&p2, &[0.01, -0.02, 0.03]));
        let before: Vec<_> = [&p1, &p2]
            .iter()
            .map(|p| values(grads.get(p).unwrap()))
            .collect();
        let norm = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((norm - 0.3793415347678132).abs() <= tol, "norm {norm}");
        let after: Vec<_> = [&p1, &p2]
            .iter()
            .map(|p| values(grads.get(p).unwrap()))
            .collect();
        assert_eq!(before, after, "below max_norm nothing is scaled");
    }

    #[test]
    fn clip_grad_norm_matches_torch_f64() {
        check_clip(DType::F64, TOL);
    }

    #[test]
    fn clip_grad_norm_matches_torch_f32() {
        check_clip(DType::F32, TOL);
    }

    #[test]
    fn clip_grad_norm_edge_cases() {
        let p = var(&[0.0; 2], &[2], DType::F32);
        let vars = vec![("p".to_string(), p.clone())];
        let mut grads = GradStore::default();
        assert_eq!(clip_grad_norm(&vars, &mut grads, 1.0).unwrap(), 0.0);
        grads.insert(&p, grad_like(&p, &[3.0, 4.0]));
        // The same var listed twice counts once.
        let twice = vec![vars[0].clone(), vars[0].clone()];
        let norm = clip_grad_norm(&twice, &mut grads, f64::INFINITY).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert_eq!(values(grads.get(&p).unwrap()), vec![3.0, 4.0]);
        assert!(clip_grad_norm(&vars, &mut grads, 0.0).is_err());
        assert!(clip_grad_norm(&vars, &mut grads, f64::NAN).is_err());
    }

    /// transformers' get_linear_schedule_with_warmup lr_lambda, times peak.
    fn hf(step: u64, warmup: u64, total: u64, peak: f64) -> f64 {
        let (s, w, t) = (step as f64, warmup as f64, total as f64);
        if step < warmup {
            peak * s / w.max(1.0)
        } else {
            peak * (0f64).max((t - s) / (t - w).max(1.0))
        }
    }

    #[test]
    fn linear_warmup_decay_matches_transformers() {
        let peak = 2e-5;
        let (warmup, total) = (100, 1000);
        let expected = [
            (0, 0.0),
            (99, peak * 0.99),
            (100, peak),
            (550, peak * 0.5),
            (999, peak / 900.0),
            (1000, 0.0),
            (1500, 0.0),
        ];
        for (step, want) in expected {
            let got = linear_warmup_decay(step, warmup, total, peak);
            assert!((got - want).abs() < 1e-18, "step {step}: {got} vs {want}");
            assert!((got - hf(step, warmup, total, peak)).abs() < 1e-18);
        }
        // No warm-up: starts at peak. Warm-up longer than training: never decays below 0.
        for (warmup, total) in [(0u64, 10u64), (20, 10), (10, 10), (1, 2)] {
            for step in 0..=total + 2 {
                let got = linear_warmup_decay(step, warmup, total, peak);
                let want = hf(step, warmup, total, peak);
                assert!(
                    (got - want).abs() < 1e-18,
                    "w{warmup} t{total} s{step}: {got} vs {want}"
                );
            }
        }
        assert_eq!(linear_warmup_decay(0, 0, 10, peak), peak);
    }
}
