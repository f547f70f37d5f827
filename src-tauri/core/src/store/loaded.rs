//! What loading the instances file gives (shared by the loader and the
//! first start's migration), and the file's names.

use storycore_types::{InstancesFile, MigrationResult, INSTANCES_FILE_VERSION};

pub const INSTANCES_FILE_NAME: &str = "comfyui_instances.json";
/// The previous good copy, refreshed before each save replaces the file.
pub const BACKUP_FILE_NAME: &str = "comfyui_instances.json.bak";

/// What `InstanceStore::load` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub file: InstancesFile,
    /// Sentences for the user: what was repaired, migrated or refused.
    pub notices: Vec<String>,
    /// The file was written by a newer app: it is shown, never overwritten.
    pub read_only: bool,
    /// Set when the single-instance `comfyui.json` was looked at on first start.
    pub migration: Option<MigrationResult>,
}

pub(crate) fn empty_file() -> InstancesFile {
    InstancesFile {
        version: INSTANCES_FILE_VERSION.to_string(),
        instances: Vec::new(),
        active_instance_id: None,
        last_saved: None,
    }
}
