//! In the window: a local ComfyUI that takes seconds to start is shown as
//! starting, for how long, with the last line it wrote, and raises no alarm;
//! what starting found (a config recovered from its backup) is shown once.

use crate::support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::standin::{comfyui_folder, env_vars, free_port, local_config};
use support::App;

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_local_start_shows_its_progress_and_raises_no_alarm() {
    let comfy = comfyui_folder();
    let app = App::launch("start_phase", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    let mut config = local_config("", comfy.path(), free_port());
    config.name = "Slow start".into();
    config.gpu_device = Some("cpu".into());
    config.env_vars = env_vars(&[("STANDIN_STARTUP_DELAY_MS", "6000")]);
    app.invoke("create_instance", json!({ "config": config }))
        .await
        .unwrap();
    app.invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();
    let card = ".instance-card[data-id='instance_001']";
    // The line is cut with an ellipsis on screen: its whole text is its title.
    let deadline = Instant::now() + Duration::from_secs(20);
    let progress = loop {
        let t = app
            .attr(&format!("{card} .start-progress"), "title")
            .await
            .unwrap_or_default();
        if t.contains("Loading custom nodes") {
            break t;
        }
        assert!(Instant::now() < deadline, "no start progress; last: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = app
        .wait_text(&format!("{card} .starting-for"), "how long", |t| {
            t.starts_with("starting for")
        })
        .await;
    let later = app
        .wait_text(&format!("{card} .starting-for"), "the clock to move", |t| {
            t.starts_with("starting for") && t != first
        })
        .await;
    println!("start_phase: '{first}' then '{later}', progress '{progress}'");
    app.save_screenshot_as("start_phase_starting").await;

    // Running once it answers; no alert was raised on the way.
    app.wait_instance(
        "instance_001",
        Duration::from_secs(30),
        "never running",
        |i| i["status"] == "running",
    )
    .await;
    let alerts = app
        .client
        .find_all(fantoccini::Locator::Css(".toast.alert"))
        .await
        .unwrap();
    let mut texts = Vec::new();
    for a in alerts {
        texts.push(a.text().await.unwrap_or_default());
    }
    assert!(texts.is_empty(), "a normal start raised: {texts:?}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_starting_found_is_shown_once() {
    let app = App::launch_prepared("startup_notices", &[], |dir| {
        std::fs::write(dir.join("comfyui_instances.json"), "{ not json").unwrap();
        std::fs::write(
            dir.join("comfyui_instances.json.bak"),
            json!({"version": "1.0", "instances": [{"id": "kept", "name": "Kept", "port": 8190}]})
                .to_string(),
        )
        .unwrap();
    })
    .await;
    let notice = app
        .wait_text(".toast.notice", "the recovery notice", |t| {
            t.contains("could not be read") && t.contains("backup")
        })
        .await;
    println!("startup_notices: {notice}");
    app.wait_text(
        ".instance-card[data-id='kept'] .card-name",
        "the recovered instance",
        |t| t == "Kept",
    )
    .await;
    app.save_screenshot_as("startup_notices").await;
    // Shown once: a reloaded window does not show it again.
    app.client.refresh().await.unwrap();
    app.wait_text(
        ".instance-card[data-id='kept'] .card-name",
        "the panel again",
        |t| t == "Kept",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = app
        .client
        .find_all(fantoccini::Locator::Css(".toast.notice"))
        .await
        .unwrap();
    assert!(again.is_empty(), "the notice was shown a second time");
    app.finish().await;
}
