//! The files the app keeps per instance in the config folder, named as the
//! seed names them: `instance_{id}_health.json` (health history) and
//! `instance_{id}_workflows.json` (what the instance ran). They go when the
//! instance is deleted, so an instance created later under the same id starts
//! with no history of the one before.

use super::StoreError;
use crate::model::validate_id;
use std::path::{Path, PathBuf};

/// `{dir}/instance_{id}_workflows.json`.
pub fn workflows_file_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("instance_{id}_workflows.json"))
}

/// Every per-instance file of `id` in the config folder.
pub fn instance_files(dir: &Path, id: &str) -> Result<Vec<PathBuf>, StoreError> {
    validate_id(id).map_err(|e| StoreError::BadInstanceId {
        id: id.to_string(),
        reason: e.message,
    })?;
    Ok(vec![
        super::HealthHistory::file_path(dir, id)?,
        workflows_file_path(dir, id),
    ])
}

/// Deletes the per-instance files of `id` (missing ones are fine).
pub fn remove_instance_files(dir: &Path, id: &str) -> Result<(), StoreError> {
    for path in instance_files(dir, id)? {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Write { path, source: e })
            }
            _ => {}
        }
    }
    Ok(())
}
