//! The manager's plain data: the instances in file order, the active id, and
//! per-instance runtime handles. Only ever touched under the manager's lock.

use super::error::{not_found, ManagerError};
use crate::health::HealthHandle;
use crate::store::{HealthHistory, HealthSample};
use crate::supervisor::SupervisorHandle;
use crate::telemetry::ProcessTreeSampler;
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{
    HealthStatus, Instance, InstanceConfig, InstanceHealth, InstanceStatus, InstancesFile,
    INSTANCES_FILE_VERSION,
};

/// A history with new samples is written at most this often (and on
/// shutdown). Each write is the whole file (up to `MAX_SAMPLES` samples,
/// about 200 KB): at a 1 s probe interval, writing every 10 s cost 50
/// instances 1.5 MB/s of disk writes and a third of the backend's CPU. A crash
/// loses at most this much of the history, which only feeds the charts.
const HISTORY_FLUSH_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Registry {
    pub entries: Vec<Entry>,
    pub active: Option<String>,
    pub read_only: bool,
}

pub(super) struct Entry {
    pub instance: Instance,
    pub monitor: Option<Arc<HealthHandle>>,
    /// The supervisor of a local instance's process (launched by this run,
    /// or re-attached after a previous run left it running).
    pub process: Option<Arc<SupervisorHandle>>,
    /// CPU/RAM of the local process tree (keeps state between samples).
    pub sampler: Option<ProcessTreeSampler>,
    /// How many times its process ended on its own, and why the last time
    /// (pools read it: a member that ran out of memory lowers their limit).
    pub exits: (u64, Option<crate::supervisor::ExitCause>),
    running_since: Option<Instant>,
    unhealthy_since: Option<Instant>,
    history: Option<HealthHistory>,
    history_dirty: bool,
    last_flush: Instant,
    /// Ends the instance's background tasks (its health watch, log and
    /// process followers) when it leaves the registry or the manager stops.
    pub tasks: tokio_util::sync::CancellationToken,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}

pub(super) fn new_instance(config: InstanceConfig) -> Instance {
    Instance {
        id: config.id.clone(),
        name: config.name.clone(),
        config,
        status: InstanceStatus::Stopped,
        health: Default::default(),
        stats: Default::default(),
        created_at: Utc::now(),
        last_used_at: None,
        status_reason: None,
        status_since: Some(Utc::now()),
        start_progress: None,
    }
}

impl Entry {
    pub fn new(instance: Instance) -> Self {
        Self {
            instance,
            monitor: None,
            process: None,
            sampler: None,
            exits: (0, None),
            running_since: None,
            unhealthy_since: None,
            history: None,
            history_dirty: false,
            last_flush: Instant::now(),
            tasks: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The instance as callers see it, with its uptime brought up to date.
    pub fn view(&self) -> Instance {
        let mut i = self.instance.clone();
        i.stats.uptime = self
            .running_since
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0);
        i
    }

    pub fn set_status(&mut self, to: InstanceStatus) {
        match to {
            InstanceStatus::Running | InstanceStatus::Paused => {
                self.running_since.get_or_insert_with(Instant::now);
            }
            _ => self.running_since = None,
        }
        if to != self.instance.status || to == InstanceStatus::Starting {
            // A restart from `starting` is a new start: its clock starts over.
            self.instance.status_since = Some(Utc::now());
        }
        if to != InstanceStatus::Starting {
            self.instance.start_progress = None;
        }
        if to != InstanceStatus::Running {
            self.unhealthy_since = None;
        }
        self.instance.status = to;
    }

    /// Tracks how long the instance has been unhealthy.
    pub fn note_health(&mut self, health: &InstanceHealth) {
        if health.status == HealthStatus::Unhealthy {
            self.unhealthy_since.get_or_insert_with(Instant::now);
        } else {
            self.unhealthy_since = None;
        }
    }

    pub fn unhealthy_for(&self) -> Option<Duration> {
        self.unhealthy_since.map(|t| t.elapsed())
    }

    pub fn clear_unhealthy(&mut self) {
        self.unhealthy_since = None;
    }

    /// Whether the history file has been read (see [`Self::set_history`]).
    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// The history read from its file (once, off the lock), unless one is
    /// kept already.
    pub fn set_history(&mut self, h: HealthHistory) {
        self.history.get_or_insert(h);
    }

    /// Adds a sample to the history (once it has been read).
    pub fn record_history(&mut self, health: &InstanceHealth) {
        let Some(h) = self.history.as_mut() else {
            return;
        };
        h.record_sample(HealthSample {
            at: health.last_checked.unwrap_or_else(Utc::now),
            status: health.status,
            response_time: health.response_time,
            system_stats: health.system_stats.clone(),
        });
        self.history_dirty = true;
    }

    /// True when the history has new samples and its last write is
    /// `HISTORY_FLUSH_EVERY` ago; the clock restarts, so one write is asked
    /// for at a time.
    pub fn history_due(&mut self) -> bool {
        if self.history_dirty && self.last_flush.elapsed() >= HISTORY_FLUSH_EVERY {
            self.last_flush = Instant::now();
            return true;
        }
        false
    }

    /// A copy of the history to write, if it has unwritten samples.
    pub fn take_history_to_flush(&mut self) -> Option<HealthHistory> {
        if !self.history_dirty {
            return None;
        }
        self.history_dirty = false;
        self.last_flush = Instant::now();
        self.history.clone()
    }

    /// The history as recorded so far (written or not), if loaded.
    pub fn history(&self) -> Option<&HealthHistory> {
        self.history.as_ref()
    }
}

impl Registry {
    pub fn from_file(file: InstancesFile, read_only: bool) -> Self {
        let mut r = Self {
            entries: Vec::new(),
            active: None,
            read_only,
        };
        r.replace_configs(file, read_only);
        r
    }

