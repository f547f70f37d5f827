//! The one composition root: [`Engine::open`] wires the settings, the
//! instance manager, the projects, the job queue, the gateway and the pools
//! in one order, on one [`EventBus`]; [`Engine::begin`] brings back what a
//! previous run left and starts what should run; [`Engine::shutdown`] stops
//! them in one order. The desktop shell and `serve` both use it, and keep
//! only what is theirs (window, tray, notifications, commands; signals).
//!
//! Order at open: settings, manager (instances), projects (and their
//! migration), queue (jobs a previous run left are looked up), the queue's
//! load as the manager's, the gateway, the pools (held until `begin`).
//! Order at `begin`: secrets, re-attach, autoStart, then the pools decide.
//! Order at shutdown: gateway, pools (no member started or stopped while the
//! rest stops), queue (jobs stay on disk), instances (left running when the
//! user keeps them), health histories written.

use crate::dispatch::{DispatchOptions, JobQueue};
use crate::events::EventBus;
use crate::gateway::{Access, Gateway};
use crate::manager::{InstanceManager, ManagerOptions};
use crate::paths::AppPaths;
use crate::pool::{memory::MemorySource, PoolOptions, Pools};
use crate::projects::Projects;
use crate::settings::{self, EnvSettings, GatewayChoice, SettingsStore};
use std::net::SocketAddr;
use std::sync::Arc;
use storycore_types::{ApiError, AppSettings, ErrorCode, FieldError, GatewayStatus};

/// What the engine is opened with besides the folders and the settings.
pub struct EngineOptions {
    pub paths: AppPaths,
    pub env: EnvSettings,
    pub gateway: GatewayChoice,
    /// The memory pools plan members within (NVML, else the system's).
    pub memory: Arc<dyn MemorySource>,
}

impl EngineOptions {
    pub fn new(paths: AppPaths, env: EnvSettings, gateway: GatewayChoice) -> Self {
        Self {
            paths,
            env,
            gateway,
            memory: Arc::new(crate::pool::memory::SystemMemory::default()),
        }
    }
}

/// What opening found, for the user to read once.
pub struct Opened {
    pub engine: Engine,
    pub notices: Vec<String>,
    /// Where the gateway listens (`None`: off), or why it could not.
    pub gateway: Result<Option<SocketAddr>, String>,
}

/// A cheap-to-clone handle on every part.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    paths: AppPaths,
    env: EnvSettings,
    settings: Arc<SettingsStore>,
    bus: EventBus,
    manager: InstanceManager,
    projects: Projects,
    queue: JobQueue,
    pools: Result<Pools, String>,
    /// The gateway that runs, if any; one change at a time.
    gateway: tokio::sync::Mutex<Option<Gateway>>,
}

impl Engine {
    /// Opens every part, in the order of the module's comment. Fails only
    /// when the instances, projects or jobs cannot be read at all; what a
    /// part could repair or skip is in the notices.
    pub async fn open(options: EngineOptions) -> Result<Opened, String> {
        let EngineOptions {
            paths,
            env,
            gateway: choice,
            memory,
        } = options;
        let bus = EventBus::new();
        let config_dir = paths.config_dir.clone();
        let mut notices = Vec::new();
        let (settings, notice) = SettingsStore::load(&config_dir);
        let settings = Arc::new(settings);
        notices.extend(notice);
        let current = settings.get();

        let mut options = ManagerOptions::new(&config_dir);
        options.data_dir = paths.data_dir.clone();
        options.health = settings::health_policy_of(&current, &env);
        options.bus = bus.clone();
        let (manager, report) = blocking(move || InstanceManager::open(options))
            .await?
            .map_err(|e| format!("cannot open the instance files: {e}"))?;
        if let Some(m) = &report.migration {
            tracing::info!(?m, "single-instance config looked at");
        }
        notices.extend(report.notices);
        manager.set_keep_running(current.keep_instances_running);

        let dir = config_dir.clone();
        let (projects, project_notices, legacy) = blocking(move || Projects::open(&dir))
            .await?
            .map_err(|e| format!("cannot open the projects file: {e}"))?;
        notices.extend(project_notices);
        // Projects that still name the single-instance server get its instance.
        for n in projects.migrate(&manager, legacy).await {
            tracing::info!("{n}");
            notices.push(n);
        }

        // The journal is replayed on the blocking pool (the runtime's
        // threads stay free); the queue's tasks start on this runtime.
        let dispatch = DispatchOptions {
            retention: settings::retention_of(&current),
            policy: settings::placement_of(&current),
            speculate: current.copies_near_the_end,
            ..DispatchOptions::default()
        };
        let runtime = tokio::runtime::Handle::current();
        let (m, dir) = (manager.clone(), config_dir.clone());
        let (queue, recovered) = blocking(move || {
            let _inside = runtime.enter();
            JobQueue::open(m, &dir, dispatch)
        })
        .await?
        .map_err(|e| format!("cannot open the job queue: {e}"))?;
        notices.extend(recovered.notices);

        // Pools wait for `begin`: members a previous run left running are
        // re-attached first, or they would look stopped and start twice.
        let pools = Pools::open(
            &config_dir,
            manager.clone(),
            queue.clone(),
            memory,
            PoolOptions {
                hold: true,
                ..Default::default()
            },
        )
        .map(|(pools, pool_notices)| {
            notices.extend(pool_notices);
            pools
        })
        .map_err(|e| format!("pools are off: pools.json could not be read: {e}"));
        if let Err(e) = &pools {
            notices.push(e.clone());
        }

        let engine = Engine {
            inner: Arc::new(Inner {
                paths,
                env,
                settings,
                bus,
                manager,
                projects,
                queue,
                pools,
                gateway: tokio::sync::Mutex::new(None),
            }),
        };
        let env = engine.inner.env.clone();
        let gateway = engine.start_gateway(&choice, &current, env).await;
        for n in &notices {
            tracing::warn!("{n}");
        }
        Ok(Opened {
            engine,
            notices,
            gateway,
        })
    }

