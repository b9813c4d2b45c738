//! Turns the user's `--device` choice into a candle device, with a clear error when that
//! device was not compiled in or is not present.

use candle_core::Device;

use crate::runtime::DeviceSpec;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {spec}: this taskbench was built without {feature} support; rebuild with `cargo build --release --features {feature}`")]
    NotCompiled { spec: String, feature: &'static str },
    #[error("--device {spec}: no such device here")]
    NotPresent {
        spec: String,
        #[source]
        source: candle_core::Error,
    },
}

pub fn open(spec: &DeviceSpec) -> Result<Device, DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                return Err(DeviceError::NotCompiled {
                    spec: spec.to_string(),
                    feature: "cuda",
                });
            }
            Device::new_cuda(*ordinal).map_err(|source| DeviceError::NotPresent {
                spec: spec.to_string(),
                source,
            })
        }
        DeviceSpec::Metal(ordinal) => {
            if !cfg!(feature = "metal") {
                return Err(DeviceError::NotCompiled {
                    spec: spec.to_string(),
                    feature: "metal",
                });
            }
            Device::new_metal(*ordinal).map_err(|source| DeviceError::NotPresent {
                spec: spec.to_string(),
                source,
            })
        }
    }
}

/// The values of a contiguous f32 CPU storage, for custom ops (`name` is the op's, for the
/// error).
pub fn cpu_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    name: &str,
) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{name}: expected a contiguous f32 tensor"),
    }
}

/// [`cpu_f32`] for an in-place op's destination.
pub fn cpu_f32_mut<'a>(
    storage: &'a mut candle_core::CpuStorage,
    layout: &candle_core::Layout,
    name: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{name}: expected a contiguous f32 tensor"),
    }
}
