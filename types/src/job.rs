//! Jobs: a ComfyUI workflow (API format) the app runs on the fleet, with its
//! state, progress, outputs and error; and templates (workflows with named
//! parameters). camelCase on the wire, like the rest of the app's files.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum JobTarget {
    /// The instance expected to finish it first.
    #[default]
    Auto,
    /// Whatever instance is active when the job is placed.
    Active,
    /// This instance only; the job waits while it cannot take work.
    Instance { id: String },
}

/// ```text
/// queued ──▶ dispatched ──▶ running ──▶ succeeded | failed
///   ▲  ▲          │            │
///   │  └──────────┴────────────┘  instance lost / paused / timeout (retry)
///   │                            └─▶ suspect (ran on two instances that died)
///   └── retry / release ◀── failed | cancelled | held | suspect
/// any unfinished ──▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::VariantArray)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    /// Accepted, waiting in the app for an instance.
    Queued,
    /// Written to disk with its instance and prompt id; sent (or being sent).
    Dispatched,
    /// The instance started executing it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Set aside until the user releases it (e.g. its target instance was deleted).
    Held,
    /// Was running on two instances that died: not sent again until released.
    Suspect,
}

impl JobState {
    /// No more work will happen on its own.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Sent to an instance and not finished.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Dispatched | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dispatched => "dispatched",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Held => "held",
            Self::Suspect => "suspect",
        }
    }
}

/// Where the job's execution is, as the instance's `/ws` stream reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    /// The node executing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Step `value` of `max` within that node (samplers report steps).
    pub value: f64,
    pub max: f64,
    /// Nodes ComfyUI took from its cache instead of executing.
    #[serde(default)]
    pub cached_nodes: Vec<String>,
    /// Nodes that finished executing.
    #[serde(default)]
    pub executed_nodes: Vec<String>,
    /// Nodes in the workflow, to turn the lists above into a fraction.
    pub total_nodes: u32,
}

/// One output file, downloaded into the job's output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOutput {
    /// The node that produced it.
    pub node_id: String,
    /// As ComfyUI names it (`/view?filename=..&subfolder=..&type=..`).
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    /// `output` or `temp`.
    pub kind: String,
    /// The local copy.
    pub path: String,
    /// The copy in the project's output folder, when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
}

/// Why a job failed, with ComfyUI's own reasons when it gave any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    pub message: String,
    /// ComfyUI's error type (`prompt_outputs_failed_validation`, `exception_type`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfy_type: Option<String>,
    /// Per node, what ComfyUI said (validation errors, or the node that raised).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_errors: Vec<JobNodeError>,
}

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            comfy_type: None,
            node_errors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobNodeError {
    pub node_id: String,
    #[serde(default)]
    pub class_type: String,
    pub message: String,
    #[serde(default)]
    pub details: String,
    /// The Python traceback of a node that raised, as ComfyUI gave it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    /// The API-format workflow: `{node id: {class_type, inputs}}`. Null in
    /// what events and lists carry (see [`Job::summary`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub workflow: Value,
    pub target: JobTarget,
    pub state: JobState,
    /// Times it was sent to an instance.
    pub attempts: u32,
    /// The instance it is (or was last) on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Chosen by the app before sending, so a restarted app can ask about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub progress: JobProgress,
    #[serde(default)]
    pub outputs: Vec<JobOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Instances that died while running this job.
    #[serde(default)]
    pub instances_killed: Vec<String>,
    /// The template it was made from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// A copy of the job running on a faster instance that went idle, beside
    /// the attempt above: the first to succeed wins and the other is
    /// interrupted. Written before the copy is sent, so that a restarted
    /// app stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<JobCopy>,
    /// The project it was run in (see `Project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Where its outputs are copied besides the app's own folder (the
    /// project's output folder when it was submitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_folder: Option<String>,
    /// Only these instances may run it (its template is pinned to them);
    /// empty: any the target allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_instances: Vec<String>,
    /// Why a queued job is not placed, when no instance it may run on can
    /// take work (stopped, unhealthy, paused); unset while it only waits for room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Why its instance was chosen, in words ("has sdxl.safetensors
    /// loaded"), set when it is placed by the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_because: Option<String>,
    /// Set when the job came through the ComfyUI-compatible gateway: what
    /// the client knows it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayPrompt>,
    /// Files its instance must have before its prompt is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_files: Vec<InputFile>,
}

