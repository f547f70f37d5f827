//! What the backend has told the UI, as signals shared through context. Only
//! commands' answers and the backend's events write here: the UI never polls.

use leptos::prelude::*;
use storycore_types::{Alert, AppEvent, AppInfo, Heartbeat, Instance, InstanceHealth, Job};

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
    pub alerts: RwSignal<Vec<Alert>>,
    /// The last failed action, shown until dismissed.
    pub error: RwSignal<Option<String>>,
    /// Health samples pushed by events since the details view loaded its history.
    pub live_health: RwSignal<Vec<(String, InstanceHealth)>>,
    pub jobs: RwSignal<Vec<Job>>,
    /// A start found a ComfyUI the app did not launch on the port: (id, why).
    pub attach_offer: RwSignal<Option<(String, String)>>,
    pub view: RwSignal<MainView>,
}

/// Most alerts kept on screen.
const MAX_ALERTS: usize = 5;
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
            error: RwSignal::new(None),
            live_health: RwSignal::new(Vec::new()),
            jobs: RwSignal::new(Vec::new()),
            attach_offer: RwSignal::new(None),
            view: RwSignal::new(MainView::Instances),
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
            AppEvent::Alert(a) => self.alerts.update(|v| {
                v.push(a.clone());
                if v.len() > MAX_ALERTS {
                    v.remove(0);
                }
            }),
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
            AppEvent::Heartbeat(_) | AppEvent::SecondLaunch => {}
        }
    }
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
