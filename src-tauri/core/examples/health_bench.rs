//! What monitoring a fleet costs the whole backend, as the app runs it: the
//! real `InstanceManager` (registry, health monitors, the watcher that folds
//! each figure back, health histories written to `instance_{id}_health.json`
//! in a temp config folder) with 50 remote instances probed every second, and
//! one subscriber that takes every `AppEvent` off `manager.subscribe()` and
//! serialises it to JSON, as the Tauri bridge does before handing it to the
//! window.
//!
//! Each instance is its own stand-in process on its own port (the validation
//! refuses two instances on one port of one machine, and every loopback
//! address is this machine); their CPU is theirs, not this process's, and is
//! printed apart for scale only.
//!
//! Before the measured window each history is filled to its bound
//! (`MAX_SAMPLES` samples, `BENCH_PREFILL` to change; 0 for a first run), so
//! every write is the size it has after about 17 minutes of 1 s probes: the
//! steady state, not the cheap first minutes. All instances are started and
//! running, then a warm-up, then the window: a minute by default, the
//! period at which the manager writes each history that has new samples, so
//! the window holds one write per instance.
//!
//! Prints this process's CPU time over the window as a percentage of one core
//! (utime + stime from `/proc/self/stat`), its peak and current RSS, events
//! received and their JSON size, probes and failures, probe latency
//! percentiles, the history files and bytes written, and a last line
//! `SUMMARY backend_cpu_pct=.. rss_mb=.. ...`. Asserts nothing.
//!
//! ```text
//! cargo run -p storycore-core --release --example health_bench
//! BENCH_SECS=120 BENCH_INSTANCES=50 BENCH_PREFILL=0 (the defaults are 60, 50, 1000)
//! ```

#[allow(dead_code)]
#[path = "../tests/support/standin.rs"]
mod standin;

use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::store::{self, HealthHistory, HealthSample, MAX_SAMPLES};
use storycore_types::{AppEvent, HealthStatus, InstanceConfig, InstanceStatus, SystemStats};
use tokio::sync::broadcast::error::RecvError;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn status_field(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the subscriber saw.
#[derive(Default)]
struct Tally {
    events: u64,
    by_kind: BTreeMap<&'static str, u64>,
    json_bytes: u64,
    probes: u64,
    failed: u64,
    lagged: u64,
    latencies: Vec<f64>,
}

fn kind(e: &AppEvent) -> &'static str {
    match e {
        AppEvent::HealthChanged { .. } => "healthChanged",
        AppEvent::InstanceUpdated(_) => "instanceUpdated",
        AppEvent::Alert(_) => "alert",
        AppEvent::ActiveInstanceChanged { .. } => "activeInstanceChanged",
        _ => "other",
    }
}

/// The UI bridge's share of the work: every event, serialised to JSON.
fn subscribe(manager: &InstanceManager, tally: Arc<Mutex<Tally>>) -> tokio::task::JoinHandle<()> {
    let mut rx = manager.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let json = serde_json::to_string(&event).expect("an event serialises");
                    let mut t = tally.lock().unwrap();
                    t.events += 1;
                    t.json_bytes += json.len() as u64;
                    *t.by_kind.entry(kind(&event)).or_default() += 1;
                    if let AppEvent::HealthChanged { health, .. } = &event {
                        t.probes += 1;
                        if health.consecutive_failures > 0 {
                            t.failed += 1;
                        } else {
                            t.latencies.push(health.response_time);
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => tally.lock().unwrap().lagged += n,
                Err(RecvError::Closed) => break,
            }
        }
    })
}

/// Fills a history to `samples` samples, one a second up to now, with
/// figures like the stand-in's, and writes it.
fn prefill(dir: &std::path::Path, id: &str, samples: u64) {
    let mut h = HealthHistory::load(dir, id).expect("a history");
    let now = Utc::now();
    for k in (1..=samples).rev() {
        h.record_sample(HealthSample {
            at: now - chrono::Duration::seconds(k as i64),
            status: HealthStatus::Healthy,
            response_time: 1.0 + (k % 17) as f64 * 0.137,
            system_stats: Some(SystemStats {
                cpu_usage: 0.0,
                memory_usage: 41.0 + (k % 7) as f64 * 0.311,
                gpu_usage: None,
                active_workflows: 0,
                vram_used_bytes: Some(1_234_567_890 + k * 4096),
                vram_total_bytes: Some(25_769_803_776),
            }),
        });
    }
    h.save().expect("writing a prefilled history");
}

