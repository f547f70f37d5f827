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
pub mod memory;
pub mod plan;

pub use check::{check_pool, member_config, member_id, member_number};

use crate::dispatch::{JobQueue, Outlook};
use crate::manager::{balance, InstanceManager, ManagerError};
use crate::store::{PoolStore, StoreError};
use crate::supervisor::ExitCause;
use chrono::Utc;
use memory::MemorySource;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storycore_types::{
    ApiError, AppEvent, ErrorCode, FieldError, Instance, InstanceConfigPatch, InstanceStatus,
    JobTarget, PoolAction, PoolConfig, PoolDecision, PoolSizePoint, PoolView,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Decisions kept per pool for the window.
const DECISIONS_KEPT: usize = 100;
/// Size points kept per pool (the plot).
const HISTORY_KEPT: usize = 720;
/// A refusal to start said again at most this often when it does not change.
const REFUSAL_REPEAT: Duration = Duration::from_secs(60);
/// Ports members are given, the first free one (ComfyUI's own is 8188).
pub const MEMBER_PORTS: std::ops::RangeInclusive<u16> = 8190..=8999;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the pool is not valid: {}", summary(.fields))]
    Invalid { fields: Vec<FieldError> },
    #[error("no pool has the id \"{0}\"")]
    NotFound(String),
    #[error("pools.json is from a newer version of the app: pools cannot be changed until it is updated")]
    ReadOnly,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Manager(m) => m.into(),
            PoolError::Invalid { fields } => {
                let mut api = ApiError::new(ErrorCode::InvalidInput, summary(&fields));
                api.fields = fields;
                api
            }
            PoolError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
            PoolError::ReadOnly => ApiError::new(ErrorCode::Conflict, e.to_string()),
            PoolError::Store(_) => ApiError::new(ErrorCode::Io, e.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// How often pools look at their work.
    pub tick: Duration,
    /// Ports members are given, the first free one.
    pub ports: std::ops::RangeInclusive<u16>,
    /// Decide nothing until [`Pools::begin`]: the app first re-attaches to
    /// members a previous run left running, which would otherwise look
    /// stopped and be started a second time.
    pub hold: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            ports: MEMBER_PORTS,
            hold: false,
        }
    }
}

/// What a pool knows between ticks.
struct Runtime {
    config: PoolConfig,
    target: u32,
    expected_wait: Option<f64>,
    why: String,
    decisions: VecDeque<PoolDecision>,
    history: VecDeque<PoolSizePoint>,
    last_start: Option<Instant>,
    last_stop: Option<Instant>,
    last_refusal: Option<(String, Instant)>,
    /// Running members with nothing to do, since when.
    idle_since: HashMap<String, Instant>,
    /// Exits of each member already looked at.
    exits_seen: HashMap<String, u64>,
    /// Most memory a member held while it ran its first job, MiB.
    peak_mib: HashMap<String, u64>,
    /// Members seen at work (for the measure of the first run).
    worked: HashSet<String>,
    sent: Option<PoolView>,
}

impl Runtime {
    fn new(config: PoolConfig) -> Self {
        Self {
            config,
            target: 0,
            expected_wait: None,
            why: "not looked at yet".into(),
            decisions: VecDeque::new(),
            history: VecDeque::new(),
            last_start: None,
            last_stop: None,
            last_refusal: None,
            idle_since: HashMap::new(),
            exits_seen: HashMap::new(),
            peak_mib: HashMap::new(),
            worked: HashSet::new(),
            sent: None,
        }
    }

    fn decide(&mut self, action: PoolAction, member: Option<&str>, reason: String, size: u32) {
        let pool = &self.config.id;
        match action {
            PoolAction::NotStarted | PoolAction::LimitLowered => {
                tracing::warn!(%pool, member, "{reason}")
            }
            _ => tracing::info!(%pool, member, ?action, "{reason}"),
        }
        self.decisions.push_back(PoolDecision {
            at: Utc::now(),
            action,
            member: member.map(str::to_string),
            reason,
            size,
        });
        while self.decisions.len() > DECISIONS_KEPT {
            self.decisions.pop_front();
        }
    }

