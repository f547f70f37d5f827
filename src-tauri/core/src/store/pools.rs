//! `pools.json`: the pools, stored like the instances file: written
//! atomically, the previous good copy kept as `pools.json.bak`, a corrupt
//! file moved aside and the backup loaded, a pool that breaks the rules
//! refused alone (the file as it was kept beside it), a newer app's file
//! left as it is (pools off until that app is back or the file is moved).

use super::instances::{read_versioned, replace_versioned, OnDisk};
use super::recovery::{copy_aside, file_name, move_aside, remove_stray_partials};
use super::StoreError;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use storycore_types::{PoolConfig, PoolsFile, POOLS_FILE_VERSION};

pub const POOLS_FILE_NAME: &str = "pools.json";
pub const POOLS_BACKUP_NAME: &str = "pools.json.bak";
const MAX_POOLS_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Deserialize)]
struct RawFile {
    #[allow(dead_code)]
    version: String,
    #[serde(default)]
    pools: Vec<Value>,
}

/// What [`PoolStore::load`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPools {
    pub pools: Vec<PoolConfig>,
    pub notices: Vec<String>,
    /// From a newer app: nothing may be saved over it.
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct PoolStore {
    dir: PathBuf,
}

impl PoolStore {
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(POOLS_FILE_NAME)
    }

    fn backup_path(&self) -> PathBuf {
        self.dir.join(POOLS_BACKUP_NAME)
    }

    /// Reads the pools; `check` says what is wrong with a pool (given those
    /// before it). Fails only when the disk refuses.
    pub fn load(
        &self,
        check: impl Fn(&PoolConfig, &[PoolConfig]) -> Result<(), String>,
    ) -> Result<LoadedPools, StoreError> {
        remove_stray_partials(&self.dir, POOLS_FILE_NAME);
        remove_stray_partials(&self.dir, POOLS_BACKUP_NAME);
        let empty = |notices| LoadedPools {
            pools: Vec::new(),
            notices,
            read_only: false,
        };
        let raw = match read(&self.path())? {
            OnDisk::Good { file, .. } => file,
            OnDisk::Missing if !self.backup_path().exists() => return Ok(empty(Vec::new())),
            OnDisk::Newer { version, .. } => {
                return Ok(LoadedPools {
                    pools: Vec::new(),
                    notices: vec![format!(
                        "{POOLS_FILE_NAME} is from a newer version of the app (format {version}): \
                         pools are off and the file is left as it is. Update the app to use them."
                    )],
                    read_only: true,
                })
            }
            other => {
                let why = match other {
                    OnDisk::Corrupt { why } => {
                        let kept = move_aside(&self.path())?;
                        format!(
                            "{POOLS_FILE_NAME} could not be read ({why}); it was kept as {}",
                            file_name(&kept)
                        )
                    }
                    _ => format!("{POOLS_FILE_NAME} was missing"),
                };
                match read(&self.backup_path())? {
                    OnDisk::Good { file, .. } => {
                        let mut loaded = self.good(file, &check)?;
                        loaded.notices.insert(
                            0,
                            format!("{why}: the pools were read from {POOLS_BACKUP_NAME}."),
                        );
                        return Ok(loaded);
                    }
                    _ => {
                        return Ok(empty(vec![format!(
                            "{why}, and no good backup: no pools loaded."
                        )]))
                    }
                }
            }
        };
        self.good(raw, &check)
    }

    fn good(
        &self,
        raw: RawFile,
        check: &impl Fn(&PoolConfig, &[PoolConfig]) -> Result<(), String>,
    ) -> Result<LoadedPools, StoreError> {
        let mut pools: Vec<PoolConfig> = Vec::new();
        let mut refused = Vec::new();
        for (k, v) in raw.pools.into_iter().enumerate() {
            let label = v["name"]
                .as_str()
                .or(v["id"].as_str())
                .map_or_else(|| format!("pool #{}", k + 1), crate::model::quote);
            match serde_json::from_value::<PoolConfig>(v) {
                Ok(p) => match check(&p, &pools) {
                    Ok(()) => pools.push(p),
                    Err(e) => refused.push(format!("{label} ({e})")),
                },
                Err(e) => refused.push(format!("{label} ({e})")),
            }
        }
        let mut notices = Vec::new();
        if !refused.is_empty() && self.path().exists() {
            let kept = copy_aside(&self.path(), "refused")?;
            notices.push(format!(
                "{} pool(s) of {POOLS_FILE_NAME} could not be loaded: {}. The file as it was is kept as {}.",
                refused.len(),
                refused.join("; "),
                file_name(&kept)
            ));
        }
        Ok(LoadedPools {
            pools,
            notices,
            read_only: false,
        })
    }

    /// Writes the pools (the file it replaces becomes the backup).
    pub fn save(&self, pools: &[PoolConfig]) -> Result<(), StoreError> {
        let file = PoolsFile {
            version: POOLS_FILE_VERSION.to_string(),
            pools: pools.to_vec(),
        };
        replace_versioned::<RawFile>(
            &self.path(),
            &self.backup_path(),
            (MAX_POOLS_FILE_BYTES, POOLS_FILE_VERSION),
            POOLS_FILE_VERSION,
            || serde_json::to_vec_pretty(&file),
        )
    }
}

fn read(path: &Path) -> Result<OnDisk<RawFile>, StoreError> {
    read_versioned(path, MAX_POOLS_FILE_BYTES, POOLS_FILE_VERSION)
}
