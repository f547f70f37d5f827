//! The files on disk, all in one config folder:
//!
//! | file | written by |
//! | --- | --- |
//! | `comfyui_instances.json` (format "1.0") and its `.bak` | [`InstanceStore`] |
//! | `instance_{id}_health.json` | [`HealthHistory`] |
//! | `instance_{id}_workflows.json` | the job queue (`dispatch::instance_log`); named and removed here |
//! | `comfyui.json` (the single-instance app's), renamed `.migrated` once read | migration, on first start |
//! | `projects.json` (format "1.0") and its `.bak` | [`ProjectStore`] |
//!
//! Every write goes through [`atomic_write`], so a crash leaves either the old
//! file or the new one, never a mix. What a crash or a hand edit can still
//! leave (a stray temp file, a corrupt file) is repaired on load, and the user
//! is told in a notice.

mod atomic;
mod clash;
mod error;
mod export;
mod format;
pub(crate) use format::{format_age, FormatAge};
mod health_history;
mod import;
mod instance_files;
mod instances;
mod loaded;
mod migration;
mod pools;
mod projects;
mod read;
mod recovery;

pub use atomic::{atomic_write, replace_unsynced};
pub(crate) use atomic::{sync_folder, PARTIAL_MARKER};
pub use error::StoreError;
pub use export::{export, REDACTED_VALUE};
pub use health_history::{
    histories_written, HealthHistory, HealthHistoryFile, HealthSample, HourlyFigures, LoggedError,
    HEALTH_FILE_VERSION, MAX_ERRORS, MAX_HOURS, MAX_SAMPLES,
};
pub use import::{import, ClashPolicy, ImportAction, ImportEntry, ImportError, ImportOutcome};
pub use instance_files::{instance_files, remove_instance_files, workflows_file_path};
pub use instances::{
    InstanceStore, Loaded, BACKUP_FILE_NAME, INSTANCES_FILE_NAME, MAX_INSTANCES_FILE_BYTES,
};
pub(crate) use migration::config_from_endpoint;
pub use migration::{LEGACY_FILE_NAME, MIGRATED_FILE_NAME};
pub use pools::{LoadedPools, PoolStore, POOLS_BACKUP_NAME, POOLS_FILE_NAME};
pub use projects::{
    LegacyServer, LoadedProjects, ProjectStore, PROJECTS_BACKUP_NAME, PROJECTS_FILE_NAME,
};
pub use read::{human_size, read_regular, ReadProblem};
pub(crate) use recovery::move_aside;
