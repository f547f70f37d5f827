//! Crashes, restarts under back-off and the start limit, causes read from the
//! log, a taken port, and launches refused before anything starts.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use storycore_core::supervisor::{
    group_alive, ExitCause, LaunchContext, ProcessState, RestartOptions, RestartPolicy,
    SupervisorError, SupervisorEvent, SupervisorHandle, SupervisorOptions,
};
use storycore_types::InstanceConfig;
use support::standin::{comfyui_folder, free_port, local_config, StandIn};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(20);

fn fast_restarts(max_starts: usize) -> SupervisorOptions {
    SupervisorOptions {
        restart: RestartOptions {
            policy: RestartPolicy::OnFailure,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(150),
            stable_after: Duration::from_secs(60),
            max_starts,
            start_window: Duration::from_secs(60),
        },
        stop_grace: Duration::from_secs(5),
        ..SupervisorOptions::default()
    }
}

async fn next_event(rx: &mut broadcast::Receiver<SupervisorEvent>, what: &str) -> SupervisorEvent {
    tokio::time::timeout(T, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("event channel")
}

async fn serving(port: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/system_stats"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn a_sigkill_is_noticed_within_a_second_and_restarted_with_backoff_until_the_limit() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sup = SupervisorHandle::launch(
        &local_config("crashy", comfy.path(), port),
        &LaunchContext::new(data.path()),
        fast_restarts(3),
    )
    .await
    .unwrap();
    let mut events = sup.subscribe();
    support::wait_for(T, "the first start to serve", || async {
        serving(port).await.then_some(())
    })
    .await;

    let mut delays = Vec::new();
    for round in 1..=3u32 {
        let pid = sup.pid().expect("running");
        let killed_at = Instant::now();
        // SAFETY: a plain syscall on the group this test's supervisor started.
        unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
        let SupervisorEvent::Exited {
            exit,
            asked,
            cause,
            last_lines,
            ..
        } = next_event(&mut events, "Exited").await
        else {
            panic!("expected Exited first");
        };
        assert!(
            killed_at.elapsed() < Duration::from_secs(1),
            "noticed after {:?}",
            killed_at.elapsed()
        );
        assert_eq!(exit.signal, Some(libc::SIGKILL));
        assert!(!asked);
        assert_eq!(cause, Some(ExitCause::KilledByOs));
        assert!(
            last_lines.iter().any(|l| l.contains("Starting server")),
            "{last_lines:?}"
        );
        if round == 3 {
            // Three starts in the window: the limit.
            let SupervisorEvent::GaveUp { starts, cause, .. } =
                next_event(&mut events, "GaveUp").await
            else {
                panic!("expected GaveUp");
            };
            assert_eq!(starts, 3);
            assert_eq!(cause, Some(ExitCause::KilledByOs));
            assert_eq!(sup.state(), ProcessState::GaveUp);
            break;
        }
        let SupervisorEvent::RestartScheduled { delay_ms, .. } =
            next_event(&mut events, "RestartScheduled").await
        else {
            panic!("expected RestartScheduled");
        };
        delays.push(delay_ms);
        let SupervisorEvent::Spawned { start, .. } = next_event(&mut events, "Spawned").await
        else {
            panic!("expected Spawned");
        };
        assert_eq!(start, round + 1);
        assert!(!group_alive(pid));
        support::wait_for(T, "the restarted server", || async {
            serving(port).await.then_some(())
        })
        .await;
    }
    assert_eq!(delays, vec![50, 100], "back-off doubles");
    assert!(matches!(
        sup.restart().await,
        Err(SupervisorError::StartLimit { .. })
    ));
    assert_eq!(sup.stop().await.unwrap(), None, "nothing was running");
}

#[tokio::test]
async fn a_clean_exit_nobody_asked_for_stays_down_until_restarted() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = local_config("self_crash", comfy.path(), port);
    config.env_vars = Some(BTreeMap::from([
        ("STANDIN_CRASH_AFTER_MS".to_string(), "100".to_string()),
        ("STANDIN_CRASH_EXIT_CODE".to_string(), "0".to_string()),
    ]));
    let sup = SupervisorHandle::launch(&config, &LaunchContext::new(data.path()), fast_restarts(5))
        .await
        .unwrap();
    let mut events = sup.subscribe();
    let SupervisorEvent::Exited { exit, asked, .. } = next_event(&mut events, "Exited").await
    else {
        panic!("expected Exited");
    };
    assert_eq!((exit.code, asked), (Some(0), false));
    let mut state = sup.watch_state();
    tokio::time::timeout(T, state.wait_for(|s| *s == ProcessState::Down))
        .await
        .unwrap()
        .unwrap();
    // Asked to, it starts again.
    assert!(sup.restart().await.is_ok());
    sup.stop().await.unwrap();
}

