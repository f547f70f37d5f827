//! The gateway against real stand-ins, over real HTTP and WebSocket: a
//! client speaking ComfyUI's API posts a prompt (as `text/plain`, with its
//! own prompt id and a client id that is not a UUID), follows it on `/ws`,
//! reads its history and fetches its image; ComfyUI's refusals; and a
//! prompt whose instance is killed while it runs still finishes for the
//! client, under the same prompt id.

use crate::dispatch_fleet;
use crate::gateway_support;
use crate::support;

use dispatch_fleet::{attached, fast_options, Fleet};
use gateway_support::*;
use serde_json::{json, Value};
use std::time::Duration;
use storycore_core::gateway::Gateway;
use support::standin::StandIn;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_comfyui_client_runs_a_prompt_through_the_gateway() {
    let g = GatewayFleet::of(vec![StandIn::start(), StandIn::start()]).await;
    let (gw, base, http) = (&g.gw, g.base.clone(), g.http.clone());

    // Client ids in the wild are not always UUIDs.
    let client = "my bot #1";
    let mut ws = open_ws(gw, client).await;
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "status");
    assert_eq!(hello["data"]["sid"], client);
    assert_eq!(hello["data"]["status"]["exec_info"]["queue_remaining"], 0);
    // The client's feature flags, answered with the server's, as ComfyUI does.
    let flags = announce_preview_metadata(&mut ws).await;
    assert_eq!(flags["type"], "feature_flags");
    assert_eq!(flags["data"]["max_upload_size"], 104_857_600);

    // JSON sent as text/plain, with the client's own prompt id.
    let body =
        json!({"prompt": workflow("gw", 7), "client_id": client, "prompt_id": "my-custom-id-123"});
    let r = http
        .post(format!("{base}/prompt"))
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["prompt_id"], "my-custom-id-123");
    assert_eq!(answer["number"], 0);
    assert_eq!(answer["node_errors"], json!({}));

    let frames = until_done(&mut ws, "my-custom-id-123").await;
    // `executing` null comes after the history entry exists.
    let history: Value = get_json(&http, &format!("{base}/history/my-custom-id-123")).await;
    let t = types(&frames);
    println!("gateway: /ws frames {t:?}");
    for want in ["execution_start", "executed", "execution_success"] {
        assert!(t.contains(&want.to_string()), "{want} in {t:?}");
    }
    let pos = |k: &str| t.iter().position(|x| x == k).unwrap();
    assert!(pos("execution_start") < pos("executed"));
    assert!(pos("executed") < pos("execution_success"));
    assert_eq!(t.last().unwrap(), "executing");

    let entry = &history["my-custom-id-123"];
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["prompt"][1], "my-custom-id-123");
    assert_eq!(entry["prompt"][3]["client_id"], client);
    let image = &entry["outputs"]["2"]["images"][0];
    let executed = frames.iter().find(|f| f["type"] == "executed").unwrap();
    assert_eq!(&executed["data"]["output"]["images"][0], image);

    // /view gives the image with its type, from the subfolder history named.
    let r = http
        .get(format!("{base}/view"))
        .query(&[
            ("filename", image["filename"].as_str().unwrap()),
            ("subfolder", image["subfolder"].as_str().unwrap()),
            ("type", "output"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[1..4], b"PNG");

    // The same under /api, and the queue is empty again.
    let q: Value = get_json(&http, &format!("{base}/api/queue")).await;
    assert_eq!(q, json!({"queue_running": [], "queue_pending": []}));
    let p: Value = get_json(&http, &format!("{base}/prompt")).await;
    assert_eq!(p, json!({"exec_info": {"queue_remaining": 0}}));
    let all: Value = get_json(&http, &format!("{base}/history?max_items=5")).await;
    assert_eq!(all.as_object().unwrap().len(), 1);
    g.stop().await;
}

#[tokio::test]
async fn bad_requests_are_answered_as_comfyui_answers_them() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let gw = start(&fleet).await;
    let base = format!("http://{}", gw.addr());
    let http = reqwest::Client::new();
    let post = |body: String| {
        let http = http.clone();
        let url = format!("{base}/prompt");
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let (st, text) = post("{not json".into()).await;
    assert_eq!(st, 500);
    assert!(text.contains("Server got itself in trouble"));
    let (st, text) = post("{}".into()).await;
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["type"],
        "no_prompt"
    );
    let (st, text) =
        post(json!({"prompt": {"1": {"class_type": "NoSuchNodeXYZ", "inputs": {}}}}).to_string())
            .await;
    assert_eq!(st, 400);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "invalid_prompt");
    assert_eq!(
        v["error"]["message"],
        "Cannot execute because node NoSuchNodeXYZ does not exist."
    );
    assert_eq!(v["error"]["details"], "Node ID '#1'");
    let (st, text) = post(json!({"prompt": {}}).to_string()).await;
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["type"],
        "prompt_no_outputs"
    );
    let (st, _) = post(json!({"prompt": "hello"}).to_string()).await;
    assert_eq!(st, 500);
    // `front` numbers count down; refused POSTs counted too.
    let (st, text) = post(json!({"prompt": workflow("front", 1), "front": true}).to_string()).await;
    assert_eq!(st, 200);
    let n = serde_json::from_str::<Value>(&text).unwrap()["number"]
        .as_i64()
        .unwrap();
    assert!(n < 0, "{n}");

    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get("/object_info/NoSuchClass").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    assert_eq!(get("/api/object_info/EmptyImage").await.status(), 200);
    assert_eq!(
        get("/history/unknown").await.json::<Value>().await.unwrap(),
        json!({})
    );
    assert_eq!(get("/history?max_items=abc").await.status(), 500);
    assert_eq!(get("/view?filename=../../main.py").await.status(), 400);
    assert_eq!(
        get("/view?filename=a.png&subfolder=../../etc")
            .await
            .status(),
        403
    );
    assert_eq!(get("/view?filename=a.png&type=bogus").await.status(), 400);
    assert_eq!(get("/view?filename=a.png").await.status(), 404);
    assert_eq!(get("/no/such/route").await.status(), 404);
    // ComfyUI's page (and whatever else is the instance's) comes through.
    let page = get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("comfyui-standin"));
    // A web page elsewhere cannot post prompts to this machine's gateway.
    let addr = gw.addr();
    let r = http
        .post(format!("{base}/prompt"))
        .header("origin", "http://evil.example")
        .json(&json!({"prompt": workflow("evil", 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{base}/queue"))
        .header("origin", format!("http://{addr}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the gateway's own page may");

    // Loopback only, with a clear reason.
    let e = Gateway::start(
        fleet.queue.clone(),
        fleet.manager.clone(),
        "0.0.0.0:0".parse().unwrap(),
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("loopback"), "{e}");
    gw.stop().await;
    fleet.queue.shutdown().await;
}

/// The client waits on `/ws` while the instance running its prompt dies:
/// it sees its prompt finish (on the other instance), under its own id.
#[tokio::test]
async fn a_client_sees_its_prompt_finish_when_its_instance_dies() {
    let mut doomed = StandIn::builder().env("STANDIN_NODE_MS", "1500").start();
    let other = StandIn::builder().env("STANDIN_NODE_MS", "1500").start();
    let fleet = Fleet::open(vec![attached("doomed", doomed.port(), 1)], fast_options()).await;
    fleet.start("doomed").await;
    let gw = start(&fleet).await;
    let mut ws = open_ws(&gw, "survivor").await;
    next(&mut ws).await;
    let r = post_json(
        &reqwest::Client::new(),
        &format!("http://{}/prompt", gw.addr()),
        &json!({"prompt": workflow("failover", 3), "client_id": "survivor"}),
    )
    .await;
    let prompt = r["prompt_id"].as_str().unwrap().to_string();
    // Running on the only instance; then a second one joins and the first dies.
    loop {
        let f = next(&mut ws).await;
        if f["type"] == "execution_start" {
            break;
        }
    }
    fleet
        .manager
        .create(attached("other", other.port(), 1))
        .await
        .unwrap();
    fleet.start("other").await;
    doomed.kill();
    let frames = until_done(&mut ws, &prompt).await;
    let t = types(&frames);
    println!("gateway: after the kill, /ws frames {t:?}");
    assert!(t.contains(&"execution_success".to_string()), "{t:?}");
    assert!(
        !t.contains(&"execution_start".to_string()),
        "started once: {t:?}"
    );
    let job = fleet.queue.list().into_iter().next().unwrap();
    assert_eq!(job.instance_id.as_deref(), Some("other"));
    assert_eq!(job.instances_killed, ["doomed"]);
    gw.stop().await;
    fleet.queue.shutdown().await;
}

/// `/queue` delete and clear, `/interrupt` of one prompt, `/history`
/// delete: on the fleet's queue, as ComfyUI does them on its own.
#[tokio::test]
async fn queue_interrupt_and_history_control() {
    let s = StandIn::builder().env("STANDIN_NODE_MS", "1000").start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let gw = start(&fleet).await;
    let base = format!("http://{}", gw.addr());
    let http = reqwest::Client::new();
    let mut ws = open_ws(&gw, "ctl").await;
    next(&mut ws).await;
    let mut ids = Vec::new();
    for k in 0..4 {
        let r: Value = post_json(
            &http,
            &format!("{base}/prompt"),
            // Ids that sort against their order: the history keeps theirs.
            &json!({"prompt": workflow(&format!("ctl{k}"), 10 + k), "client_id": "ctl",
                    "prompt_id": format!("ctl-{}", 9 - k)}),
        )
        .await;
        ids.push(r["prompt_id"].as_str().unwrap().to_string());
    }
    let queue = || async { get_json(&http, &format!("{base}/queue")).await };
    // The first runs (the instance takes one running and one queued).
    loop {
        let f = next(&mut ws).await;
        if f["type"] == "execution_start" {
            assert_eq!(f["data"]["prompt_id"], ids[0].as_str());
            break;
        }
    }
    let q = queue().await;
    let pending: Vec<&str> = q["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].as_str().unwrap())
        .collect();
    assert!(pending.contains(&ids[3].as_str()), "{q}");
    // Delete one pending, then clear the rest still pending.
    let r = http
        .post(format!("{base}/queue"))
        .json(&json!({"delete": [ids[3]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let bad = http
        .post(format!("{base}/queue"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 500);
    // Interrupt the running one.
    let r = http
        .post(format!("{base}/interrupt"))
        .json(&json!({"prompt_id": ids[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let frames = until_done(&mut ws, &ids[0]).await;
    assert!(
        types(&frames).contains(&"execution_interrupted".to_string()),
        "{:?}",
        types(&frames)
    );
    http.post(format!("{base}/queue"))
        .json(&json!({"clear": true}))
        .send()
        .await
        .unwrap();
    // Whatever was still pending is gone; at most one more ran.
    let done = wait_until_idle(&http, &base).await;
    let history: Value = get_json(&http, &format!("{base}/history")).await;
    let h = history.as_object().unwrap();
    assert!(
        h.contains_key(&ids[0]),
        "the interrupted one is in the history"
    );
    assert!(!h.contains_key(&ids[3]), "a deleted prompt leaves no trace");
    assert_eq!(h[&ids[0]]["status"]["status_str"], "error");
    println!(
        "gateway: control left {} prompt(s) in the history, {done} queued",
        h.len()
    );
    let text = http
        .get(format!("{base}/history"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at: Vec<usize> = ids
        .iter()
        .filter_map(|id| text.find(&format!("\"{id}\":")))
        .collect();
    assert_eq!(at.len(), h.len());
    assert!(at.windows(2).all(|w| w[0] < w[1]), "oldest first: {text}");
    // History delete.
    http.post(format!("{base}/history"))
        .json(&json!({"delete": [ids[0]]}))
        .send()
        .await
        .unwrap();
    let one: Value = get_json(&http, &format!("{base}/history/{}", ids[0])).await;
    assert_eq!(one, json!({}));
    gw.stop().await;
    fleet.queue.shutdown().await;
}

async fn wait_until_idle(http: &reqwest::Client, base: &str) -> u64 {
    for _ in 0..300 {
        let p: Value = get_json(http, &format!("{base}/prompt")).await;
        let n = p["exec_info"]["queue_remaining"].as_u64().unwrap();
        if n == 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway's queue never emptied");
}

/// On the network the gateway needs a token: without one it does not
/// start there; with one, it needs HTTPS or plain HTTP chosen explicitly
/// (HTTPS is in `gateway_client` and `gateway_team`); then a request (HTTP
/// or `/ws`) without the token gets 401,
/// and one with it is served. Bodies over ComfyUI's upload limit get 413.
#[tokio::test]
async fn on_the_network_the_gateway_needs_its_token() {
    use storycore_core::gateway::Access;
    use storycore_types::KeyAuth;
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let anywhere: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = Gateway::start(fleet.queue.clone(), fleet.manager.clone(), anywhere).await;
    let e = refused.err().expect("no token, no network").to_string();
    println!("gateway: without a token: {e}");
    assert!(e.contains("needs a token"), "{e}");

    let token = "a-token-for-the-lan-0123456789";
    let access = Access::token(token, KeyAuth::Header("X-API-Key".into())).unwrap();
    // On the network it serves HTTPS unless plain HTTP is chosen.
    let refused = Gateway::start_with(
        fleet.queue.clone(),
        fleet.manager.clone(),
        anywhere,
        access.clone(),
    )
    .await;
    let e = refused.err().expect("no TLS, no network").to_string();
    println!("gateway: a token but no certificate: {e}");
    assert!(e.contains("HTTPS") && e.contains("--tls-cert"), "{e}");
    let access = access.with_plain_http();
    let gw = Gateway::start_with(fleet.queue.clone(), fleet.manager.clone(), anywhere, access)
        .await
        .unwrap();
    assert!(!gw.https());
    let base = format!("http://127.0.0.1:{}", gw.addr().port());
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/queue")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    println!("gateway: without the token: {}", r.text().await.unwrap());
    let r = http
        .get(format!("{base}/queue"))
        .header("X-API-Key", "a-token-for-the-lan-0123456788")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong token");
    let r = http
        .get(format!("{base}/system_stats"))
        .header("X-API-Key", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "forwarded to the instance with the token");

    let ws_url = format!("ws://127.0.0.1:{}/ws?clientId=lan", gw.addr().port());
    let no = tokio_tungstenite::connect_async(&ws_url).await;
    assert!(
        matches!(&no, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
        "/ws without the token: {no:?}"
    );
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-API-Key", token.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next(&mut ws).await["data"]["sid"], "lan");

    // Larger than ComfyUI's max_upload_size (100 MiB): refused, not read.
    let big = vec![b' '; (100 << 20) + 1];
    let r = http
        .post(format!("{base}/prompt"))
        .header("X-API-Key", token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    gw.stop().await;
    fleet.queue.shutdown().await;
}

/// Frames until `executing` null for `prompt`: the JSON ones by type, and
/// the binary ones as `(event type, metadata for type 4)`.
async fn frames_with_binaries(ws: &mut Socket, prompt: &str) -> (Vec<String>, Vec<(u32, Value)>) {
    let (mut text, mut binary) = (Vec::new(), Vec::new());
    loop {
        match next_message(ws).await {
            Message::Text(t) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                let done = f["type"] == "executing"
                    && f["data"]["node"].is_null()
                    && f["data"]["prompt_id"] == prompt;
                text.push(f["type"].as_str().unwrap().to_string());
                if done {
                    return (text, binary);
                }
            }
            Message::Binary(b) => {
                let at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
                let meta = match at(0) {
                    4 => serde_json::from_slice(&b[8..8 + at(4) as usize]).unwrap(),
                    _ => json!({"image_type": at(4)}),
                };
                binary.push((at(0), meta));
            }
            _ => {}
        }
    }
}

/// An instance's preview images reach the client whose prompt made them:
/// type 4 with its own prompt id when it announced preview metadata, type
/// 1 when it did not; another client gets none.
#[tokio::test]
async fn preview_images_reach_the_client_whose_prompt_made_them() {
    let s = StandIn::builder()
        .env("STANDIN_PREVIEWS", "1")
        .env("STANDIN_PROGRESS_STEPS", "3")
        .env("STANDIN_NODE_MS", "150")
        .start();
    let g = GatewayFleet::of(vec![s]).await;
    let mut bystander = open_ws(&g.gw, "bystander").await;
    next(&mut bystander).await;
    for (client, announce) in [("krita", true), ("script", false)] {
        let mut ws = open_ws(&g.gw, client).await;
        next(&mut ws).await;
        if announce {
            assert_eq!(
                announce_preview_metadata(&mut ws).await["type"],
                "feature_flags"
            );
        }
        let color = if announce { 11 } else { 12 };
        let r = post_json(
            &g.http,
            &format!("{}/prompt", g.base),
            &json!({"prompt": workflow(client, color), "client_id": client}),
        )
        .await;
        let prompt = r["prompt_id"].as_str().unwrap().to_string();
        let (text, binary) = frames_with_binaries(&mut ws, &prompt).await;
        println!(
            "gateway: {client} got {} previews of types {:?} beside {text:?}",
            binary.len(),
            binary.iter().map(|b| b.0).collect::<Vec<_>>()
        );
        // 2 nodes: each its `executing` step and 3 steps, and a preview a step.
        let progress = text.iter().filter(|t| *t == "progress").count();
        assert_eq!(progress, 8, "{client}: every progress frame: {text:?}");
        assert_eq!(binary.len(), 6, "{client}: a preview a step");
        for (kind, meta) in &binary {
            if announce {
                assert_eq!(*kind, 4);
                assert_eq!(meta["prompt_id"], prompt.as_str());
                assert_eq!(meta["image_type"], "image/png");
            } else {
                assert_eq!((*kind, meta["image_type"].as_u64()), (1, Some(2)), "PNG");
            }
        }
    }
    // The bystander saw the others' status frames only.
    use futures_util::StreamExt;
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(200), bystander.next()).await
    {
        assert!(
            !m.is_binary(),
            "no preview to a client that did not cause it"
        );
    }
    g.stop().await;
}

/// A node that raises (fixture 10: ImageToMask's alpha of an RGB image):
/// the client gets ComfyUI's `execution_error` with the node's own
/// exception, type and traceback, and the history says `error`, as
/// recorded from ComfyUI.
#[tokio::test]
async fn a_node_that_raises_reaches_the_client_as_comfyui_says_it() {
    let g = GatewayFleet::of(vec![StandIn::start()]).await;
    let recorded: Vec<Value> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/comfyui-api/workflows/10_runtime_error_execution_error/ws.jsonl"
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"].clone())
    .collect();
    let want = recorded
        .iter()
        .find(|m| m["type"] == "execution_error")
        .unwrap();
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "err"}}
    });
    let mut ws = open_ws(&g.gw, "raiser").await;
    next(&mut ws).await;
    let r = post_json(
        &g.http,
        &format!("{}/prompt", g.base),
        &json!({"prompt": prompt, "client_id": "raiser"}),
    )
    .await;
    let id = r["prompt_id"].as_str().unwrap().to_string();
    let frames = until_done(&mut ws, &id).await;
    let err = frames
        .iter()
        .find(|f| f["type"] == "execution_error")
        .unwrap_or_else(|| panic!("an execution_error in {:?}", types(&frames)));
    println!("gateway: execution_error {}", err["data"]);
    let d = &err["data"];
    assert_eq!(d["prompt_id"], id.as_str());
    for k in ["node_id", "node_type", "exception_type"] {
        assert_eq!(d[k], want["data"][k], "{k}");
    }
    assert_eq!(
        d["exception_message"].as_str().unwrap().trim(),
        want["data"]["exception_message"].as_str().unwrap().trim()
    );
    assert!(
        !d["traceback"].as_array().unwrap().is_empty(),
        "the traceback"
    );
    let history = get_json(&g.http, &format!("{}/history/{id}", g.base)).await;
    assert_eq!(history[&id]["status"]["status_str"], "error");
    assert_eq!(history[&id]["status"]["completed"], false);
    g.stop().await;
}
