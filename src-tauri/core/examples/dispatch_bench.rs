//! `cargo run -p storycore-core --release --example dispatch_bench [-- --runs N]`
//!
//! A mix of jobs (many short, some of seconds, a few long) over ComfyUI
//! stand-ins of different speeds, each with a fixed cost per prompt. Every
//! placement policy runs the same jobs `--runs` times (5 by default), the
//! policies in a shuffled order each round, each run on a fresh queue folder.
//! Makespans are printed as ratios to the lower bound
//! max(total size / total speed, the longest job on the fastest instance),
//! with an offline longest-first schedule computed from the true sizes as a
//! reference. Then the dispatch overhead on an idle fleet: from submit()
//! returning (the job durable, accepted) to its `POST /prompt` leaving the
//! app. Not a test: the figures vary with the machine's load.
//!
//! The last line is
//! `SUMMARY placement_ratio=R best_peer_ratio=P overhead_median_ms=M overhead_p99_ms=Q fsyncs_per_job=F`
//! (R: this app's median ratio; P: the best peer's; F: syncs the journal
//! writer made per job, outputs included).

#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/sample.rs"]
mod sample;

use sample::{median, Rng};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storycore_core::dispatch::{DispatchOptions, JobQueue, Policy};
use storycore_core::manager::InstanceManager;
use storycore_types::JobTarget;

const NODE_MS: f64 = 20.0;
const PROMPT_MS: f64 = 40.0;
/// Time factors: the first instance is 8 times as fast as the last.
const SPEEDS: [f64; 4] = [0.25, 0.5, 1.0, 2.0];
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
        .env("STANDIN_PROMPT_MS", PROMPT_MS.to_string())
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
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let m = fleet::running(dir.path(), &ports, Some(SLOTS)).await;
    let options = DispatchOptions {
        policy,
        poll_interval: Duration::from_millis(200),
        ..DispatchOptions::default()
    };
    let (q, _) = JobQueue::open(m.clone(), dir.path(), options).unwrap();
    // This app calibrates each new instance with the smoke test before
    // giving it work; part of getting ready, not of the makespan.
    if policy == Policy::EarliestFinish {
        let t = Instant::now();
        while q.measured().len() < servers.len() && t.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    (dir, m, q)
}

