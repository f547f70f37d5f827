//! The real world around the happy path, with local stand-ins launched
//! exactly as the app launches ComfyUI: a crashed instance comes back to
//! `running` and takes work again; a slow start raises no alarm; a start
//! past its deadline ends in `error` with the log; a frozen (SIGSTOP) one is
//! restarted; a re-attached one that crashes comes back too; a job taken
//! from an unhealthy but live instance is stopped there before it runs
//! elsewhere.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{chain_workflow, fast_options, fast_policy, history_runs};
use std::path::Path;
use std::time::Duration;
use storycore_core::dispatch::JobQueue;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::supervisor::{group_alive, RestartOptions, SupervisorOptions};
use storycore_types::{
    AlertKind, AppEvent, HealthStatus, InstanceConfig, InstanceStatus, JobState, JobTarget,
};
use support::standin::{comfyui_folder, env_vars, free_port, local_config, StandIn};
use support::wait_for;
use tokio::sync::broadcast::error::TryRecvError;

const LONG: Duration = Duration::from_secs(60);

struct Local {
    config: tempfile::TempDir,
    data: tempfile::TempDir,
    comfy: tempfile::TempDir,
    m: InstanceManager,
}

fn options(config: &Path, data: &Path) -> ManagerOptions {
    let mut o = ManagerOptions::new(config);
    o.data_dir = data.to_path_buf();
    o.health = fast_policy();
    o.health.failure_threshold = 3;
    o.supervisor = SupervisorOptions {
        restart: RestartOptions {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..RestartOptions::default()
        },
        stop_grace: Duration::from_secs(3),
        ..SupervisorOptions::default()
    };
    o.unhealthy_restart_after = Duration::from_millis(800);
    o
}

fn local_fleet() -> Local {
    let config = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let m = InstanceManager::open(options(config.path(), data.path()))
        .unwrap()
        .0;
    Local {
        config,
        data,
        comfy: comfyui_folder(),
        m,
    }
}

impl Local {
    fn config(&self, id: &str, env: &[(&str, &str)]) -> InstanceConfig {
        let mut c = local_config(id, self.comfy.path(), free_port());
        c.gpu_device = Some("cpu".into());
        c.env_vars = env_vars(env);
        c
    }

    async fn add(&self, id: &str, env: &[(&str, &str)]) {
        self.m.create(self.config(id, env)).await.unwrap();
    }
}

async fn wait_running(m: &InstanceManager, id: &str, within: Duration) {
    wait_for(within, &format!("{id} running and healthy"), || async {
        let i = m.get(id)?;
        (i.status == InstanceStatus::Running && i.health.status == HealthStatus::Healthy)
            .then_some(())
    })
    .await;
}

fn kill(pid: u32, signal: i32) {
    unsafe { libc::kill(pid as i32, signal) };
}

