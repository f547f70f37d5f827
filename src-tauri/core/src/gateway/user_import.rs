//! The editor's data that earlier versions left on the instances. Before
//! the gateway kept it, a workflow or a setting saved through the gateway
//! landed in the `user/default/` folder of whichever local instance
//! answered. The first time the gateway starts with no folder of its own,
//! it gathers those files into it, so nothing a user saved disappears from
//! the editor: the newest copy of each file wins, and the settings are
//! merged (a newer file's value over an older one's). The folder is made
//! whole under another name and then renamed, so a crash midway leaves no
//! half import: the next start does it again.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const SETTINGS_FILE: &str = "comfy.settings.json";

/// What was gathered, said in the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Imported {
    pub files: usize,
    pub instances: Vec<String>,
}

/// Fills `user_root` (`<gateway-user>/default`) from the instances' own
/// user folders under `instances_dir`, when `user_root` does not exist yet.
pub(crate) fn import_once(user_root: &Path, instances_dir: &Path) -> std::io::Result<Imported> {
    if user_root.exists() {
        return Ok(Imported::default());
    }
    let mut newest: BTreeMap<PathBuf, (SystemTime, PathBuf)> = BTreeMap::new();
    let mut settings: Vec<(SystemTime, PathBuf)> = Vec::new();
    let mut instances = Vec::new();
    let mut ids: Vec<PathBuf> = match std::fs::read_dir(instances_dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    for instance in ids {
        let theirs = instance.join("user").join("default");
        let files = files_under(&theirs);
        if files.is_empty() {
            continue;
        }
        instances.push(
            instance
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for f in files {
            let rel = f.strip_prefix(&theirs).unwrap_or(&f).to_path_buf();
            let at = std::fs::metadata(&f)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if rel == Path::new(SETTINGS_FILE) {
                settings.push((at, f));
            } else if newest.get(&rel).is_none_or(|(t, _)| at > *t) {
                newest.insert(rel, (at, f));
            }
        }
    }
    let Some(parent) = user_root.parent().filter(|_| !instances.is_empty()) else {
        return Ok(Imported::default());
    };
    crate::privacy::create_private_dir(parent)?;
    let building = parent.join(format!(
        ".importing-{}",
        user_root.file_name().unwrap_or_default().to_string_lossy()
    ));
    if building.exists() {
        std::fs::remove_dir_all(&building)?;
    }
    crate::privacy::create_private_dir(&building)?;
    let mut count = 0;
    for (rel, (_, from)) in &newest {
        let to = building.join(rel);
        if let Some(folder) = to.parent() {
            crate::privacy::create_private_dir(folder)?;
        }
        std::fs::copy(from, &to)?;
        count += 1;
    }
    if !settings.is_empty() {
        settings.sort();
        let mut merged = Map::new();
        for (_, f) in &settings {
            if let Ok(Value::Object(m)) = std::fs::read(f)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice(&b).map_err(|_| ()))
            {
                merged.extend(m);
            }
        }
        let bytes =
            serde_json::to_vec_pretty(&Value::Object(merged)).map_err(std::io::Error::other)?;
        std::fs::write(building.join(SETTINGS_FILE), bytes)?;
        count += 1;
    }
    // Every file synced before the folder takes its name.
    for f in files_under(&building) {
        std::fs::File::open(&f)?.sync_all()?;
    }
    std::fs::rename(&building, user_root)?;
    crate::store::sync_folder(user_root)?;
    Ok(Imported {
        files: count,
        instances,
    })
}

/// Every file under `dir`, in its subfolders too.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    super::user_files::files_in(dir, true, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, body: &str, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
        let at = SystemTime::now() - std::time::Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn the_instances_files_are_gathered_once_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let instances = dir.path().join("instances");
        let a = instances.join("gpu0/user/default");
        let b = instances.join("gpu1/user/default");
        write(&a.join("workflows/portrait.json"), "old", 100);
        write(&b.join("workflows/portrait.json"), "new", 10);
        write(&b.join("workflows/only-b.json"), "b", 10);
        write(&a.join(SETTINGS_FILE), r#"{"x": 1, "y": 1}"#, 100);
        write(&b.join(SETTINGS_FILE), r#"{"y": 2}"#, 10);
        std::fs::create_dir_all(instances.join("gpu2/user")).unwrap();
        let root = dir.path().join("gateway-user/default");

        let got = import_once(&root, &instances).unwrap();
        assert_eq!(got.files, 3);
        assert_eq!(got.instances, ["gpu0", "gpu1"]);
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("workflows/portrait.json"), "new");
        assert_eq!(read("workflows/only-b.json"), "b");
        let s: Value = serde_json::from_str(&read(SETTINGS_FILE)).unwrap();
        assert_eq!(s, serde_json::json!({"x": 1, "y": 2}));
        assert!(!dir.path().join("gateway-user/.importing-default").exists());

        // Once: what the user changes afterwards is never overwritten.
        std::fs::write(root.join("workflows/portrait.json"), "mine").unwrap();
        assert_eq!(import_once(&root, &instances).unwrap(), Imported::default());
        assert_eq!(read("workflows/portrait.json"), "mine");
    }

    #[test]
    fn nothing_to_gather_makes_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gateway-user/default");
        let got = import_once(&root, &dir.path().join("instances")).unwrap();
        assert_eq!(got, Imported::default());
        // `/users` says "migrated" once the folder exists, as ComfyUI does.
        assert!(!root.exists());
    }
}
