//! Work on instances: the seed's balancing calls, `executeOnInstance`,
//! health checks on demand and the statistics of finished workflows.

use super::*;

impl InstanceManager {
    // ----- work and health ----------------------------------------------------

    /// Lets the seed's balancing calls see the job queue's live picture: an
    /// instance's load is the larger of ComfyUI's own queue and the jobs the
    /// app has in flight there.
    pub fn set_load_source(&self, source: LoadSource) {
        *self
            .inner
            .load_source
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    pub(super) fn live_fleet(&self) -> Vec<Instance> {
        let mut fleet = self.list();
        let source = self
            .inner
            .load_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(source) = source {
            let in_flight = source();
            for i in &mut fleet {
                let n = in_flight.get(&i.id).copied().unwrap_or(0);
                let stats = i.health.system_stats.get_or_insert_with(Default::default);
                stats.active_workflows = stats.active_workflows.max(n);
            }
        }
        fleet
    }

    /// The seed's `getHealthyInstance`.
    pub fn healthy_instance(&self) -> Option<Instance> {
        let fleet = self.live_fleet();
        let active = self.chosen_active_id();
        balance::healthy_instance(&fleet, active.as_deref()).cloned()
    }

    /// The seed's `getInstancesByLoad`: eligible instances, least loaded first.
    pub fn instances_by_load(&self) -> Vec<Instance> {
        let fleet = self.live_fleet();
        let active = self.chosen_active_id();
        balance::by_load(&fleet, active.as_deref())
            .into_iter()
            .cloned()
            .collect()
    }

    /// The seed's `executeOnInstance`: runs `op` with a client for a running
    /// instance; a paused or stopped one is refused. Marks the instance used.
    pub async fn execute_on_instance<T, F, Fut>(&self, id: &str, op: F) -> Result<T, ManagerError>
    where
        F: FnOnce(ComfyClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let config = {
            let reg = self.lock();
            let e = reg.get(id).ok_or_else(|| not_found(id))?;
            match e.instance.status {
                InstanceStatus::Running => e.instance.config.clone(),
                InstanceStatus::Paused => {
                    return Err(ManagerError::Paused {
                        id: id.into(),
                        name: e.instance.name.clone(),
                    })
                }
                s => {
                    return Err(ManagerError::NotRunning {
                        id: id.into(),
                        name: e.instance.name.clone(),
                        status: s.as_str().into(),
                    })
                }
            }
        };
        let client = ComfyClient::for_instance(&config).map_err(|source| ManagerError::Client {
            id: id.to_string(),
            source,
        })?;
        let result = op(client).await;
        let mut reg = self.lock();
        if let Ok(e) = reg.get_mut(id) {
            e.instance.last_used_at = Some(Utc::now());
            if let Err(err) = &result {
                e.instance.stats.last_error = Some(err.to_string());
            }
        }
        result.map_err(|source| ManagerError::Client {
            id: id.to_string(),
            source,
        })
    }

    /// The seed's `checkInstanceHealth`: probes now. A monitored instance is
    /// probed by its monitor (and its figures move); any other is probed once.
    pub async fn check_health(&self, id: &str) -> Result<InstanceHealth, ManagerError> {
        let config = self.config_of(id)?;
        let monitor = self.lock().get(id).and_then(|e| e.monitor.clone());
        if let Some(m) = monitor {
            return m.check_now().await.map_err(|source| ManagerError::Health {
                id: id.to_string(),
                source,
            });
        }
        let client = ComfyClient::for_instance(&config).map_err(|source| ManagerError::Client {
            id: id.to_string(),
            source,
        })?;
        let mut policy = self.health_policy();
        policy.watch_queue = config.queue_monitoring();
        let once = HealthMonitor::spawn(id.to_string(), client, policy, self.inner.bus.sender());
        let health = once
            .check_now()
            .await
            .map_err(|source| ManagerError::Health {
                id: id.to_string(),
                source,
            });
        once.shutdown().await;
        let health = health?;
        if let Ok(e) = self.lock().get_mut(id) {
            e.instance.health = health.clone();
        }
        Ok(health)
    }

    /// The seed's `getInstanceStats` (uptime counted while running or paused).
    pub fn stats(&self, id: &str) -> Result<InstanceStats, ManagerError> {
        self.lock()
            .get(id)
            .map(|e| e.view().stats)
            .ok_or_else(|| not_found(id))
    }

    /// Folds a finished workflow into the instance's statistics; a failed one
    /// also counts toward the instance's error-rate alert.
    pub fn record_workflow(&self, id: &str, ok: bool, response_ms: f64, error: Option<String>) {
        let view = {
            let mut reg = self.lock();
            let Ok(e) = reg.get_mut(id) else { return };
            if !ok {
                if let Some(m) = &e.monitor {
                    m.record_error();
                }
            }
            let s = &mut e.instance.stats;
            s.total_workflows += 1;
            if ok {
                s.successful_workflows += 1;
            } else {
                s.failed_workflows += 1;
            }
            let n = s.total_workflows as f64;
            s.average_response_time += (response_ms - s.average_response_time) / n;
            if error.is_some() {
                s.last_error = error;
            }
            e.instance.last_used_at = Some(Utc::now());
            e.view()
        };
        self.emit_instance(&view);
    }
}
