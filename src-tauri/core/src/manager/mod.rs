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

mod connection;
mod crud;
mod error;
mod files;
pub mod lifecycle;
mod local;
mod operations;
mod registry;
mod secrets;
mod work;

pub use connection::test_connection;
use error::not_found;
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
    /// Every per-instance background task, so that shutdown waits for them.
    tasks: tokio_util::task::TaskTracker,
    /// Health histories are read one at a time: 50 instances starting
    /// together would each take a blocking thread (and its own malloc
    /// arena: 19 MiB more RSS in health_bench) for a read of 200 KB.
    history_reads: tokio::sync::Semaphore,
}

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
                history_writer: Mutex::new(()),
                history_queue: Mutex::new(Default::default()),
                announced_active: Mutex::new(None),
                tasks: tokio_util::task::TaskTracker::new(),
                history_reads: tokio::sync::Semaphore::new(1),
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

    // ----- small helpers --------------------------------------------------------

    /// Runs one of an instance's background tasks, tracked: it ends when
    /// the instance leaves the registry (delete, import) or the manager
    /// stops. Not run when the instance is gone already.
    fn spawn_for(&self, id: &str, task: impl Future<Output = ()> + Send + 'static) {
        let Some(cancel) = self.lock().get(id).map(|e| e.tasks.clone()) else {
            return;
        };
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// How many per-instance background tasks run now.
    pub fn background_tasks(&self) -> usize {
        self.inner.tasks.len()
    }

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
