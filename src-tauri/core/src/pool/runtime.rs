//! What the pools keep between ticks and share with their controller: each
//! pool's runtime (decisions, size history), the options, the errors, and
//! the writing and announcing of a pool.

use super::check::{member_config, member_number};
use super::memory::MemorySource;
use crate::dispatch::JobQueue;
use crate::manager::{InstanceManager, ManagerError};
use crate::store::{PoolStore, StoreError};
use chrono::Utc;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storycore_types::{
    ApiError, AppEvent, ErrorCode, FieldError, Instance, InstanceConfigPatch, InstanceStatus,
    PoolAction, PoolConfig, PoolDecision, PoolSizePoint, PoolView,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Decisions kept per pool for the window.
pub(super) const DECISIONS_KEPT: usize = 100;
/// Size points kept per pool (the plot).
pub(super) const HISTORY_KEPT: usize = 720;
/// A refusal to start said again at most this often when it does not change.
pub(super) const REFUSAL_REPEAT: Duration = Duration::from_secs(60);
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

pub(super) fn summary(fields: &[FieldError]) -> String {
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
pub(super) struct Runtime {
    pub(super) config: PoolConfig,
    pub(super) target: u32,
    pub(super) expected_wait: Option<f64>,
    pub(super) why: String,
    pub(super) decisions: VecDeque<PoolDecision>,
    pub(super) history: VecDeque<PoolSizePoint>,
    pub(super) last_start: Option<Instant>,
    pub(super) last_stop: Option<Instant>,
    pub(super) last_refusal: Option<(String, Instant)>,
    /// Running members with nothing to do, since when.
    pub(super) idle_since: HashMap<String, Instant>,
    /// Exits of each member already looked at.
    pub(super) exits_seen: HashMap<String, u64>,
    /// Most memory a member held while it ran its first job, MiB.
    pub(super) peak_mib: HashMap<String, u64>,
    /// Members seen at work (for the measure of the first run).
    pub(super) worked: HashSet<String>,
    pub(super) sent: Option<PoolView>,
}

impl Runtime {
    pub(super) fn new(config: PoolConfig) -> Self {
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

    pub(super) fn decide(
        &mut self,
        action: PoolAction,
        member: Option<&str>,
        reason: String,
        size: u32,
    ) {
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

    pub(super) fn view(&self, members: &[Instance]) -> PoolView {
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

    pub(super) fn note_size(&mut self, size: u32) {
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

pub(super) fn active(s: InstanceStatus) -> bool {
    matches!(s, InstanceStatus::Starting | InstanceStatus::Running)
}

pub(super) struct Inner {
    /// The engine's bus (the one the manager was opened on).
    pub(super) bus: crate::events::EventBus,
    pub(super) manager: InstanceManager,
    pub(super) queue: JobQueue,
    pub(super) memory: Arc<dyn MemorySource>,
    pub(super) store: PoolStore,
    pub(super) read_only: bool,
    pub(super) pools: Mutex<Vec<Runtime>>,
    /// One change or decision at a time (they await the manager).
    pub(super) ops: tokio::sync::Mutex<()>,
    pub(super) wake: Notify,
    pub(super) begun: Notify,
    pub(super) cancel: CancellationToken,
    pub(super) tasks: TaskTracker,
    pub(super) options: PoolOptions,
}

pub(super) async fn save(inner: &Inner, all: Vec<PoolConfig>) -> Result<(), PoolError> {
    let store = inner.store.clone();
    match tokio::task::spawn_blocking(move || store.save(&all)).await {
        Ok(saved) => Ok(saved?),
        Err(e) => Err(PoolError::Store(StoreError::Write {
            path: inner.store.path(),
            source: std::io::Error::other(e.to_string()),
        })),
    }
}

pub(super) fn members_of(instances: &[Instance], pool: &str) -> Vec<Instance> {
    let mut members: Vec<Instance> = instances
        .iter()
        .filter(|i| i.config.pool_id.as_deref() == Some(pool))
        .cloned()
        .collect();
    members.sort_by_key(|m| member_number(pool, &m.id).unwrap_or(u32::MAX));
    members
}

/// Sends the pool's view when it changed (or always, when `force`).
pub(super) fn publish(inner: &Inner, id: &str, force: bool) {
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

/// Makes a member ready to start on `device`: a stopped (or failed) one
/// first, by number, else a new one. Returns its id; the controller starts
/// it once the pools' lock is let go.
pub(super) async fn prepare_member(
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
    Ok(id)
}

pub(super) fn no_port(ports: &std::ops::RangeInclusive<u16>) -> ManagerError {
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

pub(super) fn port_free(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

pub(super) fn pick_port(
    ports: &std::ops::RangeInclusive<u16>,
    taken: &HashSet<u32>,
) -> Option<u16> {
    ports
        .clone()
        .find(|p| !taken.contains(&u32::from(*p)) && port_free(u32::from(*p)))
}
