//! First start after the single-instance app: every past `comfyui.json` shape,
//! migrated once and only once; bad old files left untouched.

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use storycore_core::store::{InstanceStore, LEGACY_FILE_NAME, MIGRATED_FILE_NAME};
use storycore_types::{InstanceConfig, MigrationResult, Scheme};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(name)
}

/// A config folder holding only the given old file.
fn folder_with_legacy(fixture_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(fixture(fixture_name), dir.path().join(LEGACY_FILE_NAME)).unwrap();
    dir
}

fn migrated_ok() -> MigrationResult {
    MigrationResult {
        migrated: true,
        from_version: Some("single-instance".into()),
        to_version: "1.0".into(),
        instances_created: 1,
        errors: vec![],
    }
}

#[test]
fn every_past_shape_of_comfyui_json_becomes_the_default_instance() {
    let expected = |port: u32, edit: &dyn Fn(&mut InstanceConfig)| {
        let mut c = InstanceConfig::new("instance_001", "Default ComfyUI", port);
        edit(&mut c);
        c
    };
    let cases = [
        (
            "comfyui_full.json",
            expected(8190, &|c| {
                c.host = Some("192.168.1.50".into());
                c.timeout_ms = Some(600_000);
                c.enable_queue_monitoring = Some(false);
            }),
        ),
        ("comfyui_empty_object.json", expected(8188, &|_| {})),
        ("comfyui_endpoint_only.json", expected(8188, &|_| {})),
        (
            "comfyui_https_no_port.json",
            expected(443, &|c| {
                c.host = Some("comfy.example.com".into());
                c.scheme = Some(Scheme::Https);
            }),
        ),
    ];
    for (name, want) in cases {
        let dir = folder_with_legacy(name);
        let store = InstanceStore::new(dir.path());
        let loaded = store.load().unwrap();

        assert_eq!(loaded.migration, Some(migrated_ok()), "{name}");
        assert_eq!(loaded.file.instances, vec![want.clone()], "{name}");
        assert_eq!(
            loaded.file.active_instance_id.as_deref(),
            Some("instance_001"),
            "{name}"
        );
        assert!(
            loaded.notices[0].contains(MIGRATED_FILE_NAME),
            "{name}: {:?}",
            loaded.notices
        );
        // Saved, and the old file renamed with its content intact.
        assert!(!dir.path().join(LEGACY_FILE_NAME).exists(), "{name}");
        assert_eq!(
            fs::read(dir.path().join(MIGRATED_FILE_NAME)).unwrap(),
            fs::read(fixture(name)).unwrap()
        );
        let again = store.load().unwrap();
        assert_eq!(again.file.instances, vec![want], "{name}: saved to disk");
        assert_eq!(again.migration, None, "{name}: migrated only once");
        assert!(again.file.last_saved.is_some());
    }
}

#[test]
fn an_old_file_that_comes_back_is_not_migrated_twice() {
    let dir = folder_with_legacy("comfyui_full.json");
    let store = InstanceStore::new(dir.path());
    let first = store.load().unwrap();
    assert!(first.migration.unwrap().migrated);

    // The user renames the instance, then an old backup tool restores comfyui.json.
    let mut file = first.file;
    file.instances[0].name = "Renamed by the user".into();
    store.save(&mut file).unwrap();
    fs::write(
        dir.path().join(LEGACY_FILE_NAME),
        json!({"endpoint": "http://localhost:9999"}).to_string(),
    )
    .unwrap();

    let second = store.load().unwrap();
    assert_eq!(second.migration, None);
    assert_eq!(second.file.instances.len(), 1);
    assert_eq!(second.file.instances[0].name, "Renamed by the user");
    assert!(
        second
            .notices
            .iter()
            .any(|n| n.contains(LEGACY_FILE_NAME) && n.contains("not imported again")),
        "{:?}",
        second.notices
    );
    assert!(
        dir.path().join(LEGACY_FILE_NAME).exists(),
        "left for the user to delete"
    );
}

#[test]
fn a_bad_old_file_is_left_untouched_and_the_fleet_starts_empty() {
    for name in ["comfyui_bad_endpoint.json", "comfyui_truncated.json"] {
        let dir = folder_with_legacy(name);
        let store = InstanceStore::new(dir.path());
        let loaded = store.load().unwrap();

        let result = loaded.migration.expect(name);
        assert!(!result.migrated, "{name}");
        assert_eq!(result.instances_created, 0);
        assert_eq!(result.errors.len(), 1, "{name}");
        assert!(
            result.errors[0].contains(LEGACY_FILE_NAME),
            "{name}: {}",
            result.errors[0]
        );
        assert!(loaded.file.instances.is_empty(), "{name}");
        assert_eq!(
            fs::read(dir.path().join(LEGACY_FILE_NAME)).unwrap(),
            fs::read(fixture(name)).unwrap(),
            "{name}: untouched"
        );
        assert!(!store.path().exists(), "{name}: nothing saved");
        assert!(!dir.path().join(MIGRATED_FILE_NAME).exists());
    }
}

#[test]
fn bad_values_in_the_old_file_are_named() {
    let cases = [
        (json!({"endpoint": "http://localhost:8188/comfy"}), "path"),
        (json!({"endpoint": "ftp://localhost:8188"}), "ftp"),
        (json!({"endpoint": 8188}), "not text"),
        (json!({"timeoutMs": "soon"}), "timeoutMs"),
        (json!({"timeoutMs": 5}), "timeoutMs"),
        (
            json!({"enableQueueMonitoring": "yes"}),
            "enableQueueMonitoring",
        ),
        (json!(["http://localhost:8188"]), "object"),
    ];
    for (content, expected_word) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LEGACY_FILE_NAME), content.to_string()).unwrap();
        let loaded = InstanceStore::new(dir.path()).load().unwrap();
        let result = loaded.migration.unwrap();
        assert!(!result.migrated);
        assert!(
            result.errors[0].contains(expected_word),
            "{content}: {}",
            result.errors[0]
        );
    }
}
