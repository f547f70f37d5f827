//! The app and the desktop around it: the native folder chooser fills the
//! editor's path, "Open log" and "Open output folder" hand the right paths to
//! the desktop's opener, and the details view follows the log live.

use crate::support;

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::standin::{comfyui_folder, local_config};
use support::App;

/// A stand-in for `xdg-open` first on PATH: it writes down what it was asked
/// to open, as the real one would hand it to the file manager.
fn fake_opener(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("opened.txt");
    let script = dir.join("xdg-open");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

async fn wait_opened(log: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "the opener got {lines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_picker_open_log_and_output_and_the_live_log() {
    let bin = tempfile::tempdir().unwrap();
    let opened = fake_opener(bin.path());
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let app = App::launch(
        "desktop",
        &[("PATH", &path), ("STORYCORE_HEALTH_INTERVAL_MS", "300")],
    )
    .await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    let comfy = comfyui_folder();
    let port = support::free_port();
    let mut config = serde_json::to_value(local_config("", comfy.path(), port)).unwrap();
    config["name"] = json!("Local GPU");
    config["gpuDevice"] = json!("cpu");
    app.invoke("create_instance", json!({ "config": config }))
        .await
        .unwrap();
    app.invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();
    let card = ".instance-card[data-id='instance_001']";
    app.wait_text(card, "running", |t| t.contains("running"))
        .await;

    // The details view shows the log, then follows it: a job's lines arrive
    // while the status stays "running" (nothing reloads the tail then).
    app.click(&format!("{card} .card-name")).await;
    app.wait_text("#details-log", "the start-up lines", |t| {
        t.contains("To see the GUI go to")
    })
    .await;
    // Enough jobs for the log to outgrow its box.
    for n in 0..6 {
        app.invoke(
            "submit_template",
            json!({"templateId": "builtin-smoke-test", "values": {"width": 64 + n},
                   "target": {"kind": "instance", "id": "instance_001"}}),
        )
        .await
        .unwrap();
    }
    // At least six: the scheduler may also have calibrated the new instance
    // with one smoke test of its own, before or between these jobs.
    app.wait_text("#details-log", "the jobs' lines, live", |t| {
        t.contains("got prompt") && t.matches("Prompt executed in").count() >= 6
    })
    .await;
    // Following keeps the newest line in sight.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (overflow, gap) = app
            .client
            .execute(
                "const e = document.querySelector('#details-log');\
                 return [e.scrollHeight - e.clientHeight, e.scrollHeight - e.clientHeight - e.scrollTop];",
                vec![],
            )
            .await
            .map(|v| (v[0].as_f64().unwrap(), v[1].as_f64().unwrap()))
            .unwrap();
        assert!(
            overflow > 20.0,
            "the log should outgrow its box: {overflow}"
        );
        if gap <= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log is {gap}px above its end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.save_screenshot_as("details_live_log").await;

    // Open log and Open output folder: the opener gets this instance's files.
    app.click("#details-open-log").await;
    let lines = wait_opened(&opened, 1).await;
    assert!(
        lines[0].ends_with("/instances/instance_001/logs/comfyui.log"),
        "{lines:?}"
    );
    app.click(&format!("{card} .menu-button")).await;
    app.click(&format!("{card} .menu-item[data-action='open-output']"))
        .await;
    let lines = wait_opened(&opened, 2).await;
    assert!(
        lines[1].ends_with("/instances/instance_001/output"),
        "{lines:?}"
    );
    assert!(Path::new(&lines[1]).is_dir());

    // The editor's Browse button opens GTK's folder chooser; a folder chosen
    // there lands in the field. Environment variables are rows of name and
    // value: a repeated name is refused, a removed row is gone, and what is
    // saved is what the rows say.
    let chosen = tempfile::tempdir().unwrap();
    let target = chosen.path().join("ComfyUI-second");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("main.py"), "# ComfyUI stand-in\n").unwrap();
    app.click(&format!("{card} .menu-button")).await;
    app.click(&format!("{card} .menu-item[data-action='edit']"))
        .await;
    app.wait_text("#instance-editor h2", "the editor", |t| {
        t == "Edit instance"
    })
    .await;
    app.click("#editor-comfyui-path-browse").await;
    app.choose_in_file_dialog("Choose the ComfyUI folder", &target)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = app.value("#editor-comfyui-path").await;
        if v == target.display().to_string() {
            break;
        }
        if Instant::now() > deadline {
            // The whole screen: the native dialog is outside the webview.
            app.display
                .screenshot(&support::screenshot_dir().join("desktop_picker_screen.png"));
            panic!("the picked folder did not reach the field: {v:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (key, value) in [("HF_HOME", "/tmp/hf"), ("HF_HOME", "/elsewhere")] {
        app.click("#editor-env-add").await;
        app.type_into(".env-row:last-of-type .env-key", key).await;
        app.type_into(".env-row:last-of-type .env-value", value)
            .await;
    }
    app.click("#editor-save").await;
    app.wait_text(
        ".field-error[data-field='envVars']",
        "the repeated name refused",
        |t| t.contains("HF_HOME is set twice"),
    )
    .await;
    app.save_screenshot_as("editor_env_and_picker").await;
    app.click(".env-row:last-of-type .env-remove").await;
    app.click("#editor-save").await;
    app.wait_instance(
        "instance_001",
        Duration::from_secs(10),
        "not saved as edited",
        |i| {
            let c = &i["config"];
            c["envVars"] == json!({"HF_HOME": "/tmp/hf"})
                && c["comfyuiPath"] == json!(target.display().to_string())
        },
    )
    .await;
    app.finish().await;
}
