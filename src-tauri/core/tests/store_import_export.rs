//! Export without secrets, and import all or nothing under each clash policy.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use storycore_core::store::{
    export, import, ClashPolicy, ImportAction, ImportError, REDACTED_VALUE,
};
use storycore_types::{InstanceConfig, InstancesFile};

fn config(id: &str, name: &str, port: u32) -> InstanceConfig {
    InstanceConfig::new(id, name, port)
}

fn file(instances: Vec<InstanceConfig>, active: Option<&str>) -> InstancesFile {
    InstancesFile {
        version: "1.0".into(),
        instances,
        active_instance_id: active.map(String::from),
        last_saved: None,
    }
}

fn data(instances: Value) -> String {
    json!({"version": "1.0", "instances": instances}).to_string()
}

fn rejected(
    r: Result<storycore_core::store::ImportOutcome, ImportError>,
) -> Vec<storycore_core::store::ImportEntry> {
    match r {
        Err(ImportError::Rejected { entries }) => entries,
        other => panic!("expected a rejected import, got {other:?}"),
    }
}

fn current() -> InstancesFile {
    file(
        vec![config("gpu0", "GPU 0", 8188), config("gpu1", "GPU 1", 8189)],
        Some("gpu1"),
    )
}

#[test]
fn export_drops_key_refs_and_redacts_secret_values_then_imports_back() {
    let mut c = config("remote", "Cloud box", 8188);
    c.host = Some("gpu.example.com".into());
    c.api_key_ref = Some("storycore/remote".into());
    c.env_vars = Some(BTreeMap::from([
        ("HF_TOKEN".to_string(), "hf_secret".to_string()),
        ("my_api_key".to_string(), "k".to_string()),
        ("DB_PASSWORD".to_string(), "p".to_string()),
        ("CUDA_VISIBLE_DEVICES".to_string(), "0".to_string()),
        // Names that slipped through before: AUTH and CREDENTIAL.
        ("PROXY_AUTH".to_string(), "user:pw".to_string()),
        (
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            "/home/me/gcp.json".to_string(),
        ),
    ]));
    let text = export(&file(vec![c], Some("remote")));
    assert!(
        !text.contains("hf_secret") && !text.contains("storycore/remote"),
        "{text}"
    );
    assert!(
        !text.contains("user:pw") && !text.contains("gcp.json"),
        "{text}"
    );

    let v: Value = serde_json::from_str(&text).unwrap();
    let env = &v["instances"][0]["envVars"];
    assert_eq!(env["HF_TOKEN"], REDACTED_VALUE);
    assert_eq!(env["my_api_key"], REDACTED_VALUE);
    assert_eq!(env["DB_PASSWORD"], REDACTED_VALUE);
    assert_eq!(env["CUDA_VISIBLE_DEVICES"], "0");
    assert!(v["instances"][0].get("apiKeyRef").is_none());
    assert_eq!(
        v["exportNotes"].as_array().unwrap().len(),
        6,
        "{}",
        v["exportNotes"]
    );
    // Still the instances file's format.
    let parsed: InstancesFile = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.active_instance_id.as_deref(), Some("remote"));

    let outcome = import(&text, &file(vec![], None), ClashPolicy::Fail).unwrap();
    assert_eq!(outcome.entries[0].action, ImportAction::Added);
    assert_eq!(
        outcome.entries[0].notes.len(),
        5,
        "{:?}",
        outcome.entries[0].notes
    );
    assert_eq!(outcome.file.active_instance_id.as_deref(), Some("remote"));
}

#[test]
fn seed_example_exports_in_its_own_format() {
    let seed: InstancesFile = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/seed_comfyui_instances.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let back: InstancesFile = serde_json::from_str(&export(&seed)).unwrap();
    assert_eq!(back, seed, "nothing secret in the seed, so nothing changes");
}

#[test]
fn one_bad_instance_means_nothing_is_imported_and_the_report_names_it() {
    let cur = current();
    let text = data(json!([
        {"id": "new_a", "name": "New A", "port": 8200},
        {"id": "new_b", "name": "New B", "port": 70000, "envVars": {"LD_PRELOAD": "/tmp/x.so"}},
        {"id": "new_c", "name": "New C", "port": "8202"},
    ]));
    let entries = rejected(import(&text, &cur, ClashPolicy::Rename));
    assert_eq!(entries.len(), 3);
    assert!(entries[0].errors.is_empty());
    assert_eq!(
        entries[0].action,
        ImportAction::Added,
        "what would have happened"
    );
    assert_eq!(entries[1].action, ImportAction::Rejected);
    let fields: Vec<&str> = entries[1].errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["port", "envVars.LD_PRELOAD"]);
    assert_eq!(
        (entries[2].id.as_str(), entries[2].action.clone()),
        ("new_c", ImportAction::Rejected)
    );
    assert_eq!(entries[2].errors[0].field, "instance");
    // The summary names the culprits.
    let err = import(&text, &cur, ClashPolicy::Rename)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("New B") && err.contains("New C") && !err.contains("New A"),
        "{err}"
    );
}

#[test]
fn duplicates_inside_the_data_are_refused_whatever_the_policy() {
    let text = data(json!([
        {"id": "x", "name": "Same", "port": 8300},
        {"id": "y", "name": "same ", "port": 8301},
        {"id": "x", "name": "Other", "port": 8302},
    ]));
    for policy in [
        ClashPolicy::Fail,
        ClashPolicy::Skip,
        ClashPolicy::Rename,
        ClashPolicy::Replace,
    ] {
        let entries = rejected(import(&text, &file(vec![], None), policy));
        assert_eq!(entries[1].errors[0].field, "name", "{policy:?}");
        assert_eq!(entries[2].errors[0].field, "id", "{policy:?}");
    }
}

