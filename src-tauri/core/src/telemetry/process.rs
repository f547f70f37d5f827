//! CPU and resident memory of a process and all its descendants (ComfyUI itself
//! starts none, but custom nodes may). CPU percent is measured between two
//! refreshes, so the sampler is kept and asked again on every interval: its
//! first answer reports 0 % CPU.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// What a process tree uses now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessTreeUsage {
    /// Sum over the tree; 100 = one core fully used.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    /// The root first, then its descendants.
    pub pids: Vec<u32>,
    /// The machine's total memory, to turn `rss_bytes` into a share.
    pub total_memory_bytes: u64,
}

impl ProcessTreeUsage {
    /// RSS as a percentage of the machine's memory (the seed's `memoryUsage`).
    pub fn memory_percent(&self) -> f64 {
        if self.total_memory_bytes == 0 {
            return 0.0;
        }
        self.rss_bytes as f64 * 100.0 / self.total_memory_bytes as f64
    }
}

/// Keeps sysinfo's process table between samples (needed for CPU percent).
pub struct ProcessTreeSampler {
    system: Option<System>,
}

impl Default for ProcessTreeSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTreeSampler {
    pub fn new() -> Self {
        let system = System::new()
            .map_err(|e| tracing::warn!("process telemetry is off: {e}"))
            .ok();
        Self { system }
    }

    /// The usage of `root` and its descendants, or None when `root` is gone
    /// (or the platform gives no process table).
    pub fn sample(&mut self, root: u32) -> Option<ProcessTreeUsage> {
        let system = self.system.as_mut()?;
        // Every process, because descendants are found through their parent links.
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );
        system.refresh_memory();
        let root_pid = Pid::from_u32(root);
        system.process(root_pid)?;
        let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
        for (pid, p) in system.processes() {
            if p.thread_kind().is_some() {
                continue;
            }
            if let Some(parent) = p.parent() {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let mut usage = ProcessTreeUsage {
            total_memory_bytes: system.total_memory(),
            ..ProcessTreeUsage::default()
        };
        let mut visited = HashSet::new();
        let mut stack = vec![root_pid];
        while let Some(pid) = stack.pop() {
            if !visited.insert(pid) {
                continue;
            }
            let Some(p) = system.process(pid) else {
                continue;
            };
            usage.cpu_percent += f64::from(p.cpu_usage());
            usage.rss_bytes += p.memory();
            usage.pids.push(pid.as_u32());
            stack.extend(children.get(&pid).into_iter().flatten().copied());
        }
        Some(usage)
    }
}
