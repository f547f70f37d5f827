//! What the backend has told the UI, as signals shared through context. Only
//! commands' answers and the backend's events write here: the UI never polls.

use leptos::prelude::*;
use storycore_types::{
    Alert, AppEvent, AppInfo, Heartbeat, Instance, InstanceHealth, Job, LogLines, Severity,
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

#[derive(Clone, Copy)]
pub struct Fleet {
    pub instances: RwSignal<Vec<Instance>>,
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
    /// Health samples pushed by events since the details view loaded its history.
    pub live_health: RwSignal<Vec<(String, InstanceHealth)>>,
    pub jobs: RwSignal<Vec<Job>>,
    /// A start found a ComfyUI the app did not launch on the port: (id, why).
    pub attach_offer: RwSignal<Option<(String, String)>>,
    pub view: RwSignal<MainView>,
    /// The latest batch of live log lines (any instance); the details view
    /// joins those of the selected one onto the tail it loaded.
    pub log_lines: RwSignal<Option<LogLines>>,
}

/// Most alerts kept on screen.
const MAX_ALERTS: usize = 5;
/// Information and warnings dismiss themselves after this; errors stay.
pub const INFO_TOAST_MS: u32 = 5_000;
pub const WARNING_TOAST_MS: u32 = 10_000;
/// Most live samples kept for the charts.
const MAX_LIVE: usize = 2000;

impl Fleet {
    pub fn new() -> Self {
        Self {
            instances: RwSignal::new(Vec::new()),
            active: RwSignal::new(None),
            selected: RwSignal::new(None),
            editor: RwSignal::new(None),
            confirm_delete: RwSignal::new(None),
            alerts: RwSignal::new(Vec::new()),
            notices: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            live_health: RwSignal::new(Vec::new()),
            jobs: RwSignal::new(Vec::new()),
            attach_offer: RwSignal::new(None),
            view: RwSignal::new(MainView::Instances),
            log_lines: RwSignal::new(None),
        }
    }

    pub fn get(&self, id: &str) -> Option<Instance> {
        self.instances
            .with(|l| l.iter().find(|i| i.id == id).cloned())
    }

    /// Folds one backend event into the signals.
    pub fn apply(&self, ev: &AppEvent) {
        match ev {
            AppEvent::InstanceUpdated(i) => {
                self.instances
                    .update(|l| match l.iter_mut().find(|x| x.id == i.id) {
                        Some(x) => *x = (**i).clone(),
                        None => l.push((**i).clone()),
                    })
            }
            AppEvent::InstanceRemoved { id } => {
                self.instances.update(|l| l.retain(|x| &x.id != id));
                if self.selected.get_untracked().as_deref() == Some(id.as_str()) {
                    self.selected.set(None);
                }
            }
            AppEvent::ActiveInstanceChanged { id } => self.active.set(id.clone()),
            AppEvent::HealthChanged { id, health } => {
                self.instances.update(|l| {
                    if let Some(x) = l.iter_mut().find(|x| &x.id == id) {
                        x.health = health.clone();
                    }
                });
                self.live_health.update(|v| {
                    v.push((id.clone(), health.clone()));
                    if v.len() > MAX_LIVE {
                        v.drain(..v.len() - MAX_LIVE);
                    }
                });
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
                self.instances.set(snap.instances.clone());
                self.active.set(snap.active.clone());
                self.jobs.set(snap.jobs.clone());
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
            AppEvent::LogLines(b) => self.log_lines.set(Some(b.clone())),
            AppEvent::Heartbeat(_) | AppEvent::SecondLaunch => {}
        }
    }
}

fn next_toast() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs a backend call; a failure goes to the error line instead of vanishing.
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
