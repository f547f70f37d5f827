//! Instances the app launches itself: the manager's side of the supervisor.
//! A supervisor owns the process; this file maps its events onto the
//! lifecycle (`Exited` unasked -> error, a restart -> starting, `GaveUp` ->
//! error plus an alert) and restarts a process that stays unhealthy.

use super::{Action, InstanceManager, ManagerError};
use crate::supervisor::{
    find_adoptable, stop_adopted, GpuPinning, InstanceDirs, LaunchContext, LogBatch, LogFollower,
    ProcessRecord, SupervisorEvent, SupervisorHandle,
};
use crate::telemetry;
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use storycore_types::{
    Alert, AlertKind, AppEvent, InstanceConfig, InstanceHealth, InstancePath, InstanceStatus,
    LogLines,
};
use tokio::sync::broadcast::error::RecvError;

impl InstanceManager {
    /// Launches the process of a local instance (already moved to `starting`).
    pub(super) async fn launch_local(
        &self,
        id: &str,
        config: &InstanceConfig,
    ) -> Result<(), ManagerError> {
        let ctx = self.launch_context(id);
        let options = self.inner.options.supervisor;
        let handle = SupervisorHandle::launch(config, &ctx, options)
            .await
            .map_err(|source| ManagerError::Launch {
                id: id.to_string(),
                source: Box::new(source),
            })?;
        let events = handle.subscribe();
        tokio::spawn(follow_log(
            Arc::downgrade(&self.inner),
            id.to_string(),
            handle.log().follow(),
        ));
        let handle = Arc::new(handle);
        self.lock().get_mut(id)?.process = Some(handle);
        tokio::spawn(follow_process(
            Arc::downgrade(&self.inner),
            id.to_string(),
            events,
        ));
        Ok(())
    }

    /// On app exit with "keep running": leaves every launched process running
    /// (its `process.json` stays), so the next launch re-attaches instead of
    /// starting duplicates.
    pub async fn detach_all(&self) {
        let processes: Vec<(String, Arc<SupervisorHandle>)> = {
            let mut reg = self.lock();
            for e in reg.entries.iter_mut() {
                // Re-attached ones stay running too: forget them, stop nothing.
                e.adopted = None;
            }
            reg.entries
                .iter_mut()
                .filter_map(|e| e.process.take().map(|p| (e.instance.id.clone(), p)))
                .collect()
        };
        for (id, p) in processes {
            match p.detach().await {
                Ok(pid) => tracing::info!(%id, ?pid, "left running for the next launch"),
                Err(e) => tracing::warn!(%id, "could not leave it running: {e}"),
            }
        }
    }

    /// At app start: local instances whose ComfyUI a previous run left running
    /// (checked by pid, command line and an answer from the server) are
    /// monitored again instead of started twice. Returns the ids re-attached.
    pub async fn reattach_local(&self) -> Vec<String> {
        let locals: Vec<String> = self
            .list()
            .into_iter()
            .filter(|i| i.config.is_local_launch() && i.status == InstanceStatus::Stopped)
            .map(|i| i.id)
            .collect();
        let mut attached = Vec::new();
        for id in locals {
            let Ok(dirs) = InstanceDirs::new(&self.inner.options.data_dir, &id) else {
                continue;
            };
            let Ok(record) = find_adoptable(&dirs).await else {
                continue;
            };
            let Ok(config) = self.config_of(&id) else {
                continue;
            };
            if self.transition(&id, Action::Start).is_err() {
                continue;
            }
            if let Ok(e) = self.lock().get_mut(&id) {
                e.adopted = Some(record.clone());
            }
            if let Err(e) = self.start_monitor(&id, &config) {
                self.fail(&id, &e.to_string());
                continue;
            }
            tracing::info!(%id, pid = record.pid, "re-attached to the ComfyUI a previous run left running");
            attached.push(id);
        }
        attached
    }