    fn view(&self, members: &[Instance]) -> PoolView {
        let size = members.iter().filter(|m| active(m.status)).count() as u32;
        PoolView {
            config: self.config.clone(),
            members: members.iter().map(|m| m.id.clone()).collect(),
            size,
            target: self.target,
            expected_wait_secs: self.expected_wait.map(|w| w.min(1e9)),
            why: self.why.clone(),
            decisions: self.decisions.iter().cloned().collect(),
            history: self.history.iter().copied().collect(),
        }
    }

    fn note_size(&mut self, size: u32) {
        let last = self.history.back().map(|p| (p.size, p.target));
        if last != Some((size, self.target)) {
            self.history.push_back(PoolSizePoint {
                at: Utc::now(),
                size,
                target: self.target,
            });
            while self.history.len() > HISTORY_KEPT {
                self.history.pop_front();
            }
        }
    }
}

fn active(s: InstanceStatus) -> bool {
    matches!(s, InstanceStatus::Starting | InstanceStatus::Running)
}

struct Inner {
    /// The engine's bus (the one the manager was opened on).
    bus: crate::events::EventBus,
    manager: InstanceManager,
    queue: JobQueue,
    memory: Arc<dyn MemorySource>,
    store: PoolStore,
    read_only: bool,
    pools: Mutex<Vec<Runtime>>,
    /// One change or decision at a time (they await the manager).
    ops: tokio::sync::Mutex<()>,
    wake: Notify,
    begun: Notify,
    cancel: CancellationToken,
    tasks: TaskTracker,
    options: PoolOptions,
}

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

async fn save(inner: &Inner, all: Vec<PoolConfig>) -> Result<(), PoolError> {
    let store = inner.store.clone();
    match tokio::task::spawn_blocking(move || store.save(&all)).await {
        Ok(saved) => Ok(saved?),
        Err(e) => Err(PoolError::Store(StoreError::Write {
            path: inner.store.path(),
            source: std::io::Error::other(e.to_string()),
        })),
    }
}

fn members_of(instances: &[Instance], pool: &str) -> Vec<Instance> {
    let mut members: Vec<Instance> = instances
        .iter()
        .filter(|i| i.config.pool_id.as_deref() == Some(pool))
        .cloned()
        .collect();
    members.sort_by_key(|m| member_number(pool, &m.id).unwrap_or(u32::MAX));
    members
}

/// Sends the pool's view when it changed (or always, when `force`).
fn publish(inner: &Inner, id: &str, force: bool) {
    let instances = inner.manager.list();
    let view = {
        let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = pools.iter_mut().find(|r| r.config.id == id) else {
            return;
        };
        let view = r.view(&members_of(&instances, id));
        if !force && r.sent.as_ref() == Some(&view) {
            return;
        }
        r.sent = Some(view.clone());
        view
    };
    inner.bus.publish(AppEvent::PoolUpdated(Box::new(view)));
}

async fn controller(weak: std::sync::Weak<Inner>) {
    if let Some(inner) = weak.upgrade() {
        if inner.options.hold {
            let cancel = inner.cancel.clone();
            let begun = async { inner.begun.notified().await };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = begun => {}
            }
        }
    }
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.options.tick;
        let cancel = inner.cancel.clone();
        tick(&inner).await;
        let woken = async {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = woken => {}
        }
    }
}

async fn tick(inner: &Inner) {
    let _op = inner.ops.lock().await;
    let ids: Vec<String> = inner
        .pools
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.config.enabled)
        .map(|r| r.config.id.clone())
        .collect();
    for id in ids {
        if inner.cancel.is_cancelled() {
            return;
        }
        decide(inner, &id).await;
        publish(inner, &id, false);
    }
}

