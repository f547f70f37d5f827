//! The lifecycle's operations (start, stop, pause, resume, restart, fail),
//! the health monitors and what their figures do to an instance.

use super::*;

impl InstanceManager {
    // ----- lifecycle ----------------------------------------------------------

    pub(super) fn transition(&self, id: &str, action: Action) -> Result<Instance, ManagerError> {
        let mut reg = self.lock();
        let entry = reg.get_mut(id)?;
        let from = entry.instance.status;
        let to = lifecycle::next(from, action).ok_or_else(|| ManagerError::Transition {
            id: id.to_string(),
            message: lifecycle::refusal(&entry.instance.name, from, action),
        })?;
        entry.set_status(to);
        if to != InstanceStatus::Error {
            entry.instance.status_reason = None;
        }
        let view = entry.view();
        drop(reg);
        tracing::info!(%id, from = from.as_str(), to = to.as_str(), "status");
        self.emit_instance(&view);
        // Without a choice, the active instance is the best eligible one,
        // which a change of status can change.
        self.announce_active(false);
        Ok(view)
    }

    /// The seed's `startInstance`. For an attached instance, starting begins
    /// monitoring; it becomes `running` at the first answer of the server.
    pub async fn start(&self, id: &str) -> Result<Instance, ManagerError> {
        let config = self.config_of(id)?;
        let inst = self.transition(id, Action::Start)?;
        self.launch_and_monitor(id, &config).await?;
        Ok(inst)
    }

    /// Launches a local instance's process (an attached one has none) and
    /// starts monitoring it in its start phase; a failure moves it to
    /// `error` with the reason.
    async fn launch_and_monitor(
        &self,
        id: &str,
        config: &InstanceConfig,
    ) -> Result<(), ManagerError> {
        let launched = if config.is_local_launch() {
            self.launch_local(id, config).await
        } else {
            Ok(())
        };
        let monitored = launched.and_then(|()| self.start_monitor(id, config, true));
        if let Err(e) = &monitored {
            self.fail(id, &e.to_string());
        }
        monitored
    }

    /// The seed's `stopInstance`: ends monitoring (and routing).
    pub async fn stop(&self, id: &str) -> Result<Instance, ManagerError> {
        let status = self.status_of(id)?;
        let inst = self.transition(id, Action::Stop)?;
        // From `error` too: a crashed process's supervisor may be waiting to
        // restart it (the back-off); ending the supervisor cancels that.
        let (process, monitor) = {
            let mut reg = self.lock();
            let e = reg.get_mut(id)?;
            (e.process.take(), e.monitor.take())
        };
        if let Some(p) = process {
            local::end_process(p).await;
        }
        if let Some(m) = monitor {
            end_monitor(m).await;
        }
        if status == InstanceStatus::Error {
            return Ok(inst); // error --stop--> stopped directly
        }
        self.transition(id, Action::Stopped)
    }

    /// The seed's `pauseInstance`: the server keeps running and is still
    /// monitored, but takes no new work.
    pub async fn pause(&self, id: &str) -> Result<Instance, ManagerError> {
        self.transition(id, Action::Pause)
    }

    /// The seed's `resumeInstance`: eligible for work again at once.
    pub async fn resume(&self, id: &str) -> Result<Instance, ManagerError> {
        self.transition(id, Action::Resume)
    }

    /// Starts again: from `error`, or (stop then start) from running/paused.
    pub async fn restart(&self, id: &str) -> Result<Instance, ManagerError> {
        let config = self.config_of(id)?;
        let inst = self.transition(id, Action::Restart)?;
        if config.is_local_launch() {
            // A fresh supervisor: a user's restart also clears the start limit.
            let old = self.lock().get_mut(id)?.process.take();
            if let Some(p) = old {
                local::end_process(p).await;
            }
        }
        self.launch_and_monitor(id, &config).await?;
        Ok(inst)
    }

