//! The health monitor against a real stand-in, its behaviour changed at run
//! time through the fault proxy or by killing the process.

use crate::support;

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storycore_core::client::ComfyClient;
use storycore_core::health::{HealthHandle, HealthMonitor, HealthPolicy};
use storycore_types::{Alert, AlertKind, AppEvent, HealthStatus};
use support::fault_proxy::{FaultProxy, Mode};
use support::standin::StandIn;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(20);

/// Fast probes with thresholds far from what an idle stand-in takes (a few ms).
fn quick_policy() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(150),
        resource_interval: Duration::from_secs(60),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(700),
        degraded_response_ms: 300.0,
        no_answer_after: Duration::from_secs(30),
        ..HealthPolicy::default()
    }
}

/// What the monitor published, as a test reads it.
#[derive(Default)]
struct Seen {
    statuses: Vec<HealthStatus>,
    alerts: Vec<Alert>,
}

impl Seen {
    fn take(&mut self, ev: AppEvent, id: &str) {
        match ev {
            AppEvent::HealthChanged { id: i, health } => {
                assert_eq!(i, id);
                if self.statuses.last() != Some(&health.status) {
                    self.statuses.push(health.status);
                }
            }
            AppEvent::Alert(a) => {
                assert_eq!(a.instance_id, id);
                self.alerts.push(a);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn alert_kinds(&self) -> Vec<AlertKind> {
        self.alerts.iter().map(|a| a.kind.clone()).collect()
    }
}

/// Reads events until the status is `want`.
async fn until_status(
    rx: &mut broadcast::Receiver<AppEvent>,
    seen: &mut Seen,
    id: &str,
    want: HealthStatus,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.statuses.last() != Some(&want) {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} within {WAIT:?}; seen {:?}", seen.statuses))
            .expect("event channel");
        seen.take(ev, id);
    }
    // The alerts of a change are sent right after its HealthChanged.
    while let Ok(ev) = rx.try_recv() {
        seen.take(ev, id);
    }
}

fn spawn(
    id: &str,
    url: &str,
    policy: HealthPolicy,
) -> (HealthHandle, broadcast::Receiver<AppEvent>) {
    let (tx, rx) = broadcast::channel(1024);
    let client = ComfyClient::from_endpoint(url).unwrap();
    (HealthMonitor::spawn(id.into(), client, policy, tx), rx)
}

#[tokio::test]
async fn health_follows_a_server_that_slows_fails_and_recovers() {
    let server = StandIn::start();
    let proxy = FaultProxy::start(server.addr()).await;
    let (handle, mut rx) = spawn("inst-a", &proxy.url(), quick_policy());
    let mut seen = Seen::default();

    until_status(&mut rx, &mut seen, "inst-a", HealthStatus::Healthy).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(450)));
    until_status(&mut rx, &mut seen, "inst-a", HealthStatus::Degraded).await;
    assert!(handle.current().response_time > 300.0);
    proxy.set_mode(Mode::Blackhole);
    until_status(&mut rx, &mut seen, "inst-a", HealthStatus::Unhealthy).await;
    assert!(handle.current().consecutive_failures >= 3);
    proxy.set_mode(Mode::Pass);
    until_status(&mut rx, &mut seen, "inst-a", HealthStatus::Healthy).await;

    use HealthStatus::*;
    assert_eq!(seen.statuses, [Healthy, Degraded, Unhealthy, Healthy]);
    assert_eq!(
        seen.alert_kinds(),
        [AlertKind::BecameUnhealthy, AlertKind::Recovered]
    );
    let unhealthy = &seen.alerts[0].message;
    assert!(
        unhealthy.contains("inst-a") && unhealthy.contains(&proxy.url()),
        "{unhealthy}"
    );
    assert!(
        unhealthy.contains("did not answer within 700 ms"),
        "{unhealthy}"
    );

