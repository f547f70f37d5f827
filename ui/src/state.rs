//! What the backend has told the UI, as signals shared through context. Only
//! commands' answers and the backend's events write here: the UI never polls.

use leptos::prelude::*;
use std::collections::{HashMap, VecDeque};
use storycore_types::{
    Alert, AppEvent, AppInfo, HealthStatus, Heartbeat, Instance, Job, LogLines, Severity,
};

/// Which main view the toolbar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainView {
    Instances,
    Workflows,
}

/// What the editor dialog is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum EditorMode {
    New,
    Edit(String),
    /// A new instance pre-filled from an existing one.
    Duplicate(String),
}

#[derive(Clone, Copy)]
pub struct BackendState {
    pub info: RwSignal<Option<Result<AppInfo, String>>>,
    pub heartbeat: RwSignal<Option<Heartbeat>>,
    pub notice: RwSignal<Option<String>>,
}

/// One instance as the UI holds it: its own signal, created once per id, so
/// an update notifies only what shows this instance (its card, the details
/// when it is selected, its option in the switcher), never the whole grid.
#[derive(Clone)]
pub struct Entry {
    pub inst: ArcRwSignal<Instance>,
    /// Health samples pushed by events (newest last, at most [`MAX_LIVE`]);
    /// the details view joins them onto the history it loaded.
    pub live: ArcRwSignal<VecDeque<LiveSample>>,
}

/// A health figure as an event brought it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSample {
    /// Increases with every sample of every instance: a stable key for lists.
    pub seq: u64,
    /// When it was measured (`lastChecked`), in microseconds since 1970.
    pub at_us: Option<i64>,
    pub response_time: f64,
    pub status: HealthStatus,
}

#[derive(Clone, Copy)]
pub struct Fleet {
    /// The instances' ids in the backend's order: changes only when an
    /// instance is added or removed (or a snapshot reorders them).
    pub ids: RwSignal<Vec<String>>,
    /// Each instance's own signals, by id. Not reactive itself: whoever needs
    /// an id that is not there yet tracks `ids`.
    entries: StoredValue<HashMap<String, Entry>>,
    /// The active instance as the backend resolves it (chosen, or the default).
    pub active: RwSignal<Option<String>>,
    pub selected: RwSignal<Option<String>>,
    pub editor: RwSignal<Option<EditorMode>>,
    pub confirm_delete: RwSignal<Option<String>>,
    /// Alerts on screen, each with a number to dismiss it by.
    pub alerts: RwSignal<Vec<(u64, Alert)>>,
    /// What starting found, shown once until dismissed.
    pub notices: RwSignal<Vec<String>>,
    /// The last failed action, shown until dismissed.
    pub error: RwSignal<Option<String>>,
    pub jobs: RwSignal<Vec<Job>>,
    /// The last instance whose models were read (its details read them again).
    pub models_read: RwSignal<Option<String>>,
    /// Jobs in flight per instance id, derived once from `jobs`: a card
    /// hears of a job event only when its own count changes.
    pub jobs_in_flight: Memo<HashMap<String, usize>>,
    /// A start found a ComfyUI the app did not launch on the port: (id, why).
    pub attach_offer: RwSignal<Option<(String, String)>>,
    pub view: RwSignal<MainView>,
    /// The latest batch of live log lines (any instance); the details view
    /// joins those of the selected one onto the tail it loaded.
    pub log_lines: RwSignal<Option<LogLines>>,
    /// The projects and the current one.
    pub projects: RwSignal<storycore_types::ProjectList>,
    /// The pools, each with its members, size, target and decisions.
    pub pools: RwSignal<Vec<storycore_types::PoolView>>,
    /// The pool dialog: None closed, Some(None) a new pool, Some(Some(id)) that pool.
    pub pool_editor: RwSignal<Option<Option<String>>>,
    /// The pools' ids: changes only when a pool is added or removed.
    pub pool_ids: Memo<Vec<String>>,
}