/// A file a job needs in its instance's folders before its prompt is sent
/// (an image a gateway client uploaded): the app keeps it, and uploads it
/// to whichever instance runs the job, at every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputFile {
    /// The app's copy.
    pub path: String,
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    /// ComfyUI's folder type: `input`, `temp` or `output`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A prompt as a client of the gateway posted it: the ids and numbers it
/// sees in `/queue`, `/history` and on `/ws`, whatever instance runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPrompt {
    /// The client's `prompt_id` (chosen by it, or by the gateway).
    pub prompt_id: String,
    /// ComfyUI's `number` (an integer, negative for `front`, or the
    /// client's own value, which may be a float).
    pub number: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// ComfyUI's `extra_data` (with `client_id`).
    #[serde(default)]
    pub extra_data: Value,
    /// Who submitted it: the name of the gateway token it came with
    /// (none: this machine, or the shared token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Where a job's copy runs (see [`Job::copy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCopy {
    pub instance_id: String,
    pub prompt_id: String,
}

impl Job {
    /// The job without its workflow, as events and lists carry it: a
    /// workflow can be megabytes, the UI never shows it, and it does not
    /// change after submission.
    pub fn summary(&self) -> Job {
        Job {
            id: self.id.clone(),
            workflow: Value::Null,
            target: self.target.clone(),
            state: self.state,
            attempts: self.attempts,
            instance_id: self.instance_id.clone(),
            prompt_id: self.prompt_id.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            progress: self.progress.clone(),
            outputs: self.outputs.clone(),
            error: self.error.clone(),
            instances_killed: self.instances_killed.clone(),
            template_id: self.template_id.clone(),
            copy: self.copy.clone(),
            project_id: self.project_id.clone(),
            output_folder: self.output_folder.clone(),
            pinned_instances: self.pinned_instances.clone(),
            waiting: self.waiting.clone(),
            placed_because: self.placed_because.clone(),
            gateway: self.gateway.clone(),
            input_files: self.input_files.clone(),
        }
    }
}

/// The type of a template parameter, for the form the UI draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParameterType {
    String,
    Int,
    Float,
    Bool,
}

/// A named value bound to one input of one node of a template's workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateParameter {
    pub name: String,
    pub node_id: String,
    pub input: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    pub default: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A workflow with named parameters: the seed's wizard, made data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTemplate {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub workflow: Value,
    pub parameters: Vec<TemplateParameter>,
    /// Shipped with the app (cannot be deleted or overwritten).
    #[serde(default)]
    pub built_in: bool,
    /// The project it belongs to; unset: a global template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Only these instances run it (those that have its models, say);
    /// empty: any instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_instances: Vec<String>,
}

/// One plain-valued input of a workflow's node: what can be made a template
/// parameter (links to other nodes cannot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    pub node_id: String,
    pub class_type: String,
    pub input: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    pub value: Value,
}

/// A workflow file read for import: the workflow and the inputs it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowFile {
    pub path: String,
    pub workflow: Value,
    pub inputs: Vec<WorkflowInput>,
}

/// "Bind `name` to `input` of node `node_id`": one parameter being marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterMark {
    pub name: String,
    pub node_id: String,
    pub input: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ParameterType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the import form sends to save a new template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateDraft {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub workflow: Value,
    pub parameters: Vec<ParameterMark>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_and_state_wire_shapes() {
        let t = JobTarget::Instance { id: "gpu0".into() };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"kind": "instance", "id": "gpu0"})
        );
        assert_eq!(
            serde_json::to_value(JobTarget::Auto).unwrap(),
            serde_json::json!({"kind": "auto"})
        );
        assert_eq!(
            serde_json::to_value(JobState::Suspect).unwrap(),
            serde_json::json!("suspect")
        );
        assert!(JobState::Cancelled.is_final() && !JobState::Suspect.is_final());
    }
}

/// What an instance offers and holds, as the job queue knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceModels {
    /// Its model files, by the loader input that lists them (`ckpt_name`).
    pub files: std::collections::BTreeMap<String, Vec<String>>,
    /// The model files of the last prompt it finished: loaded now.
    pub loaded: Vec<String>,
    /// Seconds a file's load took there, as measured.
    pub load_secs: std::collections::BTreeMap<String, f64>,
}

/// One workflow an instance ran, as `instance_{id}_workflows.json`'s
/// `executionHistory` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowExecution {
    pub job_id: String,
    pub prompt_id: String,
    pub state: JobState,
    pub queued_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    pub outputs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
