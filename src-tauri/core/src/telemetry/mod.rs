//! What a local instance costs the machine: the GPUs (NVML) and the CPU and
//! memory of an instance's process tree (sysinfo). Sampled on demand: the
//! manager calls on its resource interval, nothing here runs on its own.
//!
//! Without an NVIDIA driver (CI, laptops, macOS) GPU figures are simply absent:
//! nothing here ever fails because NVML is missing.

mod gpu;
mod process;

pub use gpu::{gpu_usage_of, list_gpus, nvml_status, GpuInfo, ProcessGpuUsage};
pub use process::{ProcessTreeSampler, ProcessTreeUsage};
