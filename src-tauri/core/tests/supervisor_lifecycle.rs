//! The supervisor launches the ComfyUI stand-in through the same code path as
//! real ComfyUI (`<python> main.py <flags>` in the ComfyUI folder; only the
//! executable differs) and stops, restarts and re-attaches to it.

use crate::support;

use std::time::Duration;
use storycore_core::supervisor::{
    find_adoptable, group_alive, stop_adopted, LaunchContext, ProcessState, SupervisorEvent,
    SupervisorHandle, SupervisorOptions,
};
use support::standin::{comfyui_folder, free_port, local_config};
use support::wait_for;
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(20);

async fn system_stats(port: u16) -> Option<serde_json::Value> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/system_stats"))
        .await
        .ok()?;
    r.json().await.ok()
}

async fn ready(port: u16) -> serde_json::Value {
    wait_for(T, "/system_stats to answer", || system_stats(port)).await
}

async fn next_event<T>(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    what: &str,
    mut pick: impl FnMut(&SupervisorEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("event channel");
        if let Some(v) = pick(&e) {
            return v;
        }
    }
}

#[tokio::test]
async fn start_then_stop_leaves_no_process_and_no_record() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sup = SupervisorHandle::launch(
        &local_config("inst_a", comfy.path(), port),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    let mut events = sup.subscribe();
    let pid = sup.pid().expect("running after launch");
    let stats = ready(port).await;
    // ComfyUI was told to keep its folders under the instance's own.
    let argv: Vec<String> = stats["system"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let own = data.path().join("instances/inst_a");
    for flag in [
        "--temp-directory",
        "--user-directory",
        "--output-directory",
        "--database-url",
    ] {
        let i = argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {argv:?}"));
        assert!(
            argv[i + 1].contains(own.to_str().unwrap()),
            "{flag} {}",
            argv[i + 1]
        );
    }
    assert!(argv.contains(&"--disable-auto-launch".to_string()));
    assert!(own.join("process.json").is_file());
    assert!(own.join("user").is_dir() && own.join("temp").is_dir());

    let exit = sup.stop().await.unwrap().expect("a process was running");
    assert_eq!(exit.code, Some(0), "SIGINT is a clean stop: {exit}");
    let asked = next_event(&mut events, "Exited", |e| match e {
        SupervisorEvent::Exited { asked, .. } => Some(*asked),
        _ => None,
    })
    .await;
    assert!(asked);
    wait_for(T, "the process group to be gone", || async {
        (!group_alive(pid)).then_some(())
    })
    .await;
    assert!(!own.join("process.json").exists());
    assert_eq!(sup.state(), ProcessState::Ended);
    assert!(system_stats(port).await.is_none());
    // The output reached the log file and the tail.
    let log = std::fs::read_to_string(own.join("logs/comfyui.log")).unwrap();
    assert!(log.contains("To see the GUI go to"), "{log}");
    assert!(sup
        .log()
        .tail(500)
        .iter()
        .any(|l| l.contains("Stopped server")));
    assert!(sup.log().export().unwrap().contains("Starting server"));
    assert!(
        sup.stop().await.is_err(),
        "a stopped supervisor refuses more commands"
    );
}

#[tokio::test]
async fn restart_replaces_the_process() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sup = SupervisorHandle::launch(
        &local_config("inst_r", comfy.path(), port),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    let first = sup.pid().unwrap();
    ready(port).await;
    let second = sup.restart().await.unwrap();
    assert_ne!(first, second);
    assert!(
        !group_alive(first),
        "the old group was stopped before the new start"
    );
    ready(port).await;
    assert_eq!(sup.pid(), Some(second));
    sup.stop().await.unwrap();
    assert!(!group_alive(second));
}

#[tokio::test]
async fn two_instances_from_one_folder_keep_their_temp_files() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let ctx = LaunchContext::new(data.path());
    let (port_a, port_b) = (free_port(), free_port());
    let a = SupervisorHandle::launch(
        &local_config("a", comfy.path(), port_a),
        &ctx,
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    ready(port_a).await;
    let marker = a.dirs().temp().join("preview_marker.png");
    std::fs::write(&marker, b"A's preview").unwrap();
    let b = SupervisorHandle::launch(
        &local_config("b", comfy.path(), port_b),
        &ctx,
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    ready(port_b).await;
    assert!(marker.is_file(), "B's start wiped A's temp folder");
    assert_ne!(a.dirs().temp(), b.dirs().temp());
    assert!(
        !comfy.path().join("temp").exists(),
        "nothing uses the shared temp"
    );
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test]
async fn detach_leaves_it_running_and_the_next_launch_re_attaches() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sup = SupervisorHandle::launch(
        &local_config("inst_d", comfy.path(), port),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    ready(port).await;
    let pid = sup.detach().await.unwrap().unwrap();
    drop(sup);
    assert!(
        system_stats(port).await.is_some(),
        "still serving after detach"
    );
    let dirs = storycore_core::supervisor::InstanceDirs::new(data.path(), "inst_d").unwrap();
    let record = find_adoptable(&dirs).await.unwrap();
    assert_eq!((record.pid, record.port), (pid, port));
    stop_adopted(&dirs, &record, Duration::from_secs(5)).await;
    wait_for(T, "the adopted group to be gone", || async {
        (!group_alive(pid)).then_some(())
    })
    .await;
    assert!(find_adoptable(&dirs).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_process() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let sup = SupervisorHandle::launch(
        &local_config("inst_drop", comfy.path(), port),
        &LaunchContext::new(data.path()),
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    let pid = sup.pid().unwrap();
    let mut state = sup.watch_state();
    drop(sup);
    tokio::time::timeout(T, state.wait_for(|s| *s == ProcessState::Ended))
        .await
        .unwrap()
        .unwrap();
    assert!(!group_alive(pid));
}

#[tokio::test]
async fn a_process_that_ignores_the_stop_signal_is_killed_with_its_children() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    // An "interpreter" that ignores SIGINT and keeps a child running.
    let python = data.path().join("stubborn-python");
    std::fs::write(
        &python,
        "#!/bin/sh\ntrap '' INT\necho stubborn started\nsleep 300 &\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&python).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&python, perms).unwrap();
    let mut config = local_config("stubborn", comfy.path(), free_port());
    config.python_path = Some(python.display().to_string());
    let options = SupervisorOptions {
        stop_grace: Duration::from_millis(300),
        ..SupervisorOptions::default()
    };
    let sup = SupervisorHandle::launch(&config, &LaunchContext::new(data.path()), options)
        .await
        .unwrap();
    let pid = sup.pid().unwrap();
    wait_for(T, "the script to start", || async {
        sup.log()
            .tail(10)
            .iter()
            .any(|l| l == "stubborn started")
            .then_some(())
    })
    .await;
    let exit = sup.stop().await.unwrap().unwrap();
    assert_eq!(exit.signal, Some(libc::SIGKILL), "{exit}");
    wait_for(T, "the whole group to be gone", || async {
        (!group_alive(pid)).then_some(())
    })
    .await;
}
