//! The instance panel in the real webview against real stand-in servers: add
//! through the editor (bad input first), start, watch health, switch the active
//! instance with Ctrl+2, search, see a killed server fail, delete.

use crate::support;

use fantoccini::Locator;
use std::time::Duration;
use support::standin::StandIn;
use support::App;

async fn card_text(app: &App, id: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    app.wait_text(&format!(".instance-card[data-id='{id}']"), what, pred)
        .await
}

async fn add_instance(app: &App, name: &str, port: u16) {
    app.click("#add-instance").await;
    app.wait_text("#instance-editor h2", "the editor", |t| t == "Add instance")
        .await;
    app.fill("#editor-name", name).await;
    app.fill("#editor-host", "127.0.0.1").await;
    app.fill("#editor-port", &port.to_string()).await;
    app.click("#editor-test").await;
    app.wait_text("#test-connection-result", "a reached server", |t| {
        t.contains("answered") && t.contains("ComfyUI")
    })
    .await;
    app.click("#editor-save").await;
    app.wait_text(".instance-grid", "the new card", |t| t.contains(name))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_start_switch_search_fail_and_delete() {
    let mut first = StandIn::start();
    let second = StandIn::start();
    let app = App::launch("panel", &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    app.wait_text("#instances-empty", "the first-run empty state", |t| {
        t.contains("Add a local ComfyUI folder")
    })
    .await;

    // Bad input: every problem shows next to its field and nothing is saved.
    app.click("#empty-add").await;
    app.fill("#editor-name", "").await;
    app.fill("#editor-host", "http://bad host/").await;
    app.fill("#editor-port", "0").await;
    app.click("#editor-save").await;
    for field in ["name", "host", "port"] {
        app.wait_text(
            &format!(".field-error[data-field='{field}']"),
            "a field error",
            |t| !t.trim().is_empty(),
        )
        .await;
    }
    app.save_screenshot_as("editor_with_errors").await;
    assert!(
        !app.config_dir
            .path()
            .join("comfyui_instances.json")
            .exists(),
        "a refused config must not be saved"
    );
    app.click("#editor-cancel").await;

    add_instance(&app, "GPU 0", first.port()).await;
    add_instance(&app, "GPU 1", second.port()).await;

    // Start both from their cards and watch them become running and healthy.
    for id in ["instance_001", "instance_002"] {
        app.click(&format!(
            ".instance-card[data-id='{id}'] [data-action='start']"
        ))
        .await;
        card_text(&app, id, "running and healthy", |t| {
            t.contains("running") && t.contains("healthy") && !t.contains("unhealthy")
        })
        .await;
    }

    // Ctrl+2 makes the second instance active: toolbar and saved file agree.
    app.press_ctrl('2').await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = app
            .client
            .find(Locator::Css("#active-instance-select"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        if v.as_deref() == Some("instance_002") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Ctrl+2 did not switch: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved =
        std::fs::read_to_string(app.config_dir.path().join("comfyui_instances.json")).unwrap();
    assert!(
        saved.contains("\"activeInstanceId\": \"instance_002\""),
        "{saved}"
    );

    // Select a card to see its details.
    app.click(".instance-card[data-id='instance_001'] .card-name")
        .await;
    app.wait_text("#details-name", "the details view", |t| t == "GPU 0")
        .await;
    let points = app.attr("#response-sparkline", "data-points").await;
    assert!(points.is_some());
    app.save_screenshot_as("details").await;

    // Search narrows the grid.
    app.type_into("#instance-search", "GPU 1").await;
    app.wait_text(".instance-grid", "only GPU 1", |t| {
        t.contains("GPU 1") && !t.contains("GPU 0")
    })
    .await;
    app.fill("#instance-search", "no such box").await;
    app.wait_text("#no-match", "the no-match line", |t| {
        t.contains("no such box")
    })
    .await;
    app.fill("#instance-search", "").await;

    // Filters: nothing is stopped; both are running and remote.
    let status = app
        .client
        .find(Locator::Css("#filter-status"))
        .await
        .unwrap();
    status.clone().select_by_value("stopped").await.unwrap();
    app.wait_text("#no-match", "no stopped instance", |t| {
        t.contains("No instance")
    })
    .await;
    status.clone().select_by_value("running").await.unwrap();
    app.wait_text(".instance-grid", "both running", |t| {
        t.contains("GPU 0") && t.contains("GPU 1")
    })
    .await;
    let location = app
        .client
        .find(Locator::Css("#filter-location"))
        .await
        .unwrap();
    location.clone().select_by_value("local").await.unwrap();
    app.wait_text("#no-match", "no local instance", |t| {
        t.contains("No instance")
    })
    .await;
    location.select_by_value("").await.unwrap();
    status.select_by_value("").await.unwrap();

    // A killed server: its card shows the failure.
    first.kill();
    card_text(&app, "instance_001", "the failure", |t| {
        t.contains("unhealthy") || t.contains("degraded")
    })
    .await;
    app.save_screenshot_as("panel").await;

    // Delete asks, says what goes, then removes the card.
    app.click(".instance-card[data-id='instance_002'] .menu-button")
        .await;
    app.click(".instance-card[data-id='instance_002'] [data-action='delete']")
        .await;
    app.wait_text("#confirm-delete", "the confirmation", |t| {
        t.contains("Delete") && t.contains("GPU 1") && t.contains("health history")
    })
    .await;
    app.click("#confirm-delete-ok").await;
    app.wait_text(".instance-grid", "GPU 1 gone", |t| !t.contains("GPU 1"))
        .await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_instance_starts_from_its_card_and_shows_its_log() {
    let comfy = support::standin::comfyui_folder();
    let app = App::launch("local_instance", &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    let port = support::standin::free_port();
    let python = support::standin::standin_binary().canonicalize().unwrap();
    let folder = comfy.path().canonicalize().unwrap();
    app.invoke(
        "create_instance",
        serde_json::json!({"config": {"id": "", "name": "Local", "port": port,
            "comfyuiPath": folder, "pythonPath": python, "gpuDevice": "cpu"}}),
    )
    .await
    .unwrap();
    app.click(".instance-card[data-id='instance_001'] [data-action='start']")
        .await;
    card_text(&app, "instance_001", "running and healthy", |t| {
        t.contains("running") && t.contains("healthy") && !t.contains("unhealthy")
    })
    .await;
    app.click(".instance-card[data-id='instance_001'] .card-name")
        .await;
    app.wait_text("#details-log", "ComfyUI's own output", |t| {
        t.contains("To see the GUI go to")
    })
    .await;
    app.save_screenshot_as("details_local").await;

    // Export writes the whole log next to the app's own logs.
    app.click("#details-export-log").await;
    let saved = app
        .wait_text("#details-exported", "the exported file", |t| {
            t.starts_with("Saved to ")
        })
        .await;
    let path = saved.trim_start_matches("Saved to ").to_string();
    assert!(
        path.starts_with(&app.config_dir.path().join("logs").display().to_string()),
        "{path}"
    );
    let exported = std::fs::read_to_string(&path).unwrap();
    assert!(exported.contains("To see the GUI go to"), "{exported}");

    // Reset to defaults clears the optional settings, keeps address and folders.
    app.click("#details-reset").await;
    let file = app.config_dir.path().join("comfyui_instances.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let inst = &saved["instances"][0];
        if inst.get("gpuDevice").is_none() {
            assert_eq!(inst["port"], port);
            assert!(inst["comfyuiPath"].is_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reset did not clear gpuDevice: {inst}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.click(".instance-card[data-id='instance_001'] [data-action='stop']")
        .await;
    card_text(&app, "instance_001", "stopped", |t| t.contains("stopped")).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_comfyui_already_on_the_port_is_offered_for_attaching() {
    let running = StandIn::start();
    let comfy = support::standin::comfyui_folder();
    let app = App::launch("attach_offer", &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    let python = support::standin::standin_binary().canonicalize().unwrap();
    let folder = comfy.path().canonicalize().unwrap();
    app.invoke(
        "create_instance",
        serde_json::json!({"config": {"id": "", "name": "Local", "port": running.port(),
            "comfyuiPath": folder, "pythonPath": python}}),
    )
    .await
    .unwrap();
    app.click(".instance-card[data-id='instance_001'] [data-action='start']")
        .await;
    app.wait_text("#attach-offer", "the offer", |t| {
        t.contains("already answers") && t.contains("attach")
    })
    .await;
    app.save_screenshot_as("attach_offer").await;
    app.click("#attach-instead").await;
    card_text(&app, "instance_001", "attached and running", |t| {
        t.contains("running") && t.contains("healthy") && t.contains("remote")
    })
    .await;
    app.finish().await;
}
