//! The manager against a real stand-in server: attach, start, pause, resume,
//! stop, with the refused transitions, routing eligibility and events.

use crate::support;

use std::time::Duration;
use storycore_core::client::ComfyClient;
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerError, ManagerOptions};
use storycore_types::{
    AlertKind, AppEvent, ErrorCode, HealthStatus, InstanceConfig, InstanceStatus,
};
use support::standin::StandIn;
use support::wait_for;

fn fast_policy() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(200),
        resource_interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(1000),
        ..HealthPolicy::default()
    }
}

fn open(dir: &std::path::Path) -> InstanceManager {
    let mut o = ManagerOptions::new(dir);
    o.health = fast_policy();
    InstanceManager::open(o).unwrap().0
}

fn attached(id: &str, name: &str, port: u16) -> InstanceConfig {
    let mut c = InstanceConfig::new(id, name, port as u32);
    c.host = Some("127.0.0.1".into());
    c
}

async fn wait_status(m: &InstanceManager, id: &str, want: InstanceStatus) {
    wait_for(
        Duration::from_secs(10),
        &format!("{id} to be {want:?}"),
        || async { (m.get(id).unwrap().status == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn attach_start_pause_resume_stop_with_routing_and_events() {
    let server = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let mut events = m.subscribe();

    let inst = m
        .create(attached("gpu0", "GPU 0", server.port()))
        .await
        .unwrap();
    assert_eq!(inst.status, InstanceStatus::Stopped);
    assert!(
        !m.get("gpu0").unwrap().takes_work(),
        "a stopped instance takes no work"
    );

    // A transition that makes no sense is refused with a sentence.
    let err = m.pause("gpu0").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTransition);
    assert_eq!(
        err.to_string(),
        "cannot pause instance \"GPU 0\" while it is stopped: start it first"
    );

    m.start("gpu0").await.unwrap();
    wait_status(&m, "gpu0", InstanceStatus::Running).await;
    assert!(m.get("gpu0").unwrap().takes_work());
    assert!(m
        .start("gpu0")
        .await
        .unwrap_err()
        .to_string()
        .contains("already running"));

    m.pause("gpu0").await.unwrap();
    assert!(
        !m.get("gpu0").unwrap().takes_work(),
        "paused takes no new work"
    );
    let refused = m
        .execute_on_instance("gpu0", |c: ComfyClient| async move { c.queue().await })
        .await
        .unwrap_err();
    assert!(matches!(refused, ManagerError::Paused { .. }), "{refused}");

    m.resume("gpu0").await.unwrap();
    assert!(
        m.get("gpu0").unwrap().takes_work(),
        "eligible again at once"
    );
    let q = m
        .execute_on_instance("gpu0", |c: ComfyClient| async move { c.queue().await })
        .await
        .unwrap();
    assert_eq!(q.active(), 0);
    assert!(m.get("gpu0").unwrap().last_used_at.is_some());

    m.stop("gpu0").await.unwrap();
    assert_eq!(m.get("gpu0").unwrap().status, InstanceStatus::Stopped);
    assert!(!m.get("gpu0").unwrap().takes_work());

    // The status changes went out as events, in order.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let AppEvent::InstanceUpdated(i) = e {
            if seen.last() != Some(&i.status) {
                seen.push(i.status);
            }
        }
    }
    use InstanceStatus as S;
    assert_eq!(
        seen,
        [
            S::Stopped,
            S::Starting,
            S::Running,
            S::Paused,
            S::Running,
            S::Stopping,
            S::Stopped
        ]
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_yet_is_starting_without_alarms_until_it_answers() {
    // Hold the port with a listener that never answers, so no parallel test's
    // server can take it while this one is meant to be down.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let mut events = m.subscribe();
    m.create(attached("late", "Late", port)).await.unwrap();
    m.start("late").await.unwrap();
    // Many probes fail (at 50 ms, each timing out after 1 s): a start, not
    // ill health.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let i = m.get("late").unwrap();
    assert_eq!(i.status, InstanceStatus::Starting);
    assert!(i.health.last_checked.is_some(), "it was probed");
    assert_eq!(i.health.status, HealthStatus::Unknown, "{:?}", i.health);
    assert_eq!(i.health.consecutive_failures, 0);
    assert!(i.status_since.is_some());
    assert!(!i.takes_work(), "not eligible while starting");

    drop(silent);
    let _server = StandIn::builder().port(port).start();
    wait_status(&m, "late", InstanceStatus::Running).await;
    m.shutdown().await;
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, AppEvent::Alert(_)),
            "a normal start raised an alert: {e:?}"
        );
    }
}

