//! What a run ran on: [`Environment`] (machine, OS, build provenance) and
//! [`peak_rss_bytes`] (the process's memory high-water mark).
//!
//! Build provenance comes from `build.rs` through compile-time environment variables
//! (`TASKBENCH_GIT_COMMIT`, `TASKBENCH_GIT_DIRTY`, `TASKBENCH_CANDLE_VERSION`,
//! `TASKBENCH_RUSTC_VERSION`, `TASKBENCH_TARGET`). They are read with `option_env!`, so a
//! build without them still compiles and reports "unknown" / `None`.

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// The machine and build a result was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub cpu_model: String,
    /// SIMD features the CPU and OS support at run time (see [`cpu_features`]), which is not
    /// necessarily what the binary was compiled to use.
    pub cpu_features: Vec<String>,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    /// Installed RAM.
    pub memory_bytes: u64,
    /// OS name and version, e.g. `Linux (Ubuntu 24.04)`.
    pub os: String,
    pub kernel: Option<String>,
    pub taskbench_version: String,
    /// `git rev-parse HEAD` at build time; `None` outside a git checkout.
    pub git_commit: Option<String>,
    /// Whether `git status --porcelain` listed anything at build time.
    pub git_dirty: Option<bool>,
    /// candle-core's version from `Cargo.lock`, or `unknown`.
    pub candle_version: String,
    /// `rustc --version` of the compiler that built this binary.
    pub rustc_version: Option<String>,
    /// Target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
}

impl Environment {
    /// Looks at the running machine and at what `build.rs` recorded. Never fails: anything
    /// it cannot find out is `unknown`, 0 or `None`.
    pub fn detect() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Environment {
            cpu_model: cpu_model(&sys),
            cpu_features: cpu_features(),
            logical_cores: logical_cores(&sys),
            physical_cores: System::physical_core_count(),
            memory_bytes: sys.total_memory(),
            os: os_name(),
            kernel: System::kernel_version(),
            taskbench_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: option_env!("TASKBENCH_GIT_COMMIT").map(String::from),
            git_dirty: option_env!("TASKBENCH_GIT_DIRTY").and_then(parse_bool),
            candle_version: option_env!("TASKBENCH_CANDLE_VERSION")
                .unwrap_or("unknown")
                .to_string(),
            rustc_version: option_env!("TASKBENCH_RUSTC_VERSION").map(String::from),
            target: option_env!("TASKBENCH_TARGET").map_or_else(fallback_target, String::from),
        }
    }
}

