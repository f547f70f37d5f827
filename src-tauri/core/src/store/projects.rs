//! `projects.json`: the projects and the current one, stored like the
//! instances file: written atomically, the previous good copy kept as
//! `projects.json.bak`, a corrupt file moved aside and the backup loaded,
//! a newer app's file shown read-only.
//!
//! A project entry may still carry the single-instance app's server as
//! `"comfyui": {"endpoint": ...}` (or the seed's `{"instanceId": ...}`).
//! [`ProjectStore::load`] reports these as [`LegacyServer`]s; the projects
//! layer turns each into the project's default instance and saves, which
//! drops the old key: once, and the `.bak` keeps the file as it was.

use super::atomic::atomic_write;
use super::instances::{read_versioned, replace_versioned, OnDisk};
use super::recovery::{copy_aside, file_name, move_aside, remove_stray_partials};
use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use storycore_types::{Project, ProjectsFile, PROJECTS_FILE_VERSION};

pub const PROJECTS_FILE_NAME: &str = "projects.json";
pub const PROJECTS_BACKUP_NAME: &str = "projects.json.bak";
/// Projects are a few hundred bytes each.
const MAX_PROJECTS_FILE_BYTES: u64 = 16 << 20;

/// The single-instance server a project's settings still name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyServer {
    /// `comfyui.endpoint` (with the old file's `timeoutMs` and
    /// `enableQueueMonitoring`, used if an instance must be created for it).
    Endpoint {
        project_id: String,
        endpoint: String,
        timeout_ms: Option<u64>,
        enable_queue_monitoring: Option<bool>,
    },
    /// `comfyui.instanceId`: the seed's migrated shape.
    InstanceId {
        project_id: String,
        instance_id: String,
    },
    /// A `comfyui` section this app cannot read: kept in the backup, said.
    Unreadable { project_id: String, why: String },
}

/// What [`ProjectStore::load`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedProjects {
    pub file: ProjectsFile,
    pub notices: Vec<String>,
    pub read_only: bool,
    pub legacy: Vec<LegacyServer>,
}

/// `projects.json` read leniently: a project that does not read (or breaks
/// the rules) is set aside alone, not the whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawFile {
    version: String,
    #[serde(default)]
    projects: Vec<Value>,
    #[serde(default)]
    current_project_id: Option<String>,
    #[serde(default)]
    last_saved: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ProjectStore {
    dir: PathBuf,
}

