//! What the writer leaves when the app dies mid-write, and how the next
//! start resolves it: each write goes to `<file>.pending-<seq>` before its
//! rename, so a crash leaves at most such files beside the real one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Between a file's name and a write's sequence number.
pub(crate) const PENDING_MARKER: &str = ".pending-";

/// Where write `seq` of `path` goes before it is renamed into place.
pub(crate) fn pending_path(path: &Path, seq: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{PENDING_MARKER}{seq}"));
    path.with_file_name(name)
}

/// Resolves what a crash left in `folder`: for each file, the newest pending
/// version replaces it (it was durable before the crash) if it is sound (a
/// `.json` file must parse; an image's job record says whether it counts);
/// other pending versions are deleted. Returns how many files were replaced.
pub fn recover(folder: &Path) -> std::io::Result<usize> {
    let mut newest: HashMap<PathBuf, Vec<(u64, PathBuf)>> = HashMap::new();
    for entry in std::fs::read_dir(folder)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((target, seq)) = name.rsplit_once(PENDING_MARKER) else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue;
        };
        newest
            .entry(folder.join(target))
            .or_default()
            .push((seq, entry.path()));
    }
    let mut replaced = 0;
    for (target, mut versions) in newest {
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        let mut kept = false;
        for (_, path) in versions {
            let json = target.extension().is_some_and(|e| e == "json");
            let sound = !kept
                && (!json
                    || crate::store::read_regular(&path, 64 << 20)
                        .ok()
                        .flatten()
                        .is_some_and(|b| {
                            serde_json::from_slice::<serde::de::IgnoredAny>(&b).is_ok()
                        }));
            if sound && std::fs::rename(&path, &target).is_ok() {
                kept = true;
                replaced += 1;
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if replaced > 0 {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(replaced)
}