/// Clashes on id (`gpu0`) and on name (`gpu 1`, case and spaces aside).
fn clashing_data() -> String {
    data(json!([
        {"id": "gpu0", "name": "Imported GPU 0", "port": 8190},
        {"id": "other", "name": " gpu 1", "port": 8191},
        {"id": "fresh", "name": "Fresh", "port": 8192},
    ]))
}

#[test]
fn fail_policy_lists_every_clash_and_changes_nothing() {
    let entries = rejected(import(&clashing_data(), &current(), ClashPolicy::Fail));
    assert_eq!(entries[0].errors[0].field, "id");
    assert!(
        entries[0].errors[0].message.contains("'GPU 0' ('gpu0')"),
        "{:?}",
        entries[0].errors
    );
    assert_eq!(entries[1].errors[0].field, "name");
    assert!(entries[2].errors.is_empty());
    assert_eq!(ClashPolicy::default(), ClashPolicy::Fail);
}

#[test]
fn skip_policy_keeps_the_existing_instances() {
    let out = import(&clashing_data(), &current(), ClashPolicy::Skip).unwrap();
    assert!(matches!(
        out.entries[0].action,
        ImportAction::Skipped { .. }
    ));
    assert!(matches!(
        out.entries[1].action,
        ImportAction::Skipped { .. }
    ));
    assert_eq!(out.entries[2].action, ImportAction::Added);
    let ids: Vec<&str> = out.file.instances.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["gpu0", "gpu1", "fresh"]);
    assert_eq!(out.file.instances[0].name, "GPU 0");
    assert_eq!(out.file.active_instance_id.as_deref(), Some("gpu1"));
}

#[test]
fn rename_policy_imports_copies_under_free_ids_names_and_ports() {
    let text = data(json!([
        {"id": "gpu0", "name": "GPU 0", "port": 8188},
        {"id": "other", "name": "GPU 1", "port": 9000},
    ]));
    let out = import(&text, &current(), ClashPolicy::Rename).unwrap();
    assert_eq!(
        out.entries[0].action,
        ImportAction::Renamed {
            new_id: "gpu0_2".into(),
            new_name: "GPU 0 (2)".into(),
            // 8188 and 8189 are taken on this machine.
            new_port: Some(8190),
        }
    );
    assert_eq!(
        out.entries[1].action,
        ImportAction::Renamed {
            new_id: "other".into(),
            new_name: "GPU 1 (2)".into(),
            new_port: None,
        }
    );
    let names: Vec<&str> = out.file.instances.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["GPU 0", "GPU 1", "GPU 0 (2)", "GPU 1 (2)"]);
    assert_eq!(out.file.instances[2].port, 8190);
}

#[test]
fn replace_policy_puts_the_imported_instance_in_place_of_the_clashing_ones() {
    let text = data(json!([
        // Clashes with gpu0 by id and with gpu1 by name: both go.
        {"id": "gpu0", "name": "GPU 1", "port": 8188, "description": "imported"},
        {"id": "fresh", "name": "Fresh", "port": 8189},
    ]));
    let out = import(&text, &current(), ClashPolicy::Replace).unwrap();
    assert_eq!(
        out.entries[0].action,
        ImportAction::Replaced {
            replaced_ids: vec!["gpu0".into(), "gpu1".into()]
        }
    );
    // 8189 was gpu1's port; gpu1 is gone, so it is free for "fresh".
    assert_eq!(out.entries[1].action, ImportAction::Added);
    let ids: Vec<&str> = out.file.instances.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["gpu0", "fresh"]);
    assert_eq!(
        out.file.instances[0].description.as_deref(),
        Some("imported")
    );
    assert_eq!(
        out.file.active_instance_id, None,
        "the active gpu1 was replaced away"
    );
}

#[test]
fn port_taken_on_the_same_machine_under_another_name_is_an_error() {
    // 127.0.0.1 and localhost are one machine.
    let text = data(json!([{"id": "n", "name": "N", "port": 8188, "host": "127.0.0.1"}]));
    let entries = rejected(import(&text, &current(), ClashPolicy::Skip));
    assert_eq!(entries[0].errors[0].field, "port");
    // On another machine the same port is fine.
    let text = data(json!([{"id": "n", "name": "N", "port": 8188, "host": "10.0.0.7"}]));
    assert!(import(&text, &current(), ClashPolicy::Skip).is_ok());
}

#[test]
fn not_an_instances_file_is_refused_before_anything_else() {
    let cur = current();
    assert!(matches!(
        import("{", &cur, ClashPolicy::Fail),
        Err(ImportError::NotJson(_))
    ));
    assert!(matches!(
        import(r#"{"instances": []}"#, &cur, ClashPolicy::Fail),
        Err(ImportError::NotInstancesFile { .. })
    ));
    assert!(matches!(
        import(r#"{"version": "1.0"}"#, &cur, ClashPolicy::Fail),
        Err(ImportError::NotInstancesFile { .. })
    ));
    let newer = import(
        r#"{"version": "3.1", "instances": []}"#,
        &cur,
        ClashPolicy::Fail,
    );
    assert!(matches!(newer, Err(ImportError::NewerFormat { ref found }) if found == "3.1"));
}
