//! Where the app keeps its files. One environment variable moves everything, so
//! tests (and users with several setups) never touch the real folder.

use std::path::{Path, PathBuf};

/// Overrides the config folder (and with it the log folder).
pub const CONFIG_DIR_ENV: &str = "STORYCORE_CONFIG_DIR";
/// The folder name under the OS config folder, as in the original design.
pub const APP_DIR_NAME: &str = "storycore-engine";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{CONFIG_DIR_ENV} is set but empty: unset it, or give an absolute folder path")]
    EmptyOverride,
    #[error("{CONFIG_DIR_ENV}={0:?} is not an absolute path: give a full path such as /home/me/storycore")]
    RelativeOverride(String),
    #[error("{CONFIG_DIR_ENV}={0:?} exists and is not a folder: choose another path")]
    NotAFolder(String),
    #[error("this system has no user config folder (is HOME set?): set {CONFIG_DIR_ENV} to a folder")]
    NoConfigDir,
}

/// The folders the app uses, resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl AppPaths {
    /// Resolves the folders from the environment: `STORYCORE_CONFIG_DIR` when set,
    /// else the OS config folder (`~/.config/storycore-engine` on Linux).
    pub fn from_env() -> Result<Self, PathError> {
        let over = std::env::var_os(CONFIG_DIR_ENV);
        let base = dirs::config_dir();
        Self::resolve(over.as_deref().map(Path::new), base.as_deref())
    }

    fn resolve(over: Option<&Path>, os_config: Option<&Path>) -> Result<Self, PathError> {
        let config_dir = match over {
            Some(p) if p.as_os_str().is_empty() => return Err(PathError::EmptyOverride),
            Some(p) if !p.is_absolute() => {
                return Err(PathError::RelativeOverride(p.display().to_string()))
            }
            Some(p) => p.to_path_buf(),
            None => os_config.ok_or(PathError::NoConfigDir)?.join(APP_DIR_NAME),
        };
        if config_dir.exists() && !config_dir.is_dir() {
            return Err(PathError::NotAFolder(config_dir.display().to_string()));
        }
        let log_dir = config_dir.join("logs");
        Ok(Self {
            config_dir,
            log_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_under_the_os_config_folder() {
        let p = AppPaths::resolve(None, Some(Path::new("/home/u/.config"))).unwrap();
        assert_eq!(p.config_dir, Path::new("/home/u/.config/storycore-engine"));
        assert_eq!(p.log_dir, Path::new("/home/u/.config/storycore-engine/logs"));
    }

    #[test]
    fn override_wins_and_must_be_absolute() {
        let p = AppPaths::resolve(Some(Path::new("/tmp/x")), None).unwrap();
        assert_eq!(p.config_dir, Path::new("/tmp/x"));
        assert_eq!(
            AppPaths::resolve(Some(Path::new("rel/dir")), None),
            Err(PathError::RelativeOverride("rel/dir".into()))
        );
        assert_eq!(
            AppPaths::resolve(Some(Path::new("")), None),
            Err(PathError::EmptyOverride)
        );
        assert_eq!(AppPaths::resolve(None, None), Err(PathError::NoConfigDir));
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = AppPaths::resolve(Some(f.path()), None).unwrap_err();
        assert!(matches!(err, PathError::NotAFolder(_)));
        assert!(err.to_string().contains("is not a folder"));
    }
}
