//! Projects (the seed's "project settings"): a name and a folder, with the
//! default target of its jobs, its own templates, the folder its outputs are
//! copied to, and the defaults of instances created while it is current.
//!
//! Kept in `projects.json` by [`ProjectStore`]; its own templates in
//! `<config>/projects/<id>/templates/` (see `dispatch::templates`). Every
//! change is made on a copy, saved, and only then shown: a failed save
//! changes nothing and says why.

use crate::manager::InstanceManager;
pub use crate::model::check_project;
use crate::model::{quote, validate_config};
use crate::store::{LegacyServer, ProjectStore, StoreError};
use std::path::Path;
use std::sync::{Arc, Mutex};
use storycore_types::{
    ApiError, ErrorCode, FieldError, InstanceConfig, JobTarget, Project, ProjectDraft, ProjectList,
    ProjectsFile,
};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("the project cannot be saved as it is: {}", summary(.fields))]
    Invalid { fields: Vec<FieldError> },
    #[error("there is no project with id {}", quote(.id))]
    NotFound { id: String },
    #[error("projects.json was written by a newer version of the app: update the app to change projects")]
    ReadOnly,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| f.message.clone())
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        let code = match &e {
            ProjectError::Invalid { .. } => ErrorCode::InvalidInput,
            ProjectError::NotFound { .. } => ErrorCode::NotFound,
            ProjectError::ReadOnly => ErrorCode::Conflict,
            ProjectError::Store(s) => s.code(),
        };
        let mut api = ApiError::new(code, e.to_string());
        if let ProjectError::Invalid { fields } = e {
            api.fields = fields;
        }
        api
    }
}

/// A cheap-to-clone handle on the projects.
#[derive(Clone)]
pub struct Projects {
    inner: Arc<Inner>,
}

struct Inner {
    store: ProjectStore,
    /// Held across a save (a file of a few kilobytes) so saves keep their order.
    state: Mutex<State>,
}

struct State {
    file: ProjectsFile,
    read_only: bool,
}

