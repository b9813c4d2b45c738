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