async fn wait_all(q: &JobQueue) {
    while !q.summaries().iter().all(|j| j.state.is_final()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Offline longest-first on the true sizes: each job, longest first, to the
/// instance where it would end first.
fn offline_lpt(sizes: &[f64]) -> f64 {
    let mut sorted = sizes.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut end = [0.0f64; SPEEDS.len()];
    for s in sorted {
        let i = (0..SPEEDS.len())
            .min_by(|&a, &b| (end[a] + s * SPEEDS[a]).total_cmp(&(end[b] + s * SPEEDS[b])))
            .unwrap();
        end[i] += s * SPEEDS[i];
    }
    end.into_iter().fold(0.0, f64::max)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--runs takes a number"))
        .unwrap_or(5);
    let bin = standin();
    let servers: Vec<Server> = SPEEDS.iter().map(|s| launch(&bin, *s)).collect();

    // The jobs: chains of ImageInvert (nodes = chain + 2), seeded.
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut chains: Vec<usize> = Vec::new();
    chains.extend((0..36).map(|_| rng.range(1, 6))); // 0.1-0.2 s at speed 1
    chains.extend((0..10).map(|_| rng.range(40, 100))); // 0.9-2 s
    chains.extend((0..3).map(|_| rng.range(250, 300))); // 5-6 s
    for i in (1..chains.len()).rev() {
        chains.swap(i, rng.range(0, i)); // submitted in a random order
    }
    let sizes: Vec<f64> = chains
        .iter()
        .map(|c| (PROMPT_MS + (c + 2) as f64 * NODE_MS) / 1000.0)
        .collect();
    let rate: f64 = SPEEDS.iter().map(|s| 1.0 / s).sum();
    let fastest = SPEEDS.iter().copied().fold(f64::INFINITY, f64::min);
    let longest = sizes.iter().copied().fold(0.0, f64::max);
    let bound = (sizes.iter().sum::<f64>() / rate).max(longest * fastest);
    let lpt = offline_lpt(&sizes);
    println!(
        "{} jobs (36 of 3-8 nodes, 10 of 42-102, 3 of 252-302), node {NODE_MS} ms + \
         {PROMPT_MS} ms per prompt, times x{SPEEDS:?} on 4 stand-ins, {SLOTS} slots each; \
         lower bound {bound:.2} s; {runs} runs per policy, shuffled\n",
        chains.len()
    );

    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); Policy::ALL.len()];
    let mut syncs_per_job = Vec::new();
    let mut order: Vec<usize> = (0..Policy::ALL.len()).collect();
    let mut color = 0usize;
    for round in 0..runs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.range(0, i));
        }
        for &p in &order {
            let policy = Policy::ALL[p];
            let (_dir, m, q) = fleet(&servers, policy).await;
            let before = q.writer_counts();
            let t0 = Instant::now();
            // Handed in together, as a batch from the UI or a script would be.
            let submits = chains.iter().map(|c| {
                color += 1;
                let q = q.clone();
                let w = workflow(*c, 1_000_000 + color);
                tokio::spawn(async move { q.submit(w, JobTarget::Auto).await })
            });
            for s in submits.collect::<Vec<_>>() {
                s.await.unwrap().unwrap();
            }
            wait_all(&q).await;
            let secs = t0.elapsed().as_secs_f64();
            q.flush().await;
            let failed = q.summaries().iter().filter(|j| j.error.is_some()).count();
            assert_eq!(failed, 0, "{policy:?}: {failed} jobs failed");
            let ratio = secs / bound;
            ratios[p].push(ratio);
            if policy == Policy::EarliestFinish {
                let syncs = q.writer_counts().syncs - before.syncs;
                syncs_per_job.push(syncs as f64 / chains.len() as f64);
            }
            eprintln!(
                "round {}: {} {secs:.2} s ({ratio:.3})",
                round + 1,
                policy.name()
            );
            q.shutdown().await;
            m.shutdown().await;
        }
    }

    println!("| policy | median ratio | min - max | median makespan (s) |");
    println!("| --- | ---: | ---: | ---: |");
    for (p, policy) in Policy::ALL.into_iter().enumerate() {
        let r = &ratios[p];
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.3} | {lo:.3} - {hi:.3} | {:.2} |",
            policy.name(),
            median(r),
            median(r) * bound
        );
    }
    println!(
        "| offline longest-first, true sizes (reference) | {:.3} | - | {lpt:.2} |",
        lpt / bound
    );

    // Overhead on an idle fleet: one job at a time.
    let (_dir, m, q) = fleet(&servers, Policy::EarliestFinish).await;
    let mut overhead = Vec::new();
    let mut accept = Vec::new();
    for k in 0..100 {
        let t = Instant::now();
        let j = q
            .submit(workflow(1, 2_000_000 + k), JobTarget::Auto)
            .await
            .unwrap();
        accept.push(t.elapsed().as_secs_f64() * 1000.0);
        wait_all(&q).await;
        overhead.push(q.submit_to_post(&j.id).unwrap().as_secs_f64() * 1000.0);
    }
    q.shutdown().await;
    m.shutdown().await;
    println!(
        "\nidle fleet, 100 jobs one at a time: submit() call (the record made durable) \
         median {:.2} ms, p99 {:.2} ms; from accepted to POST /prompt sent median {:.3} ms, \
         p99 {:.3} ms",
        median(&accept),
        percentile(&accept, 0.99),
        median(&overhead),
        percentile(&overhead, 0.99)
    );
    let r = median(&ratios[0]);
    let best_peer = (1..Policy::ALL.len())
        .map(|p| median(&ratios[p]))
        .fold(f64::INFINITY, f64::min);
    println!(
        "SUMMARY placement_ratio={r:.3} best_peer_ratio={best_peer:.3} overhead_median_ms={:.3} \
         overhead_p99_ms={:.3} fsyncs_per_job={:.2}",
        median(&overhead),
        percentile(&overhead, 0.99),
        median(&syncs_per_job)
    );
}
