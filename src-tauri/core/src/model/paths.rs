//! The paths of an instance: `comfyuiPath`, `customNodesPath`, `pythonPath`.
//!
//! They are checked on disk only when this app launches the instance on this
//! machine; for an attached instance they describe another machine (or nothing
//! the app uses), so only their text is checked.

use super::text::quote;
use std::path::{Component, Path};
use storycore_types::FieldError;

/// Longer paths are refused: Linux itself stops at 4096 bytes.
const MAX_PATH_LEN: usize = 4096;

/// What a path field must point at.
#[derive(Clone, Copy)]
pub(crate) enum PathKind {
    /// A folder; `marker` is a file that must be inside it (`main.py`).
    Folder { marker: Option<&'static str> },
    /// An executable file. The last step may be a symlink: a virtualenv's
    /// `bin/python` is one, and resolving it would leave the virtualenv.
    Executable,
}

/// Checks the text of a path (any instance).
pub(crate) fn check_path_text(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.contains('\0') {
        errors.push(FieldError::new(
            field,
            "The path contains a NUL character: retype it.",
        ));
    } else if value.len() > MAX_PATH_LEN {
        errors.push(FieldError::new(
            field,
            format!(
                "The path {} is {} bytes long; the system takes at most {MAX_PATH_LEN}.",
                quote(value),
                value.len()
            ),
        ));
    } else if value.trim().is_empty() {
        errors.push(FieldError::new(
            field,
            "The path is empty: enter a folder, or leave the field out.",
        ));
    }
}

/// Checks a path on this machine, for an instance the app launches here.
pub(crate) fn check_local_path(
    field: &str,
    value: &str,
    kind: PathKind,
    errors: &mut Vec<FieldError>,
) {
    let path = Path::new(value);
    let mut problem = |m: String| errors.push(FieldError::new(field, m));
    let q = quote(value);
    let shown = |p: &Path| quote(&p.display().to_string());
    if !path.is_absolute() {
        return problem(format!(
            "{q} is a relative path: enter the full path (starting at the root of the disk)."
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return problem(format!(
            "{q} contains '.' or '..': enter the folder's real path without them."
        ));
    }
    // The folder part must be canonical for both kinds: a path that goes through
    // symlinks names one folder in the file and another on disk.
    let must_be_canonical = match kind {
        PathKind::Folder { .. } => Some(path),
        PathKind::Executable => path.parent(),
    };
    if let Some(p) = must_be_canonical {
        match p.canonicalize() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return problem(format!(
                    "{} does not exist on this machine: check the path.",
                    shown(p)
                ));
            }
            Err(e) => {
                return problem(format!(
                    "{} cannot be read ({e}): check that it is there and that you may read it.",
                    shown(p)
                ));
            }
            Ok(real) if real != strip_trailing_separator(p) => {
                return problem(format!(
                    "{} goes through a symbolic link: enter its real path, {}.",
                    shown(p),
                    shown(&real)
                ));
            }
            Ok(_) => {}
        }
    }
    match kind {
        PathKind::Folder { marker } => {
            if !path.is_dir() {
                return problem(format!("{q} is a file, not a folder: enter a folder."));
            }
            if let Some(m) = marker {
                if !path.join(m).is_file() {
                    problem(format!(
                        "{q} has no {m}: enter the ComfyUI folder, the one that holds {m}."
                    ));
                }
            }
        }
        PathKind::Executable => match std::fs::metadata(path) {
            Err(_) => problem(format!(
                "{q} does not exist on this machine: enter the path of the Python interpreter."
            )),
            Ok(m) if !m.is_file() => problem(format!(
                "{q} is not a file: enter the path of the Python interpreter itself."
            )),
            Ok(m) if !is_executable(&m) => problem(format!(
                "{q} is not executable: enter the Python interpreter, or make it executable."
            )),
            Ok(_) => {}
        },
    }
}

fn strip_trailing_separator(p: &Path) -> std::path::PathBuf {
    p.components().collect()
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_m: &std::fs::Metadata) -> bool {
    true
}
