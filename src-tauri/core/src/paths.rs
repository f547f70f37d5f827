//! Where the app keeps its files. One environment variable moves everything, so
//! tests (and users with several setups) never touch the real folder.

use std::path::{Path, PathBuf};

/// Overrides the config folder (and with it the log folder).
pub const CONFIG_DIR_ENV: &str = "STORYCORE_CONFIG_DIR";
/// Overrides the data folder (per-instance temp, user and output folders).
pub const DATA_DIR_ENV: &str = "STORYCORE_DATA_DIR";
/// The folder name under the OS config folder, as in the original design.
pub const APP_DIR_NAME: &str = "storycore-engine";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0} is set but empty: unset it, or give an absolute folder path")]
    EmptyOverride(&'static str),
    #[error("{0}={1:?} is not an absolute path: give a full path such as /home/me/storycore")]
    RelativeOverride(&'static str, String),
    #[error("{0}={1:?} exists and is not a folder: choose another path")]
    NotAFolder(&'static str, String),
    #[error("this system has no user {1} folder (is HOME set?): set {0} to a folder")]
    NoOsFolder(&'static str, &'static str),
}

/// The folders the app uses, resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl AppPaths {
    /// Resolves the folders from the environment: `STORYCORE_CONFIG_DIR` and
    /// `STORYCORE_DATA_DIR` when set, else the OS folders (`~/.config/storycore-engine`
    /// and `~/.local/share/storycore-engine` on Linux).
    pub fn from_env() -> Result<Self, PathError> {
        let config = std::env::var_os(CONFIG_DIR_ENV);
        let data = std::env::var_os(DATA_DIR_ENV);
        let config_dir = resolve(
            CONFIG_DIR_ENV,
            "config",
            config.as_deref().map(Path::new),
            dirs::config_dir().as_deref(),
        )?;
        let data_dir = resolve(
            DATA_DIR_ENV,
            "data",
            data.as_deref().map(Path::new),
            dirs::data_dir().as_deref(),
        )?;
        Ok(Self {
            log_dir: config_dir.join("logs"),
            config_dir,
            data_dir,
        })
    }
}

/// One folder: the override when set (absolute, and a folder if it exists),
/// else `<os folder>/storycore-engine`.
fn resolve(
    var: &'static str,
    kind: &'static str,
    over: Option<&Path>,
    os_folder: Option<&Path>,
) -> Result<PathBuf, PathError> {
    let dir = match over {
        Some(p) if p.as_os_str().is_empty() => return Err(PathError::EmptyOverride(var)),
        Some(p) if !p.is_absolute() => {
            return Err(PathError::RelativeOverride(var, p.display().to_string()))
        }
        Some(p) => p.to_path_buf(),
        None => os_folder
            .ok_or(PathError::NoOsFolder(var, kind))?
            .join(APP_DIR_NAME),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(PathError::NotAFolder(var, dir.display().to_string()));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    const V: &str = CONFIG_DIR_ENV;

    #[test]
    fn default_is_under_the_os_folder() {
        let p = resolve(V, "config", None, Some(Path::new("/home/u/.config"))).unwrap();
        assert_eq!(p, Path::new("/home/u/.config/storycore-engine"));
    }

    #[test]
    fn override_wins_and_must_be_absolute() {
        assert_eq!(
            resolve(V, "config", Some(Path::new("/tmp/x")), None).unwrap(),
            Path::new("/tmp/x")
        );
        assert_eq!(
            resolve(V, "config", Some(Path::new("rel/dir")), None),
            Err(PathError::RelativeOverride(V, "rel/dir".into()))
        );
        assert_eq!(
            resolve(V, "config", Some(Path::new("")), None),
            Err(PathError::EmptyOverride(V))
        );
        let e = resolve(DATA_DIR_ENV, "data", None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this system has no user data folder (is HOME set?): set STORYCORE_DATA_DIR to a folder"
        );
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = resolve(V, "config", Some(f.path()), None).unwrap_err();
        assert!(matches!(err, PathError::NotAFolder(..)));
        assert!(err.to_string().contains("is not a folder"));
    }
}