impl Projects {
    /// Loads `projects.json` from `config_dir`, repairing what it can. The
    /// notices say what was repaired; the legacy servers are for
    /// [`migrate`](Self::migrate).
    pub fn open(config_dir: &Path) -> Result<(Self, Vec<String>, Vec<LegacyServer>), StoreError> {
        let store = ProjectStore::new(config_dir);
        let loaded = store.load()?;
        let projects = Self {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(State {
                    file: loaded.file,
                    read_only: loaded.read_only,
                }),
            }),
        };
        Ok((projects, loaded.notices, loaded.legacy))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> ProjectList {
        let st = self.lock();
        ProjectList {
            projects: st.file.projects.clone(),
            current_project_id: st.file.current_project_id.clone(),
            read_only: st.read_only,
        }
    }

    pub fn get(&self, id: &str) -> Option<Project> {
        self.lock()
            .file
            .projects
            .iter()
            .find(|p| p.id == id)
            .cloned()
    }

    pub fn current(&self) -> Option<Project> {
        self.list().current().cloned()
    }

    /// Applies `change` to a copy of the file, saves it, and keeps it only
    /// when the save worked.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut ProjectsFile) -> Result<T, ProjectError>,
    ) -> Result<T, ProjectError> {
        let mut st = self.lock();
        if st.read_only {
            return Err(ProjectError::ReadOnly);
        }
        let mut file = st.file.clone();
        let out = change(&mut file)?;
        self.inner.store.save(&mut file)?;
        st.file = file;
        Ok(out)
    }

    /// Creates a project (its folder too, when missing) and makes it current.
    /// `instances`: the ids a default target may name.
    pub fn create(
        &self,
        draft: &ProjectDraft,
        instances: &[String],
    ) -> Result<Project, ProjectError> {
        self.change(|file| {
            let mut n = file.projects.len() + 1;
            let id = loop {
                let id = format!("project_{n:03}");
                if !file.projects.iter().any(|p| p.id == id) {
                    break id;
                }
                n += 1;
            };
            let project = from_draft(id, draft, None);
            check_draft(&project, &file.projects, instances)?;
            make_folder(&project.folder)?;
            file.projects.push(project.clone());
            file.current_project_id = Some(project.id.clone());
            tracing::info!(id = %project.id, name = %project.name, "project created");
            Ok(project)
        })
    }

    pub fn update(
        &self,
        id: &str,
        draft: &ProjectDraft,
        instances: &[String],
    ) -> Result<Project, ProjectError> {
        self.change(|file| {
            let k = position(file, id)?;
            let project = from_draft(id.to_string(), draft, file.projects[k].created_at);
            let others: Vec<Project> = file
                .projects
                .iter()
                .filter(|p| p.id != id)
                .cloned()
                .collect();
            check_draft(&project, &others, instances)?;
            make_folder(&project.folder)?;
            file.projects[k] = project.clone();
            Ok(project)
        })
    }

    /// Forgets a project (its folder and outputs stay where they are; its
    /// own templates are deleted with it). Jobs keep their tag.
    pub fn delete(&self, id: &str, config_dir: &Path) -> Result<(), ProjectError> {
        self.change(|file| {
            let k = position(file, id)?;
            file.projects.remove(k);
            if file.current_project_id.as_deref() == Some(id) {
                file.current_project_id = None;
            }
            Ok(())
        })?;
        let own = config_dir
            .join(crate::dispatch::templates::PROJECTS_FOLDER)
            .join(id);
        if let Err(e) = std::fs::remove_dir_all(&own) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %own.display(), "removing a deleted project's templates: {e}");
            }
        }
        Ok(())
    }

    /// `None`: no project (jobs run untagged, outputs stay in the app's folder).
    pub fn set_current(&self, id: Option<&str>) -> Result<(), ProjectError> {
        self.change(|file| {
            if let Some(id) = id {
                position(file, id)?;
            }
            file.current_project_id = id.map(String::from);
            Ok(())
        })
    }

    /// Where a job from the window runs and what it belongs to: `explicit`
    /// when given, else the current project's default target (automatic
    /// without a project). A default instance deleted since is refused with
    /// what to do, not run elsewhere.
    pub fn job_target(
        &self,
        manager: &InstanceManager,
        explicit: Option<JobTarget>,
    ) -> Result<(JobTarget, crate::dispatch::JobContext), ProjectError> {
        let Some(project) = self.current() else {
            return Ok((explicit.unwrap_or_default(), Default::default()));
        };
        let context = crate::dispatch::JobContext::project(&project);
        if let Some(t) = explicit {
            return Ok((t, context));
        }
        if let JobTarget::Instance { id } = &project.default_target {
            if manager.get(id).is_none() {
                return Err(invalid(
                    "target",
                    format!(
                        "The project {}'s default instance {} no longer exists: choose another in \"Projects\u{2026}\", or choose where to run this job.",
                        quote(&project.name),
                        quote(id)
                    ),
                ));
            }
        }
        Ok((project.default_target.clone(), context))
    }

    /// A blank configuration for a new instance: the current project's
    /// instance defaults over the app's.
    pub fn new_instance_config(&self) -> InstanceConfig {
        let mut config = InstanceConfig::new("", "", 8188);
        if let Some(p) = self.current() {
            p.instance_defaults.apply_to(&mut config);
        }
        config
    }

    /// The design's migration step 3: each project whose settings still name
    /// the single-instance server gets that server's instance (the one the
    /// `comfyui.json` migration created, or any with the same address; one
    /// is created when none has it) as its default target. Saved once; the
    /// old key is gone from the file after, and the backup keeps it.
    pub async fn migrate(
        &self,
        manager: &InstanceManager,
        legacy: Vec<LegacyServer>,
    ) -> Vec<String> {
        let mut notices = Vec::new();
        if legacy.is_empty() || self.lock().read_only {
            return notices;
        }
        let mut targets: Vec<(String, String)> = Vec::new();
        for l in legacy {
            match l {
                LegacyServer::InstanceId {
                    project_id,
                    instance_id,
                } => {
                    if manager.get(&instance_id).is_some() {
                        targets.push((project_id, instance_id));
                    } else {
                        notices.push(format!(
                            "Project {}'s settings name the instance {}, which does not exist: its jobs run on the automatic target; choose its instance in the project's settings.",
                            quote(&project_id), quote(&instance_id)
                        ));
                        targets.push((project_id, String::new()));
                    }
                }
                LegacyServer::Endpoint {
                    project_id,
                    endpoint,
                    timeout_ms,
                    enable_queue_monitoring,
                } => match instance_for(manager, &endpoint, timeout_ms, enable_queue_monitoring)
                    .await
                {
                    Ok((id, created)) => {
                        if created {
                            notices.push(format!(
                                "Project {}'s server {endpoint} was not in the fleet: it was added as the instance {}.",
                                quote(&project_id), quote(&id)
                            ));
                        }
                        targets.push((project_id, id));
                    }
                    Err(why) => {
                        notices.push(format!(
                            "Project {}'s server {endpoint} could not become an instance ({why}): its jobs run on the automatic target. The old settings are kept in projects.json.bak.",
                            quote(&project_id)
                        ));
                        targets.push((project_id, String::new()));
                    }
                },
                LegacyServer::Unreadable { project_id, why } => {
                    notices.push(format!(
                        "Project {}'s old \"comfyui\" settings could not be read ({why}); they are kept in projects.json.bak, and its jobs run on the automatic target.",
                        quote(&project_id)
                    ));
                    targets.push((project_id, String::new()));
                }
            }
        }
        let saved = self.change(|file| {
            let mut n = 0;
            for (project, instance) in &targets {
                if let Some(p) = file.projects.iter_mut().find(|p| &p.id == project) {
                    if !instance.is_empty() {
                        p.default_target = JobTarget::Instance {
                            id: instance.clone(),
                        };
                        n += 1;
                    }
                }
            }
            Ok(n)
        });
        match saved {
            Ok(n) => {
                tracing::info!(projects = n, "project settings migrated to instance ids");
                if n > 0 {
                    notices.push(format!(
                        "{n} project(s) now run on the instance of their single-instance server by default (migrated from the old \"comfyui\" settings; the file as it was is projects.json.bak)."
                    ));
                }
            }
            Err(e) => notices.push(format!(
                "The projects' old server settings could not be migrated ({e}); they are kept and the migration is tried again at the next start."
            )),
        }
        notices
    }
}

