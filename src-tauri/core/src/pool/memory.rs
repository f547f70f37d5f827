//! Where a pool's memory figures come from. The app always reads the machine
//! ([`SystemMemory`]: NVML for GPUs, sysinfo for RAM); tests replace it with
//! [`FixedMemory`], since NVML is absent on the machines that run them.

use crate::telemetry::{self, GpuInfo, ProcessTreeSampler};
use std::sync::Mutex;

pub trait MemorySource: Send + Sync {
    /// Every GPU with its free memory (empty without NVML).
    fn gpus(&self) -> Vec<GpuInfo>;
    /// RAM the machine can still give, bytes.
    fn available_ram(&self) -> u64;
    /// Video memory a process tree holds, bytes (None: not reported).
    fn vram_of(&self, pids: &[u32]) -> Option<u64>;
    /// Resident memory of the process tree under `root`, bytes, and its pids.
    fn ram_of(&self, root: u32) -> Option<(u64, Vec<u32>)> {
        let usage = ProcessTreeSampler::new().sample(root)?;
        Some((usage.rss_bytes, usage.pids))
    }
}

/// The machine itself.
#[derive(Default)]
pub struct SystemMemory {
    system: Mutex<Option<sysinfo::System>>,
}

impl MemorySource for SystemMemory {
    fn gpus(&self) -> Vec<GpuInfo> {
        telemetry::list_gpus()
    }

    fn available_ram(&self) -> u64 {
        let mut guard = self.system.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = sysinfo::System::new()
                .map_err(|e| tracing::warn!("free RAM is unknown: {e}"))
                .ok();
        }
        let Some(system) = guard.as_mut() else {
            return 0;
        };
        system.refresh_memory();
        system.available_memory()
    }

    fn vram_of(&self, pids: &[u32]) -> Option<u64> {
        telemetry::gpu_usage_of(pids).memory_bytes
    }
}

/// Figures a test sets (and changes while the pool runs).
#[derive(Default)]
pub struct FixedMemory {
    state: Mutex<(Vec<GpuInfo>, u64)>,
}

impl FixedMemory {
    /// GPUs as `(free MiB, total MiB)`, indexed from 0, and free RAM in MiB.
    pub fn new(gpus: &[(u64, u64)], ram_mib: u64) -> Self {
        let s = Self::default();
        s.set(gpus, ram_mib);
        s
    }

    pub fn set(&self, gpus: &[(u64, u64)], ram_mib: u64) {
        let list = gpus
            .iter()
            .enumerate()
            .map(|(i, (free, total))| GpuInfo {
                index: i as u32,
                name: format!("Test GPU {i}"),
                uuid: format!("GPU-test-{i}"),
                memory_total_bytes: total << 20,
                memory_free_bytes: free << 20,
                utilization_percent: None,
                temperature_celsius: None,
            })
            .collect();
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (list, ram_mib << 20);
    }
}

impl MemorySource for FixedMemory {
    fn gpus(&self) -> Vec<GpuInfo> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    fn available_ram(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    fn vram_of(&self, _pids: &[u32]) -> Option<u64> {
        None
    }
}
