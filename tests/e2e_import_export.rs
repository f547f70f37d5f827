//! Export and import of instances from the window: native file choosers,
//! a preview of what the import adds, renames, replaces or skips, then
//! apply. The round trip keeps every instance and no secret.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::keyring::TestKeyring;
use support::App;

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_round_trips_the_instances_without_secrets() {
    let key = "sk-export-31337";
    let keyring = TestKeyring::start();
    let app = App::launch(
        "import_export",
        &[("DBUS_SESSION_BUS_ADDRESS", &keyring.bus_address)],
    )
    .await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    for (name, port) in [("GPU 0", 8188), ("Cloud box", 8443)] {
        app.invoke(
            "create_instance",
            serde_json::json!({"config": {"id": "", "name": name, "port": port, "host": if port == 8443 { "10.9.8.7" } else { "127.0.0.1" }}}),
        )
        .await
        .unwrap();
    }
    app.invoke(
        "set_api_key",
        serde_json::json!({"id": "instance_002", "key": key, "inFile": false}),
    )
    .await
    .unwrap();
    let before = app
        .invoke("list_instances", serde_json::json!({}))
        .await
        .unwrap();

    // Export through the native save dialog.
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("fleet.json");
    app.click("#export-instances").await;
    app.save_in_file_dialog("Export instances", &file).await;
    let notice = app
        .wait_text(".toast.notice", "the export notice", |t| {
            t.contains("Exported 2 instances")
        })
        .await;
    assert!(notice.contains("API key of 'Cloud box'"), "{notice}");
    println!("import_export: {notice}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(key) && !text.contains("apiKeyRef"), "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export is {mode:o}");
    println!("import_export: the window exported 2 instances, no key, mode 600");

    // Importing over the same fleet: the preview shows the clashes, and
    // "rename" turns them into copies.
    app.click("#import-instances").await;
    app.choose_in_file_dialog("Import instances", &file).await;
    app.wait_text("#import-problem", "the clash", |t| {
        t.contains("nothing was imported")
    })
    .await;
    assert_eq!(
        app.attr("#import-apply", "disabled").await.as_deref(),
        Some("true")
    );
    app.choose("#import-policy", "rename").await;
    app.wait_text("#import-preview", "renamed copies", |t| {
        t.matches("added as").count() == 2
    })
    .await;
    app.save_screenshot_as("import_preview").await;
    app.click("#import-cancel").await;
    let unchanged = app
        .invoke("list_instances", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(unchanged, before, "the preview changed the fleet");

    // Round trip: delete both, import, same instances back, key to set again.
    for id in ["instance_001", "instance_002"] {
        app.invoke("delete_instance", serde_json::json!({ "id": id }))
            .await
            .unwrap();
    }
    assert_eq!(keyring.lookup("instance/instance_002/api-key"), None);
    app.click("#import-instances").await;
    app.choose_in_file_dialog("Import instances", &file).await;
    app.wait_text("#import-preview", "two additions", |t| {
        t.matches("added").count() == 2
    })
    .await;
    app.click("#import-apply").await;
    let notice = app
        .wait_text(".toasts", "the import notice", |t| {
            t.contains("Imported from") && t.contains("2 added")
        })
        .await;
    assert!(notice.contains("set it again"), "{notice}");
    let after = app
        .invoke("list_instances", serde_json::json!({}))
        .await
        .unwrap();
    let configs = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let mut c = i["config"].clone();
                c.as_object_mut().unwrap().remove("apiKeyRef");
                c
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(configs(&after), configs(&before));
    assert!(after
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["config"].get("apiKeyRef").is_none()));
    println!(
        "import_export: deleted, imported back through the preview: the same 2 instances, no key"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.finish().await;
}