    fn launch_context(&self, id: &str) -> LaunchContext {
        let mut ctx = LaunchContext::new(self.inner.options.data_dir.clone());
        ctx.gpus = telemetry::list_gpus();
        // Instances already on each GPU, for `auto`.
        let mut per_gpu: HashMap<u32, usize> = HashMap::new();
        for e in &self.lock().entries {
            if e.instance.id == id {
                continue;
            }
            if let Some(GpuPinning::Gpu(g)) = e.process.as_ref().map(|p| p.spec().gpu) {
                *per_gpu.entry(g).or_default() += 1;
            }
        }
        ctx.instances_per_gpu = per_gpu;
        ctx
    }

    /// The pid of a local instance's ComfyUI process (the leader of its group).
    pub fn process_pid(&self, id: &str) -> Option<u32> {
        self.lock().get(id)?.process.as_ref()?.pid()
    }

    /// The last lines the instance's process wrote, numbered so the live
    /// `LogLines` events continue them (no lines for attached ones).
    pub fn log_tail(&self, id: &str, lines: usize) -> Result<LogLines, ManagerError> {
        let reg = self.lock();
        let e = reg.get(id).ok_or_else(|| super::not_found(id))?;
        let w = e.process.as_ref().map(|p| p.log().window(lines));
        Ok(log_lines(id, w.unwrap_or_default()))
    }

    /// Where a local instance keeps what the user may want to open: ComfyUI's
    /// output folder (created if missing) or its current log file.
    pub fn instance_path(&self, id: &str, what: InstancePath) -> Result<PathBuf, ManagerError> {
        let inst = self.get(id).ok_or_else(|| super::not_found(id))?;
        if inst.config.comfyui_path.is_none() {
            return Err(ManagerError::Remote {
                id: id.to_string(),
                name: inst.name,
                what: match what {
                    InstancePath::Output => "output folder",
                    InstancePath::Log => "log",
                },
            });
        }
        let dirs = InstanceDirs::new(&self.inner.options.data_dir, id).map_err(|e| {
            ManagerError::Launch {
                id: id.to_string(),
                source: Box::new(e),
            }
        })?;
        match what {
            InstancePath::Output => {
                let dir = dirs.output();
                std::fs::create_dir_all(&dir).map_err(|e| ManagerError::Launch {
                    id: id.to_string(),
                    source: Box::new(crate::supervisor::SupervisorError::io(
                        id,
                        "create the folder",
                        &dir,
                        e,
                    )),
                })?;
                Ok(dir)
            }
            InstancePath::Log => {
                let file = dirs.log_file();
                if file.exists() {
                    Ok(file)
                } else {
                    Err(ManagerError::Log {
                        id: id.to_string(),
                        detail: format!(
                            "{} does not exist yet: start the instance once",
                            file.display()
                        ),
                    })
                }
            }
        }
    }

    /// The whole log of the instance's process, all rotated files in order.
    pub fn export_log(&self, id: &str) -> Result<String, ManagerError> {
        let process = self
            .lock()
            .get(id)
            .ok_or_else(|| super::not_found(id))?
            .process
            .clone();
        match process {
            Some(p) => p.log().export().map_err(|e| ManagerError::Log {
                id: id.to_string(),
                detail: e.to_string(),
            }),
            None => Ok(String::new()),
        }
    }

    fn alert(&self, id: &str, kind: AlertKind) {
        let url = self
            .get(id)
            .map(|i| i.config.base_url())
            .unwrap_or_default();
        let message = crate::health::describe_alert(&kind, id, &url, None);
        tracing::warn!("{message}");
        self.emit(AppEvent::Alert(Alert {
            instance_id: id.to_string(),
            kind,
            message,
            at: Utc::now(),
        }));
    }
}

/// Adds the CPU and RAM of a local instance's process tree (sysinfo) and its
/// GPU memory (NVML, where the driver tells) to the health's system stats.
pub(super) fn add_process_figures(m: &InstanceManager, id: &str, health: &mut InstanceHealth) {
    let (pid, mut sampler) = {
        let mut reg = m.lock();
        let Ok(e) = reg.get_mut(id) else { return };
        let Some(pid) = e.process.as_ref().and_then(|p| p.pid()) else {
            return;
        };
        (pid, e.sampler.take().unwrap_or_default())
    };
    let usage = sampler.sample(pid);
    if let Ok(e) = m.lock().get_mut(id) {
        e.sampler = Some(sampler);
    }
    let Some(usage) = usage else { return };
    let stats = health.system_stats.get_or_insert_with(Default::default);
    stats.cpu_usage = usage.cpu_percent;
    stats.memory_usage = usage.memory_percent();
    let gpu = telemetry::gpu_usage_of(&usage.pids);
    if let Some(bytes) = gpu.memory_bytes {
        stats.vram_used_bytes = Some(bytes);
    }
    if let Some(u) = gpu.utilization_percent {
        stats.gpu_usage = Some(f64::from(u));
    }
}

