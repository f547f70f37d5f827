//! `cargo run -p storycore-core --release --example dispatch_bench`
//!
//! M jobs of mixed lengths over N ComfyUI stand-ins of different speeds, run
//! once per placement policy (same jobs, same servers), each makespan printed
//! as a ratio to the lower bound max(total work / total speed, longest job on
//! the fastest instance); then the dispatch overhead per job (submit() to the
//! moment POST /prompt is sent), on an idle fleet. Not a test: numbers vary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storycore_core::client::ComfyClient;
use storycore_core::dispatch::{DispatchOptions, JobQueue, Policy};
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::{HealthStatus, InstanceConfig, InstanceStatus, JobTarget};

const NODE_MS: f64 = 20.0;
const SPEEDS: [f64; 4] = [0.25, 0.5, 1.0, 2.0];
const JOBS: usize = 48;
const SLOTS: u32 = 2;

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn standin() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap()
        .to_path_buf();
    let ok = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--quiet", "--release", "-p", "comfyui-standin"])
        .current_dir(&ws)
        .status()
        .unwrap()
        .success();
    assert!(ok, "building comfyui-standin failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"))
        .join("release/comfyui-standin")
}

fn launch(bin: &Path, speed: f64) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "").unwrap();
    let child = Command::new(bin)
        .args([
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .env("STANDIN_NODE_MS", NODE_MS.to_string())
        .env("STANDIN_SPEED", speed.to_string())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        port,
        _dir: dir,
    }
}

/// `EmptyImage -> ImageInvert x chain -> SaveImage`: 2 + chain nodes.
fn workflow(chain: usize, color: usize) -> serde_json::Value {
    let mut w = serde_json::json!({
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}}
    });
    let mut last = "1".to_string();
    for k in 0..chain {
        let id = format!("{}", 10 + k);
        w[&id] = serde_json::json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}});
        last = id;
    }
    w["2"] = serde_json::json!({"class_type": "SaveImage",
        "inputs": {"images": [last, 0], "filename_prefix": format!("bench{color}")}});
    w
}

async fn fleet(
    servers: &[Server],
    policy: Policy,
) -> (tempfile::TempDir, InstanceManager, JobQueue) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = ManagerOptions::new(dir.path());
    o.health = HealthPolicy {
        interval: Duration::from_millis(200),
        resource_interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        ..HealthPolicy::default()
    };
    let (m, _) = InstanceManager::open(o).unwrap();
    for (i, s) in servers.iter().enumerate() {
        let mut c = InstanceConfig::new(format!("gpu{i}"), format!("GPU {i}"), s.port as u32);
        c.host = Some("127.0.0.1".into());
        c.max_concurrent_workflows = Some(SLOTS);
        m.create(c).await.unwrap();
        m.start(&format!("gpu{i}")).await.unwrap();
    }
    loop {
        let ready = m.list().iter().all(|i| {
            i.status == InstanceStatus::Running && i.health.status == HealthStatus::Healthy
        });
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let options = DispatchOptions {
        policy,
        poll_interval: Duration::from_millis(200),
        ..DispatchOptions::default()
    };
    let (q, _) = JobQueue::open(m.clone(), dir.path(), options).unwrap();
    (dir, m, q)
}

async fn wait_all(q: &JobQueue) {
    while !q.list().iter().all(|j| j.state.is_final()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let bin = standin();
    let servers: Vec<Server> = SPEEDS.iter().map(|s| launch(&bin, *s)).collect();
    // Seeded mixed lengths: 1..=12 inverts (3..=14 nodes).
    let mut x: u64 = 0x0123_4567_89AB_CDEF;
    let chains: Vec<usize> = (0..JOBS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % 12) as usize
        })
        .collect();
    let nodes: Vec<f64> = chains.iter().map(|c| (c + 2) as f64).collect();
    let rate: f64 = SPEEDS.iter().map(|s| 1.0 / (NODE_MS * s)).sum();
    let fastest = SPEEDS.iter().copied().fold(f64::INFINITY, f64::min);
    let longest = nodes.iter().copied().fold(0.0, f64::max);
    let bound_ms = (nodes.iter().sum::<f64>() / rate).max(longest * NODE_MS * fastest);
    println!(
        "{JOBS} jobs of 3-14 nodes, {} stand-ins (node time {NODE_MS} ms x speed {SPEEDS:?}), \
         {SLOTS} slots each; lower bound {:.0} ms\n",
        SPEEDS.len(),
        bound_ms
    );
    println!("| policy | makespan (ms) | ratio to lower bound |");
    println!("| --- | ---: | ---: |");
    for (run, policy) in Policy::ALL.into_iter().enumerate() {
        let (_dir, m, q) = fleet(&servers, policy).await;
        let t0 = Instant::now();
        for (k, c) in chains.iter().enumerate() {
            q.submit(workflow(*c, (run + 1) * 10_000 + k), JobTarget::Auto)
                .unwrap();
        }
        wait_all(&q).await;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let failed = q.list().iter().filter(|j| j.error.is_some()).count();
        assert_eq!(failed, 0, "{policy:?}: {failed} jobs failed");
        println!("| {} | {ms:.0} | {:.2} |", policy.name(), ms / bound_ms);
        q.shutdown().await;
        m.shutdown().await;
    }

    // Overhead on an idle fleet: one job at a time.
    let (_dir, m, q) = fleet(&servers, Policy::EarliestFinish).await;
    let mut overhead = Vec::new();
    for k in 0..30 {
        let j = q.submit(workflow(1, 90_000 + k), JobTarget::Auto).unwrap();
        wait_all(&q).await;
        overhead.push(q.submit_to_post(&j.id).unwrap().as_secs_f64() * 1000.0);
    }
    // For scale: POST /prompt itself, straight to a server.
    let client =
        ComfyClient::from_endpoint(&format!("http://127.0.0.1:{}", servers[0].port)).unwrap();
    let mut post = Vec::new();
    for k in 0..30 {
        let id = uuid::Uuid::new_v4().to_string();
        let t = Instant::now();
        client
            .submit_prompt(workflow(1, 95_000 + k), &id, "bench")
            .await
            .unwrap();
        post.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    overhead.sort_by(f64::total_cmp);
    post.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v[v.len() / 2];
    let p95 = |v: &[f64]| v[v.len() * 95 / 100];
    println!(
        "\ndispatch overhead, submit() to POST /prompt sent (idle fleet, 30 jobs): \
         median {:.2} ms, p95 {:.2} ms",
        med(&overhead),
        p95(&overhead)
    );
    println!(
        "for scale, POST /prompt round trip to a stand-in: median {:.2} ms, p95 {:.2} ms",
        med(&post),
        p95(&post)
    );
    q.shutdown().await;
    m.shutdown().await;
}
