//! Telemetry on this machine: GPU listing without a driver is empty, never an
//! error; a running stand-in's process tree has memory.

use crate::support;

use storycore_core::telemetry::{gpu_usage_of, list_gpus, nvml_status, ProcessTreeSampler};
use support::standin::StandIn;

#[test]
fn gpus_are_listed_or_quietly_absent() {
    let gpus = list_gpus();
    match nvml_status() {
        // No NVIDIA driver (CI, this machine): empty, and asking again is just as quiet.
        Some(reason) => {
            assert!(gpus.is_empty(), "{reason} but {gpus:?}");
            assert!(list_gpus().is_empty());
            assert_eq!(gpu_usage_of(&[std::process::id()]).memory_bytes, None);
        }
        None => {
            for (i, g) in gpus.iter().enumerate() {
                assert_eq!(g.index as usize, i);
                assert!(g.memory_total_bytes >= g.memory_free_bytes && g.memory_total_bytes > 0);
                assert!(
                    g.uuid.starts_with("GPU-") || g.uuid.starts_with("MIG-"),
                    "{}",
                    g.uuid
                );
            }
        }
    }
}

#[test]
fn a_running_standin_has_memory_and_its_tree_is_found() {
    let standin = StandIn::start();
    let mut sampler = ProcessTreeSampler::new();
    let first = sampler.sample(standin.pid()).expect("the stand-in runs");
    assert!(first.rss_bytes > 0);
    assert_eq!(first.pids[0], standin.pid());
    assert!(first.total_memory_bytes > first.rss_bytes);
    assert!(first.memory_percent() > 0.0 && first.memory_percent() < 100.0);
    // Second sample: CPU is measured between the two (may be 0 for an idle server).
    let second = sampler.sample(standin.pid()).unwrap();
    assert!(second.cpu_percent >= 0.0);
    drop(standin);
    assert!(sampler.sample(u32::MAX / 2).is_none(), "no such process");
}

#[test]
fn a_process_tree_includes_descendants() {
    // sh -> sleep: the child is part of the tree.
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 30 & wait"])
        .process_group(0)
        .spawn()
        .unwrap();
    let mut sampler = ProcessTreeSampler::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let usage = loop {
        let u = sampler.sample(child.id()).unwrap();
        if u.pids.len() >= 2 || std::time::Instant::now() > deadline {
            break u;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SAFETY: plain syscall on the group this test started.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert_eq!(usage.pids.len(), 2, "{usage:?}");
}