    pub fn writable(&self) -> Result<(), ManagerError> {
        if self.read_only {
            Err(ManagerError::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.instance.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Result<&mut Entry, ManagerError> {
        self.entries
            .iter_mut()
            .find(|e| e.instance.id == id)
            .ok_or_else(|| not_found(id))
    }

    pub fn position(&self, id: &str) -> Result<usize, ManagerError> {
        self.entries
            .iter()
            .position(|e| e.instance.id == id)
            .ok_or_else(|| not_found(id))
    }

    pub fn configs_except(&self, id: Option<&str>) -> Vec<InstanceConfig> {
        self.entries
            .iter()
            .filter(|e| Some(e.instance.id.as_str()) != id)
            .map(|e| e.instance.config.clone())
            .collect()
    }

    /// `instance_NNN`, the seed's style, with the first number that is free
    /// and that `unused` accepts (no files left by a deleted instance).
    pub fn next_id(&self, unused: impl Fn(&str) -> bool) -> String {
        (1..)
            .map(|n| format!("instance_{n:03}"))
            .find(|id| self.get(id).is_none() && unused(id))
            .expect("an unbounded range has a free id")
    }

    pub fn to_file(&self) -> InstancesFile {
        InstancesFile {
            version: INSTANCES_FILE_VERSION.to_string(),
            instances: self
                .entries
                .iter()
                .map(|e| e.instance.config.clone())
                .collect(),
            active_instance_id: self.active.clone(),
            last_saved: None,
        }
    }

    /// Takes the configs of `file`; instances still present keep their runtime
    /// state. Returns the entries that are gone (dropping them ends their monitors).
    pub fn replace_configs(&mut self, file: InstancesFile, read_only: bool) -> Vec<Entry> {
        let mut old: std::collections::HashMap<String, Entry> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| (e.instance.id.clone(), e))
            .collect();
        for config in file.instances {
            match old.remove(&config.id) {
                Some(mut e) => {
                    e.instance.name = config.name.clone();
                    e.instance.config = config;
                    self.entries.push(e);
                }
                None => self.entries.push(Entry::new(new_instance(config))),
            }
        }
        self.active = file.active_instance_id;
        self.read_only = read_only;
        old.into_values().collect()
    }

    /// Every history with unwritten samples (on shutdown).
    pub fn take_histories_to_flush(&mut self) -> Vec<HealthHistory> {
        self.entries
            .iter_mut()
            .filter_map(Entry::take_history_to_flush)
            .collect()
    }
}
