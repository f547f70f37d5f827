//! `comfyui_instances.json`: load (with repair) and save (with a backup).

use super::atomic::atomic_write;
use super::format::{format_age, FormatAge};
use super::migration;
use super::read::{read_regular, ReadProblem};
use super::recovery::{copy_aside, file_name, move_aside, remove_stray_partials};
use super::StoreError;
use crate::model::{quote, validate_file, Checks};
use chrono::Utc;
use serde_json::Value;
use std::path::{Path, PathBuf};
use storycore_types::{InstanceConfig, InstancesFile, INSTANCES_FILE_VERSION};

use super::loaded::empty_file;
pub use super::loaded::{Loaded, BACKUP_FILE_NAME, INSTANCES_FILE_NAME};
/// An instances file bigger than this is not read: 10,000 instances take a
/// few megabytes.
pub const MAX_INSTANCES_FILE_BYTES: u64 = 64 << 20;

/// The instances file of one config folder. Holds no state: each call looks
/// at the disk, so two handles on one folder agree.
#[derive(Debug, Clone)]
pub struct InstanceStore {
    dir: PathBuf,
}

/// What is on disk at one path (an instances file, or another versioned file).
pub(crate) enum OnDisk<T = InstancesFile> {
    Missing,
    Good { file: T, bytes: Vec<u8> },
    Newer { version: String, value: Value },
    Corrupt { why: String },
}

