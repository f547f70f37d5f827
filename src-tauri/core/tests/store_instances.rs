//! `comfyui_instances.json` on real files in temp folders: round trip of the
//! seed's example, backups, corrupt-file recovery, newer formats.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use storycore_core::store::{InstanceStore, StoreError, BACKUP_FILE_NAME, INSTANCES_FILE_NAME};
use storycore_types::{InstanceConfig, InstancesFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn fleet(names: &[&str]) -> InstancesFile {
    InstancesFile {
        version: "1.0".into(),
        instances: names
            .iter()
            .enumerate()
            .map(|(i, n)| InstanceConfig::new(format!("instance_{i:03}"), *n, 8188 + i as u32))
            .collect(),
        active_instance_id: None,
        last_saved: None,
    }
}

fn names(f: &InstancesFile) -> Vec<&str> {
    f.instances.iter().map(|c| c.name.as_str()).collect()
}

/// Files of the folder whose name starts with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn seed_example_survives_load_and_save_unchanged_but_for_last_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INSTANCES_FILE_NAME);
    fs::copy(fixture("seed_comfyui_instances.json"), &path).unwrap();
    let store = InstanceStore::new(dir.path());

    let mut loaded = store.load().unwrap();
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    assert!(!loaded.read_only);
    assert_eq!(loaded.migration, None);
    assert_eq!(loaded.file.instances[0].max_concurrent(), 2);
    store.save(&mut loaded.file).unwrap();

    let mut before = read_json(&fixture("seed_comfyui_instances.json"));
    let mut after = read_json(&path);
    assert_ne!(
        after["lastSaved"], before["lastSaved"],
        "save must set lastSaved"
    );
    before.as_object_mut().unwrap().remove("lastSaved");
    after.as_object_mut().unwrap().remove("lastSaved");
    assert_eq!(after, before);
    // The replaced file became the backup, byte for byte.
    assert_eq!(
        fs::read(store.backup_path()).unwrap(),
        fs::read(fixture("seed_comfyui_instances.json")).unwrap()
    );
}

#[test]
fn each_save_keeps_the_previous_file_as_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path().join("not-yet-created"));
    store.save(&mut fleet(&["A"])).unwrap();
    assert!(
        !store.backup_path().exists(),
        "nothing to back up on the first save"
    );
    store.save(&mut fleet(&["A", "B"])).unwrap();
    store.save(&mut fleet(&["A", "B", "C"])).unwrap();

    let backup: InstancesFile = serde_json::from_value(read_json(&store.backup_path())).unwrap();
    assert_eq!(names(&backup), ["A", "B"]);
    assert_eq!(names(&store.load().unwrap().file), ["A", "B", "C"]);
}

#[test]
fn no_files_at_all_is_an_empty_fleet_without_migration() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    assert!(loaded.file.instances.is_empty());
    assert_eq!(loaded.migration, None);
    assert!(loaded.notices.is_empty());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "load alone writes nothing"
    );
}

const DAMAGE: &[(&str, &[u8])] = &[
    (
        "truncated",
        br#"{"version": "1.0", "instances": [{"id": "instance_000", "na"#,
    ),
    ("garbage", b"\x00\xff this is not json \x13"),
    ("empty", b""),
    (
        "wrong shape",
        br#"{"version": "1.0", "instances": {"id": 3}}"#,
    ),
];

#[test]
fn corrupt_file_is_kept_aside_and_the_backup_loaded() {
    for (what, bytes) in DAMAGE {
        let dir = tempfile::tempdir().unwrap();
        let store = InstanceStore::new(dir.path());
        store.save(&mut fleet(&["Old"])).unwrap();
        store.save(&mut fleet(&["Old", "New"])).unwrap();
        fs::write(store.path(), bytes).unwrap();

        let loaded = store.load().unwrap();
        assert_eq!(names(&loaded.file), ["Old"], "{what}: the backup is loaded");
        let kept = files_starting(dir.path(), &format!("{INSTANCES_FILE_NAME}.corrupt-"));
        assert_eq!(kept.len(), 1, "{what}: {kept:?}");
        assert_eq!(
            fs::read(dir.path().join(&kept[0])).unwrap(),
            *bytes,
            "{what}: kept as it was"
        );
        let notice = loaded.notices.join(" ");
        assert!(
            notice.contains(&kept[0]) && notice.contains(BACKUP_FILE_NAME),
            "{what}: {notice}"
        );
        // The folder is whole again: the main file is back, from the backup.
        let again = store.load().unwrap();
        assert_eq!(names(&again.file), ["Old"]);
        assert!(again.notices.is_empty(), "{what}: {:?}", again.notices);
    }
}

