//! A pool in the window: made in its dialog (a bad field is refused in
//! place), its card grows under a burst of jobs and shrinks back when the
//! work is done, with its members inside the card, the decisions and their
//! reasons listed, and the size plotted. The app reads memory from the
//! machine itself (NVML is absent here: the pool runs on the CPU, in RAM).

use crate::support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::standin::{comfyui_folder, standin_binary};
use support::App;

/// (size, target) as the card shows them.
async fn card_size(app: &App) -> (u32, u32) {
    let get = |a: &'static str| async move {
        app.attr("#pool-burst", a)
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("data-size").await, get("data-target").await)
}

async fn wait_size(app: &App, what: &str, ok: impl Fn(u32) -> bool, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        let (size, _) = card_size(app).await;
        if ok(size) {
            return size;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the card says size {size}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pools_card_grows_under_load_and_shrinks_when_idle() {
    let app = App::launch("pools", &[]).await;
    let comfy = comfyui_folder();
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;

    // The dialog: a bad maximum is refused in place, then the pool is made.
    app.click("#empty-add-pool").await;
    app.save_screenshot_as("pool_dialog").await;
    app.fill("#pool-name", "Burst").await;
    app.fill("#pool-comfyui-path", comfy.path().to_str().unwrap())
        .await;
    app.fill("#pool-python-path", standin_binary().to_str().unwrap())
        .await;
    app.fill("#pool-env", "STANDIN_NODE_MS=250").await;
    app.fill("#pool-devices", "cpu").await;
    app.fill("#pool-min", "1").await;
    app.fill("#pool-max", "0").await;
    app.fill("#pool-trigger", "1").await;
    app.fill("#pool-idle", "3").await;
    app.fill("#pool-cooldown", "1").await;
    app.fill("#pool-memory", "64").await;
    app.click("#pool-save").await;
    let refusal = app
        .wait_text("#pool-dialog", "the refusal of max 0", |t| {
            t.contains("The maximum must be 1 to 64 members")
        })
        .await;
    assert!(refusal.contains("it is 0"), "{refusal}");
    app.fill("#pool-max", "3").await;
    app.click("#pool-save").await;
    app.wait_text("#pool-burst .pool-name", "the pool's card", |t| {
        t == "Burst"
    })
    .await;
    // The minimum starts at once: a member inside the card, running.
    app.wait_text(
        "#pool-burst .instance-card[data-id='burst-1']",
        "member #1 running",
        |t| t.contains("Burst #1") && t.contains("running"),
    )
    .await;
    assert_eq!(card_size(&app).await.0, 1);

    // A burst: 14 jobs of about a second each.
    let mut jobs = Vec::new();
    for k in 0..14u32 {
        let mut w = serde_json::Map::new();
        w.insert(
            "1".into(),
            json!({"class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x20_0000 + k}}),
        );
        w.insert(
            "10".into(),
            json!({"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}),
        );
        w.insert(
            "11".into(),
            json!({"class_type": "ImageInvert", "inputs": {"image": ["10", 0]}}),
        );
        w.insert(
            "2".into(),
            json!({"class_type": "SaveImage",
            "inputs": {"images": ["11", 0], "filename_prefix": format!("burst_{k}")}}),
        );
        let job = app
            .invoke(
                "submit_workflow",
                json!({"workflow": serde_json::Value::Object(w).to_string(), "target": {"kind": "auto"}}),
            )
            .await
            .unwrap();
        jobs.push(job["id"].as_str().unwrap().to_string());
    }
    let grown = wait_size(
        &app,
        "the card to grow",
        |s| s >= 3,
        Duration::from_secs(60),
    )
    .await;
    println!("pools e2e: the card grew to {grown} members under the burst");
    app.wait_text("#pool-burst .pool-why-text", "why it grew", |t| {
        t.contains("job(s) wait") || t.contains("member(s) at work")
    })
    .await;
    app.wait_text(
        "#pool-burst .instance-card[data-id='burst-3']",
        "member #3 in the card",
        |t| t.contains("Burst #3"),
    )
    .await;
    app.save_screenshot_as("pool_grown").await;

    // Every job ends; then the idle members stop: back to the minimum.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = app.invoke("list_jobs", json!({})).await.unwrap();
        let done = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| jobs.iter().any(|id| j["id"] == id.as_str()))
            .filter(|j| j["state"] == "succeeded")
            .count();
        if done == jobs.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} jobs succeeded",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_size(
        &app,
        "the card to shrink",
        |s| s == 1,
        Duration::from_secs(60),
    )
    .await;
    let (_, target) = card_size(&app).await;
    assert_eq!(target, 1);
    // The decisions, with their reasons, and the plot of the size.
    app.click("#pool-burst .pool-decisions summary").await;
    let decisions = app
        .wait_text("#pool-burst .pool-decision-list", "a stop decision", |t| {
            t.contains("stopped") && t.contains("idle for")
        })
        .await;
    println!("pools e2e decisions:\n{decisions}");
    assert!(decisions.contains("started"), "{decisions}");
    assert!(decisions.contains("over the trigger"), "{decisions}");
    let points: usize = app
        .attr("#pool-burst .sparkline", "data-points")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(points >= 4, "the plot has {points} points");
    app.save_screenshot_as("pool_shrunk").await;

    // Deleting the pool stops and removes its members.
    app.click("#pool-burst .pool-delete").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = app.invoke("list_instances", json!({})).await.unwrap();
        if list.as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "members left: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.finish().await;
}
