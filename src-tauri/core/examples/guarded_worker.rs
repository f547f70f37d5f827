//! A tiny app around the instance manager, for the orphan tests
//! (`tests/faults_orphans.rs`): it opens the manager in `WORKER_DIR`, creates
//! a local instance `w` run by the stand-in at `WORKER_STANDIN` on
//! `WORKER_PORT` (unless it exists), sets "keep instances running" from
//! `WORKER_KEEP` (0 or 1), starts it, prints `ready <pid>` once it answers,
//! and then waits to be killed.

use std::time::Duration;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::{InstanceConfig, InstanceStatus};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

#[tokio::main]
async fn main() {
    let dir = std::path::PathBuf::from(var("WORKER_DIR"));
    let mut o = ManagerOptions::new(dir.join("config"));
    o.data_dir = dir.join("data");
    o.health.starting_interval = Duration::from_millis(50);
    o.supervisor.stop_grace = Duration::from_secs(2);
    let (m, _) = InstanceManager::open(o).unwrap();
    m.set_keep_running(var("WORKER_KEEP") == "1");
    if m.get("w").is_none() {
        let comfy = dir.join("comfy");
        std::fs::create_dir_all(&comfy).unwrap();
        std::fs::write(comfy.join("main.py"), "# stand-in\n").unwrap();
        let mut c = InstanceConfig::new("w", "w", var("WORKER_PORT").parse().unwrap());
        c.comfyui_path = Some(comfy.display().to_string());
        c.python_path = Some(var("WORKER_STANDIN"));
        c.gpu_device = Some("cpu".into());
        m.create(c).await.unwrap();
    }
    if m.reattach_local().await.is_empty() {
        m.start("w").await.unwrap();
    }
    while m.get("w").unwrap().status != InstanceStatus::Running {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ready {}", m.process_pid("w").unwrap());
    std::future::pending::<()>().await;
}