#[tokio::test]
async fn the_cause_is_read_from_the_log() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    // An "interpreter" that fails like ComfyUI without `requests` (FACTS section 0).
    let python = data.path().join("fake-python");
    std::fs::write(
        &python,
        "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho \"ModuleNotFoundError: No module named 'requests'\" >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&python).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&python, perms).unwrap();
    let mut config = local_config("no_requests", comfy.path(), free_port());
    config.python_path = Some(python.display().to_string());
    let mut options = fast_restarts(5);
    options.restart.policy = RestartPolicy::Never;
    let sup = SupervisorHandle::launch(&config, &LaunchContext::new(data.path()), options)
        .await
        .unwrap();
    let mut events = sup.subscribe();
    let SupervisorEvent::Exited {
        exit,
        cause,
        summary,
        ..
    } = next_event(&mut events, "Exited").await
    else {
        panic!("expected Exited");
    };
    assert_eq!(exit.code, Some(1));
    assert_eq!(
        cause,
        Some(ExitCause::MissingPythonModule {
            module: "requests".into()
        })
    );
    assert!(summary.contains("pip install requests"), "{summary}");
    let mut state = sup.watch_state();
    tokio::time::timeout(T, state.wait_for(|s| *s == ProcessState::Down))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_taken_port_names_the_holder() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = SupervisorHandle::launch(
        &local_config("taken", comfy.path(), port),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .err()
    .expect("the port is taken");
    let SupervisorError::PortInUse {
        port: p,
        holder: who,
        suggestion,
        ..
    } = &err
    else {
        panic!("expected PortInUse, got {err}");
    };
    assert_eq!(*p, port);
    let who = who.as_ref().expect("/proc tells who holds it");
    assert_eq!(who.pid, std::process::id());
    assert!(
        *suggestion > port && storycore_core::supervisor::port_is_free("127.0.0.1", *suggestion)
    );
    let text = err.to_string();
    assert!(
        text.contains(&port.to_string()) && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(!data.path().join("instances/taken/process.json").exists());
}

#[tokio::test]
async fn a_comfyui_on_the_port_is_offered_for_attaching() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let running = StandIn::start();
    let err = SupervisorHandle::launch(
        &local_config("dup", comfy.path(), running.port()),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .err()
    .expect("a ComfyUI already answers there");
    match err {
        SupervisorError::ComfyUiAlreadyRunning {
            version, holder, ..
        } => {
            assert_eq!(version, "0.3.64");
            assert_eq!(holder.map(|h| h.pid), Some(running.pid()));
        }
        other => panic!("expected ComfyUiAlreadyRunning, got {other}"),
    }
}

#[tokio::test]
async fn bad_env_and_paths_are_refused_before_anything_starts() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let ctx = LaunchContext::new(data.path());
    let mut config = local_config("bad", comfy.path(), free_port());
    config.env_vars = Some(BTreeMap::from([
        ("LD_PRELOAD".to_string(), "/tmp/evil.so".to_string()),
        ("BAD NAME".to_string(), "x".to_string()),
    ]));
    config.comfyui_path = Some(data.path().join("no-such-folder").display().to_string());
    let err = SupervisorHandle::launch(&config, &ctx, SupervisorOptions::default())
        .await
        .err()
        .unwrap();
    let SupervisorError::InvalidLaunch { problems, .. } = &err else {
        panic!("expected InvalidLaunch, got {err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for f in ["envVars.LD_PRELOAD", "envVars.BAD NAME", "comfyuiPath"] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    assert!(
        !data.path().join("instances/bad").exists(),
        "nothing created"
    );

    let mut remote = InstanceConfig::new("remote", "remote", 8188);
    remote.host = Some("gpu-box.lan".into());
    let err = SupervisorHandle::launch(&remote, &ctx, SupervisorOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, SupervisorError::NotLaunchable { .. }),
        "{err}"
    );
}
