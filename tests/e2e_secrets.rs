//! API keys in the real window: typed in the editor, kept in a real Secret
//! Service (GNOME Keyring on the test's D-Bus session) and nowhere in the
//! app's files; a remote stand-in that demands the key like a reverse proxy
//! is unhealthy ("401: check the API key") without it and healthy with it.
//! Without a keyring, the editor says so and the explicit file fallback works.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::standin::StandIn;
use support::App;

const REF: &str = "instance/instance_001/api-key";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// No file under the app's folders holds `key`; every file the app wrote is
/// 0600 and every folder 0700.
fn assert_private_and_keyless(root: &Path, key: &str, except: Option<&Path>) {
    let mut files = Vec::new();
    files_under(root, &mut files);
    assert!(
        !files.is_empty(),
        "the app wrote nothing under {}",
        root.display()
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let holds = bytes.windows(key.len()).any(|w| w == key.as_bytes());
        if Some(f.as_path()) != except {
            assert!(!holds, "{} holds the API key", f.display());
        }
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
        let dir = f.parent().unwrap();
        if dir != root {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        }
    }
}

async fn add_remote(app: &App, name: &str, port: u16) {
    app.click("#add-instance").await;
    app.wait_text("#instance-editor h2", "the editor", |t| t == "Add instance")
        .await;
    app.fill("#editor-name", name).await;
    app.fill("#editor-host", "127.0.0.1").await;
    app.fill("#editor-port", &port.to_string()).await;
    app.click("#editor-save").await;
    app.wait_text(".instance-grid", "the new card", |t| t.contains(name))
        .await;
}

async fn open_editor(app: &App) {
    app.card_menu("instance_001", "edit").await;
    app.wait_text("#instance-editor h2", "the editor", |t| {
        t == "Edit instance"
    })
    .await;
}

