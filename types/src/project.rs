//! Projects: a name and a folder, with where its jobs run by default, its
//! own templates, where its outputs are copied, and the defaults of the
//! instances created while it is current. Kept in `projects.json` in the
//! config folder (see the README's "Projects").

use crate::instance::Scheme;
use crate::job::JobTarget;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format of `projects.json` this app writes.
pub const PROJECTS_FILE_VERSION: &str = "1.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    /// The project's folder (absolute).
    pub folder: String,
    /// Where its jobs run when the Workflows view says "the project's default".
    #[serde(default)]
    pub default_target: JobTarget,
    /// Where its jobs' outputs are copied; `<folder>/outputs` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_folder: Option<String>,
    /// What a new instance starts with while this project is current.
    #[serde(default, skip_serializing_if = "InstanceDefaults::is_empty")]
    pub instance_defaults: InstanceDefaults,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Project {
    /// The folder its job outputs are copied to.
    pub fn outputs_folder(&self) -> String {
        self.output_folder.clone().unwrap_or_else(|| {
            std::path::Path::new(&self.folder)
                .join("outputs")
                .to_string_lossy()
                .into_owned()
        })
    }
}

/// The fields of a new instance's configuration a project sets (the seed's
/// "default instance configuration"); unset fields keep the app's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_nodes_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_workflows: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl InstanceDefaults {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Sets the fields these defaults name on a new instance's configuration.
    pub fn apply_to(&self, config: &mut crate::InstanceConfig) {
        let d = self.clone();
        config.host = d.host.or(config.host.take());
        config.scheme = d.scheme.or(config.scheme.take());
        config.gpu_device = d.gpu_device.or(config.gpu_device.take());
        config.comfyui_path = d.comfyui_path.or(config.comfyui_path.take());
        config.python_path = d.python_path.or(config.python_path.take());
        config.custom_nodes_path = d.custom_nodes_path.or(config.custom_nodes_path.take());
        config.extra_args = d.extra_args.or(config.extra_args.take());
        config.env_vars = d.env_vars.or(config.env_vars.take());
        config.max_concurrent_workflows = d
            .max_concurrent_workflows
            .or(config.max_concurrent_workflows.take());
        config.timeout_ms = d.timeout_ms.or(config.timeout_ms.take());
    }
}

/// `projects.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectsFile {
    pub version: String,
    pub projects: Vec<Project>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_saved: Option<DateTime<Utc>>,
}

impl Default for ProjectsFile {
    fn default() -> Self {
        Self {
            version: PROJECTS_FILE_VERSION.to_string(),
            projects: Vec::new(),
            current_project_id: None,
            last_saved: None,
        }
    }
}

/// What the window sends to create or change a project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDraft {
    pub name: String,
    pub folder: String,
    #[serde(default)]
    pub default_target: JobTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_folder: Option<String>,
    #[serde(default)]
    pub instance_defaults: InstanceDefaults,
}

/// The projects and the current one, as the window shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectList {
    pub projects: Vec<Project>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_project_id: Option<String>,
    /// The file was written by a newer app: shown, not changed.
    #[serde(default)]
    pub read_only: bool,
}

impl ProjectList {
    pub fn current(&self) -> Option<&Project> {
        let id = self.current_project_id.as_deref()?;
        self.projects.iter().find(|p| p.id == id)
    }
}
