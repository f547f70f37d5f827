//! Local instances through the manager: the stand-in is launched exactly as
//! ComfyUI would be (`<python> main.py <flags>` in the ComfyUI folder; only the
//! executable differs), crashes are noticed and restarted, a hung server is
//! restarted, a taken port is refused, and nothing outlives a stop or shutdown.

use crate::support;

use std::time::Duration;
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::supervisor::{group_alive, RestartOptions, SupervisorOptions};
use storycore_types::{AlertKind, AppEvent, ErrorCode, InstanceConfig, InstanceStatus};
use support::standin::{env_vars, free_port, standin_binary};
use support::wait_for;

struct Fixture {
    m: InstanceManager,
    comfy: tempfile::TempDir,
    _config: tempfile::TempDir,
    data: tempfile::TempDir,
}

fn fixture(max_starts: usize) -> Fixture {
    fixture_with(max_starts, Duration::from_millis(50))
}

/// `backoff`: the wait before the first restart after a crash.
fn fixture_with(max_starts: usize, backoff: Duration) -> Fixture {
    let config = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let comfy = tempfile::tempdir().unwrap();
    std::fs::write(comfy.path().join("main.py"), "# ComfyUI stand-in folder\n").unwrap();
    let mut o = ManagerOptions::new(config.path());
    o.data_dir = data.path().to_path_buf();
    o.health = HealthPolicy {
        interval: Duration::from_millis(150),
        resource_interval: Duration::from_millis(150),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(400),
        ..HealthPolicy::default()
    };
    o.supervisor = SupervisorOptions {
        restart: RestartOptions {
            backoff_initial: backoff,
            backoff_max: backoff.max(Duration::from_millis(200)),
            max_starts,
            ..RestartOptions::default()
        },
        stop_grace: Duration::from_secs(3),
        ..SupervisorOptions::default()
    };
    o.unhealthy_restart_after = Duration::from_millis(600);
    Fixture {
        m: InstanceManager::open(o).unwrap().0,
        comfy,
        _config: config,
        data,
    }
}

fn local(f: &Fixture, id: &str, port: u16, env: &[(&str, &str)]) -> InstanceConfig {
    let mut c = InstanceConfig::new(id, id, port as u32);
    c.comfyui_path = Some(f.comfy.path().canonicalize().unwrap().display().to_string());
    c.python_path = Some(
        standin_binary()
            .canonicalize()
            .unwrap()
            .display()
            .to_string(),
    );
    c.gpu_device = Some("cpu".into());
    c.env_vars = env_vars(env);
    c
}