fn main() {
    let secs = env_or("BENCH_SECS", 60);
    let instances = env_or("BENCH_INSTANCES", 50) as usize;
    let prefill_samples = env_or("BENCH_PREFILL", MAX_SAMPLES as u64);
    let warmup = Duration::from_secs(3);

    // The stand-ins, started side by side (each waits for its server to
    // answer), on ports held all at once first so no two get the same one.
    standin::standin_binary();
    let t = Instant::now();
    let held: Vec<std::net::TcpListener> = (0..instances)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let servers: Vec<standin::StandIn> = std::thread::scope(|s| {
        let started: Vec<_> = ports
            .iter()
            .map(|&p| s.spawn(move || standin::StandIn::builder().port(p).start()))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!(
        "health_bench: {instances} stand-ins up in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The app's runtime: Tauri's is Tokio's multi-threaded one, a worker per core.
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    runtime.block_on(run(&servers, secs, prefill_samples, warmup));
    drop(servers);
}

async fn run(servers: &[standin::StandIn], secs: u64, prefill_samples: u64, warmup: Duration) {
    let instances = servers.len();
    let config_dir = tempfile::tempdir().expect("a temp config folder");
    let mut options = ManagerOptions::new(config_dir.path());
    // As the app with STORYCORE_HEALTH_INTERVAL_MS=1000 (shell/mod.rs).
    options.health = HealthPolicy {
        interval: Duration::from_secs(1),
        resource_interval: Duration::from_secs(1),
        ..HealthPolicy::default()
    };
    let (manager, _) = InstanceManager::open(options).expect("the manager opens");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let subscriber = subscribe(&manager, tally.clone());

    let mut ids = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let id = format!("bench_{i:03}");
        let mut c = InstanceConfig::new(&id, format!("Bench {i:03}"), s.port().into());
        c.host = Some("127.0.0.1".into());
        manager.create(c).await.expect("creating an instance");
        ids.push(id);
    }
    if prefill_samples > 0 {
        let dir = config_dir.path().to_path_buf();
        let to_fill = ids.clone();
        tokio::task::spawn_blocking(move || {
            for id in &to_fill {
                prefill(&dir, id, prefill_samples);
            }
        })
        .await
        .unwrap();
    }
    for id in &ids {
        manager.start(id).await.expect("starting an instance");
    }
    let t = Instant::now();
    while manager
        .list()
        .iter()
        .any(|i| i.status != InstanceStatus::Running)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "instances still not running after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "health_bench: {instances} instances running {:.1} s after their start; warm-up {} s, then {secs} s measured",
        t.elapsed().as_secs_f64(),
        warmup.as_secs()
    );
    tokio::time::sleep(warmup).await;

    // The window.
    let standin_pids: Vec<String> = servers.iter().map(|s| s.pid().to_string()).collect();
    let standin_cpu = || standin_pids.iter().map(|p| cpu_seconds(p)).sum::<f64>();
    *tally.lock().unwrap() = Tally::default();
    let (files0, bytes0) = store::histories_written();
    let standin0 = standin_cpu();
    let cpu0 = cpu_seconds("self");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_seconds("self") - cpu0;
    let wall = started.elapsed().as_secs_f64();
    let standin = standin_cpu() - standin0;
    let (files1, bytes1) = store::histories_written();
    let mut tally = std::mem::take(&mut *tally.lock().unwrap());
    let (rss, peak, threads) = (
        status_field("VmRSS:"),
        status_field("VmHWM:"),
        status_field("Threads:"),
    );
    let on_disk: u64 = ids
        .iter()
        .filter_map(|id| HealthHistory::file_path(config_dir.path(), id).ok())
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();

    manager.shutdown().await;
    drop(manager);
    subscriber.abort();

    tally.latencies.sort_by(f64::total_cmp);
    let cpu_pct = cpu * 100.0 / wall;
    let (files, bytes) = (files1 - files0, bytes1 - bytes0);
    let kinds: Vec<String> = tally
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "health_bench: the manager with {instances} remote instances, 1 s interval, histories prefilled to {prefill_samples} samples, {wall:.1} s measured"
    );
    println!("| figure | value |");
    println!("| --- | ---: |");
    println!(
        "| backend CPU (this process, utime+stime) | {cpu:.2} s = {cpu_pct:.2}% of one core |"
    );
    println!(
        "| RSS current / peak | {:.1} / {:.1} MiB ({threads} threads) |",
        mib(rss),
        mib(peak)
    );
    println!(
        "| events received / lagged | {} ({:.1}/s; {}) / {} |",
        tally.events,
        tally.events as f64 / wall,
        kinds.join(", "),
        tally.lagged
    );
    println!(
        "| events as JSON (the bridge's serialisation) | {:.1} KiB, {:.0} B each |",
        tally.json_bytes as f64 / 1024.0,
        tally.json_bytes as f64 / tally.events.max(1) as f64
    );
    println!(
        "| probes done / failed | {} ({:.1}/s) / {} |",
        tally.probes,
        tally.probes as f64 / wall,
        tally.failed
    );
    println!(
        "| probe latency p50 / p95 / p99 / max | {:.2} / {:.2} / {:.2} / {:.2} ms |",
        percentile(&tally.latencies, 0.50),
        percentile(&tally.latencies, 0.95),
        percentile(&tally.latencies, 0.99),
        tally.latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| health history files written | {files} ({:.1}/s), {:.1} MiB ({:.0} KiB/s); {:.1} MiB on disk |",
        files as f64 / wall,
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / 1024.0 / wall,
        on_disk as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| stand-ins' CPU (the {instances} servers, not counted above) | {:.2}% of one core |",
        standin * 100.0 / wall
    );
    let p = |q| percentile(&tally.latencies, q);
    println!(
        "SUMMARY backend_cpu_pct={cpu_pct:.2} rss_mb={:.1} peak_rss_mb={:.1} events={} lagged={} probes={} failed={} p50_ms={:.2} p99_ms={:.2} history_writes={files} history_kib={}",
        mib(rss),
        mib(peak),
        tally.events,
        tally.lagged,
        tally.probes,
        tally.failed,
        p(0.50),
        p(0.99),
        bytes / 1024
    );
}