async fn health(app: &App, want: &str) -> serde_json::Value {
    app.wait_instance(
        "instance_001",
        Duration::from_secs(20),
        &format!("instance_001 never became {want}"),
        |i| i["health"]["status"] == want,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_typed_in_the_editor_lives_in_the_keyring_and_makes_the_instance_healthy() {
    let key = "sk-e2e-7f3a9c1b55d0";
    let server = StandIn::builder()
        .env("STANDIN_API_KEY", key)
        .env("STANDIN_API_KEY_AUTH", "header:X-API-Key")
        .start();
    let (keyring, app) = support::app_with_keyring("secrets_keyring").await;

    // Without the key: unhealthy, and the alert says what to do.
    add_remote(&app, "Cloud box", server.port()).await;
    app.invoke("start_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    health(&app, "unhealthy").await;
    let toast = app
        .wait_text(
            ".toast.alert[data-instance='instance_001']",
            "the 401 alert",
            |t| t.contains("401: check the API key"),
        )
        .await;
    println!("secrets: without the key the window said: {toast}");

    // The key, typed in the editor and sent as the proxy wants it.
    open_editor(&app).await;
    app.fill("#editor-api-key", key).await;
    app.choose("#editor-api-key-auth", "header").await;
    app.fill("#editor-api-key-header", "X-API-Key").await;
    app.click("#editor-test").await;
    app.wait_text("#test-connection-result", "a reached server", |t| {
        t.contains("answered")
    })
    .await;
    app.save_screenshot_as("secrets_editor").await;
    app.click("#editor-save").await;
    app.wait_text("body", "the editor closed", |_| true).await;
    let inst = health(&app, "healthy").await;
    assert_eq!(inst["config"]["apiKeyRef"], REF, "{inst}");
    assert_eq!(inst["config"]["apiKeyAuth"], "header:X-API-Key", "{inst}");

    // A secret environment value, marked in the editor: in the keyring too.
    let token = "hf_window_secret_77";
    open_editor(&app).await;
    app.click("#editor-env-add").await;
    let row = "#editor-env .env-row:last-of-type";
    app.fill(&format!("{row} .env-key"), "HF_TOKEN").await;
    app.click(&format!("{row} .env-secret-check")).await;
    app.fill(&format!("{row} .env-value"), token).await;
    assert_eq!(
        app.attr(&format!("{row} .env-value"), "type")
            .await
            .as_deref(),
        Some("password")
    );
    app.click("#editor-save").await;
    app.wait_instance(
        "instance_001",
        Duration::from_secs(10),
        "the secret variable",
        |i| i["config"]["secretEnvVars"]["HF_TOKEN"] == "instance/instance_001/env/HF_TOKEN",
    )
    .await;
    assert_eq!(
        keyring
            .lookup("instance/instance_001/env/HF_TOKEN")
            .as_deref(),
        Some(token)
    );
    assert_private_and_keyless(app.config_dir.path(), token, None);

    // A duplicate does not borrow the original's secrets: it asks for its own.
    app.card_menu("instance_001", "duplicate").await;
    app.wait_text("#instance-editor h2", "the editor", |t| {
        t == "Duplicate instance"
    })
    .await;
    assert_eq!(
        app.attr("#editor-api-key", "placeholder").await.as_deref(),
        Some("none")
    );
    app.click("#editor-save").await;
    app.wait_text(
        "#instance-editor .field-error[data-field='envVars']",
        "the ask",
        |t| t.contains("HF_TOKEN is secret: type its value"),
    )
    .await;
    let copy_row = "#editor-env .env-row:last-of-type";
    app.fill(&format!("{copy_row} .env-value"), "hf_copy_own")
        .await;
    app.click("#editor-save").await;
    app.wait_instance(
        "instance_002",
        Duration::from_secs(10),
        "the copy's own secret",
        |i| {
            i["config"]["secretEnvVars"]["HF_TOKEN"] == "instance/instance_002/env/HF_TOKEN"
                && i["config"].get("apiKeyRef").is_none()
        },
    )
    .await;
    assert_eq!(
        keyring
            .lookup("instance/instance_002/env/HF_TOKEN")
            .as_deref(),
        Some("hf_copy_own")
    );
    assert_eq!(
        keyring
            .lookup("instance/instance_001/env/HF_TOKEN")
            .as_deref(),
        Some(token)
    );

    // In the keyring, as another program reads it; in no file, log, event
    // snapshot or export.
    assert_eq!(keyring.lookup(REF).as_deref(), Some(key));
    let listed = app
        .invoke("list_instances", serde_json::json!({}))
        .await
        .unwrap();
    assert!(!listed.to_string().contains(key));
    let export = app
        .invoke("export_instances", serde_json::json!({}))
        .await
        .unwrap();
    let export = export.as_str().unwrap_or_default().to_string();
    assert!(
        !export.contains(key) && !export.contains("apiKeyRef"),
        "{export}"
    );
    assert_private_and_keyless(app.config_dir.path(), key, None);
    println!("secrets: the key is in the keyring only; every file under the config and data folders is 0600 in 0700 folders");
    app.finish().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_keyring_the_editor_says_so_and_the_file_fallback_is_explicit() {
    let key = "sk-fallback-90210";
    let server = StandIn::builder().env("STANDIN_API_KEY", key).start();
    // The app's own bus: no keyring unlocked on it.
    let app = App::launch(
        "secrets_fallback",
        &[("STORYCORE_HEALTH_INTERVAL_MS", "300")],
    )
    .await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    add_remote(&app, "Headless box", server.port()).await;

    open_editor(&app).await;
    app.fill("#editor-api-key", key).await;
    app.click("#editor-save").await;
    let said = app
        .wait_text("#editor-error", "the keyring error", |t| {
            t.contains("No OS keyring answered")
        })
        .await;
    assert!(said.contains("a file readable only by you"), "{said}");
    let inst = app
        .invoke("get_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    assert!(inst["config"].get("apiKeyRef").is_none(), "{inst}");

    // The user chooses the file: 0600, and the instance works.
    app.click("#editor-api-key-file").await;
    app.fill("#editor-api-key", key).await;
    app.click("#editor-save").await;
    app.wait_instance(
        "instance_001",
        Duration::from_secs(10),
        "the key stored in the file",
        |i| i["config"]["apiKeyRef"] == "file:instance/instance_001/api-key",
    )
    .await;
    app.invoke("start_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    health(&app, "healthy").await;
    let secrets = app.config_dir.path().join("secrets.json");
    assert!(std::fs::read_to_string(&secrets).unwrap().contains(key));
    assert_private_and_keyless(app.config_dir.path(), key, Some(&secrets));
    println!("secrets: without a keyring the editor offered the file; secrets.json is 0600 and the only file with the key");
    app.finish().await;
    drop(server);
}