    /// Moves an instance to `error` with a reason the user can read.
    pub fn fail(&self, id: &str, reason: &str) {
        if self.transition(id, Action::Fail).is_ok() {
            let mut reg = self.lock();
            if let Ok(e) = reg.get_mut(id) {
                e.instance.status_reason = Some(reason.to_string());
                e.instance.stats.last_error = Some(reason.to_string());
                e.monitor = None;
                let v = e.view();
                drop(reg);
                self.emit_instance(&v);
            }
        }
    }

    /// Starts every instance marked `autoStart`, in parallel; returns the ones
    /// that could not start, with why.
    pub async fn start_auto(&self) -> Vec<(String, ManagerError)> {
        let ids: Vec<String> = self
            .list()
            .into_iter()
            .filter(|i| i.config.autostart() && i.status == InstanceStatus::Stopped)
            .map(|i| i.id)
            .collect();
        let results = futures_util::future::join_all(ids.iter().map(|id| self.start(id))).await;
        ids.into_iter()
            .zip(results)
            .filter_map(|(id, r)| r.err().map(|e| (id, e)))
            .collect()
    }

    /// Stops every process the app launched, ends every monitor (on app exit)
    /// and writes the health histories.
    pub async fn shutdown(&self) {
        let processes: Vec<_> = {
            let mut reg = self.lock();
            reg.entries
                .iter_mut()
                .filter_map(|e| e.process.take())
                .collect()
        };
        futures_util::future::join_all(processes.into_iter().map(local::end_process)).await;
        let monitors: Vec<Arc<HealthHandle>> = {
            let mut reg = self.lock();
            reg.entries
                .iter_mut()
                .filter_map(|e| e.monitor.take())
                .collect()
        };
        for m in monitors {
            end_monitor(m).await;
        }
        // Their health watches and followers end now, and are waited for.
        for e in &self.lock().entries {
            e.tasks.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let m = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || m.write_histories()).await {
            tracing::warn!("writing the health histories failed: {e}");
        }
        // Nothing is left to guard: the guardian exits (leaving running
        // whatever was detached, since it was told to keep it).
        self.inner.guardian.release();
    }

    /// "Keep instances running": when the app exits or dies, the ComfyUI
    /// servers it launched keep running (and the next launch re-attaches).
    pub fn set_keep_running(&self, keep: bool) {
        self.inner.guardian.set_keep(keep);
    }

    /// The guardian of the processes this manager launched.
    pub fn guardian(&self) -> &Guardian {
        &self.inner.guardian
    }

    /// Starts monitoring (again). `starting`: the server was just started,
    /// so the monitor begins in its start phase and the start's deadline
    /// (`startTimeoutMs`) runs.
    pub(super) fn start_monitor(
        &self,
        id: &str,
        config: &InstanceConfig,
        starting: bool,
    ) -> Result<(), ManagerError> {
        let client = ComfyClient::for_instance(config).map_err(|source| ManagerError::Client {
            id: id.to_string(),
            source,
        })?;
        let mut policy = self.health_policy();
        policy.watch_queue = config.queue_monitoring();
        policy.starting = starting;
        let handle = HealthMonitor::spawn(id.to_string(), client, policy, self.inner.bus.sender());
        let watch = handle.watch();
        self.lock().get_mut(id)?.monitor = Some(Arc::new(handle));
        let deadline = starting
            .then(|| tokio::time::Instant::now() + Duration::from_millis(config.start_timeout()));
        self.spawn_for(
            id,
            watch_health(Arc::downgrade(&self.inner), id.to_string(), watch, deadline),
        );
        Ok(())
    }

    // ----- health settings ------------------------------------------------------

