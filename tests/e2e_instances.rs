//! The instance manager's Tauri commands, called from inside the real webview
//! exactly as the UI calls them, against a real stand-in ComfyUI.

use crate::support;

use serde_json::json;
use std::time::Duration;
use support::standin::StandIn;
use support::App;

#[tokio::test(flavor = "multi_thread")]
async fn commands_create_start_pause_and_refuse_from_the_webview() {
    let server = StandIn::start();
    let app = App::launch("instances_commands", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;

    let created = app
        .invoke(
            "create_instance",
            json!({"config": {"id": "", "name": "GPU 0", "port": server.port(), "host": "127.0.0.1"}}),
        )
        .await
        .expect("create_instance");
    assert_eq!(created["id"], "instance_001");
    assert_eq!(created["status"], "stopped");

    // A bad config answers every field problem at once, with a closed code.
    let err = app
        .invoke(
            "create_instance",
            json!({"config": {"id": "", "name": "", "port": 0, "host": "http://x/y"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], "invalid_input");
    let fields: Vec<&str> = err["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["name", "port", "host"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }

    let err = app
        .invoke("pause_instance", json!({"id": "instance_001"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], "invalid_transition");

    app.invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .expect("start_instance");
    let i = app
        .wait_instance(
            "instance_001",
            Duration::from_secs(15),
            "never running",
            |i| i["status"] == "running",
        )
        .await;
    assert_eq!(i["health"]["consecutiveFailures"], 0);
    let healthy = app.invoke("get_healthy_instance", json!({})).await.unwrap();
    assert_eq!(healthy["id"], "instance_001");
    app.invoke("pause_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();
    let healthy = app.invoke("get_healthy_instance", json!({})).await.unwrap();
    assert!(healthy.is_null(), "paused must take no work: {healthy}");

    // It was saved where the app keeps its files, in the seed's format.
    let file = app.config_dir.path().join("comfyui_instances.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["version"], "1.0");
    assert_eq!(saved["instances"][0]["name"], "GPU 0");
    app.finish().await;
}