async fn wait_status(m: &InstanceManager, id: &str, want: InstanceStatus) {
    wait_for(
        Duration::from_secs(15),
        &format!("{id} {want:?}"),
        || async { (m.get(id).unwrap().status == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn start_stop_and_shutdown_leave_no_process_and_isolate_temp() {
    let f = fixture(5);
    let (pa, pb) = (free_port(), free_port());
    f.m.create(local(&f, "a", pa, &[])).await.unwrap();
    f.m.create(local(&f, "b", pb, &[])).await.unwrap();
    f.m.start("a").await.unwrap();
    wait_status(&f.m, "a", InstanceStatus::Running).await;
    let pid_a = f.m.process_pid("a").unwrap();

    // Instance a's temp folder holds a marker; b starts from the same ComfyUI
    // folder and must not wipe it (each has its own temp under the data folder).
    let temp_a = f.data.path().join("instances/a/temp");
    std::fs::create_dir_all(temp_a.join("temp")).unwrap();
    std::fs::write(temp_a.join("temp/marker.png"), b"x").unwrap();
    f.m.start("b").await.unwrap();
    wait_status(&f.m, "b", InstanceStatus::Running).await;
    assert!(temp_a.join("temp/marker.png").exists(), "b wiped a's temp");
    // The process tree's own figures (sysinfo) join the health's system stats.
    wait_for(
        Duration::from_secs(10),
        "process RAM in the stats",
        || async {
            let s = f.m.get("a").unwrap().health.system_stats?;
            (s.memory_usage > 0.0).then_some(())
        },
    )
    .await;
    let tail = f.m.log_tail("a", 50).unwrap().lines.join("\n");
    assert!(tail.contains("To see the GUI go to"), "{tail}");

    f.m.stop("a").await.unwrap();
    assert_eq!(f.m.get("a").unwrap().status, InstanceStatus::Stopped);
    assert!(!group_alive(pid_a), "a's process group outlived stop");

    let pid_b = f.m.process_pid("b").unwrap();
    f.m.shutdown().await;
    assert!(!group_alive(pid_b), "b's process group outlived shutdown");
}

/// Each local instance has three background tasks (its health watch, its
/// log and process followers): they end with the instance, and shutdown
/// waits for every one.
#[tokio::test]
async fn an_instances_tasks_end_with_it_and_shutdown_waits_for_all() {
    let f = fixture(5);
    for id in ["a", "b"] {
        f.m.create(local(&f, id, free_port(), &[])).await.unwrap();
        f.m.start(id).await.unwrap();
        wait_status(&f.m, id, InstanceStatus::Running).await;
    }
    assert_eq!(f.m.background_tasks(), 6, "three tasks per instance");
    f.m.delete("a").await.unwrap();
    wait_for(Duration::from_secs(5), "a's tasks ended", || async {
        (f.m.background_tasks() == 3).then_some(())
    })
    .await;
    f.m.shutdown().await;
    assert_eq!(f.m.background_tasks(), 0, "a task outlived shutdown");
}

#[tokio::test]
async fn a_crash_is_noticed_restarted_and_the_start_limit_ends_in_error_with_an_alert() {
    let f = fixture(3);
    let mut events = f.m.subscribe();
    let port = free_port();
    f.m.create(local(
        &f,
        "c",
        port,
        &[
            ("STANDIN_CRASH_AFTER_MS", "400"),
            ("STANDIN_CRASH_SIGNAL", "KILL"),
        ],
    ))
    .await
    .unwrap();
    f.m.start("c").await.unwrap();
    let mut crashes = 0;
    let gave_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(AppEvent::Alert(a)) if a.instance_id == "c" => match a.kind {
                    AlertKind::Crashed { .. } => crashes += 1,
                    AlertKind::GaveUp { starts } => break starts,
                    _ => {}
                },
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("no GaveUp alert within 30 s");
    assert_eq!(gave_up, 3);
    assert_eq!(crashes, 3);
    let i = f.m.get("c").unwrap();
    assert_eq!(i.status, InstanceStatus::Error);
    assert!(i.status_reason.unwrap().contains("stopped restarting"));
    f.m.shutdown().await;
}

/// A crashed instance waits in `error` for its restart (the back-off). A stop
/// then must end that wait: it used to return at once from `error`, keeping
/// the supervisor, whose pending restart later launched ComfyUI again while
/// the window said "stopped".
#[tokio::test]
async fn a_stop_while_a_restart_is_pending_cancels_it() {
    let backoff = Duration::from_secs(2);
    let f = fixture_with(5, backoff);
    let port = free_port();
    f.m.create(local(
        &f,
        "c",
        port,
        &[
            ("STANDIN_CRASH_AFTER_MS", "600"),
            ("STANDIN_CRASH_SIGNAL", "KILL"),
        ],
    ))
    .await
    .unwrap();
    f.m.start("c").await.unwrap();
    wait_status(&f.m, "c", InstanceStatus::Error).await;
    assert!(
        f.m.supervised("c"),
        "the crashed instance's supervisor waits to restart it"
    );
    f.m.stop("c").await.unwrap();
    assert_eq!(f.m.get("c").unwrap().status, InstanceStatus::Stopped);
    assert!(
        !f.m.supervised("c"),
        "stopped, yet its supervisor (and its pending restart) is kept"
    );
    // Past the back-off: nothing was launched again, nothing listens.
    tokio::time::sleep(backoff + Duration::from_secs(1)).await;
    assert_eq!(f.m.get("c").unwrap().status, InstanceStatus::Stopped);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a ComfyUI listens on {port} after the stop"
    );
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_hung_server_is_restarted() {
    let f = fixture(5);
    let port = free_port();
    f.m.create(local(&f, "h", port, &[("STANDIN_HANG_AFTER_MS", "800")]))
        .await
        .unwrap();
    f.m.start("h").await.unwrap();
    wait_status(&f.m, "h", InstanceStatus::Running).await;
    let first = f.m.process_pid("h").unwrap();
    wait_for(
        Duration::from_secs(20),
        "a new process after the hang",
        || async { f.m.process_pid("h").filter(|p| *p != first) },
    )
    .await;
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_taken_port_is_refused_with_a_clear_error() {
    let f = fixture(5);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    f.m.create(local(&f, "p", port, &[])).await.unwrap();
    let err = f.m.start("p").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let msg = err.to_string();
    assert!(
        msg.contains(&port.to_string()) && msg.contains("already in use"),
        "{msg}"
    );
    let i = f.m.get("p").unwrap();
    assert_eq!(i.status, InstanceStatus::Error);
    assert!(f.m.process_pid("p").is_none());
}

#[tokio::test]
async fn kept_running_on_exit_then_re_attached_by_the_next_launch() {
    let f = fixture(5);
    let port = free_port();
    f.m.create(local(&f, "k", port, &[])).await.unwrap();
    f.m.start("k").await.unwrap();
    wait_status(&f.m, "k", InstanceStatus::Running).await;
    let pid = f.m.process_pid("k").unwrap();

    // App exit with "keep running": the process outlives this manager.
    f.m.detach_all().await;
    f.m.shutdown().await;
    assert!(group_alive(pid), "a kept process was stopped");

    // The next launch re-attaches instead of starting a second ComfyUI.
    let mut o = ManagerOptions::new(f._config.path());
    o.data_dir = f.data.path().to_path_buf();
    o.health.starting_interval = Duration::from_millis(50);
    let next = InstanceManager::open(o).unwrap().0;
    assert_eq!(next.reattach_local().await, ["k"]);
    wait_status(&next, "k", InstanceStatus::Running).await;
    assert_eq!(
        next.process_pid("k"),
        Some(pid),
        "the kept process is supervised again; no second one was launched"
    );

    // Stopping it now stops the adopted process group.
    next.stop("k").await.unwrap();
    assert!(!group_alive(pid), "the adopted process outlived stop");
}

#[tokio::test]
async fn log_lines_reach_subscribers_live_numbered_like_the_tail() {
    let f = fixture(5);
    let mut events = f.m.subscribe();
    f.m.create(local(&f, "a", free_port(), &[])).await.unwrap();
    f.m.start("a").await.unwrap();
    wait_status(&f.m, "a", InstanceStatus::Running).await;

    // Every batch continues the previous one: no gap, no repeat.
    let mut got: Vec<String> = Vec::new();
    let mut session = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.iter().any(|l| l.contains("To see the GUI go to")) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no live log line with the GUI address; got {got:?}"))
            .unwrap();
        if let AppEvent::LogLines(b) = ev {
            assert_eq!(b.instance_id, "a");
            assert_eq!(*session.get_or_insert(b.session), b.session);
            assert_eq!(b.first, got.len() as u64, "batches join up");
            got.extend(b.lines);
        }
    }
    let tail = f.m.log_tail("a", 500).unwrap();
    assert_eq!(Some(tail.session), session);
    assert_eq!(tail.first, 0);
    assert_eq!(
        tail.lines[..got.len()],
        got[..],
        "the tail and the live lines agree"
    );

    // A relaunch is a new log: a new session, numbered from 0 again.
    f.m.restart("a").await.unwrap();
    wait_status(&f.m, "a", InstanceStatus::Running).await;
    let again = f.m.log_tail("a", 500).unwrap();
    assert_ne!(Some(again.session), session);
    assert_eq!(again.first, 0);
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_local_instance_offers_its_output_folder_and_log_file_a_remote_one_refuses() {
    use storycore_types::InstancePath;
    let f = fixture(5);
    f.m.create(local(&f, "a", free_port(), &[])).await.unwrap();
    let e = f.m.instance_path("a", InstancePath::Log).unwrap_err();
    assert!(e.to_string().contains("start the instance once"), "{e}");
    f.m.start("a").await.unwrap();
    wait_status(&f.m, "a", InstanceStatus::Running).await;
    let out = f.m.instance_path("a", InstancePath::Output).unwrap();
    assert_eq!(out, f.data.path().join("instances/a/output"));
    assert!(out.is_dir());
    let log = f.m.instance_path("a", InstancePath::Log).unwrap();
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("To see the GUI go to"));

    f.m.create(InstanceConfig::new("r", "Remote box", free_port() as u32))
        .await
        .unwrap();
    let e = f.m.instance_path("r", InstancePath::Output).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("on that machine"), "{e}");
    assert_eq!(
        f.m.instance_path("nope", InstancePath::Log)
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    f.m.shutdown().await;
}