#[tokio::test]
async fn a_crashed_instance_comes_back_to_running_and_takes_work_again() {
    let f = local_fleet();
    f.add("a", &[("STANDIN_NODE_MS", "300")]).await;
    f.add("b", &[("STANDIN_NODE_MS", "300")]).await;
    let (queue, _) = JobQueue::open(f.m.clone(), f.config.path(), fast_options()).unwrap();
    for id in ["a", "b"] {
        f.m.start(id).await.unwrap();
        wait_running(&f.m, id, LONG).await;
    }
    // The job goes to a (b is paused), then a is killed while it runs it.
    f.m.pause("b").await.unwrap();
    let job = queue
        .submit(chain_workflow(6, 1, "crashed"), JobTarget::Auto)
        .await
        .unwrap();
    wait_for(LONG, "the job running on a", || async {
        queue
            .get(&job.id)
            .filter(|j| j.state == JobState::Running && j.instance_id.as_deref() == Some("a"))
    })
    .await;
    f.m.resume("b").await.unwrap();
    let first = f.m.process_pid("a").unwrap();
    kill(first, libc::SIGKILL);

    let done = wait_for(LONG, "the job done elsewhere", || async {
        queue.get(&job.id).filter(|j| j.state.is_final())
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert_eq!(done.instance_id.as_deref(), Some("b"));

    // a is restarted by its supervisor and back in service: running,
    // monitored, and eligible for work.
    wait_running(&f.m, "a", LONG).await;
    assert_ne!(f.m.process_pid("a"), Some(first), "a new process");
    let again = queue
        .submit(
            chain_workflow(2, 2, "after-crash"),
            JobTarget::Instance { id: "a".into() },
        )
        .await
        .unwrap();
    let again = wait_for(LONG, "a job on the restarted instance", || async {
        queue.get(&again.id).filter(|j| j.state.is_final())
    })
    .await;
    assert_eq!(again.state, JobState::Succeeded, "{:?}", again.error);
    queue.shutdown().await;
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_slow_start_is_progress_not_an_alarm() {
    let f = local_fleet();
    let mut events = f.m.subscribe();
    // About 60 failed probes (every 50 ms) before the port opens.
    f.add("slow", &[("STANDIN_STARTUP_DELAY_MS", "3000")]).await;
    f.m.start("slow").await.unwrap();
    wait_running(&f.m, "slow", LONG).await;
    // Every event of the start is read: a receiver that lagged missed some,
    // and could have missed the alert this looks for.
    let mut alerts = Vec::new();
    loop {
        match events.try_recv() {
            Ok(AppEvent::Alert(a)) => alerts.push(a.message),
            Ok(_) => {}
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("the start's events were not all seen: {e}"),
        }
    }
    assert!(alerts.is_empty(), "a normal start raised: {alerts:?}");
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_starting_card_shows_its_progress_and_a_missed_deadline_is_an_error_with_the_log() {
    let f = local_fleet();
    let mut events = f.m.subscribe();
    let mut c = f.config("stuck", &[("STANDIN_NEVER_READY", "1")]);
    c.start_timeout_ms = Some(1500);
    f.m.create(c).await.unwrap();
    f.m.start("stuck").await.unwrap();
    // While starting: how long, and the last line the server wrote.
    let progress = wait_for(LONG, "start progress on the instance", || async {
        f.m.get("stuck")
            .filter(|i| i.status == InstanceStatus::Starting)
            .and_then(|i| i.start_progress)
    })
    .await;
    assert!(progress.contains("Loading custom nodes"), "{progress}");
    let since = f.m.get("stuck").unwrap().status_since.unwrap();

    // Past the deadline: error, the log tail and what to check; an alert.
    let alert = wait_for(LONG, "the start-timeout alert", || {
        let a = match events.try_recv() {
            Ok(AppEvent::Alert(a)) if a.instance_id == "stuck" => Some(a),
            _ => None,
        };
        async move { a }
    })
    .await;
    assert!(
        matches!(alert.kind, AlertKind::StartTimedOut { .. }),
        "{alert:?}"
    );
    assert!(chrono::Utc::now() - since >= chrono::Duration::milliseconds(1400));
    let reason = wait_for(LONG, "error with its reason", || async {
        f.m.get("stuck").and_then(|i| i.status_reason)
    })
    .await;
    assert!(
        reason.contains("did not answer within 1 s") && reason.contains("Loading custom nodes"),
        "{reason}"
    );
    // The restart policy applies: it is started again, in a new start phase.
    wait_for(LONG, "a restart after the missed deadline", || async {
        f.m.get("stuck")
            .filter(|i| i.status == InstanceStatus::Starting && i.status_since > Some(since))
    })
    .await;
    f.m.shutdown().await;
}

#[tokio::test]
async fn a_frozen_instance_is_restarted_and_back_in_service() {
    let f = local_fleet();
    f.add("frozen", &[]).await;
    f.m.start("frozen").await.unwrap();
    wait_running(&f.m, "frozen", LONG).await;
    let first = f.m.process_pid("frozen").unwrap();
    kill(first, libc::SIGSTOP);
    wait_for(LONG, "a new process", || async {
        f.m.process_pid("frozen").filter(|p| *p != first)
    })
    .await;
    assert!(!group_alive(first), "the frozen process was killed");
    wait_running(&f.m, "frozen", LONG).await;
    f.m.shutdown().await;
}

#[tokio::test]
async fn re_attached_instances_that_crash_or_hang_are_restarted_and_back_in_service() {
    let f = local_fleet();
    for id in ["kept", "frozen"] {
        f.add(id, &[]).await;
        f.m.start(id).await.unwrap();
        wait_running(&f.m, id, LONG).await;
    }
    let kept = f.m.process_pid("kept").unwrap();
    let frozen = f.m.process_pid("frozen").unwrap();
    f.m.detach_all().await;
    f.m.shutdown().await;
    assert!(group_alive(kept) && group_alive(frozen), "kept running");

    let next = InstanceManager::open(options(f.config.path(), f.data.path()))
        .unwrap()
        .0;
    let mut attached = next.reattach_local().await;
    attached.sort();
    assert_eq!(attached, ["frozen", "kept"]);
    wait_running(&next, "kept", LONG).await;
    wait_running(&next, "frozen", LONG).await;
    // It keeps writing its log (its output is the file, not a pipe to the
    // app that is gone), and the new app reads it.
    let config = next.get("kept").unwrap().config;
    let c = storycore_core::client::ComfyClient::for_instance(&config).unwrap();
    c.submit_prompt(chain_workflow(1, 9, "kept"), "p-kept", "t")
        .await
        .unwrap();
    wait_for(LONG, "the kept server's new log line", || async {
        next.log_tail("kept", 50)
            .ok()
            .filter(|t| t.lines.iter().any(|l| l.contains("got prompt")))
    })
    .await;

    kill(kept, libc::SIGKILL);
    kill(frozen, libc::SIGSTOP);
    for (id, old) in [("kept", kept), ("frozen", frozen)] {
        wait_for(LONG, &format!("a new process for {id}"), || async {
            next.process_pid(id).filter(|p| *p != old)
        })
        .await;
        wait_running(&next, id, LONG).await;
    }
    assert!(!group_alive(frozen), "the hung one was killed");
    next.shutdown().await;
}

#[tokio::test]
async fn a_job_taken_from_an_unhealthy_live_instance_is_stopped_there_before_it_runs_elsewhere() {
    let control = tempfile::NamedTempFile::new().unwrap();
    let control_path = control.path().display().to_string();
    let sick = StandIn::builder()
        .env("STANDIN_NODE_MS", "250")
        .env("STANDIN_CONTROL_FILE", &control_path)
        .start();
    let well = StandIn::builder().env("STANDIN_NODE_MS", "50").start();
    let fleet = dispatch_fleet::Fleet::open(
        vec![
            dispatch_fleet::attached("sick", sick.port(), 1),
            dispatch_fleet::attached("well", well.port(), 1),
        ],
        fast_options(),
    )
    .await;
    fleet.start("sick").await;
    fleet.start("well").await;
    fleet.manager.pause("well").await.unwrap();
    let job = fleet
        .queue
        .submit(chain_workflow(12, 3, "twice"), JobTarget::Auto)
        .await
        .unwrap();
    wait_for(LONG, "the job running on sick", || async {
        fleet
            .queue
            .get(&job.id)
            .filter(|j| j.state == JobState::Running && j.instance_id.as_deref() == Some("sick"))
    })
    .await;
    fleet.manager.resume("well").await.unwrap();
    // Its health checks now fail, but it is alive and still executing.
    std::fs::write(control.path(), "system_stats_500").unwrap();
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("well"));
    // Give the sick one the time it would need to finish the job too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        dispatch_fleet::outputs_with_prefix(&sick, "twice").len(),
        0,
        "the job also ran to its end on the unhealthy instance"
    );
    assert_eq!(history_runs(&well, "twice").await, 1);
    fleet.queue.shutdown().await;
}
