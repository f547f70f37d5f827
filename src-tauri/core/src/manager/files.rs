//! The files: comfyui_instances.json (save, load, export, import) and the
//! health histories, written off the runtime's workers.

use super::*;

impl InstanceManager {
    // ----- persistence ----------------------------------------------------------

    /// The seed's `saveInstances`: writes comfyui_instances.json atomically.
    pub async fn save(&self) -> Result<(), ManagerError> {
        let _guard = self.inner.save_lock.lock().await;
        let mut file = {
            let reg = self.lock();
            reg.writable()?;
            reg.to_file()
        };
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.save(&mut file))
            .await
            .expect("the save task panicked")?;
        Ok(())
    }

    /// The seed's `loadInstances`: reads the file again (after a change by
    /// hand). Monitoring of instances that are still there goes on.
    pub async fn load(&self) -> Result<StartupReport, ManagerError> {
        let Loaded {
            file,
            notices,
            read_only,
            migration,
        } = self.inner.store.load()?;
        let dropped = self.lock().replace_configs(file, read_only);
        for e in dropped {
            self.emit(AppEvent::InstanceRemoved {
                id: e.instance.id.clone(),
            });
        }
        for i in self.list() {
            self.emit_instance(&i);
        }
        Ok(StartupReport {
            notices,
            read_only,
            migration,
        })
    }

    /// The seed's `exportInstances`: the same format, without secrets.
    pub fn export(&self) -> String {
        store::export(&self.lock().to_file())
    }

    /// What [`Self::import`] would do with `data` under `policy`, changing
    /// nothing: the window shows it before the user applies it.
    pub fn preview_import(
        &self,
        path: &str,
        data: &str,
        policy: ClashPolicy,
    ) -> storycore_types::import::ImportPreview {
        let current = self.lock().to_file();
        let (entries, applicable, problem) = match store::import(data, &current, policy) {
            Ok(outcome) => (outcome.entries, true, None),
            Err(store::ImportError::Rejected { entries }) => {
                let e = store::ImportError::Rejected {
                    entries: entries.clone(),
                };
                (entries, false, Some(e.to_string()))
            }
            Err(e) => (Vec::new(), false, Some(e.to_string())),
        };
        let problem = match (problem, self.lock().writable()) {
            (None, Err(e)) => Some(e.to_string()),
            (p, _) => p,
        };
        storycore_types::import::ImportPreview {
            path: path.to_string(),
            applicable: applicable && problem.is_none(),
            entries,
            problem,
        }
    }

    /// The seed's `importInstances`: all or nothing, with a report per instance.
    pub async fn import(
        &self,
        data: &str,
        policy: ClashPolicy,
    ) -> Result<ImportReport, ManagerError> {
        let current = {
            let reg = self.lock();
            reg.writable()?;
            reg.to_file()
        };
        let outcome = store::import(data, &current, policy).map_err(|source| {
            let entries = match &source {
                store::ImportError::Rejected { entries } => entries.clone(),
                _ => Vec::new(),
            };
            ManagerError::Import { source, entries }
        })?;
        let dropped = self.lock().replace_configs(outcome.file, false);
        for e in dropped {
            self.emit(AppEvent::InstanceRemoved {
                id: e.instance.id.clone(),
            });
        }
        self.save().await?;
        for i in self.list() {
            self.emit_instance(&i);
        }
        Ok(ImportReport {
            entries: outcome.entries,
        })
    }

    /// The instance's health history: as recorded so far (written or not),
    /// or as on disk when this run has recorded none yet. Writes nothing.
    pub fn health_history(&self, id: &str) -> Result<store::HealthHistoryFile, ManagerError> {
        let recorded = {
            let reg = self.lock();
            let e = reg.get(id).ok_or_else(|| not_found(id))?;
            e.history().map(|h| h.data().clone())
        };
        match recorded {
            Some(data) => Ok(data),
            None => Ok(
                store::HealthHistory::load(&self.inner.options.config_dir, id)?
                    .data()
                    .clone(),
            ),
        }
    }

    pub(super) fn history_writer(&self) -> MutexGuard<'_, ()> {
        self.inner
            .history_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Has the instance's history written soon, off the runtime's workers
    /// (a write and two fsyncs would hold up every other instance's probe):
    /// one blocking task writes the histories due, one after the other, so a
    /// minute's writes of a whole fleet never take more than one thread.
    pub(super) fn queue_history_write(&self, id: &str) {
        let start_writer = {
            let mut q = self
                .inner
                .history_queue
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !q.0.iter().any(|queued| queued == id) {
                q.0.push_back(id.to_string());
            }
            !std::mem::replace(&mut q.1, true)
        };
        if start_writer {
            let m = self.clone();
            tokio::task::spawn_blocking(move || loop {
                let next = {
                    let mut q = m
                        .inner
                        .history_queue
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let next = q.0.pop_front();
                    q.1 = next.is_some();
                    next
                };
                match next {
                    Some(id) => m.write_history(&id),
                    None => break,
                }
            });
        }
    }

    /// Writes one instance's history if it has unwritten samples (blocking).
    /// The copy is taken under the writer's lock, so writes of one file land
    /// in order.
    pub(super) fn write_history(&self, id: &str) {
        let _writer = self.history_writer();
        let history = self
            .lock()
            .get_mut(id)
            .ok()
            .and_then(|e| e.take_history_to_flush());
        if let Some(h) = history {
            save_history(&h);
        }
    }

    /// Writes every history with unwritten samples (blocking; on shutdown).
    pub(super) fn write_histories(&self) {
        let _writer = self.history_writer();
        let histories = self.lock().take_histories_to_flush();
        for h in &histories {
            save_history(h);
        }
    }
}

pub(super) fn save_history(h: &store::HealthHistory) {
    if let Err(e) = h.save() {
        tracing::warn!("could not write a health history: {e}");
    }
}
