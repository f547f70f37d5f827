//! `cargo run -p storycore-core --release --example model_bench [-- --runs N]`
//!
//! A mixed-model workload on four stand-ins that keep models as ComfyUI
//! does (one checkpoint held at a time; a load takes its file's size at a
//! read rate), side by side for each placement policy, `--runs` times (3 by
//! default), the policies in a shuffled order each round, each run on a
//! fresh queue with every stand-in's memory emptied (`/free`) first.
//!
//! The workload, in the seconds of a real GPU box (one second is
//! [`MS_PER_SEC`] ms here): 60 jobs over 3 checkpoints (loads of 4 s, 8 s
//! and 15 s), most of 1-3 s of sampling at speed x1, one in six of 10-20 s;
//! instances of speeds x2, x1, x0.5 and x0.25; the 8 s checkpoint is
//! missing on the fastest instance and the 15 s one on the slowest. Every
//! policy is given the same eligibility (no job goes where its file is
//! missing); what differs is the choice.
//!
//! The lower bound is the larger of
//! - the best split of each checkpoint's work among the instances that have
//!   its file, with jobs cut into pieces at will but each instance loading
//!   once each checkpoint it serves (an instance that loads does no work
//!   meanwhile): the least `T` such that, for some choice of which
//!   instances serve which checkpoint, every group of checkpoints' work
//!   fits in the time their instances have left after their loads (Gale's
//!   condition for that transport), over every choice;
//! - for each job, its checkpoint's load plus its work on the fastest
//!   instance that has the file: its instance loads the checkpoint before it.
//!   Both hold for any schedule, so their larger one does.
//!
//! `MODEL_BENCH_TRACE=1` prints after each run the models each stand-in
//! loaded, in order.
//!
//! The last line is
//! `SUMMARY models_ratio=R swarm_ratio=S blind_ratio=B sent_without_model=N`
//! (this app, SwarmUI's rule and this app with loads ignored, each median
//! makespan over the bound; N: jobs of this app refused by an instance for
//! a missing model, which must be 0).

#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/sample.rs"]
mod sample;

use sample::{median, Rng};
#[path = "support/standin.rs"]
mod standin;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use storycore_core::dispatch::{DispatchOptions, JobQueue, Policy};
use storycore_core::manager::InstanceManager;
use storycore_types::JobTarget;

/// Milliseconds here for one second of the workload.
const MS_PER_SEC: f64 = 40.0;
/// A node's time at speed x1: a quarter of a workload second.
const NODE_MS: f64 = 10.0;
/// Time factors: x2, x1, x0.5, x0.25.
const TIME_FACTORS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// The checkpoints and their loads (workload seconds).
const CHECKPOINTS: [(&str, f64); 3] = [
    ("ckpt_a.safetensors", 4.0),
    ("ckpt_b.safetensors", 8.0),
    ("ckpt_c.safetensors", 15.0),
];
/// (instance, checkpoint) pairs whose file is missing.
const MISSING: [(usize, usize); 2] = [(0, 1), (3, 2)];
/// A model file is read at this rate (MB per second); its size sets its load.
const READ_MBPS: f64 = 1000.0;
/// Nodes of every job besides its sampling chain: loader, latent, decode, save.
const FIXED_NODES: usize = 4;

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The models this stand-in loaded so far, in order (its log's
    /// "Requested to load" lines).
    fn loaded(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("standin.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("Requested to load "))
            .map(str::to_string)
            .collect()
    }

    fn loads(&self) -> usize {
        self.loaded().len()
    }
}

fn launch(bin: &Path, k: usize) -> Server {
    let port = standin::free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "").unwrap();
    for (c, (name, load)) in CHECKPOINTS.iter().enumerate() {
        if MISSING.contains(&(k, c)) {
            continue;
        }
        let folder = dir.path().join("models/checkpoints");
        std::fs::create_dir_all(&folder).unwrap();
        // Sparse: only its size counts.
        let bytes = (load * MS_PER_SEC / 1000.0 * READ_MBPS * 1e6) as u64;
        std::fs::File::create(folder.join(name))
            .unwrap()
            .set_len(bytes)
            .unwrap();
    }
    let log = std::fs::File::create(dir.path().join("standin.log")).unwrap();
    let child = Command::new(bin)
        .args(["main.py", "--listen", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .env("STANDIN_NODE_MS", NODE_MS.to_string())
        .env("STANDIN_SPEED", TIME_FACTORS[k].to_string())
        .env("STANDIN_MODEL_LOAD_MS", "0")
        .env("STANDIN_MODEL_READ_MBPS", READ_MBPS.to_string())
        .env("STANDIN_MODELS_HELD", "1")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Server { child, port, dir }
}

/// Checkpoint -> latent -> decode -> `chain` inverts (the sampling) -> save.
fn workflow(ckpt: &str, chain: usize, n: usize) -> Value {
    let mut w = json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64 + 8 * (n % 50), "height": 64, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
    });
    let mut last = "8".to_string();
    for k in 0..chain {
        let id = format!("{}", 20 + k);
        w[&id] = json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}});
        last = id;
    }
    w["9"] = json!({"class_type": "SaveImage",
        "inputs": {"images": [last, 0], "filename_prefix": format!("m{n}")}});
    w
}