/// The work the pool's members may take: waiting jobs and what runs.
fn backlog(
    outlook: &Outlook,
    members: &[String],
    lanes: &[String],
    active: Option<&str>,
) -> (usize, f64) {
    // The queue's one rule: some member may run it, or a member not yet
    // started (any instance may take a job of the automatic target
    // without pins).
    let takes = |target: &JobTarget, pins: &[String]| {
        (*target == JobTarget::Auto && pins.is_empty())
            || members
                .iter()
                .any(|m| crate::dispatch::target_allows(target, pins, m, active))
    };
    let waiting: Vec<f64> = outlook
        .waiting
        .iter()
        .filter(|w| takes(&w.target, &w.pins))
        .map(|w| w.secs)
        .collect();
    let running: f64 = lanes
        .iter()
        .filter_map(|l| outlook.in_flight.get(l))
        .map(|(_, secs)| secs)
        .sum();
    (waiting.len(), waiting.iter().sum::<f64>() + running)
}

/// The device a member runs on, as the plan names devices.
fn device_of(m: &Instance) -> String {
    match m.config.gpu_device.as_deref() {
        Some(d) => d.strip_prefix("cuda:").unwrap_or(d).to_string(),
        None => "default".to_string(),
    }
}

/// The devices the pool may use, with their free memory now.
fn rooms(inner: &Inner, c: &PoolConfig) -> Vec<plan::Room> {
    let gpus = inner.memory.gpus();
    let cpu = || plan::Room {
        device: "cpu".into(),
        free_mib: inner.memory.available_ram() >> 20,
        label: "the CPU (RAM)".into(),
    };
    let wanted: Vec<String> = if c.devices.is_empty() {
        if gpus.is_empty() {
            return vec![cpu()];
        }
        gpus.iter().map(|g| g.index.to_string()).collect()
    } else {
        c.devices.clone()
    };
    wanted
        .iter()
        .map(|d| {
            if d == "cpu" {
                return cpu();
            }
            // A GPU NVML does not list has no memory to give: said, not used.
            match gpus.iter().find(|g| g.index.to_string() == *d) {
                Some(g) => plan::Room {
                    device: d.clone(),
                    free_mib: g.memory_free_bytes >> 20,
                    label: format!("GPU {d} ({})", g.name),
                },
                None => plan::Room {
                    device: d.clone(),
                    free_mib: 0,
                    label: format!(
                        "GPU {d}, which NVML does not list ({})",
                        crate::telemetry::nvml_status()
                            .map_or_else(|| "no such GPU".to_string(), |e| format!("NVML: {e}"))
                    ),
                },
            }
        })
        .collect()
}

/// Memory the member's processes hold on its device, MiB.
fn used_mib(inner: &Inner, m: &Instance, device: &str) -> Option<u64> {
    let pid = inner.manager.process_pid(&m.id)?;
    let (rss, pids) = inner.memory.ram_of(pid)?;
    if device == "cpu" {
        Some(rss >> 20)
    } else {
        inner.memory.vram_of(&pids).map(|b| b >> 20)
    }
}

