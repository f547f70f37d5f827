//! The seed's `ComfyUIInstanceManager`: the registry of instances, the active
//! instance, the lifecycle, and the public API the Tauri commands (and tests, and
//! a future CLI) call.
//!
//! State lives behind one `std::sync::Mutex` that is never held across an
//! `.await`: every method copies what it needs, unlocks, then talks to the
//! network or the disk. Each monitored instance has its own health task
//! (`health::HealthMonitor`); a small watcher task per instance folds its
//! figures back into the registry. Every change goes out as an [`AppEvent`] on
//! one broadcast channel.

pub mod balance;
mod connection;
mod error;
pub mod lifecycle;
mod local;
mod registry;

pub use connection::test_connection;
pub use error::ManagerError;
pub use lifecycle::Action;

use crate::client::{ClientError, ComfyClient};
use crate::events::EventBus;
use crate::health::{HealthHandle, HealthMonitor, HealthPolicy};
use crate::model::validate_config;
use crate::store::{self, ClashPolicy, ImportEntry, InstanceStore, Loaded};
use crate::supervisor::{Guardian, SupervisorOptions};
use chrono::Utc;
use registry::{Entry, Registry};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use storycore_types::{
    AppEvent, HealthStatus, Instance, InstanceConfig, InstanceConfigPatch, InstanceHealth,
    InstanceStats, InstanceStatus, MigrationResult,
};
use tokio::sync::broadcast;

pub use crate::events::EVENT_CAPACITY;

/// How the manager was set up.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub config_dir: PathBuf,
    /// Per-instance runtime folders of local instances (temp, user, output, logs).
    pub data_dir: PathBuf,
    /// Health thresholds and intervals for every monitored instance.
    pub health: HealthPolicy,
    /// Restart policy, stop grace and log limits of local processes.
    pub supervisor: SupervisorOptions,
    /// A running local instance unhealthy for this long is restarted.
    pub unhealthy_restart_after: Duration,
    /// Where the manager and its health monitors publish (the engine's bus;
    /// a bus of its own until the caller sets it).
    pub bus: EventBus,
}

impl ManagerOptions {
    /// Options with the seed's defaults; the data folder is `<config>/data`
    /// until the caller sets it.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        let config_dir = config_dir.into();
        Self {
            data_dir: config_dir.join("data"),
            config_dir,
            health: HealthPolicy::default(),
            supervisor: SupervisorOptions::default(),
            unhealthy_restart_after: Duration::from_secs(60),
            bus: EventBus::new(),
        }
    }
}

/// What loading the files at start found, for the user.
#[derive(Debug, Clone, Default)]
pub struct StartupReport {
    pub notices: Vec<String>,
    pub read_only: bool,
    pub migration: Option<MigrationResult>,
}

/// A cheap-to-clone handle on the manager.
#[derive(Clone)]
pub struct InstanceManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: InstanceStore,
    options: ManagerOptions,
    state: Mutex<Registry>,
    bus: EventBus,
    /// Serialises writes of comfyui_instances.json so an older snapshot never
    /// lands after a newer one.
    save_lock: tokio::sync::Mutex<()>,
    /// The job queue's own count of jobs in flight per instance (see
    /// [`InstanceManager::set_load_source`]).
    load_source: Mutex<Option<LoadSource>>,
    /// Stops what the app launched if the app dies without doing so.
    guardian: Arc<Guardian>,
    /// Held while a health history is copied and written, and while an
    /// instance's files are removed: one writer at a time, so an older copy
    /// never lands after a newer one, nor a write after a delete.
    history_writer: Mutex<()>,
    /// Instances whose history is due to be written, and whether a writer
    /// (one blocking task at a time) is draining them.
    history_queue: Mutex<(std::collections::VecDeque<String>, bool)>,
    /// The health policy new monitors get (`options.health` at first; the
    /// Settings dialog changes it).
    health: Mutex<HealthPolicy>,
    /// The active instance as last announced (`ActiveInstanceChanged`).
    announced_active: Mutex<Option<String>>,
}

/// Jobs in flight per instance id, as the job queue counts them: work the app
/// sent counts until it finishes, even before ComfyUI's `/queue` shows it.
pub type LoadSource = Arc<dyn Fn() -> std::collections::HashMap<String, u32> + Send + Sync>;

