//! "Open ComfyUI": the instance's own web editor in a window of the app,
//! with its API key applied (through the app's loopback proxy), from the
//! card's menu and, for the active instance, from the toolbar.

use crate::support;

use std::time::Duration;
use support::standin::StandIn;

#[tokio::test(flavor = "multi_thread")]
async fn open_comfyui_shows_the_instance_page_with_its_key_applied() {
    let key = "sk-editor-4242";
    let server = StandIn::builder()
        .env("STANDIN_API_KEY", key)
        .env("STANDIN_API_KEY_AUTH", "header:X-API-Key")
        .start();
    let (_keyring, app) = support::app_with_keyring("open_comfyui").await;
    app.invoke(
        "create_instance",
        serde_json::json!({"config": {"id": "", "name": "Cloud box", "port": server.port(),
            "host": "127.0.0.1", "apiKeyAuth": "header:X-API-Key"}}),
    )
    .await
    .unwrap();
    app.invoke(
        "set_api_key",
        serde_json::json!({"id": "instance_001", "key": key, "inFile": false}),
    )
    .await
    .unwrap();
    let main = app.client.window().await.unwrap();

    app.card_menu("instance_001", "open-comfyui").await;
    let title = "ComfyUI \u{2014} Cloud box";
    app.wait_window(title).await;

    // The editor window shows the instance's own page, and the page's own
    // requests (HTTP and /ws) get through the proxy that wants the key.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let editor = loop {
        let handles = app.client.windows().await.unwrap();
        if let Some(h) = handles.into_iter().find(|h| *h != main) {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "WebDriver never saw the editor window"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    app.client.switch_to_window(editor).await.unwrap();
    let body = app
        .wait_text("body", "the instance's page", |t| {
            t.contains("comfyui-standin")
        })
        .await;
    println!("open_comfyui: the editor window shows {body:?}");
    let from_page = app
        .client
        .execute_async(
            "const done = arguments[0];\
             fetch('/system_stats').then(r => r.json()).then(s => {\
               const ws = new WebSocket('ws://' + location.host + '/ws?clientId=editor-test');\
               ws.onmessage = m => { ws.close(); done(s.system.comfyui_version + ' ' + m.data.slice(0, 40)); };\
               ws.onerror = () => done('ws error');\
             }, e => done('fetch error ' + e));",
            vec![],
        )
        .await
        .unwrap();
    let said = from_page.as_str().unwrap_or_default().to_string();
    println!("open_comfyui: the page's own fetch and WebSocket: {said}");
    assert!(said.contains("\"status\""), "{said}");
    app.client.switch_to_window(main.clone()).await.unwrap();

    // The toolbar opens the active instance's editor: the same window again.
    // Counted once the backend has handled the click (its log says how), not
    // after a guessed pause: a second window made late must be seen too.
    app.click("#toolbar-open-comfyui").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = support::app_log_text(app.config_dir.path());
        if log.matches("ComfyUI editor opened").count() + log.matches("shown again").count() >= 2 {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the toolbar's open was never handled: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        log.matches("ComfyUI editor opened").count(),
        1,
        "the toolbar opened a second editor window"
    );
    let handles = app.client.windows().await.unwrap();
    assert_eq!(
        handles.len(),
        2,
        "a second editor window for the same instance"
    );
    app.finish().await;
    drop(server);
}