/// One look at one pool: measure, react to out-of-memory exits, plan, act.
async fn decide(inner: &Inner, id: &str) {
    let instances = inner.manager.list();
    let members = members_of(&instances, id);
    let outlook = inner.queue.outlook();
    if with_pool(inner, id, |_| ()).is_none() {
        return;
    }
    let now = Instant::now();
    // A member's memory is read (a walk of the process table) only when a
    // figure is used: to measure an unknown need, or to book what members
    // still have to take when a start may be wanted.
    let (need_known, min) = with_pool(inner, id, |r| {
        (r.config.need_mib().is_some(), r.config.min_members)
    })
    .unwrap_or((true, 0));
    let active_now = members.iter().filter(|m| active(m.status)).count() as u32;
    let may_start = !outlook.waiting.is_empty() || active_now < min;
    let mut snapshot_members = Vec::new();
    for m in &members {
        let device = device_of(m);
        let in_flight = outlook.in_flight.get(&m.id).map_or(0, |l| l.0);
        let wanted = active(m.status) && (may_start || (!need_known && in_flight > 0));
        let used = wanted.then(|| used_mib(inner, m, &device)).flatten();
        let idle_for = with_pool(inner, id, |r| {
            if m.status == InstanceStatus::Running && in_flight == 0 {
                Some(now - *r.idle_since.entry(m.id.clone()).or_insert(now))
            } else {
                r.idle_since.remove(&m.id);
                None
            }
        })
        .flatten();
        measure(inner, id, m, in_flight, used, &device).await;
        out_of_memory(inner, id, m, &device, &members).await;
        snapshot_members.push(plan::Member {
            id: m.id.clone(),
            number: member_number(id, &m.id).unwrap_or(0),
            status: m.status,
            device,
            in_flight,
            idle_for,
            used_mib: used,
        });
    }
    let member_ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let others: Vec<String> = instances
        .iter()
        .filter(|i| !member_ids.contains(&i.id) && balance::eligible(i))
        .map(|i| i.id.clone())
        .collect();
    let lanes: Vec<String> = members
        .iter()
        .filter(|m| active(m.status))
        .map(|m| m.id.clone())
        .chain(others.iter().cloned())
        .collect();
    let chosen = inner.manager.active_instance().map(|i| i.id);
    let (waiting_jobs, backlog_secs) = backlog(&outlook, &member_ids, &lanes, chosen.as_deref());
    // The config again: measuring or an out-of-memory exit may have changed it.
    let Some((config, since_start, since_stop)) = with_pool(inner, id, |r| {
        (
            r.config.clone(),
            r.last_start.map(|t| now - t),
            r.last_stop.map(|t| now - t),
        )
    }) else {
        return;
    };
    let snap = plan::Snapshot {
        config: &config,
        members: snapshot_members,
        rooms: rooms(inner, &config),
        waiting_jobs,
        backlog_secs,
        other_lanes: others.len() as u32,
        since_start,
        since_stop,
    };
    let decision = plan::plan(&snap);
    let mut size = snap.members.iter().filter(|m| m.active()).count() as u32;
    with_pool(inner, id, |r| {
        r.target = decision.target;
        r.expected_wait = decision.expected_wait;
        r.why = decision.why.clone();
        r.note_size(size);
    });
    for start in &decision.starts {
        let outcome = start_member(inner, &config, &members, &start.device).await;
        with_pool(inner, id, |r| {
            r.last_start = Some(Instant::now());
            match outcome {
                Ok(ref member) => {
                    size += 1;
                    let reason = format!("on {}: {}", device_label(&start.device), start.reason);
                    r.decide(PoolAction::Start, Some(member), reason, size);
                }
                Err(ref e) => r.decide(
                    PoolAction::NotStarted,
                    None,
                    format!("a member could not be started: {}", manager_error_text(e)),
                    size,
                ),
            }
            r.note_size(size);
        });
    }
    with_pool(inner, id, |r| {
        if let Some(refusal) = &decision.not_started {
            let repeat = match &r.last_refusal {
                Some((last, at)) => last != refusal || at.elapsed() >= REFUSAL_REPEAT,
                None => true,
            };
            if repeat {
                r.last_refusal = Some((refusal.clone(), Instant::now()));
                r.decide(PoolAction::NotStarted, None, refusal.clone(), size);
            }
            r.why = format!("{}; {refusal}", r.why);
        } else if decision.starts.is_empty() {
            r.last_refusal = None;
        }
    });
    for stop in &decision.stops {
        let failed = match claim_idle(inner, &stop.member).await {
            Ok(true) => {
                with_pool(inner, id, |r| {
                    size -= 1;
                    r.last_stop = Some(Instant::now());
                    r.idle_since.remove(&stop.member);
                    r.decide(
                        PoolAction::Stop,
                        Some(&stop.member),
                        stop.reason.clone(),
                        size,
                    );
                    r.note_size(size);
                });
                inner.manager.stop(&stop.member).await.err()
            }
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            with_pool(inner, id, |r| {
                r.decide(
                    PoolAction::Stop,
                    Some(&stop.member),
                    format!("could not be stopped: {}", manager_error_text(&e)),
                    size,
                )
            });
        }
    }
}

fn device_label(device: &str) -> String {
    match device {
        "cpu" => "the CPU".into(),
        "default" => "ComfyUI's default device".into(),
        d => format!("GPU {d}"),
    }
}

fn with_pool<T>(inner: &Inner, id: &str, f: impl FnOnce(&mut Runtime) -> T) -> Option<T> {
    let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
    pools.iter_mut().find(|r| r.config.id == id).map(f)
}

