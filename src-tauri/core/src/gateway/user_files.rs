//! Where the gateway keeps each person's ComfyUI user files (settings,
//! workflows, templates), and how a requested name maps into that folder.

use super::tokens::{Caller, DEFAULT_USER};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The folder of every user's files, in the config folder.
pub const USER_FOLDER: &str = "gateway-user";
/// ComfyUI's settings file, in the user's folder.
pub(crate) const SETTINGS_FILE: &str = "comfy.settings.json";

/// The users' files: `<root>/<user>/...`. Writes are made one at a time,
/// so two settings saved at once both stay.
pub(crate) struct UserFiles {
    root: PathBuf,
    pub(crate) writing: tokio::sync::Mutex<()>,
}

impl UserFiles {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn user_root(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }
}

/// The folder of the person a request acts for: their token's name, or
/// ComfyUI's one user without named tokens.
pub(crate) fn user_of(who: &Caller) -> &str {
    who.name.as_deref().unwrap_or(DEFAULT_USER)
}

/// `file` inside `root`, as ComfyUI resolves it: decoded again when it
/// still holds `%`, `..` taken away lexically; `None` when it leaves
/// `root` (or names `root` itself).
pub(crate) fn resolve(root: &Path, file: &str) -> Option<PathBuf> {
    let decoded;
    let file = if file.contains('%') {
        decoded = percent_decoded(file)?;
        decoded.as_str()
    } else {
        file
    };
    if file.contains('\0') || file.starts_with(['/', '\\']) {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in file.split(['/', '\\']) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.iter().fold(root.to_path_buf(), |acc, p| acc.join(p)))
}

pub(crate) fn percent_decoded(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

/// Path of `path` under `base`, with `/`.
pub(crate) fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// ComfyUI's `get_file_info`: times in milliseconds.
pub(crate) fn file_info(path: &Path, base: &Path) -> Value {
    let meta = std::fs::metadata(path).ok();
    let ms = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    };
    #[cfg(unix)]
    let created = meta.as_ref().map_or(0, |m| {
        use std::os::unix::fs::MetadataExt;
        (m.ctime().max(0) as u64) * 1000 + (m.ctime_nsec().max(0) as u64) / 1_000_000
    });
    #[cfg(not(unix))]
    let created = ms(meta.as_ref().and_then(|m| m.created().ok()));
    json!({
        "path": relative(path, base),
        "size": meta.as_ref().map_or(0, |m| m.len()),
        "modified": ms(meta.as_ref().and_then(|m| m.modified().ok())),
        "created": created,
    })
}

/// A name glob's `*` leaves out: hidden files, and the app's temp files.
pub(crate) fn listed(name: &str) -> bool {
    !name.starts_with('.') && !name.contains(crate::store::PARTIAL_MARKER)
}

/// Files under `dir` (in its subfolders too with `recurse`) whose names
/// `keep` says, sorted; a folder `keep` refuses is not entered.
pub(crate) fn files_in(dir: &Path, recurse: bool, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            if !keep(&e.file_name().to_string_lossy()) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_file() => out.push(e.path()),
                Ok(t) if recurse && t.is_dir() => folders.push(e.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}
