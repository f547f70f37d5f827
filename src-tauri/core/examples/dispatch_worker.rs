//! A tiny app around the job queue, for the crash test (`dispatch_crash.rs`):
//! it opens the manager and the queue in `DISPATCH_DIR`, starts every
//! instance, submits the jobs `crash0..crashN` that are not accepted yet (one
//! by one, so a kill can land during submission too), and exits when every
//! job has ended. Killed with SIGKILL at random moments and started again, it
//! must end with each job succeeded exactly once.

use std::collections::HashSet;
use std::time::Duration;
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::JobTarget;

fn workflow(k: u32) -> serde_json::Value {
    serde_json::json!({
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 1000 + k}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "2": {"class_type": "SaveImage",
              "inputs": {"images": ["4", 0], "filename_prefix": format!("crash{k}")}}
    })
}

fn prefix_of(w: &serde_json::Value) -> Option<String> {
    w.pointer("/2/inputs/filename_prefix")?
        .as_str()
        .map(str::to_string)
}

#[tokio::main]
async fn main() {
    let dir = std::env::var("DISPATCH_DIR").expect("DISPATCH_DIR");
    let total: u32 = std::env::var("DISPATCH_JOBS")
        .expect("DISPATCH_JOBS")
        .parse()
        .unwrap();
    let mut o = ManagerOptions::new(&dir);
    o.health = HealthPolicy {
        interval: Duration::from_millis(200),
        resource_interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(1000),
        ..HealthPolicy::default()
    };
    let (manager, _) = InstanceManager::open(o).unwrap();
    let options = DispatchOptions {
        poll_interval: Duration::from_millis(100),
        ..DispatchOptions::default()
    };
    let (queue, recovered) = JobQueue::open(manager.clone(), &dir, options).unwrap();
    println!(
        "recovered: following {}, queued {}",
        recovered.followed, recovered.queued
    );
    for i in manager.list() {
        manager.start(&i.id).await.unwrap();
    }
    let have: HashSet<String> = queue
        .list()
        .iter()
        .filter_map(|j| prefix_of(&j.workflow))
        .collect();
    for k in 0..total {
        if !have.contains(&format!("crash{k}")) {
            let job = queue.submit(workflow(k), JobTarget::Auto).await.unwrap();
            println!("accepted {} crash{k}", job.id);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if queue.list().iter().all(|j| j.state.is_final()) {
            break;
        }
    }
    queue.shutdown().await;
    manager.shutdown().await;
    println!("done");
}
