//! Work on instances: the seed's `executeOnInstance`,
//! health checks on demand and the statistics of finished workflows.

use super::*;

impl InstanceManager {
    // ----- work and health ----------------------------------------------------

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
