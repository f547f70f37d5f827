//! The desktop app's gateway: a prompt posted by a ComfyUI client shows in
//! the Workflows view with the client it came from and runs; Settings turn
//! the gateway off (the address closes) and on again at another address.

mod support;

use serde_json::{json, Value};
use support::{app_with_one_instance, free_port};

async fn gateway_at(app: &support::App) -> Option<String> {
    app.invoke("gateway_status", json!({}))
        .await
        .unwrap()
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
    let r: Value = http
        .post(format!("http://{addr}/prompt"))
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
            t.contains("succeeded") && t.contains("gateway: krita-plugin")
        })
        .await;
    println!("gateway: the window shows {row:?}");
    let h: Value = http
        .get(format!("http://{addr}/history/{prompt}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h[&prompt]["status"]["status_str"], "success");

    // ComfyUI's editor on the whole fleet, in a window of the app.
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