/// The instance at `endpoint`, created when the fleet has none there.
async fn instance_for(
    manager: &InstanceManager,
    endpoint: &str,
    timeout_ms: Option<u64>,
    enable_queue_monitoring: Option<bool>,
) -> Result<(String, bool), String> {
    let mut config = crate::store::config_from_endpoint(endpoint, "", "")?;
    let same = manager.list().into_iter().find(|i| {
        i.config.port == config.port
            && i.config.scheme.unwrap_or_default() == config.scheme.unwrap_or_default()
            && crate::model::same_machine(i.config.host(), config.host())
    });
    if let Some(i) = same {
        return Ok((i.id, false));
    }
    config.name = format!("ComfyUI at {}:{}", config.host(), config.port);
    config.timeout_ms = timeout_ms;
    config.enable_queue_monitoring = enable_queue_monitoring;
    let created = manager.create(config).await.map_err(|e| e.to_string())?;
    Ok((created.id, true))
}

fn position(file: &ProjectsFile, id: &str) -> Result<usize, ProjectError> {
    file.projects
        .iter()
        .position(|p| p.id == id)
        .ok_or_else(|| ProjectError::NotFound { id: id.to_string() })
}

fn from_draft(
    id: String,
    d: &ProjectDraft,
    created_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Project {
    let trimmed = |s: &str| s.trim().trim_end_matches('/').to_string();
    Project {
        id,
        name: d.name.trim().to_string(),
        folder: trimmed(&d.folder),
        default_target: d.default_target.clone(),
        output_folder: d
            .output_folder
            .as_deref()
            .map(trimmed)
            .filter(|f| !f.is_empty()),
        instance_defaults: d.instance_defaults.clone(),
        created_at: created_at.or_else(|| Some(chrono::Utc::now())),
    }
}

fn invalid(field: &str, message: String) -> ProjectError {
    ProjectError::Invalid {
        fields: vec![FieldError::new(field, message)],
    }
}

/// [`check_project`], plus what only a change from the window must meet: a
/// default instance that exists, a folder that is not a file, and instance
/// defaults an instance could be created with.
fn check_draft(p: &Project, others: &[Project], instances: &[String]) -> Result<(), ProjectError> {
    check_project(p, others).map_err(|f| ProjectError::Invalid { fields: vec![f] })?;
    if let JobTarget::Instance { id } = &p.default_target {
        if !instances.contains(id) {
            return Err(invalid(
                "defaultTarget",
                format!(
                    "The instance {} does not exist: choose another default target.",
                    quote(id)
                ),
            ));
        }
    }
    for (field, folder) in [
        ("folder", Some(&p.folder)),
        ("outputFolder", p.output_folder.as_ref()),
    ] {
        if let Some(f) = folder {
            if Path::new(f).exists() && !Path::new(f).is_dir() {
                return Err(invalid(
                    field,
                    format!("{} is a file, not a folder: choose a folder.", quote(f)),
                ));
            }
        }
    }
    if !p.instance_defaults.is_empty() {
        let mut config = InstanceConfig::new("defaults", "defaults", 8188);
        p.instance_defaults.apply_to(&mut config);
        if let Err(fields) = validate_config(&config, &[]) {
            return Err(ProjectError::Invalid {
                fields: fields
                    .into_iter()
                    .map(|f| FieldError::new(format!("instanceDefaults.{}", f.field), f.message))
                    .collect(),
            });
        }
    }
    Ok(())
}

/// Creates the project's folder when it is missing, saying why it cannot.
fn make_folder(folder: &str) -> Result<(), ProjectError> {
    std::fs::create_dir_all(folder).map_err(|e| {
        invalid(
            "folder",
            format!(
                "The folder {} cannot be created ({e}): choose a folder you may write to.",
                quote(folder)
            ),
        )
    })
}
