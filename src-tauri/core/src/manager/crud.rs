//! The seed's CRUD of instances and the active instance.

use super::*;

impl InstanceManager {
    // ----- CRUD -------------------------------------------------------------

    /// The seed's `createInstance`. An empty id gets the next `instance_NNN`.
    pub async fn create(&self, mut config: InstanceConfig) -> Result<Instance, ManagerError> {
        let leftovers = if config.id.trim().is_empty() {
            let m = self.clone();
            tokio::task::spawn_blocking(move || m.ids_with_leftovers())
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let inst = {
            let mut reg = self.lock();
            reg.writable()?;
            if config.id.trim().is_empty() {
                config.id = reg.next_id(|id| !leftovers.contains(id));
            }
            validate_config(&config, &reg.configs_except(None))
                .map_err(|fields| ManagerError::Invalid { fields })?;
            let inst = registry::new_instance(config);
            reg.entries.push(Entry::new(inst.clone()));
            inst
        };
        // A new instance never inherits the history of an earlier one of the
        // same id (files a crash kept from being deleted with it).
        let (m, id) = (self.clone(), inst.id.clone());
        let removed = tokio::task::spawn_blocking(move || {
            let _writer = m.history_writer();
            store::remove_instance_files(&m.inner.options.config_dir, &id)
        })
        .await
        .unwrap_or(Ok(()));
        if let Err(e) = removed {
            tracing::warn!(id = %inst.id, "could not remove old per-instance files: {e}");
        }
        self.save().await?;
        tracing::info!(id = %inst.id, name = %inst.name, "instance created");
        self.emit_instance(&inst);
        // The first instance becomes the active one without a choice.
        self.announce_active(false);
        Ok(inst)
    }

    /// The seed's `getInstance`.
    pub fn get(&self, id: &str) -> Option<Instance> {
        self.lock().get(id).map(|e| e.view())
    }

    /// The seed's `listInstances`, in file order.
    pub fn list(&self) -> Vec<Instance> {
        self.lock().entries.iter().map(Entry::view).collect()
    }

    /// The seed's `updateInstance`: a partial update, validated as a whole. A
    /// monitored instance whose address changed is probed at the new address.
    pub async fn update(
        &self,
        id: &str,
        patch: InstanceConfigPatch,
    ) -> Result<Instance, ManagerError> {
        let (inst, reconnect, dropped) = {
            let mut reg = self.lock();
            reg.writable()?;
            let others = reg.configs_except(Some(id));
            let entry = reg.get_mut(id)?;
            let mut config = entry.instance.config.clone();
            patch.apply(&mut config);
            let kept = config.secret_refs();
            let dropped: Vec<String> = entry
                .instance
                .config
                .secret_refs()
                .into_iter()
                .filter(|r| !kept.contains(r))
                .collect();
            validate_config(&config, &others).map_err(|fields| ManagerError::Invalid { fields })?;
            let old = &entry.instance.config;
            let reconnect = entry.monitor.is_some()
                && (config.base_url() != old.base_url()
                    || config.timeout() != old.timeout()
                    || config.queue_monitoring() != old.queue_monitoring()
                    || config.api_key_ref != old.api_key_ref
                    || config.key_auth() != old.key_auth()
                    || config.ca_file != old.ca_file);
            entry.instance.name = config.name.clone();
            entry.instance.config = config;
            (entry.view(), reconnect, dropped)
        };
        if reconnect {
            let starting = inst.status == InstanceStatus::Starting;
            self.start_monitor(&inst.id, &inst.config, starting)?;
        }
        self.save().await?;
        // Secrets the instance no longer refers to leave the keyring.
        self.forget_secrets(id, dropped).await;
        self.emit_instance(&inst);
        Ok(inst)
    }

    /// The seed's `deleteInstance`: ends monitoring, forgets the instance and
    /// its health history.
    pub async fn delete(&self, id: &str) -> Result<(), ManagerError> {
        let (mut entry, active_changed) = {
            let mut reg = self.lock();
            reg.writable()?;
            let pos = reg.position(id)?;
            let entry = reg.entries.remove(pos);
            let active_changed = reg.active.as_deref() == Some(id);
            if active_changed {
                reg.active = None;
            }
            (entry, active_changed)
        };
        if let Some(p) = entry.process.take() {
            local::end_process(p).await;
        }
        let refs = entry.instance.config.secret_refs();
        drop(entry); // the last monitor handle: cancels the monitor
        self.save().await?;
        let (m, gone) = (self.clone(), id.to_string());
        let _ = tokio::task::spawn_blocking(move || m.remove_instance_files(&gone)).await;
        // Its secrets go with it; a keyring that does not answer now keeps
        // entries nothing refers to, which is only logged.
        self.forget_secrets(id, refs).await;
        tracing::info!(%id, "instance deleted");
        self.emit(AppEvent::InstanceRemoved { id: id.to_string() });
        self.announce_active(active_changed);
        Ok(())
    }

    /// The folder of the local instances' runtime folders
    /// (`<data>/instances/<id>/`).
    pub fn instances_dir(&self) -> std::path::PathBuf {
        self.inner.options.data_dir.join("instances")
    }

    // ----- active instance ---------------------------------------------------

    /// `setActiveInstance`; `None` goes back to the default.
    pub async fn set_active(&self, id: Option<&str>) -> Result<(), ManagerError> {
        {
            let mut reg = self.lock();
            reg.writable()?;
            if let Some(id) = id {
                reg.position(id)?;
            }
            reg.active = id.map(str::to_string);
        }
        self.save().await?;
        self.announce_active(true);
        Ok(())
    }

    /// `getActiveInstance`: the chosen one, else the first that takes work
    /// (healthy before degraded), else the first instance.
    pub fn active_instance(&self) -> Option<Instance> {
        let reg = self.lock();
        if let Some(e) = reg.active.as_deref().and_then(|id| reg.get(id)) {
            return Some(e.view());
        }
        let fleet: Vec<Instance> = reg.entries.iter().map(Entry::view).collect();
        drop(reg);
        // Not a load balancer (that is the queue's, see
        // `JobQueue::healthy_instance`): the first that takes work, healthy
        // before degraded.
        let takes = |h: HealthStatus| {
            fleet
                .iter()
                .find(|i| i.takes_work() && i.health.status == h)
        };
        takes(HealthStatus::Healthy)
            .or_else(|| takes(HealthStatus::Degraded))
            .or_else(|| fleet.first())
            .cloned()
    }

    /// Tells the listeners the active instance when it is not the one last
    /// told (`always`: even when it is, as after the user's choice).
    pub(super) fn announce_active(&self, always: bool) {
        let now = self.active_instance().map(|i| i.id);
        let mut told = self
            .inner
            .announced_active
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if always || *told != now {
            told.clone_from(&now);
            drop(told);
            self.emit(AppEvent::ActiveInstanceChanged { id: now });
        }
    }

    /// The id the user chose, if any (what the file stores).
    pub fn chosen_active_id(&self) -> Option<String> {
        self.lock().active.clone()
    }
}