    /// Brings back what a previous run left and starts what should run:
    /// API keys first (a keyring round trip each; the monitors of what
    /// starts next send them), then re-attach (before autoStart, so a kept
    /// process is not started twice), autoStart, and then the pools decide.
    /// Returns what the user should read.
    pub async fn begin(&self) -> Vec<String> {
        let m = &self.inner.manager;
        let notices = m.load_secrets().await;
        let kept = m.reattach_local().await;
        if !kept.is_empty() {
            tracing::info!(?kept, "re-attached to instances left running");
        }
        for (id, e) in m.start_auto().await {
            tracing::warn!(%id, "autoStart failed: {e}");
        }
        if let Ok(p) = &self.inner.pools {
            p.begin();
        }
        notices
    }

    /// Stops every part in one order (see the module's comment). With
    /// "keep instances running", what the app launched keeps running and
    /// the next launch re-attaches.
    pub async fn shutdown(&self) {
        if let Some(g) = self.inner.gateway.lock().await.take() {
            g.stop().await;
        }
        if let Ok(p) = &self.inner.pools {
            p.shutdown().await;
        }
        self.inner.queue.shutdown().await;
        if self.inner.settings.get().keep_instances_running {
            self.inner.manager.detach_all().await;
        }
        self.inner.manager.shutdown().await;
    }

    pub fn manager(&self) -> &InstanceManager {
        &self.inner.manager
    }

    pub fn queue(&self) -> &JobQueue {
        &self.inner.queue
    }

    /// The pools, or why they are off.
    pub fn pools(&self) -> Result<&Pools, &str> {
        self.inner.pools.as_ref().map_err(String::as_str)
    }

    pub fn projects(&self) -> &Projects {
        &self.inner.projects
    }