    let h = handle.current();
    assert_eq!(h.status, Healthy);
    assert_eq!(h.consecutive_failures, 0);
    assert!(h.error_count >= 3);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_killed_server_is_refused_then_unhealthy_then_recovers() {
    let mut server = StandIn::start();
    let port = server.port();
    let policy = HealthPolicy {
        no_answer_after: Duration::from_millis(800),
        ..quick_policy()
    };
    let (handle, mut rx) = spawn("inst-k", &server.url(), policy);
    let mut seen = Seen::default();
    until_status(&mut rx, &mut seen, "inst-k", HealthStatus::Healthy).await;

    server.kill();
    until_status(&mut rx, &mut seen, "inst-k", HealthStatus::Unhealthy).await;
    let became = seen
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::BecameUnhealthy)
        .expect("a BecameUnhealthy alert");
    assert!(
        became.message.contains("refused the connection"),
        "{}",
        became.message
    );

    // Still down: the no-answer alert comes once the silence passes 800 ms.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen
        .alert_kinds()
        .iter()
        .any(|k| matches!(k, AlertKind::NoAnswer { .. }))
    {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("NoAnswer")
            .unwrap();
        seen.take(ev, "inst-k");
    }

    let _again = StandIn::builder().port(port).start();
    until_status(&mut rx, &mut seen, "inst-k", HealthStatus::Healthy).await;
    let kinds = seen.alert_kinds();
    assert_eq!(
        kinds.first(),
        Some(&AlertKind::BecameUnhealthy),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&AlertKind::Recovered), "{kinds:?}");
    let no_answer = kinds
        .iter()
        .filter(|k| matches!(k, AlertKind::NoAnswer { .. }))
        .count();
    assert_eq!(no_answer, 1, "once per outage: {kinds:?}");
    drop(handle);
}

#[tokio::test]
async fn system_stats_500_makes_the_server_unhealthy() {
    let server = StandIn::builder()
        .env("STANDIN_SYSTEM_STATS_500", "1")
        .no_wait()
        .start();
    let (_handle, mut rx) = spawn("inst-500", &server.url(), quick_policy());
    let mut seen = Seen::default();
    until_status(&mut rx, &mut seen, "inst-500", HealthStatus::Unhealthy).await;
    assert!(
        !seen.statuses.contains(&HealthStatus::Healthy),
        "{:?}",
        seen.statuses
    );
    let msg = &seen
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::BecameUnhealthy)
        .unwrap()
        .message;
    assert!(msg.contains("HTTP 500"), "{msg}");
}

#[tokio::test]
async fn check_now_reports_resources_and_active_workflows() {
    let server = StandIn::builder().env("STANDIN_NODE_MS", "3000").start();
    let policy = HealthPolicy {
        interval: Duration::from_secs(3600),
        starting_interval: Duration::from_secs(3600),
        // Any machine running this test uses more than 1% of its RAM.
        resource_high_percent: 1.0,
        ..quick_policy()
    };
    let (handle, mut rx) = spawn("inst-c", &server.url(), policy);
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hc"}}
    });
    for id in ["hc-1", "hc-2"] {
        client.submit_prompt(prompt.clone(), id, "c").await.unwrap();
    }
    let health = handle.check_now().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert!(health.last_checked.is_some());
    let stats = health.system_stats.clone().expect("system stats");
    assert_eq!(stats.active_workflows, 2);
    assert!(stats.memory_usage > 1.0 && stats.memory_usage <= 100.0);
    assert_eq!(handle.current(), health);

    let mut seen = Seen::default();
    while seen.alerts.is_empty() {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("an alert")
            .unwrap();
        seen.take(ev, "inst-c");
    }
    assert!(
        matches!(&seen.alerts[0].kind, AlertKind::ResourceHigh { resource, .. } if resource == "RAM")
    );
    // A second check in the same episode raises nothing new.
    handle.check_now().await.unwrap();
    while let Ok(ev) = rx.try_recv() {
        seen.take(ev, "inst-c");
    }
    assert_eq!(seen.alerts.len(), 1, "{:?}", seen.alert_kinds());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_task() {
    let server = StandIn::start();
    let (handle, _rx) = spawn("inst-d", &server.url(), quick_policy());
    let mut watch = handle.watch();
    handle.check_now().await.unwrap();
    drop(handle);
    // The task owns the watch's sender: it is gone once the task has ended.
    let ended = tokio::time::timeout(WAIT, async { while watch.changed().await.is_ok() {} }).await;
    assert!(ended.is_ok(), "the monitor task outlived its handle");
}

