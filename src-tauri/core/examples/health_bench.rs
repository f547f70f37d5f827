//! What monitoring a fleet costs: one stand-in, 50 health monitors probing it
//! every second, for 20 s (`BENCH_SECS`, `BENCH_INSTANCES` to change). Prints
//! this process's CPU time as a percentage of one core, its peak and current
//! RSS, probes done and failed, and probe latency percentiles. Asserts nothing.
//!
//! cargo run -p storycore-core --release --example health_bench

#[allow(dead_code)]
#[path = "../tests/support/standin.rs"]
mod standin;

use std::time::{Duration, Instant};
use storycore_core::client::ComfyClient;
use storycore_core::health::{HealthMonitor, HealthPolicy};
use storycore_types::AppEvent;
use tokio::sync::broadcast;

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

fn status_kib(field: &str) -> u64 {
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

#[tokio::main]
async fn main() {
    let secs = env_or("BENCH_SECS", 20);
    let instances = env_or("BENCH_INSTANCES", 50);
    let server = standin::StandIn::start();
    let client = ComfyClient::from_endpoint(&server.url()).expect("stand-in URL");
    let policy = HealthPolicy {
        interval: Duration::from_secs(1),
        resource_interval: Duration::from_secs(1),
        starting_interval: Duration::from_secs(1),
        ..HealthPolicy::default()
    };
    let (events, mut rx) = broadcast::channel(16 * 1024);

    let cpu_before = cpu_seconds("self");
    let standin_pid = server.pid().to_string();
    let standin_cpu_before = cpu_seconds(&standin_pid);
    let started = Instant::now();
    let handles: Vec<_> = (0..instances)
        .map(|i| {
            HealthMonitor::spawn(
                format!("instance_{i:03}"),
                client.clone(),
                policy.clone(),
                events.clone(),
            )
        })
        .collect();

    let (mut probes, mut failed, mut lagged) = (0u64, 0u64, 0u64);
    let mut latencies = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Err(_) => break,
            Ok(Ok(AppEvent::HealthChanged { health, .. })) => {
                probes += 1;
                if health.consecutive_failures > 0 {
                    failed += 1;
                } else {
                    latencies.push(health.response_time);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => lagged += n,
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") - cpu_before;
    let standin_cpu = cpu_seconds(&standin_pid) - standin_cpu_before;
    for h in handles {
        h.shutdown().await;
    }
    latencies.sort_by(f64::total_cmp);

    println!("health_bench: {instances} monitors, 1 s interval, {wall:.1} s");
    println!(
        "  this process CPU: {cpu:.2} s = {:.2}% of one core",
        cpu * 100.0 / wall
    );
    println!(
        "  stand-in CPU (the server side, for scale): {:.2}% of one core",
        standin_cpu * 100.0 / wall
    );
    println!(
        "  RSS: peak {} KiB, current {} KiB",
        status_kib("VmHWM:"),
        status_kib("VmRSS:")
    );
    println!(
        "  probes: {probes} done ({:.1}/s), {failed} failed, {lagged} events not counted (lagged)",
        probes as f64 / wall
    );
    println!(
        "  probe latency (GET /system_stats): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}