    pub fn settings(&self) -> &Arc<SettingsStore> {
        &self.inner.settings
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn paths(&self) -> &AppPaths {
        &self.inner.paths
    }

    /// Where the gateway listens now (`None`: off).
    pub async fn gateway_addr(&self) -> Option<SocketAddr> {
        self.inner.gateway.lock().await.as_ref().map(|g| g.addr())
    }

    /// Where the gateway listens now, and how clients trust it (`None`:
    /// off, or it could not listen).
    pub async fn gateway_status(&self) -> Option<GatewayStatus> {
        self.inner
            .gateway
            .lock()
            .await
            .as_ref()
            .map(|g| GatewayStatus {
                address: g.addr().to_string(),
                url: g.url(),
                fingerprint: g.tls().map(|t| t.fingerprint().to_string()),
                trust_file: g.tls().map(|t| t.trust_file().display().to_string()),
            })
    }

    /// Starts the gateway `choice` asks for (the access is read on the
    /// blocking pool: a keyring read, a certificate made or read).
    async fn start_gateway(
        &self,
        choice: &GatewayChoice,
        s: &AppSettings,
        env: EnvSettings,
    ) -> Result<Option<SocketAddr>, String> {
        let (choice, s2, dir) = (
            choice.clone(),
            s.clone(),
            self.inner.paths.config_dir.clone(),
        );
        let wanted = blocking(move || settings::wanted_gateway(&choice, &s2, &env, &dir)).await??;
        self.replace_gateway(wanted).await
    }

    /// Stops the gateway that runs, if any, and starts `wanted`.
    async fn replace_gateway(
        &self,
        wanted: Option<(SocketAddr, Access)>,
    ) -> Result<Option<SocketAddr>, String> {
        let mut running = self.inner.gateway.lock().await;
        if let Some(old) = running.take() {
            old.stop().await;
        }
        let Some((addr, access)) = wanted else {
            tracing::info!("the gateway is off");
            return Ok(None);
        };
        let gw = Gateway::start_with(
            self.inner.queue.clone(),
            self.inner.manager.clone(),
            addr,
            access,
        )
        .await
        .map_err(|e| e.to_string())?;
        let at = gw.addr();
        *running = Some(gw);
        Ok(Some(at))
    }

    /// Checks, saves and applies new settings, one change at a time: "keep
    /// instances running" goes to the process guardian at once, new
    /// retention limits prune at once, health, placement and the gateway
    /// change only when theirs did.
    pub async fn apply_settings(&self, mut new: AppSettings) -> Result<(), ApiError> {
        let store = &self.inner.settings;
        let _one_at_a_time = store.begin_change().await;
        let before = store.get();
        // Where the token is kept is the app's to say (set_gateway_token).
        new.gateway.token_ref = before.gateway.token_ref.clone();
        let dir = self.inner.paths.config_dir.clone();
        let named = blocking(move || !crate::gateway::TokenBook::open(&dir).is_empty())
            .await
            .map_err(internal)?;
        settings::check(&new, named)?;
        store.set(new.clone()).await?;
        let (m, q) = (&self.inner.manager, &self.inner.queue);
        m.set_keep_running(new.keep_instances_running);
        q.set_retention(settings::retention_of(&new)).await;
        if new.health != before.health {
            m.set_health_policy(settings::health_policy_of(&new, &self.inner.env))
                .await;
        }
        if (new.placement, new.copies_near_the_end)
            != (before.placement, before.copies_near_the_end)
        {
            q.set_placement(settings::placement_of(&new), new.copies_near_the_end);
        }
        if new.gateway != before.gateway {
            self.restart_gateway(&new).await?;
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) the token a gateway on the network
    /// requires; kept in the OS keyring, never in a file. The gateway starts
    /// again with it.
    pub async fn set_gateway_token(&self, token: Option<String>) -> Result<(), ApiError> {
        let store = &self.inner.settings;
        let _one_at_a_time = store.begin_change().await;
        let mut s = store.get();
        let field = |e: String| {
            let mut api = ApiError::new(ErrorCode::InvalidInput, e.clone());
            api.fields = vec![FieldError::new("gateway.token", e)];
            api
        };
        let auth =
            storycore_types::KeyAuth::parse(s.gateway.token_auth.as_deref().unwrap_or("bearer"))
                .map_err(field)?;
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(t) = &token {
            Access::token(t, auth).map_err(field)?;
        }
        let vault = crate::secrets::Vault::new(&self.inner.paths.config_dir);
        let reference = settings::GATEWAY_TOKEN_REF;
        let kept = blocking(move || match &token {
            Some(t) => vault.store(reference, t).map(|()| true),
            None => vault.delete(reference).map(|()| false),
        })
        .await
        .map_err(internal)?
        .map_err(|e| {
            field(format!(
                "{e} (a headless server can take the token from STORYCORE_GATEWAY_TOKEN instead)"
            ))
        })?;
        s.gateway.token_ref = kept.then(|| reference.to_string());
        store.set(s.clone()).await?;
        self.restart_gateway(&s).await
    }

    /// Starts the gateway again as `s` say. STORYCORE_GATEWAY (and its
    /// token) chose it at start; a change made in Settings is the user's,
    /// and wins from now on.
    async fn restart_gateway(&self, s: &AppSettings) -> Result<(), ApiError> {
        let env = EnvSettings::default();
        settings::gateway_addr(s, &env).map_err(|e| ApiError::new(ErrorCode::InvalidInput, e))?;
        let started = self.start_gateway(&GatewayChoice::Settings, s, env).await;
        started.map(|_| ()).map_err(|e| {
            let mut api = ApiError::new(
                ErrorCode::Conflict,
                format!("Saved, but the gateway is off: {e}"),
            );
            api.fields = vec![FieldError::new("gateway.address", e)];
            api
        })
    }
}

/// The names of the runtime's threads: its workers (which must never block:
/// no file sync, no large read) and the blocking pool's. Tests tell them
/// apart by these names (`/proc/<pid>/task/<tid>/comm`).
pub const WORKER_THREAD: &str = "storycore-work";
pub const BLOCKING_THREAD: &str = "storycore-block";

/// The app's Tokio runtime: `workers` threads run the tasks; any thread the
/// runtime starts after them is its blocking pool's (Tokio starts its
/// workers first, when the runtime is built).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let started = std::sync::atomic::AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(move || {
            let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < workers {
                WORKER_THREAD.to_string()
            } else {
                BLOCKING_THREAD.to_string()
            }
        })
        .enable_all()
        .build()
}

/// Runs blocking work (file reads, a keyring round trip) on the blocking
/// pool; a panic there is an error, not a crash of the caller.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("a start-up task failed: {e}"))
}

fn internal(e: String) -> ApiError {
    ApiError::new(ErrorCode::Internal, e)
}