/// The need of a member, from the most memory the first member held while
/// it ran its first job, plus a tenth for what another workflow may take.
async fn measure(
    inner: &Inner,
    id: &str,
    m: &Instance,
    in_flight: u32,
    used: Option<u64>,
    device: &str,
) {
    let measured = with_pool(inner, id, |r| {
        if r.config.need_mib().is_some() {
            return None;
        }
        if in_flight > 0 {
            r.worked.insert(m.id.clone());
            if let Some(u) = used {
                let peak = r.peak_mib.entry(m.id.clone()).or_insert(0);
                *peak = (*peak).max(u);
            }
            return None;
        }
        if !r.worked.contains(&m.id) {
            return None;
        }
        let peak = r.peak_mib.get(&m.id).copied().filter(|p| *p > 0)?;
        Some((peak + peak / 10, peak))
    })
    .flatten();
    let Some((need, peak)) = measured else {
        return;
    };
    let change = |c: &mut PoolConfig| c.measured_need_mib = Some(need);
    save_then(inner, id, change, |r| {
        let size = r.history.back().map_or(0, |p| p.size);
        r.decide(
            PoolAction::Measured,
            Some(&m.id),
            format!(
                "a member needs {} on {} (at most {} held over its first run, plus a tenth)",
                plan::mib(need),
                device_label(device),
                plan::mib(peak)
            ),
            size,
        );
    })
    .await;
}

/// Saves the pools' configs with `change` made to pool `id` (on the blocking
/// pool, like every save), then makes it and does `then` under one lock:
/// what the window shows, a decision with its change, is what a restart
/// reads.
async fn save_then(
    inner: &Inner,
    id: &str,
    change: impl Fn(&mut PoolConfig),
    then: impl FnOnce(&mut Runtime),
) {
    if !inner.read_only {
        let mut all: Vec<PoolConfig> = inner
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.config.clone())
            .collect();
        all.iter_mut().filter(|c| c.id == id).for_each(&change);
        if let Err(e) = save(inner, all).await {
            tracing::warn!("pools.json could not be saved: {e}");
        }
    }
    with_pool(inner, id, |r| {
        change(&mut r.config);
        then(r);
    });
}

/// A member whose process ended out of memory: fewer members on its device.
async fn out_of_memory(inner: &Inner, id: &str, m: &Instance, device: &str, members: &[Instance]) {
    let (count, cause) = inner.manager.exits(&m.id);
    let new = with_pool(inner, id, |r| {
        let seen = r.exits_seen.entry(m.id.clone()).or_insert(0);
        let new = count > *seen;
        *seen = count;
        new
    })
    .unwrap_or(false);
    let oom = match cause {
        Some(ExitCause::CudaOutOfMemory) => "GPU memory",
        Some(ExitCause::KilledByOs) if device == "cpu" => "memory (killed by the system)",
        _ => return,
    };
    if !new {
        return;
    }
    let there = members
        .iter()
        .filter(|o| device_of(o) == device && (active(o.status) || o.id == m.id))
        .count() as u32;
    let stop_it = with_pool(inner, id, |r| {
        let old = r
            .config
            .device_limits
            .get(device)
            .copied()
            .unwrap_or(r.config.max_members);
        let limit = there.saturating_sub(1).max(1).min(old);
        let lowered = limit < old || !r.config.device_limits.contains_key(device);
        let reason = if lowered {
            format!(
                "{} ran out of {oom} on {} with {there} member(s) there: at most {limit} there from now on (remove the limit in the pool's settings once memory is free)",
                m.name,
                device_label(device)
            )
        } else {
            format!(
                "{} ran out of {oom} on {} with {there} member(s) there; the limit there is already {limit}: set a larger memory need per member, or free memory",
                m.name,
                device_label(device)
            )
        };
        (reason, lowered.then_some(limit), there > limit)
    });
    let Some((reason, limit, stop_it)) = stop_it else {
        return;
    };
    let change = |c: &mut PoolConfig| {
        if let Some(limit) = limit {
            c.device_limits.insert(device.to_string(), limit);
        }
    };
    save_then(inner, id, change, |r| {
        r.decide(PoolAction::LimitLowered, Some(&m.id), reason, there)
    })
    .await;
    if stop_it {
        if let Err(e) = inner.manager.stop(&m.id).await {
            tracing::warn!(member = %m.id, "not stopped after running out of memory: {e}");
        }
    }
}

