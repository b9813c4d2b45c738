//! How work is scheduled: which device, how many threads, and how items are grouped into
//! batches. Knows nothing of candle; models turn a [`DeviceSpec`] into a device.

pub mod batching;
pub mod load;
pub mod peak;

use std::fmt;
use std::str::FromStr;

/// `--device cpu|cuda[:N]|metal[:N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((kind, n)) => {
                let n = n.parse().map_err(|_| format!("invalid device \"{s}\": the ordinal after ':' must be a number, e.g. cuda:1"))?;
                (kind, Some(n))
            }
            None => (s, None),
        };
        match (kind, ordinal) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("cuda", n) => Ok(DeviceSpec::Cuda(n.unwrap_or(0))),
            ("metal", n) => Ok(DeviceSpec::Metal(n.unwrap_or(0))),
            _ => Err(format!(
                "invalid device \"{s}\": expected cpu, cuda, cuda:N, metal or metal:N"
            )),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

/// Sizes the CPU thread pools once, before any model work starts.
///
/// candle's matrix products read `RAYON_NUM_THREADS` and run on rayon's global pool; its
/// element-wise pool reads `CANDLE_NUM_THREADS`. Setting all three to the same number keeps
/// two pools from oversubscribing the cores (on this 2-core machine that costs 30%+).
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var(
        "CANDLE_NUM_THREADS",
        std::env::var("TB_EW").unwrap_or(n.to_string()),
    );
    // Fails only if the pool already exists (a second call in one process): keep the first.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    rayon::current_num_threads()
}

/// Keeps freed memory in the process for reuse. With glibc's defaults, blocks above 128 KiB
/// to a few MiB go back to the OS when freed and come back as fresh zeroed pages: a training
/// step allocates and frees megabytes of activations each time, and page faults took a tenth
/// of its time (claims fine-tuning: 18.7 s -> 16 s for 12 steps with this).
pub fn configure_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator thresholds; called before threads start.
        // 32 MiB is the largest mmap threshold glibc accepts on 64-bit.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("metal".parse::<DeviceSpec>().unwrap(), DeviceSpec::Metal(0));
        assert!("gpu"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("expected cpu"));
        assert!("cuda:x"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("ordinal"));
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
    }
}
