//! `cargo run -p storycore-core --release --example gateway_bench [-- --requests N --prompts M]`
//!
//! What the gateway adds to talking to a ComfyUI directly, on one stand-in
//! that answers at once: the latency of `GET /queue` and `POST /prompt`
//! (direct and through the gateway, interleaved so both see the same
//! noise; a gateway prompt is written durably before it is answered, a
//! direct one is not), then the throughput of M prompts posted to the
//! gateway and run to the end, and how many of them reached the history.
//! Not a test: the figures vary with the machine's load.
//!
//! Then, per prompt, the time from its POST to `execution_success` on the
//! client's own `/ws`, direct and through the gateway.
//!
//! Last, what the gateway adds to each `/ws` event while a prompt runs: on
//! a second stand-in that sends 20 progress steps a node, the time from a
//! progress event on the app's event bus (where the queue's own `/ws`
//! connection to the instance puts it, the hop a direct client has too) to
//! the same `progress` frame on the client's socket (the bus's time is when
//! this benchmark's own listener heard it, no earlier than the event), and
//! how many of the bus's progress events the client never got.
//!
//! Then what HTTPS adds on a network address (a gateway with a generated
//! certificate beside one serving plain HTTP by choice, both behind a
//! token, interleaved): per `GET /queue` on kept-alive connections, and per
//! `/ws` progress event (bus to client, `wss` against `ws`).
//!
//! Last, fair share: 200 prompts of one person's token, then one of
//! another's, on one instance: how many of the 200 started after the single
//! prompt was submitted and before it started (its wait in jobs), with
//! named tokens and with one shared token for both (the order without
//! people). Its wait in milliseconds is printed too, but also holds the
//! instance's own pauses (a cooldown after a refused send, say).
//!
//! The last line is
//! `SUMMARY queue_added_median_ms=A prompt_added_median_ms=B event_added_median_ms=E relay_added_median_ms=R relay_lost=X prompts=M prompts_per_s=T lost=L tls_request_added_median_ms=Q tls_event_added_median_ms=V fair_wait_jobs=F unfair_wait_jobs=U`.