/// Starts a member on `device`: a stopped (or failed) one first, by number,
/// else a new one. Returns its id.
async fn start_member(
    inner: &Inner,
    c: &PoolConfig,
    members: &[Instance],
    device: &str,
) -> Result<String, ManagerError> {
    let m = &inner.manager;
    let ports = &inner.options.ports;
    let gpu = (device != "default").then_some(device);
    let taken: HashSet<u32> = m.list().iter().map(|i| i.config.port).collect();
    let reuse = members
        .iter()
        .find(|i| matches!(i.status, InstanceStatus::Stopped | InstanceStatus::Error));
    let id = match reuse {
        Some(old) => {
            if old.status == InstanceStatus::Error {
                m.stop(&old.id).await?;
            }
            // The pool's launch settings as they are now (they may have
            // changed since this member last ran), its device, its port.
            let now = member_config(c, 0, 0, gpu);
            let o = &old.config;
            let mut patch = InstanceConfigPatch::default();
            if o.gpu_device != now.gpu_device {
                patch.gpu_device = Some(now.gpu_device);
            }
            if o.comfyui_path != now.comfyui_path {
                patch.comfyui_path = Some(now.comfyui_path);
            }
            if o.python_path != now.python_path {
                patch.python_path = Some(now.python_path);
            }
            if o.extra_args != now.extra_args {
                patch.extra_args = Some(now.extra_args);
            }
            if o.env_vars != now.env_vars {
                patch.env_vars = Some(now.env_vars);
            }
            if o.custom_nodes_path != now.custom_nodes_path {
                patch.custom_nodes_path = Some(now.custom_nodes_path);
            }
            if !port_free(old.config.port) {
                let others: HashSet<u32> = taken
                    .iter()
                    .copied()
                    .filter(|p| *p != old.config.port)
                    .collect();
                patch.port = Some(u32::from(
                    pick_port(ports, &others).ok_or_else(|| no_port(ports))?,
                ));
            }
            if patch != InstanceConfigPatch::default() {
                m.update(&old.id, patch).await?;
            }
            old.id.clone()
        }
        None => {
            // From the manager, not the snapshot: this decision may have
            // made members already.
            let used: HashSet<u32> = m
                .list()
                .iter()
                .filter_map(|i| member_number(&c.id, &i.id))
                .collect();
            let n = (1..).find(|n| !used.contains(n)).unwrap_or(1);
            let port = pick_port(ports, &taken).ok_or_else(|| no_port(ports))?;
            let config = member_config(c, n, port, gpu);
            m.create(config).await?.id
        }
    };
    m.start(&id).await?;
    Ok(id)
}

fn no_port(ports: &std::ops::RangeInclusive<u16>) -> ManagerError {
    ManagerError::Invalid {
        fields: vec![FieldError::new(
            "port",
            format!(
                "no free port for a member between {} and {}: stop what listens there",
                ports.start(),
                ports.end()
            ),
        )],
    }
}

fn port_free(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

fn pick_port(ports: &std::ops::RangeInclusive<u16>, taken: &HashSet<u32>) -> Option<u16> {
    ports
        .clone()
        .find(|p| !taken.contains(&u32::from(*p)) && port_free(u32::from(*p)))
}

/// Takes an idle member out of placement before it is stopped: it is
/// paused, so no job is placed on it while it stops, and resumed if one
/// reached it meanwhile. True if it may be stopped.
async fn claim_idle(inner: &Inner, id: &str) -> Result<bool, ManagerError> {
    let m = &inner.manager;
    m.pause(id).await?;
    if inner
        .queue
        .outlook()
        .in_flight
        .get(id)
        .is_some_and(|l| l.0 > 0)
    {
        m.resume(id).await?;
        return Ok(false);
    }
    Ok(true)
}

/// A manager error with the fields it names.
fn manager_error_text(e: &ManagerError) -> String {
    match e {
        ManagerError::Invalid { fields } if !fields.is_empty() => summary(fields),
        e => e.to_string(),
    }
}
