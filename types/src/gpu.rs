//! GPUs as the app lists them (NVML), for the editor's dropdown and `auto`.

use serde::{Deserialize, Serialize};

/// One GPU as NVML lists it. `index` is NVML's (PCI bus order), the order the
/// supervisor makes CUDA use too (`CUDA_DEVICE_ORDER=PCI_BUS_ID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// Percent of the last sample period a kernel ran; None where the driver does not say.
    pub utilization_percent: Option<u32>,
    pub temperature_celsius: Option<u32>,
}

/// The editor's GPU list: the GPUs, or why there are none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuList {
    pub gpus: Vec<GpuInfo>,
    /// Set when NVML is unavailable (no NVIDIA driver): a sentence for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}
