//! The panel with 50 instances: how long the grid takes to show them all, and
//! how long one change takes to reach its card. Prints the figures; the bounds
//! are generous (this machine is shared and noisy), only there to catch a UI
//! that freezes.

use crate::support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::App;

const N: usize = 50;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_instances_render_and_update_promptly() {
    let app = App::launch("scale_50", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    // Ports that nothing listens on: the instances stay stopped.
    let started = Instant::now();
    for n in 0..N {
        app.invoke(
            "create_instance",
            json!({"config": {"id": "", "name": format!("Box {n:02}"), "port": 20000 + n, "host": "127.0.0.1"}}),
        )
        .await
        .unwrap();
    }
    let created = started.elapsed();
    let count_cards = async || -> usize {
        app.client
            .find_all(fantoccini::Locator::Css(".instance-card"))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_cards().await < N {
        assert!(Instant::now() < deadline, "the grid never showed {N} cards");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rendered = started.elapsed();

    // One change: its card follows.
    let t = Instant::now();
    app.invoke(
        "update_instance",
        json!({"id": "instance_025", "patch": {"name": "Renamed box"}}),
    )
    .await
    .unwrap();
    app.wait_text(
        ".instance-card[data-id='instance_025'] .card-name",
        "the new name",
        |s| s == "Renamed box",
    )
    .await;
    let update = t.elapsed();
    println!(
        "scale: {N} instances created in {created:?}, all {N} cards shown after {rendered:?}; \
         one update reached its card in {update:?}"
    );
    assert!(
        update < Duration::from_secs(5),
        "one update took {update:?}"
    );
    app.save_screenshot_as("panel_50").await;
    app.finish().await;
}