#[tokio::test]
async fn a_new_policy_takes_effect_without_a_restart() {
    let server = StandIn::start();
    let slow = HealthPolicy {
        interval: Duration::from_secs(3600),
        starting_interval: Duration::from_secs(3600),
        ..quick_policy()
    };
    let (handle, mut rx) = spawn("inst-p", &server.url(), slow);
    let mut seen = Seen::default();
    until_status(&mut rx, &mut seen, "inst-p", HealthStatus::Healthy).await;
    let first = handle.current().last_checked.unwrap();

    handle.set_policy(quick_policy()).await.unwrap();
    // With the hourly policy no second probe would come; with 150 ms, several do.
    let mut probes = 0;
    while probes < 3 {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("probes at the new pace");
        if let Ok(AppEvent::HealthChanged { health, .. }) = ev {
            assert!(health.last_checked.unwrap() > first);
            probes += 1;
        }
    }
}

/// A server that answers `/system_stats` as ComfyUI recorded it and
/// `/queue` as an idle ComfyUI does, over keep-alive HTTP/1.1, and counts
/// the requests for each path.
async fn counting_server() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stats = support::read_fixture("http/system_stats.json");
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (counts, stats) = (c.clone(), stats.clone());
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(request)) = lines.next_line().await {
                    // The headers, up to the empty line (GETs have no body).
                    while let Ok(Some(h)) = lines.next_line().await {
                        if h.is_empty() {
                            break;
                        }
                    }
                    let path = request.split(' ').nth(1).unwrap_or("").to_string();
                    let body = match path.as_str() {
                        "/system_stats" => stats.clone(),
                        "/queue" => r#"{"queue_running": [], "queue_pending": []}"#.to_string(),
                        _ => "{}".to_string(),
                    };
                    *counts.lock().unwrap().entry(path).or_default() += 1;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, counts)
}

#[tokio::test]
async fn probes_every_150_ms_read_the_queue_once_per_resource_interval() {
    let (url, counts) = counting_server().await;
    let policy = HealthPolicy {
        resource_interval: Duration::from_secs(1),
        ..quick_policy()
    };
    let (handle, _rx) = spawn("inst-q", &url, policy);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let count = |p: &str| counts.lock().unwrap().get(p).copied().unwrap_or(0);
    let (stats, queue) = (count("/system_stats"), count("/queue"));
    // About 20 probes; the queue at 0, 1, 2 and 3 s (every probe read it before).
    assert!(stats >= 10, "{stats} probes in 3 s");
    assert!(
        (2..=5).contains(&queue),
        "/queue read {queue} times in 3 s, by {stats} probes"
    );
    drop(handle);

    // Asked to check now, a probe reads the queue whatever its age: here
    // right after the first probe read it, an hour before the next is due.
    let (url, counts) = counting_server().await;
    let policy = HealthPolicy {
        interval: Duration::from_secs(3600),
        resource_interval: Duration::from_secs(3600),
        ..quick_policy()
    };
    let (handle, mut rx) = spawn("inst-q2", &url, policy);
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let count = |p: &str| counts.lock().unwrap().get(p).copied().unwrap_or(0);
    assert_eq!((count("/system_stats"), count("/queue")), (1, 1));
    handle.check_now().await.unwrap();
    assert_eq!((count("/system_stats"), count("/queue")), (2, 2));
}