impl InstanceStore {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(INSTANCES_FILE_NAME)
    }

    pub fn backup_path(&self) -> PathBuf {
        self.dir.join(BACKUP_FILE_NAME)
    }

    /// Reads the fleet, repairing what it can: a corrupt file is moved aside
    /// and the backup loaded; on first start the single-instance config is
    /// migrated. Fails only when the disk itself refuses.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        remove_stray_partials(&self.dir, INSTANCES_FILE_NAME);
        remove_stray_partials(&self.dir, BACKUP_FILE_NAME);
        let mut loaded = match read_instances_file(&self.path())? {
            OnDisk::Good { file, .. } => loaded(file, Vec::new()),
            OnDisk::Newer { version, value } => self.load_newer(&version, &value),
            OnDisk::Corrupt { why } => {
                let kept = move_aside(&self.path())?;
                let problem = format!(
                    "{INSTANCES_FILE_NAME} could not be read ({why}); it was kept as {}",
                    file_name(&kept)
                );
                self.recover_from_backup(problem, true)?
            }
            OnDisk::Missing if self.backup_path().exists() => {
                self.recover_from_backup(format!("{INSTANCES_FILE_NAME} was missing"), false)?
            }
            OnDisk::Missing => {
                return migration::first_start(&self.dir, |f| self.save(f));
            }
        };
        self.set_aside_invalid(&mut loaded)?;
        loaded.notices.extend(migration::leftover_notice(&self.dir));
        Ok(loaded)
    }

    /// Instances that break the rules (a hand edit, an older app) are not
    /// loaded, with a notice; the file as it was is kept beside it, so nothing
    /// is lost and they can be fixed and imported again.
    fn set_aside_invalid(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        if loaded.read_only {
            return Ok(()); // a newer app's file: its rules may differ
        }
        let problems = validate_file(&loaded.file, Checks::Stored);
        if problems.is_empty() {
            return Ok(());
        }
        let kept = if self.path().exists() {
            Some(copy_aside(&self.path(), "refused")?)
        } else {
            None
        };
        let refused: std::collections::HashSet<usize> = problems.iter().map(|p| p.index).collect();
        let mut k = 0;
        loaded.file.instances.retain(|_| {
            k += 1;
            !refused.contains(&(k - 1))
        });
        let active = loaded.file.active_instance_id.clone();
        if active.is_some_and(|a| !loaded.file.instances.iter().any(|c| c.id == a)) {
            loaded.file.active_instance_id = None;
        }
        let mut listed: Vec<String> = problems
            .iter()
            .take(5)
            .map(|p| {
                let first = &p.errors[0];
                format!("{} ({}: {})", quote(&p.id), first.field, first.message)
            })
            .collect();
        if problems.len() > 5 {
            listed.push(format!("and {} more", problems.len() - 5));
        }
        let kept = kept
            .map(|k| {
                format!(
                    " The file as it was is kept as {}: fix them there, then import that file.",
                    file_name(&k)
                )
            })
            .unwrap_or_default();
        loaded.notices.push(format!(
            "{} instance(s) of {INSTANCES_FILE_NAME} break the rules and were not loaded: {}.{kept}",
            problems.len(),
            listed.join("; ")
        ));
        Ok(())
    }

    /// Writes the fleet: sets `lastSaved`, keeps the file it replaces as the
    /// backup, and refuses to overwrite a file from a newer app.
    pub fn save(&self, file: &mut InstancesFile) -> Result<(), StoreError> {
        replace_versioned::<InstancesFile>(
            &self.path(),
            &self.backup_path(),
            (MAX_INSTANCES_FILE_BYTES, INSTANCES_FILE_VERSION),
            &file.version.clone(),
            || {
                file.version = INSTANCES_FILE_VERSION.to_string();
                file.last_saved = Some(Utc::now());
                serde_json::to_vec_pretty(file)
            },
        )
    }

    /// A file from a newer app: keep every instance that still reads as one.
    fn load_newer(&self, version: &str, value: &Value) -> Loaded {
        let mut instances = Vec::new();
        let mut unreadable = 0;
        for v in value["instances"].as_array().into_iter().flatten() {
            match serde_json::from_value::<InstanceConfig>(v.clone()) {
                Ok(c) => instances.push(c),
                Err(_) => unreadable += 1,
            }
        }
        let mut notice = format!(
            "{INSTANCES_FILE_NAME} was written by a newer version of StoryCore Engine (format {version}). It is shown read-only: changes will not be saved until you update the app."
        );
        if unreadable > 0 {
            notice.push_str(&format!(
                " {unreadable} instance(s) in it could not be read by this version and are not shown."
            ));
        }
        let file = InstancesFile {
            // Keeping the newer version makes any save of this file refuse.
            version: version.to_string(),
            instances,
            active_instance_id: value["activeInstanceId"].as_str().map(String::from),
            last_saved: serde_json::from_value(value["lastSaved"].clone()).unwrap_or(None),
        };
        Loaded {
            read_only: true,
            ..loaded(file, vec![notice])
        }
    }

    /// Loads the backup after the main file was lost, and puts it back in place
    /// so the folder is whole again even if the app stops before its next save.
    /// `main_kept`: the unreadable main file was moved aside (and can be
    /// repaired).
    fn recover_from_backup(&self, problem: String, main_kept: bool) -> Result<Loaded, StoreError> {
        match read_instances_file(&self.backup_path())? {
            OnDisk::Good { file, bytes } => {
                atomic_write(&self.path(), &bytes)?;
                let when = file
                    .last_saved
                    .map(|t| format!(" (saved {})", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default();
                Ok(loaded(
                    file,
                    vec![format!(
                        "{problem}. The backup {BACKUP_FILE_NAME}{when} was loaded instead: changes made after that save are missing."
                    )],
                ))
            }
            backup => {
                // A broken backup is kept too: the next save must not
                // overwrite what may be the last copy of the fleet.
                let backup_said = match backup {
                    OnDisk::Corrupt { why } => {
                        let kept = move_aside(&self.backup_path())?;
                        format!(
                            "the backup {BACKUP_FILE_NAME} could not be read either ({why}); it was kept as {}",
                            file_name(&kept)
                        )
                    }
                    OnDisk::Newer { version, .. } => {
                        let kept = move_aside(&self.backup_path())?;
                        format!(
                            "the backup {BACKUP_FILE_NAME} is from a newer app (format {version}); it was kept as {}",
                            file_name(&kept)
                        )
                    }
                    _ => format!("there is no backup ({BACKUP_FILE_NAME})"),
                };
                let what_to_do = if main_kept {
                    "add the instances again, or repair a kept file and restart"
                } else {
                    "add the instances again"
                };
                Ok(loaded(
                    empty_file(),
                    vec![format!(
                        "{problem}; {backup_said}. The app starts with no instances: {what_to_do}."
                    )],
                ))
            }
        }
    }
}

fn loaded(file: InstancesFile, notices: Vec<String>) -> Loaded {
    Loaded {
        file,
        notices,
        read_only: false,
        migration: None,
    }
}

/// Reads and classifies an instances file (the main one or its backup). A
/// folder, a FIFO or a device in its place, or a file too big to be one, is
/// corrupt: moved aside, never read (reading a FIFO would hang).
pub(crate) fn read_instances_file(path: &Path) -> Result<OnDisk, StoreError> {
    read_versioned(path, MAX_INSTANCES_FILE_BYTES, INSTANCES_FILE_VERSION)
}

/// Replaces a versioned file (the instances or the projects file) with what
/// `encode` makes: refuses when the data or the file on disk is from a newer
/// app (`limits`: the most bytes read, and this app's version), keeps the
/// good file it replaces as `backup` (a corrupt one is moved aside instead,
/// never made the backup), and writes atomically.
pub(crate) fn replace_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    backup: &Path,
    limits: (u64, &str),
    data_version: &str,
    encode: impl FnOnce() -> serde_json::Result<Vec<u8>>,
) -> Result<(), StoreError> {
    let (max_bytes, current) = limits;
    let newer = |found: String| StoreError::NewerFormat {
        path: path.to_path_buf(),
        found,
    };
    if let FormatAge::Newer(found) = format_age(data_version, current) {
        return Err(newer(found));
    }
    if let Some(dir) = path.parent() {
        crate::privacy::create_private_dir(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match read_versioned::<T>(path, max_bytes, current)? {
        OnDisk::Newer { version, .. } => return Err(newer(version)),
        OnDisk::Good { bytes, .. } => atomic_write(backup, &bytes)?,
        // Never let a corrupt file become the backup; keep it for the user.
        OnDisk::Corrupt { .. } => {
            move_aside(path)?;
        }
        OnDisk::Missing => {}
    }
    let mut bytes = encode().map_err(|source| StoreError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// Reads and classifies a JSON file with a `"version"`: missing, good, from
/// a newer app than `current`, or corrupt (with why).
pub(crate) fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    max_bytes: u64,
    current: &str,
) -> Result<OnDisk<T>, StoreError> {
    let bytes = match read_regular(path, max_bytes) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(OnDisk::Missing),
        Err(p @ (ReadProblem::NotAFile(_) | ReadProblem::TooBig { .. })) => {
            return Ok(OnDisk::Corrupt { why: p.to_string() })
        }
        Err(ReadProblem::Io(source)) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(OnDisk::Corrupt {
            why: "it is empty".into(),
        });
    }
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return Ok(OnDisk::Corrupt {
                why: format!("it is not valid JSON: {e}"),
            })
        }
    };
    let Some(version) = value["version"].as_str().map(String::from) else {
        return Ok(OnDisk::Corrupt {
            why: "it has no \"version\"".into(),
        });
    };
    if let FormatAge::Newer(version) = format_age(&version, current) {
        return Ok(OnDisk::Newer { version, value });
    }
    match serde_json::from_value::<T>(value) {
        Ok(file) => Ok(OnDisk::Good { file, bytes }),
        Err(e) => Ok(OnDisk::Corrupt {
            why: format!("its content does not match the format: {e}"),
        }),
    }
}
