//! A pool against a fixed fleet under a bursty load: idle, a burst of jobs,
//! idle again. Both run side by side in one process, each with its own
//! manager and queue: a fixed fleet of 4 local stand-ins running all along,
//! and a pool of 1 to 4 stand-ins. Prints, for each, the makespan of the
//! burst (first submit to last job done) and the instance-seconds used over
//! the whole window (processes alive, sampled every 100 ms), and the ratios.
//!
//! ```text
//! cargo run -p storycore-core --release --example pool_bench -- \
//!     [--jobs 50] [--idle-secs 45] [--node-ms 500] [--startup-ms 6500]
//! ```
//!
//! The stand-ins start in `--startup-ms` (a real ComfyUI 0.3.64 on CPU
//! refuses connections for 6-7 s after launch) and run each job in 6 nodes
//! of `--node-ms`. The pool: minimum 1, maximum 4, trigger 10 s of expected
//! wait, cooldown 5 s, idle timeout 10 s, 256 MiB of RAM per member (the
//! machine's own figures: no GPU here). Goal: a makespan within 1.2x of the
//! fixed fleet's at no more than 60% of its instance-seconds.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::pool::memory::SystemMemory;
use storycore_core::pool::{PoolOptions, Pools};
use storycore_types::{InstanceConfig, InstanceStatus, JobTarget, PoolConfig};

#[path = "support/standin.rs"]
mod standin;

use standin::{free_port, standin_binary};

const FLEET: usize = 4;

