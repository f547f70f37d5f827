//! A fleet of stand-ins behind a manager and a job queue, in a temp folder,
//! for the dispatch tests.
#![allow(dead_code)]

use crate::support::standin::StandIn;
use crate::support::wait_for;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::{HealthStatus, InstanceConfig, InstanceStatus, Job, JobState};

pub fn fast_policy() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(200),
        resource_interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(1000),
        failure_threshold: 2,
        success_threshold: 1,
        ..HealthPolicy::default()
    }
}

pub fn fast_options() -> DispatchOptions {
    DispatchOptions {
        poll_interval: Duration::from_millis(200),
        request_timeout: Duration::from_secs(3),
        cooldown: Duration::from_millis(500),
        ..DispatchOptions::default()
    }
}

/// `EmptyImage -> ImageInvert x chain -> SaveImage(prefix)`. The colour makes
/// every job's nodes distinct, so ComfyUI's cache never skips the work.
pub fn chain_workflow(chain: usize, color: u32, prefix: &str) -> Value {
    let mut w = serde_json::Map::new();
    w.insert(
        "1".into(),
        json!({"class_type": "EmptyImage",
               "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}}),
    );
    let mut last = "1".to_string();
    for k in 0..chain {
        let id = format!("{}", 10 + k);
        w.insert(
            id.clone(),
            json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}}),
        );
        last = id;
    }
    w.insert(
        "2".into(),
        json!({"class_type": "SaveImage", "inputs": {"images": [last, 0], "filename_prefix": prefix}}),
    );
    Value::Object(w)
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub manager: InstanceManager,
    pub queue: JobQueue,
}

pub fn attached(id: &str, port: u16, max_concurrent: u32) -> InstanceConfig {
    let mut c = InstanceConfig::new(id, id, port as u32);
    c.host = Some("127.0.0.1".into());
    c.max_concurrent_workflows = Some(max_concurrent);
    c
}

impl Fleet {
    pub async fn open(configs: Vec<InstanceConfig>, options: DispatchOptions) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let manager = open_manager(dir.path());
        for c in configs {
            manager.create(c).await.unwrap();
        }
        let (queue, _) = JobQueue::open(manager.clone(), dir.path(), options).unwrap();
        Fleet {
            dir,
            manager,
            queue,
        }
    }

    /// Instances "a" and "b" on the stand-ins `a` and `b`, one slot each,
    /// both started and healthy.
    pub async fn running_pair(a: &StandIn, b: &StandIn) -> Fleet {
        let fleet = Fleet::open(
            vec![attached("a", a.port(), 1), attached("b", b.port(), 1)],
            fast_options(),
        )
        .await;
        fleet.start("a").await;
        fleet.start("b").await;
        fleet
    }

    pub async fn start(&self, id: &str) {
        self.manager.start(id).await.unwrap();
        wait_ready(&self.manager, id).await;
    }

    pub async fn wait_state(&self, job: &str, want: JobState, within: Duration) -> Job {
        wait_for(within, &format!("job {job} to be {want:?}"), || async {
            self.queue.get(job).filter(|j| j.state == want)
        })
        .await
    }

    pub async fn wait_all_final(&self, ids: &[String], within: Duration) -> Vec<Job> {
        wait_for(within, "every job to finish", || async {
            let jobs: Vec<Job> = ids.iter().map(|id| self.queue.get(id).unwrap()).collect();
            jobs.iter().all(|j| j.state.is_final()).then_some(jobs)
        })
        .await
    }
}

pub fn open_manager(dir: &Path) -> InstanceManager {
    let mut o = ManagerOptions::new(dir);
    o.health = fast_policy();
    InstanceManager::open(o).unwrap().0
}

pub async fn wait_ready(m: &InstanceManager, id: &str) {
    wait_for(
        Duration::from_secs(15),
        &format!("{id} running and healthy"),
        || async {
            let i = m.get(id)?;
            (i.status == InstanceStatus::Running && i.health.status == HealthStatus::Healthy)
                .then_some(())
        },
    )
    .await;
}

/// PNGs a stand-in wrote whose name starts with `prefix`.
pub fn outputs_with_prefix(s: &StandIn, prefix: &str) -> Vec<PathBuf> {
    let dir = s.folder().join("output");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{prefix}_")))
        })
        .collect()
}

/// How many prompts in the stand-in's history saved with this prefix.
pub async fn history_runs(s: &StandIn, prefix: &str) -> usize {
    let body: Value = reqwest::get(format!("{}/history", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body.as_object()
        .unwrap()
        .values()
        .filter(|entry| {
            entry
                .pointer("/prompt/2")
                .and_then(Value::as_object)
                .is_some_and(|p| {
                    p.values().any(|n| {
                        n.pointer("/inputs/filename_prefix").and_then(Value::as_str) == Some(prefix)
                    })
                })
        })
        .count()
}
