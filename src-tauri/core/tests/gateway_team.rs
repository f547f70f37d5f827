//! A gateway a team can share: a web page on a foreign name cannot drive
//! it (DNS rebinding), and the editor's own data (saved workflows,
//! settings) is the gateway's, so it stays readable whichever instance is
//! down, and after the gateway restarts.

use crate::dispatch_fleet;
use crate::gateway_support;
use crate::support;

use dispatch_fleet::{attached, fast_options, Fleet};
use gateway_support::*;
use serde_json::{json, Value};
use support::standin::StandIn;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An answer's status and body.
type Answer = (u16, String);
/// The workflow, the listing, one setting and all settings, as read back.
type ReadBack = (Answer, Answer, Answer, Answer);

/// What a page on `evil.example` that resolves to 127.0.0.1 sends.
const REBOUND: &str = "evil.example";

async fn status_with_host(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    host: &str,
    body: reqwest::Body,
) -> (u16, String) {
    let r = http
        .request(method, url)
        .header("host", host)
        .header("origin", format!("http://{host}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The `/ws` upgrade with `host`: the handshake's status.
async fn ws_status_with_host(g: &GatewayFleet, host: &str) -> u16 {
    let mut req = format!("ws://{}/ws?clientId=rebound", g.gw.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, answer)) => answer.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("the handshake failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn a_page_on_a_rebound_name_is_refused_before_any_route() {
    let g = GatewayFleet::of(vec![StandIn::start()]).await;
    let port = g.gw.addr().port();
    let evil = format!("{REBOUND}:{port}");
    let prompt = json!({"prompt": workflow("rebound", 3), "client_id": "page"}).to_string();
    let form = "--b\r\ncontent-disposition: form-data; name=\"image\"; filename=\"x.png\"\r\ncontent-type: image/png\r\n\r\nPNG\r\n--b--\r\n";
    let cases: Vec<(reqwest::Method, &str, reqwest::Body)> = vec![
        (reqwest::Method::POST, "/prompt", prompt.clone().into()),
        (reqwest::Method::POST, "/api/prompt", prompt.clone().into()),
        (reqwest::Method::POST, "/queue", r#"{"clear": true}"#.into()),
        (reqwest::Method::POST, "/interrupt", "".into()),
        (reqwest::Method::POST, "/upload/image", form.into()),
        (reqwest::Method::GET, "/system_stats", "".into()),
        (reqwest::Method::GET, "/userdata?dir=workflows", "".into()),
    ];
    for (method, path, body) in cases {
        let (status, text) = status_with_host(
            &g.http,
            method.clone(),
            &format!("{}{path}", g.base),
            &evil,
            body,
        )
        .await;
        println!("rebinding: {method} {path} -> {status} {text:?}");
        assert_eq!(status, 403, "{method} {path}");
        assert_eq!(text.lines().count(), 1, "one line: {text:?}");
        assert!(text.contains(REBOUND), "{text}");
    }
    assert_eq!(ws_status_with_host(&g, &evil).await, 403, "/ws upgrade");
    assert!(
        g.fleet.queue.list().is_empty(),
        "no prompt of the page became a job"
    );

    // Loopback names are served, with or without the port; the prompt runs.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, text) = status_with_host(
            &g.http,
            reqwest::Method::GET,
            &format!("{}/queue", g.base),
            &host,
            "".into(),
        )
        .await;
        assert_eq!(status, 200, "{host}: {text}");
        assert_eq!(ws_status_with_host(&g, &host).await, 101, "{host} /ws");
    }
    let (status, text) = status_with_host(
        &g.http,
        reqwest::Method::POST,
        &format!("{}/prompt", g.base),
        &format!("localhost:{port}"),
        prompt.into(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = g.fleet.queue.list().into_iter().next().unwrap();
    g.fleet
        .wait_state(
            &job.id,
            storycore_types::JobState::Succeeded,
            std::time::Duration::from_secs(30),
        )
        .await;
    println!("rebinding: the prompt {id} from localhost ran");
    g.stop().await;
}

/// A name the user adds (an alias of this machine) is served too.
#[tokio::test]
async fn a_name_the_user_adds_is_served() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let access = storycore_core::gateway::Access::open()
        .with_hosts(&["comfy.studio.lan".to_string()])
        .unwrap();
    let gw = storycore_core::gateway::Gateway::start_with(
        fleet.queue.clone(),
        fleet.manager.clone(),
        "127.0.0.1:0".parse().unwrap(),
        access,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/queue", gw.addr());
    let (ok, _) = status_with_host(
        &http,
        reqwest::Method::GET,
        &url,
        "comfy.studio.lan:8288",
        "".into(),
    )
    .await;
    let (refused, _) =
        status_with_host(&http, reqwest::Method::GET, &url, "other.lan", "".into()).await;
    assert_eq!((ok, refused), (200, 403));
    let bad = storycore_core::gateway::Access::open()
        .with_hosts(&["http://x:1".to_string()])
        .unwrap_err();
    assert!(bad.contains("without a scheme or a port"), "{bad}");
    gw.stop().await;
    fleet.queue.shutdown().await;
}

async fn send(g: &GatewayFleet, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let r = g
        .http
        .request(method, format!("{}{path}", g.base))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn json_of(t: &str) -> Value {
    serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t:?}"))
}

/// The editor saves a workflow and a setting through the gateway; both read
/// back the same with either instance (or both) down, and after the gateway
/// restarts on the same folder. Nothing reaches an instance.
#[tokio::test]
async fn the_editors_workflows_and_settings_are_the_gateways() {
    use reqwest::Method;
    let mut g = GatewayFleet::of(vec![StandIn::start(), StandIn::start()]).await;
    let workflow =
        json!({"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}]}).to_string();

    // As ComfyUI before anything is saved.
    assert_eq!(
        json_of(&send(&g, Method::GET, "/users", "").await.1),
        json!({"storage": "server", "migrated": false})
    );
    assert_eq!(
        send(&g, Method::GET, "/userdata?dir=workflows", "").await,
        (404, "Directory not found".to_string())
    );
    assert_eq!(send(&g, Method::GET, "/userdata", "").await.0, 400);

    // Saved as the editor saves (the path in one encoded segment).
    let (st, t) = send(
        &g,
        Method::POST,
        "/api/userdata/workflows%2Fportrait.json?overwrite=true",
        &workflow,
    )
    .await;
    assert_eq!((st, json_of(&t)), (200, json!("workflows/portrait.json")));
    let (st, t) = send(
        &g,
        Method::POST,
        "/userdata/workflows%2Fportrait.json?overwrite=false",
        "{}",
    )
    .await;
    assert_eq!((st, t.as_str()), (409, "File already exists"));
    let (st, _) = send(
        &g,
        Method::POST,
        "/api/settings/Comfy.ColorPalette",
        "\"light\"",
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(
        &g,
        Method::POST,
        "/api/settings",
        r#"{"Comfy.Sidebar.Size": "small", "Comfy.Locale": "fr"}"#,
    )
    .await;
    assert_eq!(st, 200);
    // Out of the user's folder: refused as ComfyUI refuses it.
    for bad in [
        "/userdata/..%2F..%2Fqueue.json",
        "/userdata/%2E%2E%2Fother%2Fcomfy.settings.json",
    ] {
        assert_eq!(send(&g, Method::GET, bad, "").await.0, 403, "{bad}");
    }
    assert_eq!(
        send(&g, Method::GET, "/userdata?dir=..%2F..", "").await.0,
        403
    );

    let read_back = |g: &GatewayFleet| {
        let g_http = g.http.clone();
        let base = g.base.clone();
        async move {
            let get = |p: &str| {
                let u = format!("{base}{p}");
                let h = g_http.clone();
                async move {
                    let r = h.get(u).send().await.unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                }
            };
            let file = get("/api/userdata/workflows%2Fportrait.json").await;
            let list = get("/api/userdata?dir=workflows&recurse=true&full_info=true").await;
            let setting = get("/api/settings/Comfy.ColorPalette").await;
            let all = get("/api/settings").await;
            (file, list, setting, all)
        }
    };
    let check = |(file, list, setting, all): ReadBack, when: &str| {
        assert_eq!(file, (200, workflow.clone()), "{when}: the workflow");
        assert_eq!(list.0, 200, "{when}");
        let list = json_of(&list.1);
        assert_eq!(list[0]["path"], "portrait.json", "{when}: {list}");
        assert_eq!(list[0]["size"], workflow.len(), "{when}");
        assert!(
            list[0]["modified"].as_u64().unwrap() > 1_700_000_000_000,
            "{when}: ms"
        );
        assert_eq!(
            setting,
            (200, "\"light\"".to_string()),
            "{when}: the setting"
        );
        assert_eq!(
            json_of(&all.1),
            json!({"Comfy.ColorPalette": "light", "Comfy.Sidebar.Size": "small", "Comfy.Locale": "fr"}),
            "{when}"
        );
    };
    check(read_back(&g).await, "both instances up");
    g.standins[0].kill();
    check(read_back(&g).await, "gpu0 killed");
    g.standins[1].kill();
    check(read_back(&g).await, "both killed");
    // The instances never saw them: a third instance would not either.
    let kept = g.fleet.dir.path().join("gateway-user/default");
    assert!(kept.join("workflows/portrait.json").is_file());
    assert!(kept.join("comfy.settings.json").is_file());
    for s in &g.standins {
        assert!(
            !s.folder()
                .join("user/default/workflows/portrait.json")
                .exists(),
            "nothing saved on an instance"
        );
    }

    // Moved, listed, deleted, as the editor's workflow browser does.
    let (st, t) = send(
        &g,
        Method::POST,
        "/userdata/workflows%2Fportrait.json/move/workflows%2Fteam%2Fportrait-v2.json?full_info=true",
        "",
    )
    .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(json_of(&t)["path"], "workflows/team/portrait-v2.json");
    let (_, t) = send(
        &g,
        Method::GET,
        "/userdata?dir=workflows&recurse=true&split=true",
        "",
    )
    .await;
    assert_eq!(
        json_of(&t),
        json!([["team/portrait-v2.json", "team", "portrait-v2.json"]])
    );
    let (_, t) = send(&g, Method::GET, "/v2/userdata?path=workflows", "").await;
    let v2 = json_of(&t);
    assert_eq!(
        v2[0],
        json!({"name": "team", "path": "workflows/team", "type": "directory"})
    );
    assert_eq!(v2[1]["path"], "workflows/team/portrait-v2.json");
    assert_eq!(
        send(
            &g,
            Method::DELETE,
            "/userdata/workflows%2Fteam%2Fportrait-v2.json",
            ""
        )
        .await
        .0,
        204
    );
    assert_eq!(
        send(
            &g,
            Method::GET,
            "/userdata/workflows%2Fteam%2Fportrait-v2.json",
            ""
        )
        .await
        .0,
        404
    );
    // Saved again, then the gateway restarts on the same folder.
    send(
        &g,
        Method::POST,
        "/userdata/workflows%2Fportrait.json",
        &workflow,
    )
    .await;
    let GatewayFleet { gw, fleet, .. } = g;
    gw.stop().await;
    let again = start(&fleet).await;
    let base = format!("http://{}", again.addr());
    let list: Value = get_json(
        &reqwest::Client::new(),
        &format!("{base}/userdata?dir=workflows"),
    )
    .await;
    assert_eq!(list, json!(["portrait.json"]), "after a restart");
    let palette: Value = get_json(
        &reqwest::Client::new(),
        &format!("{base}/settings/Comfy.ColorPalette"),
    )
    .await;
    assert_eq!(palette, json!("light"));
    again.stop().await;
    fleet.queue.shutdown().await;
}
