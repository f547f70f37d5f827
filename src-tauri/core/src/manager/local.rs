//! Instances the app launches itself: the manager's side of the supervisor.
//! A supervisor owns the process (launched now, or re-attached after an
//! earlier run left it running); this file maps its events onto the
//! lifecycle (`Exited` unasked -> error, a restart -> starting with a fresh
//! start phase, `GaveUp` -> error plus an alert), fails a start that misses
//! its deadline and restarts a process that stays unhealthy.

use super::{Action, InstanceManager, ManagerError};
use crate::supervisor::{
    find_adoptable, pid_alive, stop_adopted, ExitCause, GpuPinning, InstanceDirs, LaunchContext,
    LogBatch, LogFollower, SupervisorEvent, SupervisorHandle,
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
        self.attach_supervisor(id, handle)
    }

    /// Keeps the supervisor and follows its events and log.
    fn attach_supervisor(&self, id: &str, handle: SupervisorHandle) -> Result<(), ManagerError> {
        let events = handle.subscribe();
        self.spawn_for(
            id,
            follow_log(
                Arc::downgrade(&self.inner),
                id.to_string(),
                handle.log().follow(),
            ),
        );
        let handle = Arc::new(handle);
        self.lock().get_mut(id)?.process = Some(handle);
        self.spawn_for(
            id,
            follow_process(Arc::downgrade(&self.inner), id.to_string(), events),
        );
        Ok(())
    }

    /// On app exit with "keep running": leaves every launched process running
    /// (its `process.json` stays), so the next launch re-attaches instead of
    /// starting duplicates.
    pub async fn detach_all(&self) {
        // Whatever the setting said before: these must survive the exit.
        self.inner.guardian.set_keep(true);
        let processes: Vec<(String, Arc<SupervisorHandle>)> = {
            let mut reg = self.lock();
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
    /// supervised and monitored again instead of started twice: a crash, a
    /// hang or a stop is then handled as for one launched now. Returns the
    /// ids re-attached.
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
            let ctx = self.launch_context(&id);
            let handle = match SupervisorHandle::adopt(
                &config,
                &ctx,
                self.inner.options.supervisor,
                &record,
            ) {
                Ok(h) => h,
                Err(e) => {
                    // Its config no longer launches: stop it rather than
                    // leave a server nobody supervises.
                    tracing::warn!(%id, "cannot supervise the ComfyUI left running ({e}): stopping it");
                    stop_adopted(&dirs, &record, self.inner.options.supervisor.stop_grace).await;
                    continue;
                }
            };
            if self.transition(&id, Action::Start).is_err() {
                continue;
            }
            let started = self
                .attach_supervisor(&id, handle)
                .and_then(|()| self.start_monitor(&id, &config, true));
            if let Err(e) = started {
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
        ctx.guardian = Some(self.inner.guardian.clone());
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

    /// Whether a supervisor holds the instance's process: running it, or
    /// waiting to restart it after a crash.
    pub fn supervised(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|e| e.process.is_some())
    }

    /// The pid of a local instance's ComfyUI process (the leader of its group).
    pub fn process_pid(&self, id: &str) -> Option<u32> {
        self.lock().get(id)?.process.as_ref()?.pid()
    }

    /// The last lines the instance's process wrote, numbered so the live
    /// `LogLines` events continue them (no lines for attached ones).
    pub fn log_tail(&self, id: &str, lines: usize) -> Result<LogLines, ManagerError> {
        let reg = self.lock();
        let e = reg.get(id).ok_or_else(|| super::error::not_found(id))?;
        let w = e.process.as_ref().map(|p| p.log().window(lines));
        Ok(log_lines(id, w.unwrap_or_default()))
    }

    /// Where a local instance keeps what the user may want to open: ComfyUI's
    /// output folder (created if missing) or its current log file.
    pub fn instance_path(&self, id: &str, what: InstancePath) -> Result<PathBuf, ManagerError> {
        let inst = self.get(id).ok_or_else(|| super::error::not_found(id))?;
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

    /// The whole log of the instance's process, all rotated files in order
    /// (up to 64 MiB: read on the blocking pool).
    pub async fn export_log(&self, id: &str) -> Result<String, ManagerError> {
        let process = self
            .lock()
            .get(id)
            .ok_or_else(|| super::error::not_found(id))?
            .process
            .clone();
        let Some(p) = process else {
            return Ok(String::new());
        };
        let read = tokio::task::spawn_blocking(move || p.log().export())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()));
        read.and_then(|r| r).map_err(|e| ManagerError::Log {
            id: id.to_string(),
            detail: e.to_string(),
        })
    }

    /// How many times the instance's process ended on its own in this run,
    /// and what the last end looked like it was about.
    pub fn exits(&self, id: &str) -> (u64, Option<ExitCause>) {
        self.lock()
            .get(id)
            .map(|e| e.exits.clone())
            .unwrap_or_default()
    }

    /// Whether the process of a local instance lives: `None` for an instance
    /// the app does not run (attached), `Some(false)` once it has ended.
    pub fn process_alive(&self, id: &str) -> Option<bool> {
        let pid = {
            let reg = self.lock();
            let e = reg.get(id)?;
            if !e.instance.config.is_local_launch() {
                return None;
            }
            e.process.as_ref().and_then(|p| p.pid())
        };
        Some(pid.is_some_and(pid_alive))
    }

    /// Kills a local instance's process that stays alive without answering;
    /// the restart policy brings it back. False when there was none to kill.
    pub async fn kill_hung(&self, id: &str, silent_for: std::time::Duration) -> bool {
        let Some(p) = self.lock().get(id).and_then(|e| e.process.clone()) else {
            return false;
        };
        tracing::warn!(%id, ?silent_for, "alive but not answering: killing its process");
        let cause = ExitCause::Hung {
            seconds: silent_for.as_secs(),
        };
        p.fail(cause, std::time::Duration::ZERO)
            .await
            .unwrap_or(false)
    }

    /// The start did not reach a first answer in time. A local instance's
    /// process is stopped as failed (its supervisor's restart policy then
    /// applies, as after a crash); an attached one goes to `error`.
    pub(super) async fn start_timed_out(&self, id: &str) {
        let (process, config, since) = {
            let reg = self.lock();
            let Some(e) = reg.get(id) else { return };
            if e.instance.status != InstanceStatus::Starting {
                return;
            }
            (
                e.process.clone(),
                e.instance.config.clone(),
                e.instance.status_since,
            )
        };
        let seconds = since
            .map(|s| (Utc::now() - s).num_seconds().max(0) as u64)
            .unwrap_or(config.start_timeout() / 1000);
        tracing::warn!(%id, seconds, "no answer within the start timeout");
        if let Some(p) = process {
            let cause = ExitCause::StartTimeout { seconds };
            if p.fail(cause, self.inner.options.supervisor.stop_grace)
                .await
                .unwrap_or(false)
            {
                return; // its Exited event moves it to error, with the log tail
            }
        }
        let reason = format!(
            "no ComfyUI answered at {} within {seconds} s of the start: check that it runs there, and the host, port and scheme (Edit); then restart it",
            config.base_url()
        );
        // The alert first: once the status is error, the health monitor may
        // raise its own, generic one (BecameUnhealthy); the specific one leads.
        self.alert(id, AlertKind::StartTimedOut { seconds });
        self.fail(id, &reason);
    }

    /// Deletes what the app kept of an instance: its files in the config
    /// folder and its runtime folder (log, temp, settings, database), but not
    /// the images ComfyUI saved in its output folder.
    pub(super) fn remove_instance_files(&self, id: &str) {
        let removed = {
            // Not while its health history is being written (it would be back).
            let _writer = self.history_writer();
            crate::store::remove_instance_files(&self.inner.options.config_dir, id)
        };
        if let Err(e) = removed {
            tracing::warn!(%id, "could not remove its per-instance files: {e}");
        }
        let Ok(dirs) = InstanceDirs::new(&self.inner.options.data_dir, id) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&dirs.root) else {
            return;
        };
        let output = dirs.output();
        let mut kept_output = false;
        for entry in entries.flatten() {
            let path = entry.path();
            if path == output && std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some()) {
                kept_output = true;
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
        if kept_output {
            tracing::info!(%id, "its output folder {} is kept (your images)", output.display());
        } else {
            let _ = std::fs::remove_dir(&dirs.root);
        }
    }

    /// Ids that still have files of a deleted instance (a new instance gets
    /// another id, so it inherits nothing). Read before taking the lock.
    pub(super) fn ids_with_leftovers(&self) -> std::collections::HashSet<String> {
        let mut ids = std::collections::HashSet::new();
        let data = self.inner.options.data_dir.join("instances");
        for e in std::fs::read_dir(data).into_iter().flatten().flatten() {
            ids.insert(e.file_name().to_string_lossy().into_owned());
        }
        for e in std::fs::read_dir(&self.inner.options.config_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("instance_").and_then(|n| {
                n.strip_suffix("_health.json")
                    .or_else(|| n.strip_suffix("_workflows.json"))
            });
            if let Some(id) = id {
                ids.insert(id.to_string());
            }
        }
        ids
    }

    /// While starting, the last line the server wrote is its progress.
    fn note_start_progress(&self, id: &str, line: &str) {
        let view = {
            let mut reg = self.lock();
            let Ok(e) = reg.get_mut(id) else { return };
            if e.instance.status != InstanceStatus::Starting {
                return;
            }
            let line: String = line.trim().chars().take(200).collect();
            if e.instance.start_progress.as_deref() == Some(line.as_str()) {
                return;
            }
            e.instance.start_progress = Some(line);
            e.view()
        };
        self.emit_instance(&view);
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
pub(super) async fn add_process_figures(
    m: &InstanceManager,
    id: &str,
    health: &mut InstanceHealth,
) {
    let (pid, mut sampler) = {
        let mut reg = m.lock();
        let Ok(e) = reg.get_mut(id) else { return };
        let Some(pid) = e.process.as_ref().and_then(|p| p.pid()) else {
            return;
        };
        (pid, e.sampler.take().unwrap_or_default())
    };
    // A read of /proc and of the driver: on the blocking pool.
    let sampled = tokio::task::spawn_blocking(move || {
        let usage = sampler.sample(pid);
        let gpu = usage.as_ref().map(|u| telemetry::gpu_usage_of(&u.pids));
        (sampler, usage, gpu)
    })
    .await;
    let Ok((sampler, usage, gpu)) = sampled else {
        return;
    };
    if let Ok(e) = m.lock().get_mut(id) {
        e.sampler = Some(sampler);
    }
    let (Some(usage), Some(gpu)) = (usage, gpu) else {
        return;
    };
    let stats = health.system_stats.get_or_insert_with(Default::default);
    stats.cpu_usage = usage.cpu_percent;
    stats.memory_usage = usage.memory_percent();
    if let Some(bytes) = gpu.memory_bytes {
        stats.vram_used_bytes = Some(bytes);
    }
    if let Some(u) = gpu.utilization_percent {
        stats.gpu_usage = Some(f64::from(u));
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
        let m = InstanceManager { inner };
        if let Some(line) = batch.lines.iter().rev().find(|l| !l.trim().is_empty()) {
            m.note_start_progress(&id, line);
        }
        m.emit(AppEvent::LogLines(log_lines(&id, batch)));
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
                cause,
                ..
            } => {
                let tail = last_lines.iter().rev().take(3).rev().cloned();
                let reason = std::iter::once(summary.clone())
                    .chain(tail)
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Ok(e) = m.lock().get_mut(&id) {
                    e.exits = (e.exits.0 + 1, cause.clone());
                }
                // The alert before the status: once it is error, the health
                // monitor may raise its own, generic one (BecameUnhealthy), which
                // came first now and then under load (faults:: saw it so).
                match cause {
                    Some(ExitCause::StartTimeout { seconds }) => {
                        m.alert(&id, AlertKind::StartTimedOut { seconds })
                    }
                    _ => m.alert(&id, AlertKind::Crashed { summary }),
                }
                m.fail(&id, &reason);
            }
            // A restart by the policy: error -> starting, with a fresh start
            // phase; the monitor makes it running at its first answer.
            SupervisorEvent::Spawned { start, .. }
                if start > 1 && m.transition(&id, Action::Restart).is_ok() =>
            {
                let monitored = m
                    .config_of(&id)
                    .and_then(|config| m.start_monitor(&id, &config, true));
                if let Err(e) = monitored {
                    m.fail(&id, &e.to_string());
                }
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
/// (a hung ComfyUI: port open, no answers; or a stopped one): it is killed as
/// failed, and its supervisor restarts it under the restart policy (so it
/// counts toward the start limit), which ends in `running` at its first
/// answer. Re-attached processes too: they are supervised the same way.
pub(super) async fn restart_if_hung(m: &InstanceManager, id: &str) {
    let after = m.inner.options.unhealthy_restart_after;
    let due = {
        let mut reg = m.lock();
        let Ok(e) = reg.get_mut(id) else { return };
        let due = e.instance.status == InstanceStatus::Running
            && e.process.is_some()
            && e.unhealthy_for() >= Some(after);
        if due {
            e.clear_unhealthy();
        }
        due
    };
    if due {
        m.kill_hung(id, after).await;
    }
}
