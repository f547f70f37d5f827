//! Replays recorded requests against the stand-in and compares with what the
//! real ComfyUI 0.3.64 answered (status, headers, JSON shapes, WS sequences).

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn http_index_replay() {
    let s = Server::start().await;
    let mut failures = vec![];
    for rec in read_jsonl("http/index.jsonl") {
        replay(&s.http, &s.base, s.port, &rec, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // every route also under /api, except /internal
    for (path, status) in [
        ("/api/system_stats", 200),
        ("/api/queue", 200),
        ("/api/object_info/EmptyImage", 200),
        ("/api/internal/logs", 404),
        ("/api/features", 200),
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
}

#[tokio::test]
async fn errors_index_replay() {
    let s = Server::start().await;
    std::fs::copy(
        fixtures().join("errors/get_view_input_example.png"),
        s.path("input/example.png"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("errors/get_view_output_default_type.png"),
        s.path("output/fixture_empty_00001_.png"),
    )
    .unwrap();
    let mut failures = vec![];
    for rec in read_jsonl("errors/index.jsonl") {
        replay(&s.http, &s.base, s.port, &rec, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn prompt_numbering() {
    let s = Server::start().await;
    let ok = read_json("workflows/01_empty_save/request.json")["prompt"].clone();
    let (_, r) = s.post_json("/prompt", &json!({"prompt": ok})).await;
    assert_eq!(r["number"], 0);
    let (st, _) = s.post_json("/prompt", &json!({"prompt": {}})).await;
    assert_eq!(st, 400);
    let (_, r) = s
        .post_json("/prompt", &json!({"prompt": ok, "front": true}))
        .await;
    assert_eq!(r["number"], -2, "failed POSTs count too");
    let (_, r) = s
        .post_json(
            "/prompt",
            &json!({"prompt": ok, "number": 42.5, "prompt_id": "my-id"}),
        )
        .await;
    assert_eq!(
        (r["number"].clone(), r["prompt_id"].clone()),
        (json!(42.5), json!("my-id"))
    );
    let (_, r) = s.post_json("/prompt", &json!({"prompt": ok})).await;
    assert_eq!(r["number"], 3);
    let id = r["prompt_id"].as_str().unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "uuid4: {id}");
    let h = s.wait_history(id).await;
    assert_eq!(h["prompt"][2]["1"]["inputs"]["width"], 512);
}

const WORKFLOWS: &[&str] = &[
    "01_empty_save",
    "02_empty_save_resubmit_cached",
    "02b_empty_save_no_client_id",
    "03_empty_invert_save",
    "05_preview_temp",
    "06_batch2_two_outputs_subfolder",
    "07_preview_any_text",
    "09_load_example_png",
    "10_runtime_error_execution_error",
    "11_runtime_error_resubmit",
];

#[tokio::test]
async fn workflows_match_recordings() {
    let s = Server::start().await;
    std::fs::copy(
        fixtures().join("errors/get_view_input_example.png"),
        s.path("input/example.png"),
    )
    .unwrap();
    let mut failures = vec![];
    for wf in WORKFLOWS.iter().filter(|w| !skipped(w)) {
        let dir = format!("workflows/{wf}");
        let request = read_json(&format!("{dir}/request.json"));
        let client = request["client_id"].as_str().map(String::from);
        let recorded_ws: Vec<Value> = if client.is_some() {
            read_jsonl(&format!("{dir}/ws.jsonl"))
                .into_iter()
                .map(|f| f["message"].clone())
                .collect()
        } else {
            vec![]
        };
        let mut ws = s.ws(Some(client.as_deref().unwrap_or("bystander"))).await;
        let (status, resp) = s.post_json("/prompt", &request).await;
        if status != 200 {
            failures.push(format!("{wf}: POST status {status}: {resp}"));
            continue;
        }
        let d = shape_diff(&read_json(&format!("{dir}/response.json")), &resp);
        if !d.is_empty() {
            failures.push(format!("{wf}: response {d:?}"));
        }
        let pid = resp["prompt_id"].as_str().unwrap().to_string();
        let hist = s.wait_history(&pid).await;
        let rec_hist = read_json(&format!("{dir}/history.json"));
        let rec_entry = rec_hist.as_object().unwrap().values().next().unwrap();
        let d = shape_diff(rec_entry, &hist);
        if !d.is_empty() {
            failures.push(format!("{wf}: history {d:?}"));
        }
        if rec_entry["status"]["status_str"] != hist["status"]["status_str"] {
            failures.push(format!(
                "{wf}: status_str {} vs recorded {}",
                hist["status"]["status_str"], rec_entry["status"]["status_str"]
            ));
        }
        if client.is_none() {
            continue;
        }
        ws.wait_done(&pid).await;
        let got: Vec<String> = ws.types();
        let want: Vec<String> = recorded_ws
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_string())
            .collect();
        if got != want {
            failures.push(format!(
                "{wf}: ws types\n  got      {got:?}\n  recorded {want:?}"
            ));
            continue;
        }
        for (i, (r, a)) in recorded_ws.iter().zip(&ws.frames).enumerate() {
            let d = shape_diff(r, a);
            if !d.is_empty() {
                failures.push(format!("{wf}: frame {i} ({}) {d:?}", r["type"]));
            }
        }
        // outputs are real files served by /view
        for out in hist["outputs"].as_object().unwrap().values() {
            for img in out["images"].as_array().into_iter().flatten() {
                let q = format!(
                    "/view?filename={}&subfolder={}&type={}",
                    img["filename"].as_str().unwrap(),
                    img["subfolder"].as_str().unwrap(),
                    img["type"].as_str().unwrap()
                );
                let r = s.http.get(s.url(&q)).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200, "{wf}: {q}");
                assert_eq!(&r.bytes().await.unwrap()[..8], b"\x89PNG\r\n\x1a\n");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Frames of the recorded whole session that belong to `prompt_id`: from
/// after the previous `executing null` up to this prompt's `executing null`.
fn recorded_segment(session: &[Value], prompt_id: &str) -> Vec<String> {
    let msgs: Vec<&Value> = session.iter().map(|f| &f["message"]).collect();
    let end = msgs
        .iter()
        .position(|m| {
            m["type"] == "executing"
                && m["data"]["node"].is_null()
                && m["data"]["prompt_id"] == prompt_id
        })
        .unwrap();
    let start = msgs[..end]
        .iter()
        .rposition(|m| m["type"] == "executing" && m["data"]["node"].is_null())
        .map(|i| i + 1)
        .unwrap_or(1);
    msgs[start..=end]
        .iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn queue_control_scenarios() {
    let s = Server::with_env(vec![("STANDIN_NODE_MS", "300")]).await;
    let session = read_jsonl("queue_control/ws_whole_session.jsonl");
    let index = read_jsonl("queue_control/index.jsonl");
    let req =
        |name: &str| index.iter().find(|r| r["name"] == name).unwrap()["request_body"].clone();
    let client = req("A_post_0")["client_id"].as_str().unwrap().to_string();
    let mut ws = s.ws(Some(&client)).await;

    // A: five posts, delete a pending one, delete the running one (no-op), clear.
    let mut ids = vec![];
    for i in 0..5 {
        let (st, r) = s.post_json("/prompt", &req(&format!("A_post_{i}"))).await;
        assert_eq!(st, 200);
        ids.push(r["prompt_id"].as_str().unwrap().to_string());
    }
    let q = s.get_json("/queue").await;
    assert_shape(
        "queue after 5 posts",
        &read_json("queue_control/A_queue_after_5_posts.json"),
        &q,
    );
    assert_eq!(
        (
            q["queue_running"].as_array().unwrap().len(),
            q["queue_pending"].as_array().unwrap().len()
        ),
        (1, 4)
    );
    assert_eq!(
        s.get_json("/prompt").await,
        read_json("queue_control/A_prompt_get_after_5_posts.json")
    );
    let (st, _) = s.post_json("/queue", &json!({"delete": [ids[2]]})).await;
    assert_eq!(st, 200);
    ws.wait_until("status q=4", |f| {
        f["type"] == "status" && f["data"]["status"]["exec_info"]["queue_remaining"] == 4
    })
    .await;
    s.post_json("/queue", &json!({"delete": [ids[0]]})).await;
    let q = s.get_json("/queue").await;
    assert_eq!(q["queue_pending"].as_array().unwrap().len(), 3);
    assert_eq!(q["queue_running"][0][1], json!(ids[0]));
    s.post_json("/queue", &json!({"clear": true})).await;
    let q = s.get_json("/queue").await;
    assert_shape(
        "queue after clear",
        &read_json("queue_control/A_queue_after_clear.json"),
        &q,
    );
    assert_eq!(q["queue_pending"], json!([]));
    ws.wait_done(&ids[0]).await;
    let h = s.get_json("/history").await;
    assert_eq!(
        h.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&ids[0]],
        "cleared prompts never reach history"
    );
    assert_shape(
        "A history",
        &read_json("queue_control/A_history_after.json")["d162b5d0-abbb-48a8-b845-98e2814f6f56"],
        &h[&ids[0]],
    );

    // B / B2 / B4 / D: compare the WS sequence of each prompt with the recording.
    let check = |ws: &Ws, from: usize, recorded_pid: &str| {
        let got: Vec<String> = ws.types()[from..].to_vec();
        let want = recorded_segment(&session, recorded_pid);
        assert_eq!(
            got, want,
            "ws sequence for the run recorded as {recorded_pid}"
        );
    };
    // B: targeted interrupt (a non-running id first: ignored)
    let from = ws.frames.len();
    let (_, r) = s.post_json("/prompt", &req("B_post_long")).await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    ws.wait_until("executing 10", |f| {
        f["type"] == "executing"
            && f["data"]["node"] == "10"
            && f["data"]["prompt_id"] == pid.as_str()
    })
    .await;
    s.post_json("/interrupt", &json!({"prompt_id": "not-running"}))
        .await;
    s.post_json("/interrupt", &json!({"prompt_id": pid})).await;
    ws.wait_done(&pid).await;
    check(&ws, from, "ebb41653-b864-4ecd-baa3-b40a7e0c65a5");
    let h = s.get_json(&format!("/history/{pid}")).await;
    assert_shape(
        "B history",
        &read_json("queue_control/B_history_interrupted.json")
            ["ebb41653-b864-4ecd-baa3-b40a7e0c65a5"],
        &h[&pid],
    );
    assert_eq!(
        (
            h[&pid]["status"]["status_str"].clone(),
            h[&pid]["status"]["completed"].clone()
        ),
        (json!("error"), json!(false))
    );
    // B2: global interrupt without a body
    let from = ws.frames.len();
    let (_, r) = s.post_json("/prompt", &req("B2_post_long")).await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    ws.wait_until("executing 10", |f| {
        f["type"] == "executing"
            && f["data"]["node"] == "10"
            && f["data"]["prompt_id"] == pid.as_str()
    })
    .await;
    assert_eq!(
        s.http
            .post(s.url("/interrupt"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    ws.wait_done(&pid).await;
    check(&ws, from, "afdcb664-1cd4-4477-bfae-58f83534b650");
    // B3/B4: an idle interrupt does not affect the next prompt
    s.post_json("/interrupt", &json!({})).await;
    let from = ws.frames.len();
    let (_, r) = s
        .post_json("/prompt", &req("B4_post_after_idle_interrupt"))
        .await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    ws.wait_done(&pid).await;
    check(&ws, from, "212fa794-c38a-45a7-85ec-ee13e9a406d8");
    assert_eq!(
        s.get_json(&format!("/history/{pid}")).await[&pid]["status"]["status_str"],
        "success"
    );

    // C: history max_items / offset / delete / clear
    let all = s.get_json("/history").await;
    let mut keys: Vec<String> = all.as_object().unwrap().keys().cloned().collect();
    keys.sort_by_key(|k| all[k]["prompt"][0].as_i64()); // oldest first (JSON parsing here does not keep order)
    assert_eq!(keys.len(), 4);
    let two = s.get_json("/history?max_items=2").await;
    let two_keys: Vec<&String> = two.as_object().unwrap().keys().collect();
    assert_eq!(two_keys.len(), 2);
    assert!(two_keys.iter().all(|k| keys[2..].contains(k)), "newest two");
    let off = s.get_json("/history?max_items=2&offset=1").await;
    let mut off_keys: Vec<&String> = off.as_object().unwrap().keys().collect();
    let mut want: Vec<&String> = keys[1..3].iter().collect();
    off_keys.sort();
    want.sort();
    assert_eq!(off_keys, want);
    s.post_json("/history", &json!({"delete": [keys[0]]})).await;
    assert_eq!(
        s.get_json(&format!("/history/{}", keys[0])).await,
        json!({})
    );
    assert_eq!(
        s.post_json("/history", &json!({"delete": ["nope"]}))
            .await
            .0,
        200
    );
    s.post_json("/history", &json!({"clear": true})).await;
    assert_eq!(s.get_json("/history").await, json!({}));

    // D: identical resubmission is cached; /free drops the cache
    for (name, recorded) in [
        ("D_post_1", "f264506c-803a-4e87-9b0d-a9d3944314a3"),
        ("D_post_2_same", "d10473bb-d80e-4906-8c3e-ba9949eaaf80"),
    ] {
        let from = ws.frames.len();
        let (_, r) = s.post_json("/prompt", &req(name)).await;
        let pid = r["prompt_id"].as_str().unwrap().to_string();
        ws.wait_done(&pid).await;
        check(&ws, from, recorded);
    }
    let (st, body) = s
        .post_json(
            "/free",
            &json!({"unload_models": true, "free_memory": true}),
        )
        .await;
    assert_eq!((st, body), (200, json!("")));
    let from = ws.frames.len();
    let (_, r) = s
        .post_json("/prompt", &req("D_post_3_same_after_free"))
        .await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    ws.wait_done(&pid).await;
    check(&ws, from, "9642ae5f-3f38-403d-9db0-605cf7addb34");
}

#[tokio::test]
async fn websocket_routing() {
    let s = Server::start().await;
    let request = read_json("workflows/01_empty_save/request.json");
    // handshake: generated sid, feature flags
    let anon = s.ws(None).await;
    let sid = anon.frames[0]["data"]["sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    assert!(sid.chars().all(|c| c.is_ascii_hexdigit()));
    let mut ff = s.ws(Some("ff-client")).await;
    ff.announce_preview_metadata().await;
    assert_shape(
        "feature_flags",
        &read_jsonl("websocket/feature_flags_handshake.jsonl")[1]["message"],
        &ff.frames[1],
    );

    // submitter A, bystander B, two sockets with the same id (older one gets nothing)
    let mut a_old = s.ws(Some("client-a")).await;
    let mut a = s.ws(Some("client-a")).await;
    let mut b = s.ws(Some("client-b")).await;
    let mut req = request.clone();
    req["client_id"] = json!("client-a");
    let (_, r) = s.post_json("/prompt", &req).await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    a.wait_done(&pid).await;
    b.wait_after(1, "final status", |f| {
        f["type"] == "status" && f["data"]["status"]["exec_info"]["queue_remaining"] == 0
    })
    .await;
    assert!(
        b.types().iter().all(|t| t == "status"),
        "bystander got {:?}",
        b.types()
    );
    a_old.drain().await;
    assert_eq!(
        a_old.frames.len(),
        1,
        "older socket with the same clientId must get nothing: {:?}",
        a_old.types()
    );
    let recorded: Vec<String> = read_jsonl("websocket/bystander_other_client_B.jsonl")
        .iter()
        .take(4)
        .map(|f| f["message"]["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(b.types()[..4].to_vec(), recorded);

    // prompt without client_id: nobody gets execution_start/executing/executed
    let mut req = request.clone();
    req.as_object_mut().unwrap().remove("client_id");
    req["prompt"]["1"]["inputs"]["color"] = json!(7);
    let from = b.frames.len();
    s.post_json("/prompt", &req).await;
    b.wait_after(from, "final status", |f| {
        f["type"] == "status" && f["data"]["status"]["exec_info"]["queue_remaining"] == 0
    })
    .await;
    let types = b.types()[from..].to_vec();
    assert!(types.contains(&"progress_state".to_string()), "{types:?}");
    assert!(
        !types.iter().any(|t| t.starts_with("execut")),
        "no execution_* / executing / executed without client_id: {types:?}"
    );
}

#[tokio::test]
async fn reconnect_mid_execution_gets_current_node() {
    let s = Server::with_env(vec![("STANDIN_NODE_MS", "400")]).await;
    let mut req = read_json("workflows/03_empty_invert_save/request.json");
    req["client_id"] = json!("re-client");
    let mut first = s.ws(Some("re-client")).await;
    let (_, r) = s.post_json("/prompt", &req).await;
    let pid = r["prompt_id"].as_str().unwrap().to_string();
    first
        .wait_until("executing 2", |f| {
            f["type"] == "executing" && f["data"]["node"] == "2"
        })
        .await;
    let mut again = s.ws(Some("re-client")).await;
    again.wait_count(2).await;
    assert_eq!(
        again.frames[0]["data"]["status"]["exec_info"]["queue_remaining"],
        1
    );
    assert_eq!(
        again.frames[1],
        json!({"type": "executing", "data": {"node": "2"}})
    );
    again.wait_done(&pid).await;
}

/// With STANDIN_PREVIEWS, each progress step carries a preview image, as
/// ComfyUI sends them (FACTS section 4): type 4 with its prompt and node
/// before the step's `progress` to a socket that announced preview
/// metadata, type 1 after it to one that did not, and none to others.
#[tokio::test]
async fn previews_as_comfyui_sends_them() {
    let s = Server::with_env(vec![
        ("STANDIN_PREVIEWS", "1"),
        ("STANDIN_PROGRESS_STEPS", "2"),
    ])
    .await;
    let mut meta = s.ws(Some("meta")).await;
    meta.announce_preview_metadata().await;
    let mut plain = s.ws(Some("plain")).await;
    let mut other = s.ws(Some("bystander")).await;
    let prompt = read_json("workflows/01_empty_save/request.json")["prompt"].clone();
    for (ws, client) in [(&mut meta, "meta"), (&mut plain, "plain")] {
        // Not the same prompt twice: ComfyUI would answer it from its cache.
        let mut prompt = prompt.clone();
        prompt["1"]["inputs"]["width"] = json!(if client == "meta" { 64 } else { 65 });
        let (st, r) = s
            .post_json("/prompt", &json!({"prompt": prompt, "client_id": client}))
            .await;
        assert_eq!(st, 200);
        let id = r["prompt_id"].as_str().unwrap().to_string();
        let from = ws.frames.len();
        ws.wait_done(&id).await;
        let seq: Vec<String> = ws.frames[from..]
            .iter()
            .filter(|f| f["type"] == "binary" || f["type"] == "progress")
            .map(|f| match f["event"].as_u64() {
                Some(e) => format!("binary{e}"),
                None => "progress".into(),
            })
            .collect();
        println!("previews to {client}: {seq:?}");
        let step = if client == "meta" {
            ["binary4", "progress"]
        } else {
            ["progress", "binary1"]
        };
        assert_eq!(seq, step.repeat(seq.len() / 2), "{client}");
        assert!(!seq.is_empty());
        if client == "meta" {
            let b = ws.frames.iter().find(|f| f["type"] == "binary").unwrap();
            assert_eq!(b["meta"]["prompt_id"], id.as_str());
            assert_eq!(b["meta"]["image_type"], "image/png");
        }
    }
    other.drain().await;
    assert!(
        other.frames.iter().all(|f| f["type"] != "binary"),
        "none to a bystander"
    );
}