/// The report of an import that was applied.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub entries: Vec<ImportEntry>,
}

impl InstanceManager {
    /// Loads the files of `options.config_dir` (repairing, recovering or
    /// migrating as needed) and returns the manager with what it found.
    pub fn open(options: ManagerOptions) -> Result<(Self, StartupReport), ManagerError> {
        let store = InstanceStore::new(&options.config_dir);
        let Loaded {
            file,
            notices,
            read_only,
            migration,
        } = store.load()?;
        for n in &notices {
            tracing::warn!("{n}");
        }
        let registry = Registry::from_file(file, read_only);
        let guardian = Arc::new(Guardian::new(options.supervisor.stop_grace));
        let manager = Self {
            inner: Arc::new(Inner {
                guardian,
                health: Mutex::new(options.health.clone()),
                store,
                bus: options.bus.clone(),
                options,
                state: Mutex::new(registry),
                save_lock: tokio::sync::Mutex::new(()),
                load_source: Mutex::new(None),
                history_writer: Mutex::new(()),
                history_queue: Mutex::new(Default::default()),
                announced_active: Mutex::new(None),
            }),
        };
        Ok((
            manager,
            StartupReport {
                notices,
                read_only,
                migration,
            },
        ))
    }

    /// Every event published on the manager's bus from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.inner.bus.subscribe()
    }

    /// The bus the manager publishes on (the engine's): parts opened over
    /// this manager without a bus of their own publish there too.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, e: AppEvent) {
        self.inner.bus.publish(e);
    }

    fn emit_instance(&self, i: &Instance) {
        self.emit(AppEvent::InstanceUpdated(Box::new(i.clone())));
    }

    // ----- CRUD -------------------------------------------------------------

    /// The seed's `createInstance`. An empty id gets the next `instance_NNN`.
    pub async fn create(&self, mut config: InstanceConfig) -> Result<Instance, ManagerError> {
        let leftovers = if config.id.trim().is_empty() {
            self.ids_with_leftovers()
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
        let removed = {
            let _writer = self.history_writer();
            store::remove_instance_files(&self.inner.options.config_dir, &inst.id)
        };
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
        self.remove_instance_files(id);
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

    // ----- API keys -------------------------------------------------------------

    fn vault(&self) -> crate::secrets::Vault {
        crate::secrets::Vault::new(&self.inner.options.config_dir)
    }

    /// Stores (`Some`) or removes (`None`) the instance's API key and points
    /// its `apiKeyRef` at it: in the OS keyring, or in the 0600 secrets file
    /// when `in_file` (the user's explicit choice on a machine without a
    /// keyring). A monitored instance is probed with the new key at once.
    pub async fn set_api_key(
        &self,
        id: &str,
        key: Option<String>,
        in_file: bool,
    ) -> Result<Instance, ManagerError> {
        let old = self.config_of(id)?.api_key_ref;
        let vault = self.vault();
        let secret = |source| ManagerError::Secret {
            id: id.to_string(),
            source,
        };
        let new_ref = match key {
            Some(key) => {
                let reference = crate::secrets::api_key_reference(id, in_file);
                let (v, r) = (vault.clone(), reference.clone());
                tokio::task::spawn_blocking(move || v.store(&r, &key))
                    .await
                    .expect("the keyring task panicked")
                    .map_err(secret)?;
                Some(reference)
            }
            None => None,
        };
        let same_ref = old == new_ref;
        if let Some(old) = old.filter(|o| Some(o) != new_ref.as_ref()) {
            let v = vault.clone();
            let removed = tokio::task::spawn_blocking(move || v.delete(&old))
                .await
                .expect("the keyring task panicked");
            if let Err(e) = removed {
                tracing::warn!(%id, "the previous API key was not removed: {e}");
            }
        }
        let inst = self
            .update(
                id,
                InstanceConfigPatch {
                    api_key_ref: Some(new_ref),
                    ..Default::default()
                },
            )
            .await?;
        // Same reference, new key: `update` saw no change, and the monitor's
        // client still has the old key.
        let monitored = self.lock().get(id).is_some_and(|e| e.monitor.is_some());
        if monitored && same_ref {
            self.start_monitor(id, &inst.config, inst.status == InstanceStatus::Starting)?;
        }
        tracing::info!(%id, stored_in = if in_file { "file" } else { "keyring" }, "API key set");
        Ok(inst)
    }

    /// Deletes the entries among `refs` that the app made for instance `id`
    /// (`instance/<id>/...`, in the keyring or the file). An entry the user
    /// named by hand, or one a duplicated config still names, is left alone.
    async fn forget_secrets(&self, id: &str, refs: Vec<String>) {
        let refs: Vec<String> = refs
            .into_iter()
            .filter(|r| crate::secrets::belongs_to(r, id))
            .collect();
        if refs.is_empty() {
            return;
        }
        let vault = self.vault();
        let failed = tokio::task::spawn_blocking(move || {
            refs.into_iter()
                .filter_map(|r| vault.delete(&r).err().map(|e| format!("{r}: {e}")))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for f in failed {
            tracing::warn!(%id, "a secret of the instance was not removed: {f}");
        }
    }

    /// Stores (`Some`) or removes (`None`) the secret value of environment
    /// variable `name` and lists it in the instance's `secretEnvVars`: the
    /// launch reads it from the keyring (or the 0600 file, `in_file`), and
    /// no file of the app holds it. A plain variable of that name is
    /// replaced by the secret one.
    pub async fn set_secret_env(
        &self,
        id: &str,
        name: &str,
        value: Option<String>,
        in_file: bool,
    ) -> Result<Instance, ManagerError> {
        let config = self.config_of(id)?;
        let mut secret = config.secret_env_vars.clone().unwrap_or_default();
        let old = secret.get(name).cloned();
        let secret_err = |source| ManagerError::Secret {
            id: id.to_string(),
            source,
        };
        match value {
            Some(v) => {
                // Checked before anything is stored: a bad name stores nothing.
                let mut probe = config.clone();
                let mut names = secret.clone();
                names.insert(name.to_string(), "probe".into());
                probe.secret_env_vars = Some(names);
                if let Some(plain) = probe.env_vars.as_mut() {
                    plain.remove(name);
                }
                let others = self.lock().configs_except(Some(id));
                crate::model::validate_config(&probe, &others)
                    .map_err(|fields| ManagerError::Invalid { fields })?;
                let reference = crate::secrets::env_reference(id, name, in_file);
                let (vault, r) = (self.vault(), reference.clone());
                tokio::task::spawn_blocking(move || vault.store(&r, &v))
                    .await
                    .expect("the keyring task panicked")
                    .map_err(secret_err)?;
                secret.insert(name.to_string(), reference);
            }
            None => {
                secret.remove(name);
            }
        }
        let mut plain = config.env_vars.clone();
        if let Some(p) = plain.as_mut() {
            p.remove(name);
        }
        let inst = self
            .update(
                id,
                InstanceConfigPatch {
                    secret_env_vars: Some((!secret.is_empty()).then_some(secret.clone())),
                    env_vars: Some(plain.filter(|p| !p.is_empty())),
                    ..Default::default()
                },
            )
            .await?;
        if let Some(old) = old.filter(|o| !secret.values().any(|r| r == o)) {
            self.forget_secrets(id, vec![old]).await;
        }
        tracing::info!(%id, %name, "secret environment value set");
        Ok(inst)
    }

    /// Reads the API keys and secret environment values of every instance into memory (a
    /// blocking D-Bus round trip each). What cannot be read is reported as
    /// a notice: the instance is then probed without its key and says
    /// "401: check the API key".
    pub async fn load_secrets(&self) -> Vec<String> {
        let refs: Vec<(String, String, String)> = self
            .lock()
            .entries
            .iter()
            .flat_map(|e| {
                let c = &e.instance.config;
                c.secret_refs()
                    .into_iter()
                    .map(|r| (c.id.clone(), c.name.clone(), r))
                    .collect::<Vec<_>>()
            })
            .collect();
        if refs.is_empty() {
            return Vec::new();
        }
        let vault = self.vault();
        let found = tokio::task::spawn_blocking(move || {
            refs.into_iter()
                .map(|(id, name, r)| {
                    let got = vault.load(&r);
                    (id, name, r, got)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("the keyring task panicked");
        let mut notices = Vec::new();
        for (id, name, reference, got) in found {
            match got {
                Ok(Some(_)) => {}
                Ok(None) => notices.push(format!(
                    "A secret of '{name}' ({id}) is not in the keyring (entry {reference}): enter it again in the instance's settings."
                )),
                Err(e) => notices.push(format!("A secret of '{name}' ({id}) could not be read (entry {reference}): {e}")),
            }
        }
        for n in &notices {
            tracing::warn!("{n}");
        }
        notices
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

    /// `getActiveInstance`: the chosen one, else the best eligible instance,
    /// else the first instance.
    pub fn active_instance(&self) -> Option<Instance> {
        let reg = self.lock();
        if let Some(e) = reg.active.as_deref().and_then(|id| reg.get(id)) {
            return Some(e.view());
        }
        let fleet: Vec<Instance> = reg.entries.iter().map(Entry::view).collect();
        drop(reg);
        balance::healthy_instance(&fleet, None)
            .cloned()
            .or_else(|| fleet.into_iter().next())
    }

    /// Tells the listeners the active instance when it is not the one last
    /// told (`always`: even when it is, as after the user's choice).
    fn announce_active(&self, always: bool) {
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

    // ----- lifecycle ----------------------------------------------------------

    fn transition(&self, id: &str, action: Action) -> Result<Instance, ManagerError> {
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
        if config.is_local_launch() {
            if let Err(e) = self.launch_local(id, &config).await {
                self.fail(id, &e.to_string());
                return Err(e);
            }
        }
        if let Err(e) = self.start_monitor(id, &config, true) {
            self.fail(id, &e.to_string());
            return Err(e);
        }
        Ok(inst)
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
            if let Err(e) = self.launch_local(id, &config).await {
                self.fail(id, &e.to_string());
                return Err(e);
            }
        }
        if let Err(e) = self.start_monitor(id, &config, true) {
            self.fail(id, &e.to_string());
            return Err(e);
        }
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
    fn start_monitor(
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
        tokio::spawn(watch_health(
            Arc::downgrade(&self.inner),
            id.to_string(),
            watch,
            deadline,
        ));
        Ok(())
    }

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

    fn live_fleet(&self) -> Vec<Instance> {
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
            self.emit(AppEvent::InstanceRemoved { id: e.instance.id });
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
            self.emit(AppEvent::InstanceRemoved { id: e.instance.id });
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

    fn history_writer(&self) -> MutexGuard<'_, ()> {
        self.inner
            .history_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Has the instance's history written soon, off the runtime's workers
    /// (a write and two fsyncs would hold up every other instance's probe):
    /// one blocking task writes the histories due, one after the other, so a
    /// minute's writes of a whole fleet never take more than one thread.
    fn queue_history_write(&self, id: &str) {
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
    fn write_history(&self, id: &str) {
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
    fn write_histories(&self) {
        let _writer = self.history_writer();
        let histories = self.lock().take_histories_to_flush();
        for h in &histories {
            save_history(h);
        }
    }

    // ----- small helpers --------------------------------------------------------

    fn config_of(&self, id: &str) -> Result<InstanceConfig, ManagerError> {
        self.lock()
            .get(id)
            .map(|e| e.instance.config.clone())
            .ok_or_else(|| not_found(id))
    }

    fn status_of(&self, id: &str) -> Result<InstanceStatus, ManagerError> {
        self.lock()
            .get(id)
            .map(|e| e.instance.status)
            .ok_or_else(|| not_found(id))
    }
}

/// Stops a monitor and waits for its task, unless a health check still holds a
/// handle: then the monitor ends when that check drops it.
async fn end_monitor(m: Arc<HealthHandle>) {
    if let Ok(h) = Arc::try_unwrap(m) {
        h.shutdown().await;
    }
}

fn not_found(id: &str) -> ManagerError {
    ManagerError::NotFound { id: id.to_string() }
}

fn save_history(h: &store::HealthHistory) {
    if let Err(e) = h.save() {
        tracing::warn!("could not write a health history: {e}");
    }
}

/// Folds a monitor's figures into the registry until the monitor ends: the
/// first answer of a starting server makes it `running`; every figure goes into
/// the instance's health history. With a `deadline`, a server still starting
/// then has failed to start (see [`InstanceManager::start_timed_out`]).
async fn watch_health(
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
        local::add_process_figures(&manager, &id, &mut health);
        let (promoted, write_history) = {
            let mut reg = manager.lock();
            let Ok(e) = reg.get_mut(&id) else { return };
            e.instance.health = health.clone();
            e.note_health(&health);
            e.record_history(&manager.inner.options.config_dir, &health);
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
