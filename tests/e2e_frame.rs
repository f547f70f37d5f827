//! The app's frame in the real webview: it renders, the backend's command answers,
//! and the backend's events reach the page.

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::App;

#[tokio::test(flavor = "multi_thread")]
async fn frame_renders_toolbar_panel_and_status_line() {
    let app = App::launch("frame_renders", &[]).await;
    app.wait_text(".toolbar .brand", "the app's name", |t| {
        t == "StoryCore Engine"
    })
    .await;
    app.wait_text(
        "#active-instance-switcher",
        "the switcher placeholder",
        |t| t.contains("No active instance"),
    )
    .await;
    app.wait_text("#instances-empty", "the empty state", |t| {
        t.contains("No ComfyUI instances yet")
    })
    .await;
    assert_eq!(app.client.title().await.unwrap(), "StoryCore Engine");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn command_answer_appears_in_status_line_and_about() {
    let app = App::launch("command_answer", &[]).await;
    let dir = app.config_dir.path().display().to_string();
    let version = env!("CARGO_PKG_VERSION");
    app.wait_text("#status-version", "version and config folder", |t| {
        t.contains(version) && t.contains(&dir)
    })
    .await;

    app.click("#about-button").await;
    app.wait_text("#about-config-dir", "the config folder", |t| t == dir)
        .await;
    app.wait_text("#about-log-dir", "the log folder", |t| {
        t == format!("{dir}/logs")
    })
    .await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_event_updates_the_page_live() {
    let app = App::launch("heartbeat", &[]).await;
    let first = app
        .wait_text("#status-heartbeat", "a first beat", |t| t.contains("beat"))
        .await;
    let seq = |s: &str| -> u64 { s.rsplit(' ').next().unwrap().parse().unwrap() };
    let n0 = seq(&first);
    // Two more beats must arrive while the page sits still: only events can do that.
    app.wait_text("#status-heartbeat", "two more beats", |t| {
        t.contains("beat") && seq(t) >= n0 + 2
    })
    .await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_launch_focuses_the_running_window_and_exits() {
    let app = App::launch("second_launch", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;

    let started = Instant::now();
    let out = Command::new(support::APP_BIN)
        .env("DISPLAY", &app.display.name)
        .env("DBUS_SESSION_BUS_ADDRESS", &app.bus.address)
        .env("STORYCORE_CONFIG_DIR", app.config_dir.path())
        .env("STORYCORE_DATA_DIR", app.config_dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "second launch failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    app.wait_text("#status-notice", "the already-running notice", |t| {
        t.contains("already running")
    })
    .await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_go_to_a_daily_file_in_the_log_folder() {
    let app = App::launch("logs", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    let logs = app.config_dir.path().join("logs");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(&logs).ok().and_then(|d| {
            d.flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("storycore-engine.log.")
                    && std::fs::read_to_string(e.path())
                        .map(|s| s.contains("starting"))
                        .unwrap_or(false)
            })
        });
        if found.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no daily log file with the start line in {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}
