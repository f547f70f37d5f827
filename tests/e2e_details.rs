//! An instance's details reach what the backend knows: "Check now" probes at
//! once, and the workflow history (from `instance_{id}_workflows.json`)
//! lists each run with its time, result and duration.

use crate::support;

use serde_json::json;
use support::app_with_one_instance;

#[tokio::test(flavor = "multi_thread")]
async fn check_now_and_the_workflow_history_in_the_details() {
    let (server, app) = app_with_one_instance("details").await;
    let card = ".instance-card[data-id='instance_001']";
    app.wait_text(card, "running", |t| t.contains("running"))
        .await;
    app.click(&format!("{card} .card-name")).await;
    app.wait_text("#details-history-empty", "an empty history", |t| {
        t.contains("Nothing has run here yet")
    })
    .await;
    // Its models: none at first; a checkpoint put in its folder is listed
    // once its models are read again.
    app.wait_text("#details-models-empty", "no model files", |t| {
        t.contains("No model files")
    })
    .await;
    let ckpt = server.folder().join("models/checkpoints");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("sd15.safetensors"), b"weights").unwrap();
    app.click("#details-models-refresh").await;
    app.wait_text("#details-models", "the new checkpoint", |t| {
        t.contains("sd15.safetensors")
    })
    .await;

    app.click("#details-check-now").await;
    let checked = app
        .wait_text("#details-check-result", "a probe's answer", |t| {
            t.starts_with("healthy (")
        })
        .await;
    println!("details: Check now said {checked:?}");

    // Two runs here: one succeeds, one is refused by the instance (an input
    // is missing).
    app.invoke(
        "submit_template",
        json!({"templateId": "builtin-smoke-test", "values": {"width": 64},
               "target": {"kind": "instance", "id": "instance_001"}}),
    )
    .await
    .unwrap();
    let bad = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bad"}}
    })
    .to_string();
    let _ = app
        .invoke(
            "submit_workflow",
            json!({"workflow": bad, "target": {"kind": "instance", "id": "instance_001"}}),
        )
        .await;
    let table = app
        .wait_text("#details-history", "both runs", |t| {
            t.contains("succeeded") && t.contains("failed")
        })
        .await;
    println!("details: workflow history:\n{table}");
    let mut states = Vec::new();
    for row in app
        .client
        .find_all(fantoccini::Locator::Css("#details-history tr.run"))
        .await
        .unwrap()
    {
        states.push(row.attr("data-state").await.unwrap().unwrap_or_default());
    }
    states.sort();
    assert_eq!(states, ["failed", "succeeded"], "{table}");
    // The run that succeeded took measurable time: its duration is shown.
    assert!(table.contains(" s"), "{table}");
    app.finish().await;
    drop(server);
}
