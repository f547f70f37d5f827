//! The per-instance folders under the app's data folder. ComfyUI keeps temp,
//! user settings, its database and outputs inside its own folder by default,
//! so two instances started from one folder wipe each other's temp at start
//! and share settings (FACTS section 6). Each instance gets its own here;
//! models (and, unless missing, inputs) stay shared.

use super::error::SupervisorError;
use std::path::{Path, PathBuf};

/// Where one instance's own files live: `<data>/instances/<id>/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDirs {
    pub id: String,
    pub root: PathBuf,
}

impl InstanceDirs {
    /// The folders of instance `id`; refuses an id that would leave `instances/`.
    pub fn new(data_dir: &Path, id: &str) -> Result<Self, SupervisorError> {
        crate::model::validate_id(id).map_err(|e| SupervisorError::NotLaunchable {
            id: id.to_string(),
            reason: e.message,
        })?;
        Ok(Self {
            id: id.to_string(),
            root: data_dir.join("instances").join(id),
        })
    }

    /// ComfyUI appends `temp` to `--temp-directory`, so this is the parent:
    /// the folder ComfyUI empties is `temp_parent()/temp`.
    pub fn temp_parent(&self) -> PathBuf {
        self.root.clone()
    }
    pub fn temp(&self) -> PathBuf {
        self.root.join("temp")
    }
    pub fn user(&self) -> PathBuf {
        self.root.join("user")
    }
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    /// Used only when the ComfyUI folder has no `input/` (ComfyUI needs one).
    pub fn own_input(&self) -> PathBuf {
        self.root.join("input")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("comfyui.db")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.logs().join("comfyui.log")
    }
    pub fn extra_model_paths(&self) -> PathBuf {
        self.root.join("extra_model_paths.yaml")
    }
    pub fn process_record(&self) -> PathBuf {
        self.root.join("process.json")
    }

    /// `sqlite:///` plus the absolute path (SQLAlchemy's form; the fourth
    /// slash is the path's own).
    pub fn database_url(&self) -> String {
        format!("sqlite:///{}", self.database().display())
    }

    /// Creates the folders ComfyUI requires to exist (user, output, logs, and
    /// the temp parent); ComfyUI creates `temp` itself.
    pub fn create(&self) -> Result<(), SupervisorError> {
        for dir in [self.root.clone(), self.user(), self.output(), self.logs()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| SupervisorError::io(&self.id, "create the folder", &dir, e))?;
        }
        Ok(())
    }

    /// Writes (or removes) the extra-model-paths file that hands
    /// `customNodesPath` to ComfyUI. Returns the file to pass, if any.
    pub fn write_extra_model_paths(
        &self,
        custom_nodes: Option<&Path>,
    ) -> Result<Option<PathBuf>, SupervisorError> {
        let file = self.extra_model_paths();
        let Some(custom_nodes) = custom_nodes else {
            // A stale file from an earlier config must not keep loading old nodes.
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SupervisorError::io(&self.id, "remove", &file, e)),
            }
            return Ok(None);
        };
        std::fs::write(&file, extra_model_paths_yaml(custom_nodes))
            .map_err(|e| SupervisorError::io(&self.id, "write", &file, e))?;
        Ok(Some(file))
    }
}

/// The YAML ComfyUI reads. The path goes in as a double-quoted scalar (JSON
/// string syntax is valid YAML) so spaces, colons or `#` in it stay literal.
pub fn extra_model_paths_yaml(custom_nodes: &Path) -> String {
    let quoted = serde_json::to_string(&custom_nodes.to_string_lossy()).unwrap_or_default();
    format!("storycore:\n  custom_nodes: {quoted}\n")
}