/// Stops a process a previous run left running and this one re-attached to.
pub(super) async fn end_adopted(m: &InstanceManager, id: &str, record: ProcessRecord) {
    if let Ok(dirs) = InstanceDirs::new(&m.inner.options.data_dir, id) {
        stop_adopted(&dirs, &record, m.inner.options.supervisor.stop_grace).await;
    }
}

/// Ends a process handle: stops the process unless a caller still holds it.
pub(super) async fn end_process(p: Arc<SupervisorHandle>) {
    if let Err(e) = p.stop().await {
        tracing::debug!("stopping a process that had already ended: {e}");
    }
}

/// A log batch as the UI receives it.
fn log_lines(id: &str, b: LogBatch) -> LogLines {
    LogLines {
        instance_id: id.to_string(),
        session: b.session,
        first: b.first,
        lines: b.lines,
    }
}

/// Pushes a local instance's new log lines to the UI, at most a few batches
/// a second (a chatty ComfyUI must not flood the event channel). Ends when
/// the process's log is dropped or the manager is gone.
async fn follow_log(inner: std::sync::Weak<super::Inner>, id: String, mut log: LogFollower) {
    while let Some(batch) = log.next_batch().await {
        let Some(inner) = inner.upgrade() else { return };
        InstanceManager { inner }.emit(AppEvent::LogLines(log_lines(&id, batch)));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn follow_process(
    inner: std::sync::Weak<super::Inner>,
    id: String,
    mut events: tokio::sync::broadcast::Receiver<SupervisorEvent>,
) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Some(inner) = inner.upgrade() else { return };
        let m = InstanceManager { inner };
        match ev {
            SupervisorEvent::Exited {
                asked: false,
                summary,
                last_lines,
                ..
            } => {
                let tail = last_lines.iter().rev().take(3).rev().cloned();
                let reason = std::iter::once(summary.clone())
                    .chain(tail)
                    .collect::<Vec<_>>()
                    .join("\n");
                m.fail(&id, &reason);
                m.alert(&id, AlertKind::Crashed { summary });
            }
            SupervisorEvent::Spawned { start, .. } if start > 1 => {
                // A restart by the policy: error -> starting; the health
                // monitor makes it running when it answers.
                let _ = m.transition(&id, Action::Restart);
            }
            SupervisorEvent::SpawnFailed { message } => m.fail(&id, &message),
            SupervisorEvent::GaveUp { starts, .. } => {
                m.fail(
                    &id,
                    &format!("crashed {starts} times: the app stopped restarting it"),
                );
                m.alert(
                    &id,
                    AlertKind::GaveUp {
                        starts: starts as u32,
                    },
                );
            }
            SupervisorEvent::Stopped | SupervisorEvent::Detached { .. } => return,
            _ => {}
        }
    }
}

/// Restarts a local process that has been unhealthy for longer than allowed
/// (a hung ComfyUI: port open, no answers). Counts toward the start limit.
pub(super) async fn restart_if_hung(m: &InstanceManager, id: &str) {
    let process = {
        let mut reg = m.lock();
        let Ok(e) = reg.get_mut(id) else { return };
        let due = e.instance.status == InstanceStatus::Running
            && e.unhealthy_for() >= Some(m.inner.options.unhealthy_restart_after);
        if !due {
            return;
        }
        e.clear_unhealthy();
        e.process.clone()
    };
    let Some(p) = process else { return };
    tracing::warn!(%id, "unhealthy for too long: restarting its process");
    if m.transition(id, Action::Restart).is_ok() {
        if let Err(e) = p.restart().await {
            m.fail(id, &e.to_string());
            m.alert(id, AlertKind::GaveUp { starts: 0 });
        }
    }
}