/// The CPU's brand string (the first CPU's; they agree on the machines we run on), falling
/// back to the vendor id, then `unknown`.
fn cpu_model(sys: &System) -> String {
    let Some(cpu) = sys.cpus().first() else {
        return "unknown".to_string();
    };
    [cpu.brand(), cpu.vendor_id()]
        .into_iter()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// Logical CPUs of the machine (not of this process's affinity mask or cgroup quota).
fn logical_cores(sys: &System) -> usize {
    match sys.cpus().len() {
        0 => std::thread::available_parallelism().map_or(0, |n| n.get()),
        n => n,
    }
}

fn os_name() -> String {
    System::long_os_version()
        .or_else(System::name)
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn parse_bool(s: &str) -> Option<bool> {
    s.parse().ok()
}

fn fallback_target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// The SIMD features relevant to inference kernels that this CPU *and* OS support, detected
/// at run time, in a fixed order: `sse4.2`, `avx`, `avx2`, `fma`, `f16c`, `avx512f`,
/// `avx512bw`, `avx512vl`, `avx512vnni`, `avx512bf16`, `amx-tile` on x86-64; `neon` on ARM
/// (from `cfg`, since it is part of the aarch64 baseline).
pub fn cpu_features() -> Vec<String> {
    let mut found: Vec<&str> = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    found.extend(x86_features());
    #[cfg(target_arch = "x86_64")]
    if amx_tile() {
        found.push("amx-tile");
    }
    if cfg!(any(target_arch = "aarch64", target_feature = "neon")) {
        found.push("neon");
    }
    found.into_iter().map(String::from).collect()
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn x86_features() -> impl Iterator<Item = &'static str> {
    let detected = [
        ("sse4.2", is_x86_feature_detected!("sse4.2")),
        ("avx", is_x86_feature_detected!("avx")),
        ("avx2", is_x86_feature_detected!("avx2")),
        ("fma", is_x86_feature_detected!("fma")),
        ("f16c", is_x86_feature_detected!("f16c")),
        ("avx512f", is_x86_feature_detected!("avx512f")),
        ("avx512bw", is_x86_feature_detected!("avx512bw")),
        ("avx512vl", is_x86_feature_detected!("avx512vl")),
        ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
        ("avx512bf16", is_x86_feature_detected!("avx512bf16")),
    ];
    detected
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
}

/// AMX tiles, checked by hand because `is_x86_feature_detected!("amx-tile")` is still
/// unstable: the CPU must report AMX-TILE (CPUID.(EAX=7,ECX=0):EDX bit 24) and the OS must
/// have enabled the tile state in XCR0 (bits 17 XTILECFG and 18 XTILEDATA), as std_detect
/// itself checks. On Linux a process must still ask for the state (`arch_prctl`) before use.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid*` are safe since Rust 1.87; main's MSRV is 1.85.
fn amx_tile() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    const OSXSAVE: u32 = 1 << 27;
    const AMX_TILE: u32 = 1 << 24;
    const XTILE_STATE: u64 = 0b11 << 17;
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is only read when leaf 0 says it exists.
    let (max_leaf, leaf1_ecx) = unsafe { (__cpuid(0).eax, __cpuid(1).ecx) };
    if max_leaf < 7 || leaf1_ecx & OSXSAVE == 0 {
        return false;
    }
    // SAFETY: as above, leaf 7 is supported.
    let leaf7_edx = unsafe { __cpuid_count(7, 0).edx };
    // SAFETY: OSXSAVE set means the OS enabled XGETBV, so reading XCR0 cannot fault.
    leaf7_edx & AMX_TILE != 0 && unsafe { xcr0() } & XTILE_STATE == XTILE_STATE
}

/// Reads XCR0. Safety: only call when CPUID.1:ECX.OSXSAVE is set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xcr0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

/// Peak resident set size of this process so far (Linux `VmHWM` from `/proc/self/status`).
///
/// `None` on other operating systems, where there is no equally cheap and comparable number
/// (macOS's `ru_maxrss` counts differently), and when the file cannot be read or parsed.
/// Call it at the end of a run: the high-water mark only grows.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_vm_hwm(&status)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    None
}

/// The `VmHWM:   123456 kB` line of a `/proc/<pid>/status` file, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut parts = line.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_hwm() {
        let status = "Name:\ttaskbench\nVmPeak:\t  999 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345 * 1024));
    }

    #[test]
    fn odd_vm_hwm_lines_are_none() {
        assert_eq!(parse_vm_hwm("VmRSS:\t1 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\tlots kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t12 MB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t12\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_rss_is_measured_on_linux() {
        let bytes = peak_rss_bytes().expect("VmHWM on Linux");
        assert!(bytes > 1 << 20, "{bytes}");
    }

    #[test]
    fn detect_fills_in_the_machine() {
        let env = Environment::detect();
        println!("{env:#?}");
        assert!(env.logical_cores >= 1);
        assert!(env.memory_bytes > 0);
        assert!(!env.cpu_model.is_empty() && !env.os.is_empty());
        assert_eq!(env.taskbench_version, env!("CARGO_PKG_VERSION"));
        assert!(!env.candle_version.is_empty());
        assert!(env
            .rustc_version
            .as_deref()
            .unwrap_or("")
            .starts_with("rustc "));
        assert!(
            env.target.contains(std::env::consts::ARCH),
            "{}",
            env.target
        );
    }

    #[test]
    fn cpu_features_are_known_names_in_order() {
        const ORDER: [&str; 12] = [
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "amx-tile",
            "neon",
        ];
        let features = cpu_features();
        let positions: Vec<usize> = features
            .iter()
            .map(|f| ORDER.iter().position(|o| o == f).expect("known name"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{features:?}");
    }
}
