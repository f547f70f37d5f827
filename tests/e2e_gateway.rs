//! The desktop app's gateway: a prompt posted by a ComfyUI client with a
//! person's token (made in Settings) shows in the Workflows view with the
//! client it came from and who sent it, and runs; Settings turn
//! the gateway off (the address closes) and on again at another address.

use crate::support;

use serde_json::{json, Value};
use support::{app_with_one_instance, free_port};

async fn gateway_at(app: &support::App) -> Option<String> {
    app.invoke("gateway_status", json!({})).await.unwrap()["address"]
        .as_str()
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_prompt_through_the_apps_gateway_shows_in_the_window() {
    let (server, app) = app_with_one_instance("gateway").await;
    app.wait_text(".instance-card[data-id='instance_001']", "running", |t| {
        t.contains("running")
    })
    .await;
    let addr = gateway_at(&app).await.expect("the gateway listens");
    let http = reqwest::Client::new();
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 77}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "via_gateway"}}
    });
    // A token for a person, made in Settings → People and shown once.
    app.click("#settings-button").await;
    app.wait_text("#gateway-people", "the people", |t| t.contains("People"))
        .await;
    app.fill("#gateway-person-name", "alice").await;
    app.click("#gateway-person-create").await;
    let token = app
        .wait_text("#gateway-new-token", "the new token", |t| {
            t.starts_with("sct_")
        })
        .await;
    app.wait_text("#gateway-people-list", "alice listed", |t| {
        t.contains("alice")
    })
    .await;
    app.click("#settings-close").await;
    let r: Value = http
        .post(format!("http://{addr}/prompt"))
        .bearer_auth(token.trim())
        .body(json!({"prompt": wf, "client_id": "krita-plugin"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prompt = r["prompt_id"].as_str().unwrap().to_string();
    app.click("#tab-workflows").await;
    let row = app
        .wait_text("#job-list .job-row", "the gateway's job, done", |t| {
            t.contains("succeeded") && t.contains("gateway: krita-plugin") && t.contains("by alice")
        })
        .await;
    println!("gateway: the window shows {row:?}");
    let h: Value = http
        .get(format!("http://{addr}/history/{prompt}"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h[&prompt]["status"]["status_str"], "success");

    // ComfyUI's editor on the whole fleet, in a window of the app.
    let main = open_fleet_window(&app).await;
    app.wait_text("body", "the instance's page through the gateway", |t| {
        t.contains("comfyui-standin")
    })
    .await;
    // The page's own request for the queue is the gateway's answer.
    let from_page = app
        .client
        .execute_async(
            "const done = arguments[0];\
             fetch('/prompt').then(r => r.json()).then(j => done(JSON.stringify(j)), e => done('error ' + e));",
            vec![],
        )
        .await
        .unwrap();
    println!("gateway: the fleet window's fetch('/prompt') said {from_page}");
    assert_eq!(from_page, "{\"exec_info\":{\"queue_remaining\":0}}");
    app.client.close_window().await.unwrap();
    app.client.switch_to_window(main).await.unwrap();

    // Off in Settings: the address closes. On at another address: it answers there.
    app.click("#settings-button").await;
    app.wait_text("#settings-gateway-status", "listening", |t| {
        t.contains(&addr)
    })
    .await;
    app.click("#settings-gateway").await;
    app.wait_text("#settings-gateway-status", "off", |t| t == "Not listening")
        .await;
    assert!(http
        .get(format!("http://{addr}/prompt"))
        .send()
        .await
        .is_err());
    let again = format!("127.0.0.1:{}", free_port());
    app.fill("#settings-gateway-address", &again).await;
    app.click("#settings-gateway").await;
    app.wait_text("#settings-gateway-status", "the new address", |t| {
        t.contains(&again)
    })
    .await;
    let p: Value = http
        .get(format!("http://{again}/prompt"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p, json!({"exec_info": {"queue_remaining": 0}}));
    app.finish().await;
    drop(server);
}

/// Clicks "ComfyUI (fleet)" and switches WebDriver to the window it opens;
/// answers the main window's handle.
async fn open_fleet_window(app: &support::App) -> fantoccini::wd::WindowHandle {
    let main = app.client.window().await.unwrap();
    app.click("#toolbar-open-fleet").await;
    app.wait_window("ComfyUI \u{2014} whole fleet").await;
    let editor = loop {
        let handles = app.client.windows().await.unwrap();
        if let Some(h) = handles.into_iter().find(|h| *h != main) {
            break h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    app.client.switch_to_window(editor).await.unwrap();
    main
}

/// WebDriver's Tab key: leaving a field commits it (its change event).
const TAB: char = '\u{E004}';

/// On the network, from Settings: refused without a token (said in the
/// window), then the token typed in Settings (kept in the keyring) opens
/// it there, with the warning shown; a client without the token gets 401,
/// one with it is served.
#[tokio::test(flavor = "multi_thread")]
async fn settings_put_the_gateway_on_the_network_behind_a_token() {
    let (keyring, app) = support::app_with_keyring("gateway_token").await;
    let http = reqwest::Client::new();
    app.click("#settings-button").await;
    app.wait_text("#settings-gateway-status", "listening", |t| {
        t.starts_with("Listening")
    })
    .await;
    let port = free_port();
    let lan = format!("0.0.0.0:{port}");
    app.fill("#settings-gateway-address", &format!("{lan}{TAB}"))
        .await;
    let refusal = app
        .wait_text("#action-error", "the refusal", |t| t.contains("token"))
        .await;
    println!("gateway: on the network without a token: {refusal}");
    app.wait_text("#settings-gateway-warning", "the warning", |t| {
        t.contains("on the network")
    })
    .await;

    let token = "lan-token-0123456789abcdef";
    app.fill("#settings-gateway-token", &format!("short{TAB}"))
        .await;
    let short = app
        .wait_text("#action-error", "the short token refused", |t| {
            t.contains("16")
        })
        .await;
    println!("gateway: a short token: {short}");
    app.fill("#settings-gateway-token", &format!("{token}{TAB}"))
        .await;
    // Kept: the field says a token is set.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !app
        .attr("#settings-gateway-token", "placeholder")
        .await
        .is_some_and(|p| p.starts_with("set"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the token was never kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.fill("#settings-gateway-address", &format!("{lan}{TAB}"))
        .await;
    app.wait_text(
        "#settings-gateway-status",
        "listening on the network",
        |t| t.contains(&lan),
    )
    .await;
    // HTTPS, with a certificate the app made: shown with its fingerprint,
    // and trusted through the file it names.
    let shown = app
        .wait_text("#settings-gateway-tls", "the certificate", |t| {
            t.contains("SHA-256")
        })
        .await;
    println!("gateway: {shown}");
    let status = app.invoke("gateway_status", json!({})).await.unwrap();
    assert_eq!(status["url"], format!("https://{lan}"));
    let trust = std::fs::read(status["trustFile"].as_str().unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&trust).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/prompt");
    let r = https.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = https.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"exec_info": {"queue_remaining": 0}})
    );
    // Plain HTTP to the HTTPS port: a clean refusal that says what to use.
    let plain = http
        .get(format!("http://127.0.0.1:{port}/prompt"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("https://"));
    // In the keyring, not in the settings file.
    assert_eq!(keyring.lookup("gateway/token").as_deref(), Some(token));
    let settings = std::fs::read_to_string(app.config_dir.path().join("settings.json")).unwrap();
    assert!(!settings.contains(token), "{settings}");
    println!("gateway: on {lan} with a token from Settings, over HTTPS: 401 without it, 200 with it; plain HTTP refused; the token is in the keyring only");
    // The app's own fleet window still opens: over a loopback gateway of
    // its own (no token, no certificate for the webview to refuse). With no
    // instance here, the page is the gateway's 503 sentence.
    app.click("#settings-close").await;
    let main = open_fleet_window(&app).await;
    let page = app
        .wait_text("body", "the fleet's page through a loopback gateway", |t| {
            t.contains("no instance of the fleet")
        })
        .await;
    println!("gateway: the fleet window on a network gateway shows {page:?}");
    app.client.switch_to_window(main).await.unwrap();
    app.finish().await;
}

/// A workflow the editor saved through the gateway is the gateway's: the
/// fleet's editor window lists it, and lists it again after the app
/// restarts on the same files (the stand-in's page asks for the saved
/// workflows as ComfyUI's frontend does at load).
#[tokio::test(flavor = "multi_thread")]
async fn the_editors_saved_workflow_is_listed_after_a_restart() {
    let (server, app) = app_with_one_instance("gateway_userdata").await;
    app.wait_text(".instance-card[data-id='instance_001']", "running", |t| {
        t.contains("running")
    })
    .await;
    let addr = gateway_at(&app).await.expect("the gateway listens");
    let r = reqwest::Client::new()
        .post(format!(
            "http://{addr}/api/userdata/workflows%2Fportrait.json?overwrite=true"
        ))
        .body(r#"{"last_node_id": 2, "nodes": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = listed(&app).await;
    assert!(before.contains("portrait.json"), "{before:?}");
    // The same files, a new app: the gateway's copy is read again.
    let kept = app.config_dir.path().to_path_buf();
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", kept.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    app.finish().await;
    let again = support::App::launch_prepared(
        "gateway_userdata_again",
        &[("STORYCORE_HEALTH_INTERVAL_MS", "300")],
        |dir| {
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", copy.path().display()))
                .arg(dir)
                .status()
                .unwrap();
            assert!(status.success());
        },
    )
    .await;
    again
        .invoke("start_instance", json!({"id": "instance_001"}))
        .await
        .unwrap();
    again
        .wait_text(".instance-card[data-id='instance_001']", "running", |t| {
            t.contains("running")
        })
        .await;
    let after = listed(&again).await;
    println!("gateway: the fleet's editor lists {before:?} before the restart and {after:?} after");
    assert!(after.contains("portrait.json"), "{after:?}");
    again.finish().await;
    drop(server);
}

/// What the fleet's editor window lists as the saved workflows.
async fn listed(app: &support::App) -> String {
    let main = open_fleet_window(app).await;
    let list = app
        .wait_text(
            "#workflows[data-loaded='yes']",
            "the saved workflows",
            |_| true,
        )
        .await;
    app.client.switch_to_window(main).await.unwrap();
    list
}