#[path = "support/fleet.rs"]
mod fleet;
#[allow(dead_code)]
#[path = "../tests/support/standin.rs"]
mod standin;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::gateway::Gateway;
use storycore_core::manager::InstanceManager;
use storycore_types::{HealthStatus, InstanceConfig, InstanceStatus};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|k| args.get(k + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn workflow(k: usize) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": k}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": format!("bench{k}")}}
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints two interleaved series side by side (medians, p95s, what the
/// second adds) and answers their medians.
fn compare(label: &str, a: (&str, &mut [f64]), b: (&str, &mut [f64])) -> (f64, f64) {
    let (ma, mb) = (quantile(a.1, 0.5), quantile(b.1, 0.5));
    println!(
        "{label} {} median {ma:.3} ms p95 {:.3} | {} median {mb:.3} ms p95 {:.3} | added {:.3} ms",
        a.0,
        quantile(a.1, 0.95),
        b.0,
        quantile(b.1, 0.95),
        mb - ma
    );
    (ma, mb)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn timed(req: reqwest::RequestBuilder) -> f64 {
    let t = Instant::now();
    let r = req.send().await.expect("an answer");
    assert!(r.status().is_success(), "{}", r.status());
    r.bytes().await.unwrap();
    ms(t.elapsed())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // STORYCORE_LOG=storycore_core=debug: the app's own log, on stderr.
    if let Ok(filter) = std::env::var("STORYCORE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let requests = arg("--requests", 500);
    let prompts = arg("--prompts", 1000);
    let server = standin::StandIn::builder()
        .env("STANDIN_NODE_MS", "0")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let manager = fleet::running(dir.path(), &[server.port()], None).await;
    let options = DispatchOptions {
        calibrate: false,
        ..DispatchOptions::default()
    };
    let (queue, _) = JobQueue::open(manager.clone(), dir.path(), options).unwrap();
    let gw = Gateway::start(
        queue.clone(),
        manager.clone(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let direct = server.url();
    let via = format!("http://{}", gw.addr());
    let http = reqwest::Client::new();
    if std::env::args().any(|a| a == "--fair-only") {
        let (fair, unfair) = fair_share(&manager, &queue, dir.path()).await;
        println!("SUMMARY fair_wait_jobs={fair:.0} unfair_wait_jobs={unfair:.0}");
        gw.stop().await;
        queue.shutdown().await;
        manager.shutdown().await;
        return;
    }
    println!(
        "gateway_bench: {requests} requests each way, {prompts} prompts; one stand-in answering at once; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // GET /queue, interleaved.
    let (mut d, mut g) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        d.push(timed(http.get(format!("{direct}/queue"))).await);
        g.push(timed(http.get(format!("{via}/queue"))).await);
    }
    let (dq, gq) = compare("GET /queue     ", ("direct", &mut d), ("gateway", &mut g));

    // POST /prompt, interleaved (the gateway's is durable when answered).
    let (mut d, mut g) = (Vec::new(), Vec::new());
    for k in 0..requests.min(200) {
        let body = json!({"prompt": workflow(k), "client_id": "bench"});
        d.push(timed(http.post(format!("{direct}/prompt")).json(&body)).await);
        g.push(timed(http.post(format!("{via}/prompt")).json(&body)).await);
    }
    let (dp, gp) = compare("POST /prompt   ", ("direct", &mut d), ("gateway", &mut g));
    wait_idle(&http, &via).await;

    // A prompt's end on /ws: from the POST to `execution_success` on the
    // client's socket, direct and through the gateway (which places,
    // follows and relays it), interleaved.
    let (mut d, mut g) = (Vec::new(), Vec::new());
    for k in 0..requests.min(100) {
        d.push(until_success(&http, &direct, 200_000 + k).await);
        g.push(until_success(&http, &via, 300_000 + k).await);
    }
    let (de, ge) = compare(
        "POST -> /ws execution_success ",
        ("direct", &mut d),
        ("gateway", &mut g),
    );
    wait_idle(&http, &via).await;

    // Throughput: M prompts posted by 8 clients at once, run to the end.
    let before = history_len(&http, &via).await;
    let t = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for c in 0..8 {
        let (http, via) = (http.clone(), via.clone());
        posts.spawn(async move {
            for k in (c..prompts).step_by(8) {
                let body = json!({"prompt": workflow(100_000 + k), "client_id": format!("c{c}")});
                let r = http
                    .post(format!("{via}/prompt"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let posted = t.elapsed();
    wait_idle(&http, &via).await;
    let took = t.elapsed().as_secs_f64();
    let reached = history_len(&http, &via).await - before;
    let lost = prompts.saturating_sub(reached);
    println!(
        "{prompts} prompts: posted in {:.2} s, all finished in {took:.2} s ({:.0} prompts/s); in the history: {reached}, lost: {lost}",
        posted.as_secs_f64(),
        prompts as f64 / took
    );

    // Each /ws event while a prompt runs: from the app's bus to the client.
    let stepper = standin::StandIn::builder()
        .env("STANDIN_NODE_MS", "200")
        .env("STANDIN_PROGRESS_STEPS", "20")
        .start();
    let mut c = InstanceConfig::new("gpu1", "GPU 1", stepper.port() as u32);
    c.host = Some("127.0.0.1".into());
    manager.create(c).await.unwrap();
    manager.start("gpu1").await.unwrap();
    manager.pause("gpu0").await.unwrap();
    wait_healthy(&manager, "gpu1").await;
    let (mut relay, mut relay_lost, mut relayed) = (Vec::new(), 0usize, 0usize);
    for k in 0..arg("--relay-prompts", 10) {
        let (lat, lost) = relay_one(&http, &via, &manager, &queue, 400_000 + k).await;
        relayed += lat.len();
        relay.extend(lat);
        relay_lost += lost;
    }
    let rm = quantile(&mut relay, 0.5);
    println!(
        "/ws progress, bus -> client  median {rm:.3} ms p95 {:.3} ms over {relayed} events; lost {relay_lost}",
        quantile(&mut relay, 0.95)
    );
    let (tls_request, tls_event) = tls_added(&http, &queue, &manager, dir.path()).await;
    let (fair, unfair) = fair_share(&manager, &queue, dir.path()).await;
    println!(
        "SUMMARY queue_added_median_ms={:.3} prompt_added_median_ms={:.3} event_added_median_ms={:.3} relay_added_median_ms={rm:.3} relay_lost={relay_lost} prompts={prompts} prompts_per_s={:.0} lost={lost} tls_request_added_median_ms={tls_request:.3} tls_event_added_median_ms={tls_event:.3} fair_wait_jobs={fair:.0} unfair_wait_jobs={unfair:.0}",
        gq - dq,
        gp - dp,
        ge - de,
        prompts as f64 / took
    );
    gw.stop().await;
    queue.shutdown().await;
    manager.shutdown().await;
}

async fn wait_healthy(manager: &InstanceManager, id: &str) {
    while !manager.get(id).is_some_and(|i| {
        i.status == InstanceStatus::Running && i.health.status == HealthStatus::Healthy
    }) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One prompt through the gateway: for each progress event of its job on
/// the app's bus, the milliseconds until the client's socket had the same
/// `progress` frame; and how many it never had.
async fn relay_one(
    http: &reqwest::Client,
    base: &str,
    manager: &InstanceManager,
    queue: &JobQueue,
    k: usize,
) -> (Vec<f64>, usize) {
    relay_via(http, base, None, manager, queue, k).await
}

/// [`relay_one`] with a token (sent as bearer) and the TLS connector a
/// `wss` socket trusts the gateway's certificate through.
async fn relay_via(
    http: &reqwest::Client,
    base: &str,
    secure: Option<(&str, Option<tokio_tungstenite::Connector>)>,
    manager: &InstanceManager,
    queue: &JobQueue,
    k: usize,
) -> (Vec<f64>, usize) {
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};
    use storycore_types::AppEvent;
    // (when heard, job, node, value) of each progress event on the bus.
    type Heard = Vec<(Instant, String, String, f64)>;
    let on_bus: Arc<Mutex<Heard>> = Arc::default();
    let mut events = manager.subscribe();
    let seen = on_bus.clone();
    let listener = tokio::spawn(async move {
        loop {
            let list = match events.recv().await {
                Ok(AppEvent::Batch(list)) => list,
                Ok(e) => vec![e],
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            for e in list {
                if let AppEvent::JobProgress {
                    job_id,
                    node,
                    value,
                    ..
                } = e
                {
                    let at = Instant::now();
                    let node = node.unwrap_or_default();
                    seen.lock().unwrap().push((at, job_id, node, value));
                }
            }
        }
    });
    let client = format!("relay-{k}");
    let ws_url = format!("{}/ws?clientId={client}", base.replacen("http", "ws", 1));
    let token = secure.as_ref().map(|(t, _)| t.to_string());
    let (mut ws, _) = match secure {
        None => tokio_tungstenite::connect_async(ws_url).await.unwrap(),
        Some((token, connector)) => {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = ws_url.into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector)
                .await
                .unwrap()
        }
    };
    let prompt = post_prompt(http, base, token.as_deref(), Some(&client), k).await;
    let mut on_client: Vec<(Instant, String, f64)> = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        let tokio_tungstenite::tungstenite::Message::Text(text) = m else {
            continue;
        };
        let at = Instant::now();
        let f: Value = serde_json::from_str(&text).unwrap();
        if f["type"] == "progress" {
            let node = f["data"]["node"].as_str().unwrap_or_default().to_string();
            on_client.push((at, node, f["data"]["value"].as_f64().unwrap_or(-1.0)));
        }
        if f["type"] == "executing" && f["data"]["node"].is_null() {
            break;
        }
    }
    listener.abort();
    let job = queue
        .list()
        .into_iter()
        .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == prompt))
        .expect("the prompt's job");
    let bus = on_bus.lock().unwrap();
    let (mut lat, mut lost) = (Vec::new(), 0);
    for (t, _, node, value) in bus.iter().filter(|e| e.1 == job.id) {
        match on_client.iter().find(|c| &c.1 == node && c.2 == *value) {
            // Before the bench's own listener woke (it is no earlier than
            // the event): counted as no time.
            Some(c) => lat.push(ms(c.0.saturating_duration_since(*t))),
            None => {
                lost += 1;
                if std::env::var_os("GATEWAY_BENCH_DEBUG").is_some() {
                    eprintln!(
                        "relay: not on the client: node {node} value {value}; client had {:?}",
                        on_client
                            .iter()
                            .map(|c| (c.1.as_str(), c.2))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    (lat, lost)
}

/// Milliseconds from posting one prompt to its `execution_success` on the
/// client's socket (opened before the POST).
async fn until_success(http: &reqwest::Client, base: &str, k: usize) -> f64 {
    use futures_util::StreamExt;
    let client = format!("bench-{k}");
    let ws_url = format!("{}/ws?clientId={client}", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let t = Instant::now();
    let prompt = post_prompt(http, base, None, Some(&client), k).await;
    while let Some(Ok(m)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = m {
            let f: Value = serde_json::from_str(&text).unwrap();
            if std::env::var_os("GATEWAY_BENCH_DEBUG").is_some() {
                eprintln!("{base} {}", &text[..text.len().min(160)]);
            }
            if f["type"] == "execution_success" && f["data"]["prompt_id"] == prompt.as_str() {
                return ms(t.elapsed());
            }
        }
    }
    panic!("the socket closed before the prompt ended");
}

async fn wait_idle(http: &reqwest::Client, via: &str) {
    wait_idle_as(http, via, None).await
}

/// Posts `workflow(k)`, with `token` and as `client` where given; answers
/// its prompt id.
async fn post_prompt(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    client: Option<&str>,
    k: usize,
) -> String {
    let mut post = http.post(format!("{base}/prompt"));
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    let mut body = json!({"prompt": workflow(k)});
    if let Some(client) = client {
        body["client_id"] = json!(client);
    }
    let r: Value = post.json(&body).send().await.unwrap().json().await.unwrap();
    r["prompt_id"].as_str().unwrap().to_string()
}

/// Until the gateway has nothing queued or running (of `token`'s, with one).
async fn wait_idle_as(http: &reqwest::Client, via: &str, token: Option<&str>) {
    loop {
        let mut get = http.get(format!("{via}/prompt"));
        if let Some(t) = token {
            get = get.bearer_auth(t);
        }
        let p: Value = get.send().await.unwrap().json().await.unwrap();
        if p["exec_info"]["queue_remaining"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn history_len(http: &reqwest::Client, via: &str) -> usize {
    let h: Value = http
        .get(format!("{via}/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h.as_object().map_or(0, |m| m.len())
}

/// What HTTPS adds, against plain HTTP on the same kind of address:
/// medians of `GET /queue` (kept-alive connections) and of each `/ws`
/// progress event's bus-to-client time, interleaved.
async fn tls_added(
    _http: &reqwest::Client,
    queue: &JobQueue,
    manager: &InstanceManager,
    dir: &std::path::Path,
) -> (f64, f64) {
    use storycore_core::gateway::{Access, TlsIdentity};
    let book = storycore_core::gateway::TokenBook::open(dir);
    let token = book.create("bench", true).unwrap();
    let tls = TlsIdentity::generated(&dir.join("gateway-tls"), &[]).unwrap();
    let any: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let secure = Gateway::start_with(
        queue.clone(),
        manager.clone(),
        any,
        Access::open()
            .with_tokens(book.clone())
            .with_tls(tls.clone()),
    )
    .await
    .unwrap();
    let plain = Gateway::start_with(
        queue.clone(),
        manager.clone(),
        any,
        Access::open().with_tokens(book).with_plain_http(),
    )
    .await
    .unwrap();
    let ca = std::fs::read(tls.trust_file()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let s_base = format!("https://localhost:{}", secure.addr().port());
    let p_base = format!("http://localhost:{}", plain.addr().port());
    let (mut s, mut p) = (Vec::new(), Vec::new());
    for _ in 0..500 {
        p.push(timed(http.get(format!("{p_base}/queue")).bearer_auth(&token)).await);
        s.push(timed(https.get(format!("{s_base}/queue")).bearer_auth(&token)).await);
    }
    let (pm, sm) = compare("HTTPS GET /queue ", ("plain", &mut p), ("https", &mut s));
    let connector = || {
        let c = native_tls::TlsConnector::builder()
            .add_root_certificate(native_tls::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        Some(tokio_tungstenite::Connector::NativeTls(c))
    };
    let (mut se, mut pe, mut lost) = (Vec::new(), Vec::new(), 0);
    for k in 0..5 {
        let (l, x) = relay_via(
            &http,
            &p_base,
            Some((&token, None)),
            manager,
            queue,
            500_000 + k,
        )
        .await;
        pe.extend(l);
        lost += x;
        let (l, x) = relay_via(
            &https,
            &s_base,
            Some((&token, connector())),
            manager,
            queue,
            600_000 + k,
        )
        .await;
        se.extend(l);
        lost += x;
    }
    let (pem, sem) = (quantile(&mut pe, 0.5), quantile(&mut se, 0.5));
    println!(
        "HTTPS /ws progress, bus -> client  ws median {pem:.3} ms | wss median {sem:.3} ms | added {:.3} ms over {} events; lost {lost}",
        sem - pem,
        se.len() + pe.len()
    );
    secure.stop().await;
    plain.stop().await;
    (sm - pm, sem - pem)
}

/// The single prompt's wait behind another person's 200, in jobs' times:
/// with named tokens, and with one shared token for both.
async fn fair_share(
    manager: &InstanceManager,
    queue: &JobQueue,
    dir: &std::path::Path,
) -> (f64, f64) {
    let quick = standin::StandIn::builder()
        .env("STANDIN_NODE_MS", "20")
        .start();
    let mut c = InstanceConfig::new("gpu2", "GPU 2", quick.port() as u32);
    c.host = Some("127.0.0.1".into());
    manager.create(c).await.unwrap();
    manager.start("gpu2").await.unwrap();
    for busy in ["gpu0", "gpu1"] {
        let _ = manager.pause(busy).await;
    }
    wait_healthy(manager, "gpu2").await;
    let book = storycore_core::gateway::TokenBook::open(dir);
    let (a, b) = (
        book.create("fair-a", false).unwrap(),
        book.create("fair-b", false).unwrap(),
    );
    let shared = book.create("fair-all", true).unwrap();
    let gw = Gateway::start_with(
        queue.clone(),
        manager.clone(),
        "127.0.0.1:0".parse().unwrap(),
        storycore_core::gateway::Access::open().with_tokens(book),
    )
    .await
    .unwrap();
    let base = format!("http://{}", gw.addr());
    let http = reqwest::Client::new();
    // Warm: the instance's first prompt waits for its socket; not measured.
    if std::env::var_os("GATEWAY_BENCH_COLD").is_none() {
        post_prompt(&http, &base, Some(&shared), None, 799_999).await;
        wait_idle_as(&http, &base, Some(&shared)).await;
    }
    let mut out = Vec::new();
    for (ta, tb, label) in [
        (&a, &b, "named tokens"),
        (&shared, &shared, "one shared token"),
    ] {
        let mut ids = Vec::new();
        for k in 0..200 {
            ids.push(post_prompt(&http, &base, Some(ta), None, 700_000 + k).await);
        }
        let single = post_prompt(&http, &base, Some(tb), None, 800_000).await;
        let of = |p: &str| {
            queue
                .list()
                .into_iter()
                .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == p))
        };
        loop {
            let all_done = std::iter::once(&single)
                .chain(&ids)
                .all(|p| of(p).is_some_and(|j| j.state.is_final()));
            if all_done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let j = of(&single).unwrap();
        let before = ids
            .iter()
            .filter_map(|p| of(p))
            .filter(|a| a.started_at > Some(j.created_at) && a.started_at < j.started_at)
            .count();
        let waited = (j.started_at.unwrap() - j.created_at).num_milliseconds() as f64;
        let mut runs: Vec<f64> = ids
            .iter()
            .filter_map(|p| of(p))
            .filter_map(|j| Some((j.finished_at? - j.started_at?).num_milliseconds() as f64))
            .collect();
        let job = quantile(&mut runs, 0.5).max(1.0);
        println!(
            "fair share ({label}): {before} of the 200 started after the single prompt was submitted and before it started (a job's median run {job:.0} ms); it waited {waited:.0} ms in all",
        );
        out.push(before as f64);
    }
    gw.stop().await;
    (out[0], out[1])
}