/// Most alerts kept on screen.
const MAX_ALERTS: usize = 5;
/// Information and warnings dismiss themselves after this; errors stay.
pub const INFO_TOAST_MS: u32 = 5_000;
pub const WARNING_TOAST_MS: u32 = 10_000;
/// Most live samples kept per instance for the charts.
pub const MAX_LIVE: usize = 240;

impl Fleet {
    /// Must run inside the app's reactive owner (it creates a memo).
    pub fn new() -> Self {
        let jobs = RwSignal::new(Vec::<Job>::new());
        let pools = RwSignal::new(Vec::<storycore_types::PoolView>::new());
        Self {
            ids: RwSignal::new(Vec::new()),
            entries: StoredValue::new(HashMap::new()),
            active: RwSignal::new(None),
            selected: RwSignal::new(None),
            editor: RwSignal::new(None),
            confirm_delete: RwSignal::new(None),
            alerts: RwSignal::new(Vec::new()),
            notices: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            jobs,
            models_read: RwSignal::new(None),
            jobs_in_flight: Memo::new(move |_| {
                let mut m = HashMap::new();
                jobs.with(|l| {
                    for j in l.iter().filter(|j| j.state.is_in_flight()) {
                        if let Some(i) = &j.instance_id {
                            *m.entry(i.clone()).or_insert(0) += 1;
                        }
                    }
                });
                m
            }),
            attach_offer: RwSignal::new(None),
            view: RwSignal::new(MainView::Instances),
            log_lines: RwSignal::new(None),
            projects: RwSignal::new(Default::default()),
            pools,
            pool_editor: RwSignal::new(None),
            pool_ids: Memo::new(move |_| {
                pools.with(|l| l.iter().map(|p| p.config.id.clone()).collect())
            }),
        }
    }

    /// Reads the pools again (at start; events keep them current after).
    pub fn reload_pools(self) {
        leptos::task::spawn_local(async move {
            match crate::api::list_pools().await {
                Ok(list) => self.pools.set(list),
                Err(e) => self.error.set(Some(e.message)),
            }
        });
    }

    /// Whether instance `id` is a member of a pool there is (shown in its
    /// pool's card; one whose pool is gone, say imported from another
    /// computer, stays in the grid). Tracks the pools' ids only: an
    /// instance's pool never changes.
    pub fn in_pool(&self, id: &str) -> bool {
        let Some(pool) = self
            .entry(id)
            .and_then(|e| e.inst.with_untracked(|i| i.config.pool_id.clone()))
        else {
            return false;
        };
        self.pool_ids.with(|ids| ids.contains(&pool))
    }

    /// Reads the projects again (after a change, or at start).
    pub fn reload_projects(self) {
        leptos::task::spawn_local(async move {
            match crate::api::list_projects().await {
                Ok(list) => self.projects.set(list),
                Err(e) => self.error.set(Some(e.message)),
            }
        });
    }

    /// The current project, if any.
    pub fn current_project(&self) -> Option<storycore_types::Project> {
        self.projects.with(|l| l.current().cloned())
    }

