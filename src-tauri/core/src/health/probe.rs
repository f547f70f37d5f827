//! One health probe: `GET /system_stats`, timed, and `GET /queue` for the
//! number of active workflows; turned into a [`ProbeOutcome`].

use super::policy::{ProbeOutcome, ResourceSample};
use crate::client::{ComfyClient, QueueSnapshot, SystemStatsResponse};
use std::time::Instant;
use storycore_types::SystemStats;

/// Probes the server. `client` should carry the probe timeout. When `/queue`
/// fails after `/system_stats` answered, the server still counts as up and
/// the active-workflow count stays at `previous_active`.
pub async fn probe(client: &ComfyClient, watch_queue: bool, previous_active: u32) -> ProbeOutcome {
    let started = Instant::now();
    let stats = match client.system_stats().await {
        Ok(s) => s,
        Err(e @ crate::client::ClientError::Unauthorized { .. }) => {
            return ProbeOutcome::Refused {
                error: e.to_string(),
            }
        }
        Err(e) => {
            return ProbeOutcome::Failed {
                error: e.to_string(),
            }
        }
    };
    let response_ms = started.elapsed().as_secs_f64() * 1000.0;
    let queue = if watch_queue {
        match client.queue().await {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::debug!(error = %e, "queue unreadable during a health probe");
                None
            }
        }
    } else {
        None
    };
    let active = queue.as_ref().map_or(previous_active, active_workflows);
    ProbeOutcome::Answered {
        response_ms,
        resources: Some(resource_sample(&stats, active)),
    }
}

/// Counts running plus pending prompts, as the seed's `activeWorkflows`.
pub fn active_workflows(queue: &QueueSnapshot) -> u32 {
    u32::try_from(queue.active()).unwrap_or(u32::MAX)
}

/// Turns ComfyUI's figures into the app's: RAM and per-GPU memory use in
/// percent. A CPU "device" repeats the RAM figures, so it is not counted as VRAM.
/// ComfyUI reports no CPU or GPU utilisation: those stay at 0 / absent here and
/// are filled in by OS telemetry for local instances.
pub fn resource_sample(stats: &SystemStatsResponse, active_workflows: u32) -> ResourceSample {
    let ram = &stats.system;
    let mut usage = Vec::new();
    let memory_usage = percent_used(ram.ram_total, ram.ram_free);
    if let Some(p) = memory_usage {
        usage.push(("RAM".to_string(), p));
    }
    let gpus: Vec<_> = stats.devices.iter().filter(|d| !d.is_cpu()).collect();
    for d in &gpus {
        if let Some(p) = percent_used(d.vram_total, d.vram_free) {
            usage.push((format!("GPU memory ({})", d.name), p));
        }
    }
    let (vram_used, vram_total) = if gpus.is_empty() {
        (None, None)
    } else {
        let total: u64 = gpus.iter().map(|d| d.vram_total).sum();
        let free: u64 = gpus.iter().map(|d| d.vram_free.min(d.vram_total)).sum();
        (Some(total - free), Some(total))
    };
    ResourceSample {
        stats: SystemStats {
            cpu_usage: 0.0,
            memory_usage: memory_usage.unwrap_or(0.0),
            gpu_usage: None,
            active_workflows,
            vram_used_bytes: vram_used,
            vram_total_bytes: vram_total,
        },
        usage,
    }
}

fn percent_used(total: u64, free: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let used = total.saturating_sub(free) as f64;
    Some(used * 100.0 / total as f64)
}
