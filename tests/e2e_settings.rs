//! Settings reach the backend at once: the health interval and thresholds
//! (every running monitor takes them from its next probe), a refused value
//! says why and shows what is in force, and the placement policy.

use crate::support;

use std::time::{Duration, Instant};
use support::standin::StandIn;
use support::App;

async fn last_checked(app: &App) -> String {
    let i = app
        .invoke("get_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    i["health"]["lastChecked"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_placement_settings_apply_to_what_runs() {
    let server = StandIn::start();
    // No STORYCORE_HEALTH_INTERVAL_MS: the settings' interval (30 s) is in force.
    let app = App::launch("settings", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    app.invoke(
        "create_instance",
        serde_json::json!({"config": {"id": "", "name": "GPU 0", "port": server.port(), "host": "127.0.0.1"}}),
    )
    .await
    .unwrap();
    app.invoke("start_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    app.wait_instance("instance_001", Duration::from_secs(20), "healthy", |i| {
        i["health"]["status"] == "healthy"
    })
    .await;
    // At 30 s, nothing is probed for a while.
    let first = last_checked(&app).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        last_checked(&app).await,
        first,
        "probed within 3 s at a 30 s interval"
    );

    app.click("#settings-button").await;
    app.wait_text("#settings-dialog", "the settings", |t| {
        t.contains("Health checks")
    })
    .await;
    app.choose("#settings-health-interval", "1000").await;
    let started = Instant::now();
    loop {
        if last_checked(&app).await != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the running monitor kept its 30 s interval"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "settings: a running monitor probed {:?} after the interval was set to 1 s",
        started.elapsed()
    );
    let saved = std::fs::read_to_string(app.config_dir.path().join("settings.json")).unwrap();
    assert!(saved.contains("\"intervalMs\": 1000"), "{saved}");

    // Out of range: refused, said, and the field shows what is in force.
    app.choose("#settings-health-failures", "0").await;
    app.wait_text(".toasts", "the refusal", |t| {
        t.contains("0 is out of range: use 1 to 20 failed probes in a row")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.value("#settings-health-failures").await != "3" {
        assert!(
            Instant::now() < deadline,
            "the refused value stayed in the field"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Placement: saved and applied to the queue.
    app.choose("#settings-placement", "fewestInFlight").await;
    app.click("#settings-copies").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = std::fs::read_to_string(app.config_dir.path().join("settings.json")).unwrap();
        let log = support::app_log_text(app.config_dir.path());
        if saved.contains("\"placement\": \"fewestInFlight\"")
            && saved.contains("\"copiesNearTheEnd\": false")
            && log.contains("placement settings applied")
            && log.contains("fewest in flight")
        {
            break;
        }
        assert!(Instant::now() < deadline, "placement not applied:\n{saved}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.save_screenshot_as("settings_dialog").await;
    app.finish().await;
    drop(server);
}

/// Ten changes made at once (one script clicks ten boxes, as fast as a user
/// never could, but as a quick user's two clicks race) all stay: each save
/// sends the whole settings, and saves that went out side by side used to
/// land in any order, an older one undoing newer changes (the gateway left
/// off after its address changed and it was switched on at once).
#[tokio::test(flavor = "multi_thread")]
async fn changes_made_in_a_burst_all_stay() {
    let app = App::launch("settings-burst", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    app.click("#settings-button").await;
    app.wait_text("#settings-dialog", "the settings", |t| {
        t.contains("Notifications")
    })
    .await;
    let boxes = [
        "notify-became-unhealthy",
        "notify-recovered",
        "notify-crashed",
        "notify-gave-up",
        "notify-error-rate",
        "notify-resource",
        "notify-no-answer",
        "notify-start-timed-out",
        "keep-running",
        "settings-copies",
    ];
    let shown = app
        .client
        .execute(
            "return arguments[0].map(id => { const e = document.getElementById(id); e.click(); return e.checked; });",
            vec![serde_json::json!(boxes)],
        )
        .await
        .unwrap();
    let shown: Vec<bool> = serde_json::from_value(shown).unwrap();
    // Defaults: every notification and copies on, keep-running off.
    assert_eq!(
        shown,
        [false, false, false, false, false, false, false, false, true, false],
        "the boxes after one click each"
    );
    let want = serde_json::json!({
        "becameUnhealthy": false, "recovered": false, "crashed": false, "gaveUp": false,
        "highErrorRate": false, "resourceHigh": false, "noAnswer": false, "startTimedOut": false,
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stable_since: Option<Instant> = None;
    loop {
        let saved: serde_json::Value =
            std::fs::read_to_string(app.config_dir.path().join("settings.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
        let all_there = saved["notifications"] == want
            && saved["keepInstancesRunning"] == true
            && saved["copiesNearTheEnd"] == false;
        // Held for a second: no late save undid them.
        match (all_there, stable_since) {
            (true, Some(t)) if t.elapsed() > Duration::from_secs(1) => break,
            (true, None) => stable_since = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => stable_since = None,
        }
        assert!(
            Instant::now() < deadline,
            "the saved settings lost some of the ten changes: {saved:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}
