use crate::health::{Alert, InstanceHealth};
use crate::instance::Instance;
use crate::job::Job;
use serde::{Deserialize, Serialize};

/// The one Tauri event name the backend emits on; the payload is an [`AppEvent`].
/// Kinds are told apart by the enum's tag, never by event names built at run time.
pub const APP_EVENT: &str = "storycore://event";

/// Everything the backend pushes to the UI (and to the tray, the notifier and the
/// store, which subscribe to the same broadcast), as one tagged enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "camelCase")]
pub enum AppEvent {
    Heartbeat(Heartbeat),
    /// The user launched the app again; the running window was brought to front.
    SecondLaunch,
    /// An instance was created, or its config, status, health or stats changed.
    InstanceUpdated(Box<Instance>),
    InstanceRemoved {
        id: String,
    },
    ActiveInstanceChanged {
        id: Option<String>,
    },
    HealthChanged {
        id: String,
        health: InstanceHealth,
    },
    Alert(Alert),
    /// A job was accepted, or its state, instance, outputs or error changed
    /// (without its workflow: [`Job::summary`]).
    JobUpdated(Box<Job>),
    /// A step within the node a job is executing (sent often: not saved).
    #[serde(rename_all = "camelCase")]
    JobProgress {
        job_id: String,
        node: Option<String>,
        value: f64,
        max: f64,
    },
    JobRemoved {
        id: String,
    },
    /// What an instance offers (its model files) was read: its details
    /// read it again.
    ModelsRead {
        id: String,
    },
    /// A pool was created, changed, or decided something (size, target, why).
    PoolUpdated(Box<crate::PoolView>),
    PoolRemoved {
        id: String,
    },
    /// New lines of a local instance's ComfyUI log (batched, a few per second).
    LogLines(LogLines),
    /// Everything at once, sent when events were skipped (the UI fell
    /// behind): the UI replaces its instances and jobs with these.
    Snapshot(Box<Snapshot>),
    /// Several events, in the order they happened: the bridge to the window
    /// gathers frequent ones (health probes, job progress) for a few
    /// milliseconds so the window wakes once for all of them.
    Batch(Vec<AppEvent>),
}

/// The whole state the UI shows, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    /// The active instance as the backend resolves it.
    pub active: Option<String>,
    /// Every job, in submission order, without workflows.
    pub jobs: Vec<Job>,
    /// The pools, with their members' ids.
    #[serde(default)]
    pub pools: Vec<crate::PoolView>,
}

/// Numbered lines of one instance's log. `session` changes when the process
/// is launched again (numbering restarts); within a session, a `first` past
/// the end of what a view holds means lines were dropped in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLines {
    pub instance_id: String,
    pub session: u64,
    pub first: u64,
    pub lines: Vec<String>,
}

/// Sent every second while the backend runs: the status line shows it, and a UI
/// that stops receiving it knows the backend is stuck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Counts up from 1 at each beat since the backend started.
    pub seq: u64,
    /// Seconds since the backend started.
    pub uptime_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_wire_shape_is_tagged() {
        let e = AppEvent::Heartbeat(Heartbeat {
            seq: 3,
            uptime_secs: 2,
        });
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "heartbeat", "data": {"seq": 3, "uptimeSecs": 2}})
        );
        assert_eq!(serde_json::from_value::<AppEvent>(v).unwrap(), e);
    }
}