/// The least makespan of the relaxed problem (see the top of the file):
/// over every choice of which instances serve which checkpoint (each
/// checkpoint served somewhere, never where its file is missing), the least
/// `T` at which every group of checkpoints' work fits in what their
/// instances can do in `T` after loading each checkpoint they serve once.
fn split_bound(speeds: &[f64], work: &[f64], loads: &[f64]) -> f64 {
    let pairs: Vec<(usize, usize)> = (0..speeds.len())
        .flat_map(|i| (0..work.len()).map(move |m| (i, m)))
        .filter(|p| !MISSING.contains(p))
        .collect();
    let fits = |chosen: &[(usize, usize)], t: f64| {
        let left = |i: usize| {
            let loading: f64 = chosen
                .iter()
                .filter(|(j, _)| *j == i)
                .map(|(_, m)| loads[*m])
                .sum();
            speeds[i] * (t - loading).max(0.0)
        };
        (1u32..(1 << work.len())).all(|group| {
            let in_group = |m: usize| group & (1 << m) != 0;
            let need: f64 = (0..work.len())
                .filter(|m| in_group(*m))
                .map(|m| work[m])
                .sum();
            let serving: Vec<usize> = (0..speeds.len())
                .filter(|i| chosen.iter().any(|(j, m)| j == i && in_group(*m)))
                .collect();
            need <= serving.iter().map(|i| left(*i)).sum::<f64>() + 1e-9
        })
    };
    let mut best = f64::INFINITY;
    for mask in 1u32..(1 << pairs.len()) {
        let chosen: Vec<(usize, usize)> = pairs
            .iter()
            .enumerate()
            .filter(|(k, _)| mask & (1 << k) != 0)
            .map(|(_, p)| *p)
            .collect();
        if (0..work.len()).any(|m| !chosen.iter().any(|(_, c)| *c == m)) {
            continue;
        }
        let (mut lo, mut hi) = (0.0, best.min(1e6));
        if !fits(&chosen, hi) {
            continue;
        }
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if fits(&chosen, mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        best = best.min(hi);
    }
    best
}

/// One side of the comparison.
#[derive(Clone, Copy)]
struct Side {
    name: &'static str,
    policy: Policy,
    model_costs: bool,
}

const SIDES: [Side; 6] = [
    Side {
        name: "this app (earliest finish, models)",
        policy: Policy::EarliestFinish,
        model_costs: true,
    },
    Side {
        name: "SwarmUI's model pressure",
        policy: Policy::SwarmModels,
        model_costs: true,
    },
    Side {
        name: "this app, loads ignored",
        policy: Policy::EarliestFinish,
        model_costs: false,
    },
    Side {
        name: "fewest in flight (SwarmUI without models)",
        policy: Policy::FewestInFlight,
        model_costs: false,
    },
    Side {
        name: "shortest queue (ComfyUI-Distributed)",
        policy: Policy::ShortestQueue,
        model_costs: false,
    },
    Side {
        name: "round-robin",
        policy: Policy::RoundRobin,
        model_costs: false,
    },
];

async fn fleet(servers: &[Server], side: Side) -> (tempfile::TempDir, InstanceManager, JobQueue) {
    let http = reqwest::Client::new();
    for s in servers {
        // Every run starts with nothing loaded and nothing cached.
        let _ = http
            .post(format!("http://127.0.0.1:{}/free", s.port))
            .json(&json!({"unload_models": true, "free_memory": true}))
            .send()
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let m = fleet::running(dir.path(), &ports, Some(2)).await;
    let options = DispatchOptions {
        policy: side.policy,
        model_costs: side.model_costs,
        poll_interval: Duration::from_millis(100),
        ..DispatchOptions::default()
    };
    let (q, _) = JobQueue::open(m.clone(), dir.path(), options).unwrap();
    // Getting ready is not part of the makespan: what each instance offers
    // is read, and this app calibrates each with the smoke test.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let read = (0..servers.len()).all(|i| q.instance_models(&format!("gpu{i}")).is_some());
        let calibrated =
            side.policy != Policy::EarliestFinish || q.measured().len() == servers.len();
        if read && calibrated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (dir, m, q)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--runs takes a number"))
        .unwrap_or(3);
    let bin = standin::standin_binary();
    let servers: Vec<Server> = (0..TIME_FACTORS.len()).map(|k| launch(&bin, k)).collect();

    // The jobs: 20 per checkpoint, 5 in 6 of 1-3 s, 1 in 6 of 10-20 s.
    let mut rng = Rng(0x5EED_0F0D_E15A_11C3);
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    for c in 0..CHECKPOINTS.len() {
        for k in 0..20 {
            let secs = if k % 6 == 5 {
                rng.range(10, 20)
            } else {
                rng.range(1, 3)
            };
            let chain = (secs as f64 * MS_PER_SEC / NODE_MS).round() as usize;
            jobs.push((c, chain));
        }
    }
    for i in (1..jobs.len()).rev() {
        jobs.swap(i, rng.range(0, i)); // submitted in a random order
    }

    // The bound, in seconds here.
    let work = |chain: usize| (chain + FIXED_NODES) as f64 * NODE_MS / 1000.0;
    let load = |c: usize| CHECKPOINTS[c].1 * MS_PER_SEC / 1000.0;
    let speeds: Vec<f64> = TIME_FACTORS.iter().map(|t| 1.0 / t).collect();
    let total_speed: f64 = speeds.iter().sum();
    let slowest = speeds.iter().copied().fold(f64::INFINITY, f64::min);
    let total_work: f64 = jobs.iter().map(|(_, ch)| work(*ch)).sum();
    let all_loads: f64 = (0..CHECKPOINTS.len()).map(load).sum();
    let by_work = (total_work + slowest * all_loads) / total_speed;
    let fastest_with = |c: usize| {
        (0..speeds.len())
            .filter(|i| !MISSING.contains(&(*i, c)))
            .map(|i| speeds[i])
            .fold(0.0, f64::max)
    };
    let by_job = jobs
        .iter()
        .map(|(c, ch)| load(*c) + work(*ch) / fastest_with(*c))
        .fold(0.0, f64::max);
    let mut model_work = vec![0.0; CHECKPOINTS.len()];
    for (c, ch) in &jobs {
        model_work[*c] += work(*ch);
    }
    let loads_each: Vec<f64> = (0..CHECKPOINTS.len()).map(load).collect();
    let by_split = split_bound(&speeds, &model_work, &loads_each);
    let bound = by_work.max(by_job).max(by_split);
    println!(
        "{} jobs over {} checkpoints (loads {:?} s), 5 in 6 of 1-3 s and 1 in 6 of 10-20 s \
         at speed x1, on instances of speeds x{:?}, one checkpoint held at a time; \
         ckpt_b missing on the fastest, ckpt_c on the slowest; one workload second is \
         {MS_PER_SEC} ms here. Lower bound {bound:.2} s (best split {by_split:.2} s, work and \
         loads {by_work:.2} s, longest job with its load {by_job:.2} s); {runs} runs per \
         policy, shuffled\n",
        jobs.len(),
        CHECKPOINTS.len(),
        CHECKPOINTS.map(|c| c.1),
        speeds,
    );

    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); SIDES.len()];
    let mut loads: Vec<Vec<f64>> = vec![Vec::new(); SIDES.len()];
    let mut refused = vec![0usize; SIDES.len()];
    let mut order: Vec<usize> = (0..SIDES.len()).collect();
    let mut n = 0usize;
    for round in 0..runs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.range(0, i));
        }
        for &p in &order {
            let side = SIDES[p];
            let (_dir, m, q) = fleet(&servers, side).await;
            let before: Vec<usize> = servers.iter().map(Server::loads).collect();
            let loads_before: usize = before.iter().sum();
            let t0 = Instant::now();
            let submits = jobs.iter().map(|(c, chain)| {
                n += 1;
                let q = q.clone();
                let w = workflow(CHECKPOINTS[*c].0, *chain, n);
                tokio::spawn(async move { q.submit(w, JobTarget::Auto).await })
            });
            for s in submits.collect::<Vec<_>>() {
                s.await.unwrap().unwrap();
            }
            while !q.summaries().iter().all(|j| j.state.is_final()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let secs = t0.elapsed().as_secs_f64();
            let summaries = q.summaries();
            let missing_model = summaries
                .iter()
                .filter(|j| {
                    j.error
                        .as_ref()
                        .is_some_and(|e| e.message.contains("not in"))
                })
                .count();
            refused[p] += missing_model;
            let failed = summaries.iter().filter(|j| j.error.is_some()).count();
            assert_eq!(failed, missing_model, "{}: jobs failed", side.name);
            let made: usize = servers.iter().map(Server::loads).sum::<usize>() - loads_before;
            if std::env::var_os("MODEL_BENCH_TRACE").is_some() {
                for (k, s) in servers.iter().enumerate() {
                    let l = s.loaded();
                    eprintln!("  gpu{k} loaded {:?}", &l[before[k].min(l.len())..]);
                }
            }
            ratios[p].push(secs / bound);
            loads[p].push(made as f64);
            eprintln!(
                "round {}: {} {secs:.2} s ({:.3}), {made} loads",
                round + 1,
                side.name,
                secs / bound
            );
            q.shutdown().await;
            m.shutdown().await;
        }
    }

    println!("| policy | median ratio | min - max | median makespan (s) | median loads |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (p, side) in SIDES.iter().enumerate() {
        let r = &ratios[p];
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.3} | {lo:.3} - {hi:.3} | {:.2} | {:.0} |",
            side.name,
            median(r),
            median(r) * bound,
            median(&loads[p])
        );
    }
    println!(
        "SUMMARY models_ratio={:.3} swarm_ratio={:.3} blind_ratio={:.3} sent_without_model={}",
        median(&ratios[0]),
        median(&ratios[1]),
        median(&ratios[2]),
        refused[0]
    );
}
