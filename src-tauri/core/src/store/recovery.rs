//! Repairs of what a crash or a hand edit left: corrupt files moved aside (never
//! deleted: the user may want what is in them) and stray temp files removed.

use super::atomic::PARTIAL_MARKER;
use super::StoreError;
use chrono::Utc;
use std::path::{Path, PathBuf};

/// Renames a file that cannot be read to `{name}.corrupt-{UTC timestamp}`
/// beside it, and returns the new path.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    // Two recoveries within one second must not overwrite the first copy.
    let target = free_name(path, "corrupt");
    std::fs::rename(path, &target).map_err(|source| StoreError::Move {
        from: path.to_path_buf(),
        to: target.clone(),
        source,
    })?;
    tracing::warn!(from = %path.display(), to = %target.display(), "moved an unreadable file aside");
    Ok(target)
}

/// Copies a file to `{name}.{why}-{UTC timestamp}` beside it (the original
/// stays), and returns the copy's path.
pub(crate) fn copy_aside(path: &Path, why: &str) -> Result<PathBuf, StoreError> {
    let target = free_name(path, why);
    std::fs::copy(path, &target).map_err(|source| StoreError::Write {
        path: target.clone(),
        source,
    })?;
    Ok(target)
}

fn free_name(path: &Path, why: &str) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut target = path.with_file_name(format!("{name}.{why}-{stamp}"));
    let mut n = 2;
    while target.exists() {
        target = path.with_file_name(format!("{name}.{why}-{stamp}-{n}"));
        n += 1;
    }
    target
}

/// Removes the temp files that writes of `file_name` left when the app was
/// killed mid-write. Only this app's naming is touched. Returns how many.
pub(crate) fn remove_stray_partials(dir: &Path, file_name: &str) -> usize {
    let prefix = format!("{file_name}{PARTIAL_MARKER}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// The file's name, for notices: users know the name, not the folder.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
