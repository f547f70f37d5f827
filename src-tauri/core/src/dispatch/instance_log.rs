//! `instance_{id}_workflows.json`, as the seed describes it: per instance, the
//! workflows it ran (saved, to run again), its execution history with
//! timestamps, and the work taken back when it was paused (to resume it).
//! Every list is bounded, oldest dropped first.

use crate::store::{atomic_write, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use storycore_types::Job;

pub const WORKFLOWS_FILE_VERSION: &str = "1.0";
pub const MAX_SAVED_WORKFLOWS: usize = 50;
pub const MAX_EXECUTIONS: usize = 500;
pub const MAX_PAUSED_WORK: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceWorkflowsFile {
    pub version: String,
    pub instance_id: String,
    #[serde(default)]
    pub saved_workflows: Vec<SavedWorkflow>,
    #[serde(default)]
    pub execution_history: Vec<Execution>,
    #[serde(default)]
    pub paused_work: Vec<PausedWork>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedWorkflow {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    pub saved_at: DateTime<Utc>,
    pub workflow: Value,
}

/// One run of the execution history (the window shows them in an
/// instance's details).
pub use storycore_types::WorkflowExecution as Execution;

/// A prompt taken back from the instance's queue when it was paused: the job
/// went back to the app's queue and runs elsewhere or after resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedWork {
    pub job_id: String,
    pub prompt_id: String,
    pub taken_back_at: DateTime<Utc>,
}

pub fn file_path(dir: &Path, instance_id: &str) -> PathBuf {
    crate::store::workflows_file_path(dir, instance_id)
}

impl InstanceWorkflowsFile {
    pub fn load(dir: &Path, instance_id: &str) -> Self {
        let empty = Self {
            version: WORKFLOWS_FILE_VERSION.into(),
            instance_id: instance_id.into(),
            saved_workflows: Vec::new(),
            execution_history: Vec::new(),
            paused_work: Vec::new(),
        };
        let path = file_path(dir, instance_id);
        let problem = match crate::store::read_regular(&path, 64 << 20) {
            Ok(None) => return empty,
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(f) => return f,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        // History only: start afresh rather than refuse to run work, but keep
        // the unreadable file for the user instead of overwriting it.
        match crate::store::move_aside(&path) {
            Ok(kept) => tracing::warn!(
                "{} is unreadable ({problem}); kept as {} and started anew",
                path.display(),
                kept.display()
            ),
            Err(e) => tracing::warn!("{} is unreadable ({problem}): {e}", path.display()),
        }
        empty
    }

    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let path = file_path(dir, &self.instance_id);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| StoreError::Encode {
            path: path.clone(),
            source,
        })?;
        atomic_write(&path, &bytes)
    }

    /// A job that ended on this instance.
    pub fn record_finished(&mut self, job: &Job) {
        let finished_at = job.finished_at.unwrap_or_else(Utc::now);
        self.execution_history.push(Execution {
            job_id: job.id.clone(),
            prompt_id: job.prompt_id.clone().unwrap_or_default(),
            state: job.state,
            queued_at: job.created_at,
            started_at: job.started_at,
            finished_at,
            duration_ms: job.started_at.map(|s| (finished_at - s).num_milliseconds()),
            outputs: job.outputs.len(),
            error: job.error.as_ref().map(|e| e.message.clone()),
        });
        bound(&mut self.execution_history, MAX_EXECUTIONS);
        self.saved_workflows.retain(|w| w.job_id != job.id);
        self.saved_workflows.push(SavedWorkflow {
            job_id: job.id.clone(),
            template_id: job.template_id.clone(),
            saved_at: finished_at,
            workflow: job.workflow.clone(),
        });
        bound(&mut self.saved_workflows, MAX_SAVED_WORKFLOWS);
        self.paused_work.retain(|p| p.job_id != job.id);
    }

    /// Drops entries older than `cutoff` (the retention settings); true when
    /// anything went.
    pub fn prune_before(&mut self, cutoff: DateTime<Utc>) -> bool {
        let before =
            self.execution_history.len() + self.saved_workflows.len() + self.paused_work.len();
        self.execution_history.retain(|e| e.finished_at >= cutoff);
        self.saved_workflows.retain(|w| w.saved_at >= cutoff);
        self.paused_work.retain(|p| p.taken_back_at >= cutoff);
        before != self.execution_history.len() + self.saved_workflows.len() + self.paused_work.len()
    }

    pub fn record_taken_back(&mut self, job_id: &str, prompt_id: &str) {
        self.paused_work.push(PausedWork {
            job_id: job_id.into(),
            prompt_id: prompt_id.into(),
            taken_back_at: Utc::now(),
        });
        bound(&mut self.paused_work, MAX_PAUSED_WORK);
    }
}

fn bound<T>(v: &mut Vec<T>, max: usize) {
    if v.len() > max {
        let extra = v.len() - max;
        v.drain(..extra);
    }
}
