//! GPUs through NVML. The library handle is opened once per process and kept
//! in a `OnceLock<Result<..>>` (as the `bottom` system monitor does): loading
//! `libnvidia-ml` is slow, and where it is missing every caller gets an empty
//! answer instead of an error, with one warning in the log.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::OnceLock;

pub use storycore_types::GpuInfo;

/// The GPU share of a set of processes (an instance's process tree).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessGpuUsage {
    /// Video memory the processes hold, summed over every GPU; None where the
    /// driver does not report per-process memory (or no GPU runs them).
    pub memory_bytes: Option<u64>,
    /// Highest per-process SM utilisation seen on any GPU.
    pub utilization_percent: Option<u32>,
}

static NVML_INIT: OnceLock<Result<Nvml, String>> = OnceLock::new();

fn nvml() -> Option<&'static Nvml> {
    NVML_INIT
        .get_or_init(|| {
            Nvml::init().map_err(|e| {
                tracing::warn!(
                    "GPU telemetry is off: NVML could not be loaded ({e}); no NVIDIA driver?"
                );
                e.to_string()
            })
        })
        .as_ref()
        .ok()
}

/// Why GPU telemetry is off, or None when NVML works.
pub fn nvml_status() -> Option<String> {
    nvml();
    NVML_INIT.get().and_then(|r| r.as_ref().err().cloned())
}

/// Every GPU NVML sees; empty without NVML. A device that fails to answer is
/// skipped (logged), so one broken GPU does not hide the others.
pub fn list_gpus() -> Vec<GpuInfo> {
    let Some(nvml) = nvml() else {
        return Vec::new();
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("NVML could not count the GPUs: {e}");
            return Vec::new();
        }
    };
    (0..count)
        .filter_map(|index| {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| tracing::warn!("NVML could not open GPU {index}: {e}"))
                .ok()?;
            let memory = device
                .memory_info()
                .map_err(|e| tracing::warn!("NVML could not read GPU {index}'s memory: {e}"))
                .ok()?;
            Some(GpuInfo {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                uuid: device.uuid().unwrap_or_default(),
                memory_total_bytes: memory.total,
                memory_free_bytes: memory.free,
                utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
                temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
            })
        })
        .collect()
}

/// The GPU memory and utilisation of these processes, over all GPUs.
pub fn gpu_usage_of(pids: &[u32]) -> ProcessGpuUsage {
    let mut usage = ProcessGpuUsage::default();
    let Some(nvml) = nvml() else {
        return usage;
    };
    let wanted: HashSet<u32> = pids.iter().copied().collect();
    let count = nvml.device_count().unwrap_or(0);
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        // A process doing both compute and graphics is listed twice: count it once per GPU.
        let mut seen = HashSet::new();
        let processes = device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .chain(device.running_graphics_processes().unwrap_or_default());
        for p in processes {
            if !wanted.contains(&p.pid) || !seen.insert(p.pid) {
                continue;
            }
            if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                *usage.memory_bytes.get_or_insert(0) += bytes;
            }
        }
        if let Ok(samples) = device.process_utilization_stats(None) {
            for s in samples.iter().filter(|s| wanted.contains(&s.pid)) {
                let best = usage.utilization_percent.unwrap_or(0).max(s.sm_util);
                usage.utilization_percent = Some(best);
            }
        }
    }
    usage
}