#[tokio::test]
async fn a_start_past_its_deadline_is_an_error_that_says_what_to_check() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let mut events = m.subscribe();
    let mut c = attached("never", "Never", port);
    c.start_timeout_ms = Some(1500);
    m.create(c).await.unwrap();
    m.start("never").await.unwrap();
    wait_status(&m, "never", InstanceStatus::Error).await;
    let reason = m.get("never").unwrap().status_reason.unwrap();
    assert!(
        reason.contains("within 1 s") && reason.contains("check that it runs there"),
        "{reason}"
    );
    let alert = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(AppEvent::Alert(a)) = events.recv().await {
                break a;
            }
        }
    })
    .await
    .expect("an alert");
    assert_eq!(alert.kind, AlertKind::StartTimedOut { seconds: 1 });
    m.shutdown().await;
}

#[tokio::test]
async fn health_check_on_demand_and_stats() {
    let server = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    m.create(attached("a", "A", server.port())).await.unwrap();
    // Not monitored: probed once.
    let h = m.check_health("a").await.unwrap();
    assert!(h.response_time > 0.0);
    assert!(h.last_checked.is_some());
    assert!(h.system_stats.is_some());
    assert_eq!(m.stats("a").unwrap().uptime, 0);

    m.start("a").await.unwrap();
    wait_status(&m, "a", InstanceStatus::Running).await;
    let h = m.check_health("a").await.unwrap();
    assert_eq!(h.consecutive_failures, 0);
    wait_for(Duration::from_secs(5), "uptime to count", || async {
        (m.stats("a").unwrap().uptime > 0).then_some(())
    })
    .await;
    m.record_workflow("a", true, 100.0, None);
    m.record_workflow("a", false, 300.0, Some("boom".into()));
    let s = m.stats("a").unwrap();
    assert_eq!(
        (
            s.total_workflows,
            s.successful_workflows,
            s.failed_workflows
        ),
        (2, 1, 1)
    );
    assert_eq!(s.average_response_time, 200.0);
    assert_eq!(s.last_error.as_deref(), Some("boom"));
    m.shutdown().await;
    // The health history was written.
    assert!(dir.path().join("instance_a_health.json").exists());
}

#[tokio::test]
async fn bad_configs_are_refused_field_by_field_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    m.create(attached("a", "A", 8188)).await.unwrap();
    let mut bad = attached("b", "a", 8188); // same name (any case), same port, same host
    bad.host = Some("http://127.0.0.1/x".into());
    bad.env_vars = Some([("LD_PRELOAD".to_string(), "/x.so".to_string())].into());
    let err = m.create(bad).await.unwrap_err();
    let api: storycore_types::ApiError = err.into();
    assert_eq!(api.code, ErrorCode::InvalidInput);
    let fields: Vec<&str> = api.fields.iter().map(|f| f.field.as_str()).collect();
    assert!(fields.contains(&"name"), "{fields:?}");
    assert!(fields.contains(&"host"), "{fields:?}");
    assert!(
        fields.iter().any(|f| f.starts_with("envVars")),
        "{fields:?}"
    );
    assert_eq!(m.list().len(), 1);
    let reopened = open(dir.path());
    assert_eq!(reopened.list().len(), 1);
}
