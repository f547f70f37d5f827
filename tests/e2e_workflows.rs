//! The Workflows view: run the built-in smoke-test template on the fleet and
//! see the job succeed with its output; a bad workflow is refused with a reason.

use crate::support;

use serde_json::json;
use support::app_with_one_instance;

#[tokio::test(flavor = "multi_thread")]
async fn run_the_smoke_test_template_and_refuse_a_bad_workflow() {
    let (_server, app) = app_with_one_instance("workflows").await;
    app.wait_text(".instance-card[data-id='instance_001']", "running", |t| {
        t.contains("running") && t.contains("healthy")
    })
    .await;

    app.click("#tab-workflows").await;
    app.wait_text("#template-select", "the built-in template", |t| {
        !t.trim().is_empty()
    })
    .await;
    app.click("#run-template").await;
    app.wait_text("#job-list", "a succeeded job with its output", |t| {
        t.contains("succeeded") && t.contains("GPU 0") && t.contains(".png")
    })
    .await;

    // The output image, fetched from the job's folder, as a thumbnail that opens full size.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let src = app.attr(".job-row img.thumbnail", "src").await;
        if src
            .as_deref()
            .is_some_and(|s| s.starts_with("data:image/png;base64,"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no thumbnail: {src:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.click(".job-row img.thumbnail").await;
    assert!(app.attr(".full-image", "src").await.is_some());
    app.save_screenshot_as("workflows_output").await;
    app.click(".modal-backdrop").await;

    app.click("#tab-instances").await;
    app.click(".instance-card[data-id='instance_001'] .card-name")
        .await;
    app.wait_text("#details-jobs", "the finished job", |t| {
        t == "0 running, 1 finished"
    })
    .await;
    app.click("#tab-workflows").await;

    app.type_into("#workflow-json", "{not json").await;
    app.click("#run-workflow").await;
    app.wait_text("#action-error", "the refusal", |t| {
        t.contains("not JSON") && t.contains("Save (API)")
    })
    .await;
    app.finish().await;
}

/// Import a workflow file (chosen in GTK's file chooser), mark two inputs as
/// parameters, save it as a template, run it with values, delete it. A file
/// in ComfyUI's editor format is refused with the reason and nothing saved.
#[tokio::test(flavor = "multi_thread")]
async fn import_a_workflow_mark_parameters_run_and_delete_the_template() {
    let (_server, app) = app_with_one_instance("workflows_import").await;

    let files = tempfile::tempdir().unwrap();
    let editor_format = files.path().join("editor.json");
    std::fs::write(
        &editor_format,
        r#"{"nodes": [], "links": [], "version": 0.4}"#,
    )
    .unwrap();
    let good = files.path().join("tiny_canvas_api.json");
    std::fs::write(
        &good,
        serde_json::to_string_pretty(&json!({
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage",
                  "inputs": {"images": ["1", 0], "filename_prefix": "canvas"}}
        }))
        .unwrap(),
    )
    .unwrap();

    app.click("#tab-workflows").await;
    app.type_into("#import-path", &editor_format.display().to_string())
        .await;
    app.click("#import-load").await;
    app.wait_text("#action-error", "the refusal", |t| {
        t.contains("editor format") && t.contains("Save (API)")
    })
    .await;

    // The file chooser: type the path (Ctrl+L) and press Return, as a user would.
    app.click("#import-browse").await;
    app.choose_in_file_dialog("Import a workflow \\(API format\\)", &good)
        .await;
    let inputs = app
        .wait_text("#import-inputs", "the workflow's inputs", |t| {
            t.contains("EmptyImage") && t.contains("filename_prefix")
        })
        .await;
    assert!(
        !inputs.contains("images"),
        "a link is not offered: {inputs}"
    );
    assert_eq!(app.value("#import-name").await, "tiny canvas api");
    // Run once as it is, before making it a template.
    app.click("#import-run").await;
    app.wait_text("#job-list", "the workflow's own job", |t| {
        t.contains("succeeded") && t.contains("canvas_")
    })
    .await;

    app.click("tr[data-node='1'][data-input='width'] .mark")
        .await;
    app.click("tr[data-node='2'][data-input='filename_prefix'] .mark")
        .await;
    let prefix_name = "tr[data-node='2'][data-input='filename_prefix'] .param-name";
    app.fill(prefix_name, "prefix").await;
    app.fill("#import-name", "Tiny canvas").await;
    app.save_screenshot_as("workflows_import_form").await;
    app.click("#import-save").await;
    app.wait_text("#import-saved", "the saved note", |t| {
        t.contains("Saved \"Tiny canvas\" with 2 parameter(s)")
    })
    .await;
    let saved = app.config_dir.path().join("templates/tiny-canvas.json");
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("the template file")).unwrap();
    let names: Vec<&str> = t["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["width", "prefix"]);

    // The new template is chosen, with its parameters as fields.
    app.wait_text("#template-select", "the new template", |t| {
        t.contains("Tiny canvas")
    })
    .await;
    app.wait_text(".run-form", "its fields", |t| t.contains("prefix"))
        .await;
    let prefix_field = "input[data-param='prefix']";
    app.fill(prefix_field, "imported").await;
    app.click("#run-template").await;
    app.wait_text("#job-list", "the template's job with its output", |t| {
        t.contains("succeeded") && t.contains("imported")
    })
    .await;

    app.click("#delete-template").await;
    app.wait_text("#template-select", "the template gone", |t| {
        !t.contains("Tiny canvas")
    })
    .await;
    // The smoke test is chosen again, its fields showing its own defaults
    // (not what was typed into the fields of the deleted template).
    assert_eq!(app.value("input[data-param='height']").await, "512");
    assert_eq!(app.value("input[data-param='width']").await, "512");
    assert!(!saved.exists(), "the file is removed with the template");
    app.finish().await;
}