    /// The health policy monitors get now.
    pub fn health_policy(&self) -> HealthPolicy {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// New intervals and thresholds, for new monitors and, from their next
    /// probe on, every running one (each keeps its own queue watching and
    /// its start phase).
    pub async fn set_health_policy(&self, policy: HealthPolicy) {
        *self.inner.health.lock().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        let monitors: Vec<(Arc<HealthHandle>, bool)> = self
            .lock()
            .entries
            .iter()
            .filter_map(|e| {
                e.monitor
                    .clone()
                    .map(|m| (m, e.instance.config.queue_monitoring()))
            })
            .collect();
        for (m, watch_queue) in monitors {
            let mut p = policy.clone();
            p.watch_queue = watch_queue;
            let _ = m.set_policy(p).await;
        }
        tracing::info!(
            interval_ms = policy.interval.as_millis() as u64,
            "health settings applied"
        );
    }
}

/// Stops a monitor and waits for its task, unless a health check still holds a
/// handle: then the monitor ends when that check drops it.
pub(super) async fn end_monitor(m: Arc<HealthHandle>) {
    if let Ok(h) = Arc::try_unwrap(m) {
        h.shutdown().await;
    }
}

/// Folds a monitor's figures into the registry until the monitor ends: the
/// first answer of a starting server makes it `running`; every figure goes into
/// the instance's health history. With a `deadline`, a server still starting
/// then has failed to start (see [`InstanceManager::start_timed_out`]).
pub(super) async fn watch_health(
    inner: Weak<Inner>,
    id: String,
    mut watch: tokio::sync::watch::Receiver<InstanceHealth>,
    mut deadline: Option<tokio::time::Instant>,
) {
    loop {
        let changed = match deadline {
            Some(at) => tokio::select! {
                r = watch.changed() => r.is_ok(),
                _ = tokio::time::sleep_until(at) => {
                    if let Some(inner) = inner.upgrade() {
                        InstanceManager { inner }.start_timed_out(&id).await;
                    }
                    deadline = None;
                    continue;
                }
            },
            None => watch.changed().await.is_ok(),
        };
        if !changed {
            return;
        }
        let mut health = watch.borrow_and_update().clone();
        let Some(inner) = inner.upgrade() else { return };
        let manager = InstanceManager { inner };
        local::add_process_figures(&manager, &id, &mut health).await;
        // The history file is read once, off the runtime's threads and
        // outside the registry's lock.
        if manager.lock().get(&id).is_some_and(|e| !e.has_history()) {
            let (dir, hid) = (manager.inner.options.config_dir.clone(), id.clone());
            let _one_at_a_time = manager.inner.history_reads.acquire().await;
            let loaded =
                tokio::task::spawn_blocking(move || crate::store::HealthHistory::load(&dir, &hid))
                    .await;
            match loaded {
                Ok(Ok(h)) => {
                    if let Ok(e) = manager.lock().get_mut(&id) {
                        e.set_history(h);
                    }
                }
                Ok(Err(e)) => tracing::warn!(%id, "health history unavailable: {e}"),
                Err(e) => tracing::warn!(%id, "reading the health history failed: {e}"),
            }
        }
        let (promoted, write_history) = {
            let mut reg = manager.lock();
            let Ok(e) = reg.get_mut(&id) else { return };
            e.instance.health = health.clone();
            e.note_health(&health);
            e.record_history(&health);
            let write_history = e.history_due();
            // The last probe got an answer: in the start phase the status
            // stays unknown until then.
            let answered = matches!(
                health.status,
                HealthStatus::Healthy | HealthStatus::Degraded
            ) && health.consecutive_failures == 0;
            // Or it answered only to refuse the probe (401: wrong or no API
            // key): it runs, unhealthy, and the alert says why.
            let answered = answered || e.monitor.as_ref().is_some_and(|m| m.start_phase_over());
            (
                answered && e.instance.status == InstanceStatus::Starting,
                write_history,
            )
        };
        if promoted && manager.transition(&id, Action::Ready).is_ok() {
            deadline = None;
        }
        if write_history {
            manager.queue_history_write(&id);
        }
        local::restart_if_hung(&manager, &id).await;
    }
}