impl ProjectStore {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(PROJECTS_FILE_NAME)
    }

    pub fn backup_path(&self) -> PathBuf {
        self.dir.join(PROJECTS_BACKUP_NAME)
    }

    /// Reads the projects, repairing what it can. Fails only when the disk refuses.
    pub fn load(&self) -> Result<LoadedProjects, StoreError> {
        remove_stray_partials(&self.dir, PROJECTS_FILE_NAME);
        remove_stray_partials(&self.dir, PROJECTS_BACKUP_NAME);
        match read(&self.path())? {
            OnDisk::Good { file, .. } => self.good(file, Vec::new()),
            OnDisk::Newer { version, value } => Ok(newer(&version, &value)),
            OnDisk::Corrupt { why } => {
                let kept = move_aside(&self.path())?;
                self.recover(format!(
                    "{PROJECTS_FILE_NAME} could not be read ({why}); it was kept as {}",
                    file_name(&kept)
                ))
            }
            OnDisk::Missing if self.backup_path().exists() => {
                self.recover(format!("{PROJECTS_FILE_NAME} was missing"))
            }
            OnDisk::Missing => Ok(empty(Vec::new())),
        }
    }

    /// The projects that read and keep the rules; the others are refused
    /// with a notice, and the file as it was is kept beside it.
    fn good(&self, raw: RawFile, mut notices: Vec<String>) -> Result<LoadedProjects, StoreError> {
        let legacy = legacy_servers(&raw.projects);
        let mut projects: Vec<Project> = Vec::new();
        let mut refused = Vec::new();
        for (k, v) in raw.projects.into_iter().enumerate() {
            let label = v["name"]
                .as_str()
                .or(v["id"].as_str())
                .map_or_else(|| format!("project #{}", k + 1), crate::model::quote);
            match serde_json::from_value::<Project>(v) {
                Ok(p) => match crate::model::check_project(&p, &projects) {
                    Ok(()) => projects.push(p),
                    Err(e) => refused.push(format!("{label} ({}: {})", e.field, e.message)),
                },
                Err(e) => refused.push(format!("{label} ({e})")),
            }
        }
        if !refused.is_empty() {
            let kept = copy_aside(&self.path(), "refused")?;
            notices.push(format!(
                "{} project(s) of {PROJECTS_FILE_NAME} could not be loaded: {}. The file as it was is kept as {}.",
                refused.len(),
                refused.join("; "),
                file_name(&kept)
            ));
        }
        let current = raw
            .current_project_id
            .filter(|c| projects.iter().any(|p| &p.id == c));
        Ok(LoadedProjects {
            file: ProjectsFile {
                version: raw.version,
                projects,
                current_project_id: current,
                last_saved: raw.last_saved,
            },
            notices,
            read_only: false,
            legacy,
        })
    }

    /// Loads the backup after the main file was lost, and puts it in place.
    fn recover(&self, problem: String) -> Result<LoadedProjects, StoreError> {
        match read(&self.backup_path())? {
            OnDisk::Good { file, bytes } => {
                atomic_write(&self.path(), &bytes)?;
                let when = file
                    .last_saved
                    .map(|t| format!(" (saved {})", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default();
                self.good(
                    file,
                    vec![format!(
                        "{problem}. The backup {PROJECTS_BACKUP_NAME}{when} was loaded instead: changes made after that save are missing."
                    )],
                )
            }
            OnDisk::Missing => Ok(empty(vec![format!(
                    "{problem}, and there is no backup ({PROJECTS_BACKUP_NAME}). The app starts with no projects: add them again."
            )])),
            OnDisk::Corrupt { why } | OnDisk::Newer { version: why, .. } => {
                // Never let the next save overwrite what may be the last copy.
                let kept = move_aside(&self.backup_path())?;
                Ok(empty(vec![format!(
                        "{problem}; the backup {PROJECTS_BACKUP_NAME} could not be used either ({why}); it was kept as {}. The app starts with no projects: repair a kept file and restart, or add them again.",
                    file_name(&kept)
                )]))
            }
        }
    }

    /// Writes the projects: sets `lastSaved`, keeps the file it replaces as
    /// the backup, refuses to overwrite a newer app's file.
    pub fn save(&self, file: &mut ProjectsFile) -> Result<(), StoreError> {
        replace_versioned::<RawFile>(
            &self.path(),
            &self.backup_path(),
            (MAX_PROJECTS_FILE_BYTES, PROJECTS_FILE_VERSION),
            &file.version.clone(),
            || {
                file.version = PROJECTS_FILE_VERSION.to_string();
                file.last_saved = Some(Utc::now());
                serde_json::to_vec_pretty(file)
            },
        )
    }
}

fn read(path: &Path) -> Result<OnDisk<RawFile>, StoreError> {
    read_versioned(path, MAX_PROJECTS_FILE_BYTES, PROJECTS_FILE_VERSION)
}

fn empty(notices: Vec<String>) -> LoadedProjects {
    LoadedProjects {
        file: ProjectsFile::default(),
        notices,
        read_only: false,
        legacy: Vec::new(),
    }
}

/// A newer app's file: every project that still reads as one, read-only.
fn newer(version: &str, value: &Value) -> LoadedProjects {
    let projects: Vec<Project> = value["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    LoadedProjects {
        file: ProjectsFile {
            version: version.to_string(),
            projects,
            current_project_id: value["currentProjectId"].as_str().map(String::from),
            last_saved: None,
        },
        notices: vec![format!(
            "{PROJECTS_FILE_NAME} was written by a newer version of StoryCore Engine (format {version}). Projects are shown read-only until you update the app."
        )],
        read_only: true,
        legacy: Vec::new(),
    }
}

/// The `comfyui` sections of the file's projects.
fn legacy_servers(projects: &[Value]) -> Vec<LegacyServer> {
    let mut out = Vec::new();
    for p in projects {
        let (Some(project_id), Some(section)) = (p["id"].as_str(), p.get("comfyui")) else {
            continue;
        };
        let project_id = project_id.to_string();
        let unreadable = |why: &str| LegacyServer::Unreadable {
            project_id: project_id.clone(),
            why: why.to_string(),
        };
        let Value::Object(s) = section else {
            out.push(unreadable("it is not an object"));
            continue;
        };
        if let Some(id) = s.get("instanceId") {
            out.push(match id.as_str() {
                Some(i) => LegacyServer::InstanceId {
                    project_id: project_id.clone(),
                    instance_id: i.to_string(),
                },
                None => unreadable("its instanceId is not text"),
            });
            continue;
        }
        let endpoint = match s.get("endpoint") {
            None | Some(Value::Null) => "http://localhost:8188".to_string(),
            Some(Value::String(e)) => e.trim().to_string(),
            Some(_) => {
                out.push(unreadable("its endpoint is not text"));
                continue;
            }
        };
        out.push(LegacyServer::Endpoint {
            project_id,
            endpoint,
            timeout_ms: s.get("timeoutMs").and_then(Value::as_u64),
            enable_queue_monitoring: s.get("enableQueueMonitoring").and_then(Value::as_bool),
        });
    }
    out
}