struct Args {
    jobs: u32,
    idle: Duration,
    node_ms: u64,
    startup_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        jobs: 50,
        idle: Duration::from_secs(45),
        node_ms: 500,
        startup_ms: 6500,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i + 1 < v.len() {
        let n: u64 = v[i + 1]
            .parse()
            .unwrap_or_else(|_| panic!("{} takes a whole number", v[i]));
        match v[i].as_str() {
            "--jobs" => a.jobs = n as u32,
            "--idle-secs" => a.idle = Duration::from_secs(n),
            "--node-ms" => a.node_ms = n,
            "--startup-ms" => a.startup_ms = n,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// EmptyImage, 4 inverts, SaveImage: 6 nodes; the colour makes each distinct.
fn workflow(k: u32) -> Value {
    let mut w = serde_json::Map::new();
    w.insert(
        "1".into(),
        json!({"class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x30_0000 + k}}),
    );
    let mut last = "1".to_string();
    for n in 0..4 {
        let id = format!("{}", 10 + n);
        w.insert(
            id.clone(),
            json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}}),
        );
        last = id;
    }
    w.insert(
        "2".into(),
        json!({"class_type": "SaveImage",
        "inputs": {"images": [last, 0], "filename_prefix": format!("bench_{k}")}}),
    );
    Value::Object(w)
}

struct Side {
    name: &'static str,
    _dir: tempfile::TempDir,
    manager: InstanceManager,
    queue: JobQueue,
    pools: Option<Pools>,
}

fn open_side(name: &'static str) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let mut o = ManagerOptions::new(dir.path());
    o.data_dir = dir.path().join("data");
    let manager = InstanceManager::open(o).unwrap().0;
    let (queue, _) =
        JobQueue::open(manager.clone(), dir.path(), DispatchOptions::default()).unwrap();
    Side {
        name,
        _dir: dir,
        manager,
        queue,
        pools: None,
    }
}

fn env(a: &Args) -> std::collections::BTreeMap<String, String> {
    [
        ("STANDIN_STARTUP_DELAY_MS", a.startup_ms.to_string()),
        ("STANDIN_NODE_MS", a.node_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Processes alive now.
fn alive(side: &Side) -> usize {
    side.manager
        .list()
        .iter()
        .filter(|i| side.manager.process_alive(&i.id) == Some(true))
        .count()
}

async fn wait_running(side: &Side, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while side
        .manager
        .list()
        .iter()
        .filter(|i| i.status == InstanceStatus::Running && side.queue.measured().contains(&i.id))
        .count()
        < n
    {
        assert!(Instant::now() < deadline, "{}: not ready", side.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makespan of the burst, instance-seconds over the window, most processes.
async fn drive(side: &Side, a: &Args) -> (Duration, f64, usize) {
    let window = Instant::now();
    let mut instance_secs = 0.0;
    let mut most = 0;
    let step = Duration::from_millis(100);
    let mut sample = |side: &Side| {
        let n = alive(side);
        most = most.max(n);
        instance_secs += n as f64 * step.as_secs_f64();
    };
    while window.elapsed() < a.idle {
        sample(side);
        tokio::time::sleep(step).await;
    }
    let burst = Instant::now();
    let mut ids = Vec::new();
    for k in 0..a.jobs {
        ids.push(
            side.queue
                .submit(workflow(k), JobTarget::Auto)
                .await
                .unwrap()
                .id,
        );
    }
    loop {
        sample(side);
        let done = ids
            .iter()
            .filter(|id| side.queue.get(id).is_some_and(|j| j.state.is_final()))
            .count();
        if done == ids.len() {
            break;
        }
        tokio::time::sleep(step).await;
    }
    let makespan = burst.elapsed();
    let failed = ids
        .iter()
        .filter(|id| {
            side.queue
                .get(id)
                .is_some_and(|j| j.state != storycore_types::JobState::Succeeded)
        })
        .count();
    assert_eq!(failed, 0, "{}: {failed} jobs did not succeed", side.name);
    let after = Instant::now();
    while after.elapsed() < a.idle {
        sample(side);
        tokio::time::sleep(step).await;
    }
    (makespan, instance_secs, most)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let standin = standin_binary();
    let comfy = tempfile::tempdir().unwrap();
    std::fs::write(comfy.path().join("main.py"), "# ComfyUI stand-in\n").unwrap();
    let comfy_path = comfy.path().canonicalize().unwrap().display().to_string();

    // The fixed fleet: 4 local stand-ins, started and measured before the window.
    let fixed = open_side("fixed fleet of 4");
    for n in 0..FLEET {
        let mut c = InstanceConfig::new(
            format!("fixed-{n}"),
            format!("Fixed {n}"),
            u32::from(free_port()),
        );
        c.comfyui_path = Some(comfy_path.clone());
        c.python_path = Some(standin.display().to_string());
        c.gpu_device = Some("cpu".into());
        c.env_vars = Some(env(&a));
        fixed.manager.create(c).await.unwrap();
        fixed.manager.start(&format!("fixed-{n}")).await.unwrap();
    }
    // The pool: its minimum of 1 starts now.
    let mut pool_side = open_side("pool of 1 to 4");
    let (pools, _) = Pools::open(
        pool_side._dir.path(),
        pool_side.manager.clone(),
        pool_side.queue.clone(),
        Arc::new(SystemMemory::default()),
        PoolOptions {
            ports: 8300..=8399,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let mut p = PoolConfig::new("bench", "Bench", comfy_path.clone());
    p.python_path = Some(standin.display().to_string());
    p.env_vars = Some(env(&a));
    p.devices = vec!["cpu".into()];
    p.min_members = 1;
    p.max_members = FLEET as u32;
    p.scale_up_wait_secs = 10.0;
    p.cooldown_secs = 5;
    p.idle_timeout_secs = 10;
    p.memory_need_mib = Some(256);
    pools.create(p).await.unwrap();
    pool_side.pools = Some(pools.clone());
    wait_running(&fixed, FLEET).await;
    wait_running(&pool_side, 1).await;
    println!(
        "pool_bench: {} s idle, a burst of {} jobs (6 nodes of {} ms), {} s idle; stand-ins start in {} ms",
        a.idle.as_secs(),
        a.jobs,
        a.node_ms,
        a.idle.as_secs(),
        a.startup_ms
    );
    let (f, p) = tokio::join!(drive(&fixed, &a), drive(&pool_side, &a));
    let view = pools.get("bench").unwrap();
    println!(
        "{:<20} {:>10} {:>18} {:>14}",
        "", "makespan", "instance-seconds", "most alive"
    );
    for (name, (m, s, most)) in [(fixed.name, f), (pool_side.name, p)] {
        println!(
            "{name:<20} {:>9.1}s {:>18.0} {:>14}",
            m.as_secs_f64(),
            s,
            most
        );
    }
    let (mr, sr) = (p.0.as_secs_f64() / f.0.as_secs_f64(), p.1 / f.1);
    println!("{:<20} {:>9.2}x {:>17.0}% ", "pool / fixed", mr, sr * 100.0);
    let sizes: Vec<u32> = view.history.iter().map(|h| h.size).collect();
    println!("pool size over time: {sizes:?}");
    for d in &view.decisions {
        println!(
            "  {} {:?} {}: {}",
            d.at.format("%H:%M:%S"),
            d.action,
            d.member.as_deref().unwrap_or("-"),
            d.reason
        );
    }
    let ok_m = mr <= 1.2;
    let ok_s = sr <= 0.6;
    println!(
        "goals: makespan within 1.2x of the fixed fleet: {}; at most 60% of its instance-seconds: {}",
        if ok_m { "met" } else { "MISSED" },
        if ok_s { "met" } else { "MISSED" }
    );
    pools.shutdown().await;
    for side in [&fixed, &pool_side] {
        side.queue.shutdown().await;
        side.manager.shutdown().await;
    }
    if !(ok_m && ok_s) {
        std::process::exit(1);
    }
}
