//! Which GPU a launched ComfyUI uses.
//!
//! The pin goes through the environment only: `CUDA_VISIBLE_DEVICES=<N>` with
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID`, never also `--cuda-device`. ComfyUI's flag
//! merely sets `CUDA_VISIBLE_DEVICES` itself, so passing both would make it
//! look for device N among the one device left visible (index 0) and fail for
//! N > 0. The variable also holds for anything the process starts and for
//! libraries that touch CUDA before ComfyUI parses its flags. PCI bus order
//! makes N mean the GPU that NVML and nvidia-smi call N (CUDA's own default
//! order is "fastest first", which can differ on mixed machines).

use crate::telemetry::GpuInfo;
use std::collections::HashMap;

/// What the config's `gpuDevice` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuRequest {
    /// No field: whatever ComfyUI picks.
    Default,
    Cpu,
    Index(u32),
    Auto,
}

/// What the launch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuPinning {
    /// Nothing set: ComfyUI's default device.
    Default,
    /// `--cpu`.
    Cpu,
    /// `CUDA_VISIBLE_DEVICES=<index>` (NVML/PCI index).
    Gpu(u32),
}

/// Parses `gpuDevice`: an index, `cuda:N`, `cpu` or `auto`.
pub fn parse_gpu_device(value: Option<&str>) -> Result<GpuRequest, String> {
    let Some(value) = value else {
        return Ok(GpuRequest::Default);
    };
    match value.trim() {
        "auto" => Ok(GpuRequest::Auto),
        "cpu" => Ok(GpuRequest::Cpu),
        v => v
            .strip_prefix("cuda:")
            .unwrap_or(v)
            .parse::<u32>()
            .map(GpuRequest::Index)
            .map_err(|_| {
                format!("'{value}' is not a GPU device: use auto, cpu, a GPU number such as 0, or cuda:0")
            }),
    }
}

/// `auto`: the GPU with the fewest instances of this app on it, then the most
/// free memory, then the lowest index. Instances come first because one that
/// has just been started has not allocated its memory yet, so free memory alone
/// would send every instance of an auto-start burst to the same GPU.
pub fn pick_auto_gpu(gpus: &[GpuInfo], instances_per_gpu: &HashMap<u32, usize>) -> Option<u32> {
    gpus.iter()
        .min_by(|a, b| {
            let load = |g: &GpuInfo| instances_per_gpu.get(&g.index).copied().unwrap_or(0);
            load(a)
                .cmp(&load(b))
                .then(b.memory_free_bytes.cmp(&a.memory_free_bytes))
                .then(a.index.cmp(&b.index))
        })
        .map(|g| g.index)
}

/// Turns the request into a pin. `auto` without any GPU listed falls back to
/// ComfyUI's default with a warning (returned, for the log and the UI).
pub fn resolve_gpu(
    request: GpuRequest,
    gpus: &[GpuInfo],
    instances_per_gpu: &HashMap<u32, usize>,
) -> (GpuPinning, Option<String>) {
    match request {
        GpuRequest::Default => (GpuPinning::Default, None),
        GpuRequest::Cpu => (GpuPinning::Cpu, None),
        GpuRequest::Index(i) => (GpuPinning::Gpu(i), None),
        GpuRequest::Auto => match pick_auto_gpu(gpus, instances_per_gpu) {
            Some(i) => (GpuPinning::Gpu(i), None),
            None => (
                GpuPinning::Default,
                Some("gpuDevice is auto but no GPU is listed (NVML unavailable): ComfyUI picks its default device".into()),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, free_gib: u64) -> GpuInfo {
        GpuInfo {
            index,
            name: format!("GPU {index}"),
            uuid: format!("GPU-{index}"),
            memory_total_bytes: 24 << 30,
            memory_free_bytes: free_gib << 30,
            utilization_percent: None,
            temperature_celsius: None,
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse_gpu_device(None), Ok(GpuRequest::Default));
        assert_eq!(parse_gpu_device(Some("auto")), Ok(GpuRequest::Auto));
        assert_eq!(parse_gpu_device(Some("cpu")), Ok(GpuRequest::Cpu));
        assert_eq!(parse_gpu_device(Some("1")), Ok(GpuRequest::Index(1)));
        assert_eq!(parse_gpu_device(Some("cuda:3")), Ok(GpuRequest::Index(3)));
        assert!(parse_gpu_device(Some("cuda:x")).is_err());
        assert!(parse_gpu_device(Some("gpu0")).is_err());
    }

    #[test]
    fn auto_prefers_fewest_instances_then_most_free_memory() {
        let gpus = [gpu(0, 20), gpu(1, 10), gpu(2, 20)];
        let none = HashMap::new();
        assert_eq!(
            pick_auto_gpu(&gpus, &none),
            Some(0),
            "tie on free memory: lowest index"
        );
        let busy0 = HashMap::from([(0, 1)]);
        assert_eq!(pick_auto_gpu(&gpus, &busy0), Some(2));
        let busy02 = HashMap::from([(0, 1), (2, 1)]);
        assert_eq!(
            pick_auto_gpu(&gpus, &busy02),
            Some(1),
            "fewer instances beats more memory"
        );
        assert_eq!(pick_auto_gpu(&[], &none), None);
    }

    #[test]
    fn auto_without_gpus_falls_back_with_a_warning() {
        let (pin, warning) = resolve_gpu(GpuRequest::Auto, &[], &HashMap::new());
        assert_eq!(pin, GpuPinning::Default);
        assert!(warning.unwrap().contains("auto"));
        let (pin, warning) = resolve_gpu(GpuRequest::Auto, &[gpu(4, 1)], &HashMap::new());
        assert_eq!((pin, warning), (GpuPinning::Gpu(4), None));
        assert_eq!(
            resolve_gpu(GpuRequest::Cpu, &[], &HashMap::new()).0,
            GpuPinning::Cpu
        );
    }
}
