//! Nothing outlives the app that should not: when the process that owns the
//! manager is killed outright (SIGKILL, as the out-of-memory killer does), the
//! ComfyUI it launched ends too, unless "keep instances running" is on; then
//! it keeps running and the next launch re-attaches to it. The "app" is the
//! `guarded_worker` example, run as a child process.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::supervisor::group_alive;
use storycore_types::InstanceStatus;
use support::standin::{cargo_build, free_port, standin_binary};
use support::wait_for;

fn worker_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(
            &["-p", "storycore-core", "--example", "guarded_worker"],
            "examples/guarded_worker",
        )
    })
}

/// Starts the worker and returns it with the pid of the ComfyUI it runs.
fn worker(dir: &Path, port: u16, keep: bool) -> (Child, u32) {
    let mut child = Command::new(worker_binary())
        .env("WORKER_DIR", dir)
        .env("WORKER_PORT", port.to_string())
        .env("WORKER_STANDIN", standin_binary())
        .env("WORKER_KEEP", if keep { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("the worker said {line:?}"))
        .parse()
        .unwrap();
    (child, pid)
}

fn sigkill(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

fn wait_gone(pgid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_killed_app_takes_what_it_launched_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, comfy) = worker(dir.path(), free_port(), false);
    assert!(group_alive(comfy));
    sigkill(&mut app);
    // The guardian sends SIGINT (ComfyUI's clean stop), waits up to the stop
    // grace (2 s here), then SIGKILLs.
    let ended = wait_gone(comfy, Duration::from_secs(10));
    if !ended {
        unsafe { libc::killpg(comfy as i32, libc::SIGKILL) };
    }
    assert!(
        ended,
        "ComfyUI (pid {comfy}) outlived the app that launched it"
    );
}

#[tokio::test]
async fn with_keep_running_it_survives_and_the_next_launch_re_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut app, comfy) = worker(dir.path(), port, true);
    sigkill(&mut app);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(group_alive(comfy), "a kept ComfyUI was stopped");

    let mut o = ManagerOptions::new(dir.path().join("config"));
    o.data_dir = dir.path().join("data");
    o.health.starting_interval = Duration::from_millis(50);
    let next = InstanceManager::open(o).unwrap().0;
    assert_eq!(next.reattach_local().await, ["w"]);
    wait_for(
        Duration::from_secs(15),
        "re-attached and running",
        || async { (next.get("w")?.status == InstanceStatus::Running).then_some(()) },
    )
    .await;
    assert_eq!(next.process_pid("w"), Some(comfy), "no second ComfyUI");
    next.stop("w").await.unwrap();
    assert!(!group_alive(comfy), "stopped after the re-attach");
}
