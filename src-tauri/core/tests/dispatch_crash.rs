//! The app killed (SIGKILL) at random moments while jobs run, then started
//! again: every accepted job ends succeeded exactly once. The "app" is the
//! `dispatch_worker` example, run as a child process over two stand-ins.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, history_runs, open_manager, outputs_with_prefix};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use storycore_types::{Job, JobState};
use support::standin::{cargo_build, StandIn};

const JOBS: u32 = 14;
const KILLS: u32 = 8;

fn worker_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(
            &["-p", "storycore-core", "--example", "dispatch_worker"],
            "examples/dispatch_worker",
        )
    })
}

fn spawn_worker(dir: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(worker_binary())
        .env("DISPATCH_DIR", dir)
        .env("DISPATCH_JOBS", JOBS.to_string())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// xorshift64*, seeded: a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo + 1)
    }
}

fn journal(dir: &Path) -> Vec<Job> {
    std::fs::read_dir(dir.join("jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_accepted_job_succeeds_exactly_once_across_app_kills() {
    let seed: u64 = std::env::var("DISPATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1234);
    eprintln!("seed {seed} (set DISPATCH_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let a = StandIn::builder().env("STANDIN_NODE_MS", "60").start();
    let b = StandIn::builder().env("STANDIN_NODE_MS", "90").start();
    let dir = tempfile::tempdir().unwrap();
    {
        let m = open_manager(dir.path());
        m.create(attached("a", a.port(), 2)).await.unwrap();
        m.create(attached("b", b.port(), 2)).await.unwrap();
    }
    let log = dir.path().join("worker.log");

    // The kill moments are the point of this test: random by design.
    for _ in 0..KILLS {
        let mut child = spawn_worker(dir.path(), &log);
        let after = Duration::from_millis(rng.range(100, 1200));
        let t = Instant::now();
        while t.elapsed() < after && child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // SAFETY: plain kill(2) on the child this test spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }

    let mut child = spawn_worker(dir.path(), &log);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the last worker did not finish; log:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "worker failed; log:\n{log_text}");

    let jobs = journal(dir.path());
    assert_eq!(jobs.len(), JOBS as usize, "each job accepted once");
    for j in &jobs {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        let prefix = j.workflow["2"]["inputs"]["filename_prefix"]
            .as_str()
            .unwrap();
        let files = outputs_with_prefix(&a, prefix).len() + outputs_with_prefix(&b, prefix).len();
        let runs = history_runs(&a, prefix).await + history_runs(&b, prefix).await;
        assert_eq!(files, 1, "{prefix}: {files} output files");
        assert_eq!(runs, 1, "{prefix}: ran {runs} times");
        assert_eq!(j.outputs.len(), 1, "{j:?}");
        assert!(Path::new(&j.outputs[0].path).is_file());
    }
    eprintln!(
        "recoveries: {}",
        log_text
            .lines()
            .filter(|l| l.starts_with("recovered"))
            .count()
    );
}
