//! The Workflows view: run the built-in smoke-test template on the fleet and
//! see the job succeed with its output; a bad workflow is refused with a reason.

mod support;

use serde_json::json;
use support::standin::StandIn;
use support::App;

#[tokio::test(flavor = "multi_thread")]
async fn run_the_smoke_test_template_and_refuse_a_bad_workflow() {
    let server = StandIn::start();
    let app = App::launch("workflows", &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    app.invoke(
        "create_instance",
        json!({"config": {"id": "", "name": "GPU 0", "port": server.port(), "host": "127.0.0.1"}}),
    )
    .await
    .unwrap();
    app.invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();
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
        t.contains("not valid JSON")
    })
    .await;
    app.finish().await;
}