#[test]
fn corrupt_file_without_backup_starts_empty_and_says_so() {
    for (what, bytes) in DAMAGE {
        let dir = tempfile::tempdir().unwrap();
        let store = InstanceStore::new(dir.path());
        fs::write(store.path(), bytes).unwrap();

        let loaded = store.load().unwrap();
        assert!(loaded.file.instances.is_empty(), "{what}");
        assert_eq!(
            loaded.migration, None,
            "{what}: a corrupt file is not a first start"
        );
        let kept = files_starting(dir.path(), &format!("{INSTANCES_FILE_NAME}.corrupt-"));
        assert_eq!(kept.len(), 1, "{what}");
        assert!(
            loaded.notices.join(" ").contains(&kept[0]),
            "{what}: {:?}",
            loaded.notices
        );
        assert!(!store.path().exists());
    }
}

#[test]
fn corrupt_backup_too_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path());
    fs::write(store.path(), b"{").unwrap();
    fs::write(store.backup_path(), b"also broken").unwrap();
    let loaded = store.load().unwrap();
    assert!(loaded.file.instances.is_empty());
    assert!(
        loaded.notices[0].contains("could not be read either")
            && loaded.notices[0].contains("repair a kept file"),
        "{:?}",
        loaded.notices
    );
    // Both broken files are kept, neither is overwritten by the next save.
    assert_eq!(
        files_starting(dir.path(), &format!("{INSTANCES_FILE_NAME}.bak.corrupt-")).len(),
        1
    );
}

#[test]
fn save_over_a_hand_broken_file_keeps_the_good_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path());
    store.save(&mut fleet(&["Good"])).unwrap();
    store.save(&mut fleet(&["Good", "Better"])).unwrap();
    fs::write(store.path(), b"{ oops").unwrap();
    store.save(&mut fleet(&["Newest"])).unwrap();

    let backup: InstancesFile = serde_json::from_value(read_json(&store.backup_path())).unwrap();
    assert_eq!(
        names(&backup),
        ["Good"],
        "a broken file must not become the backup"
    );
    assert_eq!(
        files_starting(dir.path(), &format!("{INSTANCES_FILE_NAME}.corrupt-")).len(),
        1
    );
}

#[test]
fn missing_main_file_with_a_backup_loads_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path());
    store.save(&mut fleet(&["A"])).unwrap();
    store.save(&mut fleet(&["B"])).unwrap();
    fs::remove_file(store.path()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(names(&loaded.file), ["A"]);
    assert_eq!(loaded.migration, None);
    assert!(
        loaded.notices[0].contains("missing"),
        "{:?}",
        loaded.notices
    );
}

#[test]
fn newer_format_is_read_as_far_as_possible_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path());
    fs::copy(fixture("instances_newer_format.json"), store.path()).unwrap();

    let mut loaded = store.load().unwrap();
    assert!(loaded.read_only);
    assert_eq!(names(&loaded.file), ["Primary GPU Instance"]);
    assert_eq!(
        loaded.file.active_instance_id.as_deref(),
        Some("instance_001")
    );
    let notice = loaded.notices.join(" ");
    assert!(
        notice.contains("2.0") && notice.contains("1 instance(s)"),
        "{notice}"
    );

    let err = store.save(&mut loaded.file).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerFormat { ref found, .. } if found == "2.0"),
        "{err}"
    );
    // Even a file built fresh in memory must not replace it.
    let err = store.save(&mut fleet(&["X"])).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
    assert_eq!(
        fs::read(store.path()).unwrap(),
        fs::read(fixture("instances_newer_format.json")).unwrap()
    );
    assert!(!store.backup_path().exists());
}

#[test]
fn stray_temp_files_of_a_killed_save_are_removed_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstanceStore::new(dir.path());
    store.save(&mut fleet(&["A"])).unwrap();
    let stray = dir
        .path()
        .join(format!("{INSTANCES_FILE_NAME}.partial-999-0"));
    fs::write(&stray, b"{\"version\": \"1.0\", \"inst").unwrap();
    let unrelated = dir.path().join("notes.partial-1");
    fs::write(&unrelated, b"mine").unwrap();

    let loaded = store.load().unwrap();
    assert_eq!(names(&loaded.file), ["A"]);
    assert!(!stray.exists());
    assert!(unrelated.exists(), "files the app did not write stay");
}
