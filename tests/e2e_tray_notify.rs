//! The tray menu follows the fleet and the active instance (switched with
//! Ctrl+2 in the window), and an instance that fails raises an OS notification
//! that really arrives on the D-Bus session bus. In the window, its error
//! toast stays until dismissed; the "healthy again" one goes by itself.

use crate::support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::standin::StandIn;
use support::App;

async fn wait_value(app: &App, what: &str, mut f: impl AsyncFnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            app.save_screenshot().await;
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn checked(menu: &Value, id: &str) -> Option<bool> {
    menu.as_array()?
        .iter()
        .find(|i| i["id"] == format!("instance:{id}"))?["checked"]
        .as_bool()
}

#[tokio::test(flavor = "multi_thread")]
async fn tray_follows_the_active_instance_and_failures_notify_over_dbus() {
    let mut first = StandIn::start();
    let second = StandIn::start();
    let app = App::launch("tray_notify", &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    let (_server, received) = app.notification_server();
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    for (name, port) in [("GPU 0", first.port()), ("GPU 1", second.port())] {
        app.invoke(
            "create_instance",
            json!({"config": {"id": "", "name": name, "port": port, "host": "127.0.0.1"}}),
        )
        .await
        .unwrap();
    }
    app.invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();

    let menu = wait_value(&app, "both instances in the tray", async || {
        let m = app.invoke("tray_menu", json!({})).await.ok()?;
        (checked(&m, "instance_002").is_some() && m.to_string().contains("running")).then_some(m)
    })
    .await;
    assert_eq!(checked(&menu, "instance_001"), Some(true), "{menu}");
    for id in ["start-all", "stop-all", "show", "quit"] {
        assert!(
            menu.to_string().contains(&format!("\"{id}\"")),
            "{id} missing: {menu}"
        );
    }

    // Ctrl+2 in the window: toolbar and tray agree.
    app.press_ctrl('2').await;
    wait_value(&app, "the tray to check GPU 1", async || {
        let m = app.invoke("tray_menu", json!({})).await.ok()?;
        (checked(&m, "instance_002") == Some(true) && checked(&m, "instance_001") == Some(false))
            .then_some(m)
    })
    .await;
    let select = app
        .client
        .find(fantoccini::Locator::Css("#active-instance-select"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(select.as_deref(), Some("instance_002"));

    // The running instance's server dies: a notification arrives on the bus.
    first.kill();
    let line = wait_value(&app, "a Notify call on the bus", async || {
        let text = std::fs::read_to_string(&received).ok()?;
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|n| n["summary"] == "ComfyUI instance unhealthy")
    })
    .await;
    assert!(
        line["body"].as_str().unwrap().contains("instance_001"),
        "{line}"
    );

    // Back on its port: recovered. The information goes away by itself, the
    // error stays until the user dismisses it.
    let port = first.port();
    drop(first);
    let _back = StandIn::builder().port(port).start();
    let error = ".toast.alert[data-severity='error'][data-instance='instance_001']";
    let info = ".toast.alert[data-severity='info'][data-instance='instance_001']";
    app.wait_text(info, "the recovered toast", |t| t.contains("healthy again"))
        .await;
    let count = async |css: &str| {
        app.client
            .find_all(fantoccini::Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    };
    let t = Instant::now();
    while count(info).await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the information toast never went"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "tray_notify: the recovered toast went by itself after {:?}",
        t.elapsed()
    );
    assert!(count(error).await > 0, "the error toast went by itself");
    let errors = count(error).await;
    for _ in 0..errors {
        app.click(&format!("{error} .dismiss")).await;
    }
    assert_eq!(count(error).await, 0, "dismissed, one by one");
    app.finish().await;
}
