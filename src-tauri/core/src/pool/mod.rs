//! Pools: local ComfyUI instances the app starts when work waits and stops
//! when they idle, within the memory of the GPUs (or the RAM) they run on.
//!
//! A pool is a ComfyUI folder and its base configuration; its members are
//! ordinary instances of the manager (`<pool>-<n>`, named `<pool> #<n>`,
//! `poolId` set), so the queue places work on them like on any other. The
//! controller here looks at the pool every tick: the queue's backlog and
//! the members' state, the devices' free memory ([`memory::MemorySource`]),
//! decides with [`plan::plan`], and carries the decision out. Each decision
//! is logged with its reason, kept for the window, and the pool's size is
//! kept over time for its plot.

mod check;
mod control;
pub mod memory;
pub mod plan;
mod runtime;

pub use check::{check_pool, member_config, member_id, member_number};
pub use runtime::{PoolError, PoolOptions, MEMBER_PORTS};

use control::{controller, tick};
use runtime::{members_of, publish, save, summary, Inner, Runtime};

use crate::dispatch::JobQueue;
use crate::manager::InstanceManager;
use crate::store::{PoolStore, StoreError};
use memory::MemorySource;
use std::sync::{Arc, Mutex};
use storycore_types::{AppEvent, PoolConfig, PoolView};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The pools and their controller.
#[derive(Clone)]
pub struct Pools {
    inner: Arc<Inner>,
}

impl Pools {
    /// Reads `pools.json` and starts the controller (on the current Tokio
    /// runtime). Returns what the user should read (a file recovered, a
    /// pool refused).
    pub fn open(
        config_dir: &std::path::Path,
        manager: InstanceManager,
        queue: JobQueue,
        memory: Arc<dyn MemorySource>,
        options: PoolOptions,
    ) -> Result<(Self, Vec<String>), StoreError> {
        let store = PoolStore::new(config_dir);
        let loaded = store.load(|p, before| {
            let problems = check_pool(p, before);
            // A folder on a drive not mounted now does not drop the pool.
            let problems: Vec<_> = problems
                .into_iter()
                .filter(|f| f.field != "comfyuiPath" && f.field != "pythonPath")
                .collect();
            if problems.is_empty() {
                Ok(())
            } else {
                Err(summary(&problems))
            }
        })?;
        let inner = Arc::new(Inner {
            bus: manager.bus().clone(),
            manager,
            queue,
            memory,
            store,
            read_only: loaded.read_only,
            pools: Mutex::new(loaded.pools.into_iter().map(Runtime::new).collect()),
            ops: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            begun: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            options,
        });
        let pools = Self { inner };
        let weak = Arc::downgrade(&pools.inner);
        pools.inner.tasks.spawn(controller(weak));
        Ok((pools, loaded.notices))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Runtime>> {
        self.inner.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every pool as the window shows it.
    pub fn list(&self) -> Vec<PoolView> {
        let instances = self.inner.manager.list();
        self.lock()
            .iter()
            .map(|r| r.view(&members_of(&instances, &r.config.id)))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<PoolView> {
        self.list().into_iter().find(|p| p.config.id == id)
    }

    /// Adds a pool; it decides at once (its minimum starts).
    pub async fn create(&self, config: PoolConfig) -> Result<PoolView, PoolError> {
        let _op = self.inner.ops.lock().await;
        self.writable()?;
        let mut all = self.configs();
        let problems = check_pool(&config, &all);
        if !problems.is_empty() {
            return Err(PoolError::Invalid { fields: problems });
        }
        all.push(config.clone());
        self.save(all).await?;
        let id = config.id.clone();
        self.lock().push(Runtime::new(config));
        tracing::info!(pool = %id, "pool created");
        self.inner.wake.notify_one();
        drop(_op);
        self.publish(&id);
        self.get(&id).ok_or(PoolError::NotFound(id))
    }

    /// Changes a pool. Members that run keep their launch settings; a
    /// member started after the change (a stopped one too) gets the new ones.
    pub async fn update(&self, config: PoolConfig) -> Result<PoolView, PoolError> {
        let _op = self.inner.ops.lock().await;
        self.writable()?;
        let mut all = self.configs();
        let pos = all
            .iter()
            .position(|p| p.id == config.id)
            .ok_or_else(|| PoolError::NotFound(config.id.clone()))?;
        let others: Vec<PoolConfig> = all
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != pos)
            .map(|(_, p)| p.clone())
            .collect();
        let problems = check_pool(&config, &others);
        if !problems.is_empty() {
            return Err(PoolError::Invalid { fields: problems });
        }
        all[pos] = config.clone();
        self.save(all).await?;
        let id = config.id.clone();
        if let Some(r) = self.lock().iter_mut().find(|r| r.config.id == id) {
            r.config = config;
        }
        self.inner.wake.notify_one();
        drop(_op);
        self.publish(&id);
        self.get(&id).ok_or(PoolError::NotFound(id))
    }

    /// Removes a pool: its members are stopped and deleted.
    pub async fn delete(&self, id: &str) -> Result<(), PoolError> {
        let _op = self.inner.ops.lock().await;
        self.writable()?;
        let mut all = self.configs();
        let before = all.len();
        all.retain(|p| p.id != id);
        if all.len() == before {
            return Err(PoolError::NotFound(id.to_string()));
        }
        self.save(all).await?;
        self.lock().retain(|r| r.config.id != id);
        for m in members_of(&self.inner.manager.list(), id) {
            if let Err(e) = self.inner.manager.delete(&m.id).await {
                tracing::warn!(pool = %id, member = %m.id, "member not deleted: {e}");
            }
        }
        self.inner
            .bus
            .publish(AppEvent::PoolRemoved { id: id.to_string() });
        tracing::info!(pool = %id, "pool deleted");
        Ok(())
    }

    /// Lets a held controller decide (see [`PoolOptions::hold`]).
    pub fn begin(&self) {
        self.inner.begun.notify_one();
    }

    /// Ends the controller (members are the manager's: its shutdown stops them).
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Looks at every pool now (tests; the controller also does on its tick).
    pub async fn tick(&self) {
        tick(&self.inner).await;
    }

    fn writable(&self) -> Result<(), PoolError> {
        if self.inner.read_only {
            Err(PoolError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn configs(&self) -> Vec<PoolConfig> {
        self.lock().iter().map(|r| r.config.clone()).collect()
    }

    async fn save(&self, all: Vec<PoolConfig>) -> Result<(), PoolError> {
        save(&self.inner, all).await
    }

    fn publish(&self, id: &str) {
        publish(&self.inner, id, true);
    }
}