    /// The signals of instance `id`, untracked.
    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.entries.with_value(|m| m.get(id).cloned())
    }

    /// Instance `id`, tracking its own signal (or the list of ids while it
    /// does not exist, so a caller hears when it appears).
    pub fn get(&self, id: &str) -> Option<Instance> {
        self.with(id, Instance::clone)
    }

    /// Reads instance `id` without cloning it, tracked as [`Self::get`].
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&Instance) -> T) -> Option<T> {
        match self.entry(id) {
            Some(e) => Some(e.inst.with(f)),
            None => {
                self.ids.track();
                None
            }
        }
    }

    /// Every instance in order, untracked (for one-off reads).
    pub fn all_untracked(&self) -> Vec<Instance> {
        self.ids.with_untracked(|ids| {
            self.entries.with_value(|m| {
                ids.iter()
                    .filter_map(|id| m.get(id).map(|e| e.inst.get_untracked()))
                    .collect()
            })
        })
    }

    /// Replaces the whole list (the first load, a snapshot): an instance that
    /// did not change notifies nothing, the ids only when the set or the
    /// order changed.
    pub fn set_all(&self, list: Vec<Instance>) {
        let ids: Vec<String> = list.iter().map(|i| i.id.clone()).collect();
        for i in list {
            self.upsert(i, false);
        }
        if self.ids.with_untracked(|old| old != &ids) {
            self.ids.set(ids.clone());
        }
        self.entries
            .update_value(|m| m.retain(|id, _| ids.contains(id)));
    }

    /// Sets instance `i` if it changed; a new one gets its signals (and is
    /// appended to the ids when `append`).
    fn upsert(&self, i: Instance, append: bool) {
        if let Some(e) = self.entry(&i.id) {
            if e.inst.with_untracked(|x| x != &i) {
                e.inst.set(i);
            }
            return;
        }
        let id = i.id.clone();
        let entry = Entry {
            inst: ArcRwSignal::new(i),
            live: ArcRwSignal::new(VecDeque::new()),
        };
        // The signals exist before the id is listed: whatever the new id
        // renders finds them.
        self.entries.update_value(|m| {
            m.insert(id.clone(), entry);
        });
        if append {
            self.ids.update(|l| l.push(id));
        }
    }

    /// Folds one backend event into the signals.
    pub fn apply(&self, ev: &AppEvent) {
        match ev {
            AppEvent::InstanceUpdated(i) => self.upsert((**i).clone(), true),
            AppEvent::InstanceRemoved { id } => {
                if self.ids.with_untracked(|l| l.contains(id)) {
                    self.ids.update(|l| l.retain(|x| x != id));
                }
                self.entries.update_value(|m| {
                    m.remove(id);
                });
                if self.selected.get_untracked().as_deref() == Some(id.as_str()) {
                    self.selected.set(None);
                }
            }
            AppEvent::ActiveInstanceChanged { id } => self.active.set(id.clone()),
            AppEvent::HealthChanged { id, health } => {
                if let Some(e) = self.entry(id) {
                    e.inst.update(|x| x.health = health.clone());
                    let sample = LiveSample {
                        seq: next_sample(),
                        at_us: health.last_checked.map(|t| t.timestamp_micros()),
                        response_time: health.response_time,
                        status: health.status,
                    };
                    e.live.update(|v| {
                        v.push_back(sample);
                        if v.len() > MAX_LIVE {
                            v.pop_front();
                        }
                    });
                }
            }
            AppEvent::Alert(a) => {
                let n = next_toast();
                self.alerts.update(|v| {
                    v.push((n, a.clone()));
                    if v.len() > MAX_ALERTS {
                        // The oldest information goes first, errors last.
                        let drop_at = v
                            .iter()
                            .position(|(_, a)| a.kind.severity() != Severity::Error)
                            .unwrap_or(0);
                        v.remove(drop_at);
                    }
                });
                let after = match a.kind.severity() {
                    Severity::Info => Some(INFO_TOAST_MS),
                    Severity::Warning => Some(WARNING_TOAST_MS),
                    Severity::Error => None,
                };
                if let Some(ms) = after {
                    let alerts = self.alerts;
                    leptos::prelude::set_timeout(
                        move || alerts.update(|v| v.retain(|(k, _)| *k != n)),
                        std::time::Duration::from_millis(ms.into()),
                    );
                }
            }
            AppEvent::Snapshot(snap) => {
                self.set_all(snap.instances.clone());
                self.active.set(snap.active.clone());
                self.jobs.set(snap.jobs.clone());
                self.pools.set(snap.pools.clone());
                if let Some(sel) = self.selected.get_untracked() {
                    if !snap.instances.iter().any(|i| i.id == sel) {
                        self.selected.set(None);
                    }
                }
            }
            AppEvent::JobUpdated(j) => {
                self.jobs
                    .update(|l| match l.iter_mut().find(|x| x.id == j.id) {
                        Some(x) => *x = (**j).clone(),
                        None => l.push((**j).clone()),
                    })
            }
            AppEvent::JobRemoved { id } => self.jobs.update(|l| l.retain(|x| &x.id != id)),
            AppEvent::ModelsRead { id } => self.models_read.set(Some(id.clone())),
            AppEvent::JobProgress {
                job_id,
                node,
                value,
                max,
            } => self.jobs.update(|l| {
                if let Some(j) = l.iter_mut().find(|x| &x.id == job_id) {
                    j.progress.node = node.clone();
                    j.progress.value = *value;
                    j.progress.max = *max;
                }
            }),
            AppEvent::PoolUpdated(p) => {
                self.pools.update(
                    |l| match l.iter_mut().find(|x| x.config.id == p.config.id) {
                        Some(x) => *x = (**p).clone(),
                        None => l.push((**p).clone()),
                    },
                )
            }
            AppEvent::PoolRemoved { id } => self.pools.update(|l| l.retain(|x| &x.config.id != id)),
            AppEvent::LogLines(b) => self.log_lines.set(Some(b.clone())),
            AppEvent::Batch(list) => list.iter().for_each(|e| self.apply(e)),
            AppEvent::Heartbeat(_) | AppEvent::SecondLaunch => {}
        }
    }
}

fn next_sample() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn next_toast() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs a backend call; a failure goes to the error line instead of vanishing.
/// The messages a refusal gave for `field` (and its sub-fields, such as
/// `envVars.NAME`), as one line under that field of a form.
pub fn errors_of(errors: RwSignal<Vec<(String, String)>>, field: &str) -> String {
    errors.with(|l| {
        l.iter()
            .filter(|(f, _)| f == field || f.starts_with(&format!("{field}.")))
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

pub fn run_action<F>(fleet: Fleet, fut: F)
where
    F: std::future::Future<Output = Result<(), storycore_types::ApiError>> + 'static,
{
    leptos::task::spawn_local(async move {
        if let Err(e) = fut.await {
            fleet.error.set(Some(e.message));
        }
    });
}

/// A view of an instance's log: the lines it holds and where they end, so
/// live batches join without gaps or repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogView {
    pub session: u64,
    /// The number of the line after the last one held.
    pub end: u64,
    pub lines: Vec<String>,
}

impl LogView {
    /// Most lines a view keeps.
    pub const MAX_LINES: usize = 1000;

    pub fn from_tail(t: LogLines) -> Self {
        Self {
            session: t.session,
            end: t.first + t.lines.len() as u64,
            lines: t.lines,
        }
    }

    /// Joins a live batch: a new session replaces the view; a repeat is
    /// skipped; a gap is marked so the reader knows lines are missing.
    pub fn join(&mut self, b: &LogLines) {
        if b.session != self.session {
            *self = Self::from_tail(b.clone());
            return;
        }
        let end = b.first + b.lines.len() as u64;
        if end <= self.end {
            return;
        }
        if b.first > self.end {
            self.lines
                .push(format!("[... {} lines not shown ...]", b.first - self.end));
        }
        let skip = self.end.saturating_sub(b.first) as usize;
        self.lines.extend(b.lines.iter().skip(skip).cloned());
        self.end = end;
        if self.lines.len() > Self::MAX_LINES {
            self.lines.drain(..self.lines.len() - Self::MAX_LINES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(session: u64, first: u64, lines: &[&str]) -> LogLines {
        LogLines {
            instance_id: "a".into(),
            session,
            first,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn live_batches_join_the_tail_without_repeats_and_mark_gaps() {
        let mut v = LogView::from_tail(batch(7, 10, &["l10", "l11"]));
        v.join(&batch(7, 11, &["l11", "l12"]));
        assert_eq!(
            v.lines,
            ["l10", "l11", "l12"],
            "the overlap is not repeated"
        );
        v.join(&batch(7, 5, &["old"]));
        assert_eq!(v.end, 13, "an old batch changes nothing");
        v.join(&batch(7, 15, &["l15"]));
        assert_eq!(v.lines[3], "[... 2 lines not shown ...]");
        assert_eq!(v.lines[4], "l15");
        v.join(&batch(8, 0, &["relaunched"]));
        assert_eq!(v.lines, ["relaunched"], "a new session starts over");
        let many: Vec<String> = (0..1500).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        v.join(&batch(8, 1, &refs));
        assert_eq!(v.lines.len(), LogView::MAX_LINES);
        assert_eq!(v.lines.last().unwrap(), "1499");
    }
}
