//! Copies near the end: a long job running on a slow instance while a fast
//! one sits idle gets a copy there; the first to succeed wins, the other is
//! interrupted, and only the winner's outputs are kept. A copy that fails
//! is dropped and the job carries on where it ran.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, chain_workflow, fast_options, outputs_with_prefix, Fleet};
use std::time::Duration;
use storycore_core::dispatch::JobQueue;
use storycore_types::{Job, JobCopy, JobState, JobTarget};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(60);

/// 60 nodes: about 5 s at 80 ms a node on the slow stand-in, 0.6 s at
/// 10 ms a node on the fast one.
const CHAIN: usize = 60;

fn slow() -> StandIn {
    StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "2.0")
        .start()
}

/// The fleet of the two stand-ins, neither started yet.
async fn fleet_of(slow: &StandIn, fast: &StandIn) -> Fleet {
    Fleet::open(
        vec![
            attached("slow", slow.port(), 1),
            attached("fast", fast.port(), 1),
        ],
        fast_options(),
    )
    .await
}

async fn wait_copy(fleet: &Fleet, job: &str) -> JobCopy {
    wait_for(LONG, "a copy of the job", || async {
        fleet.queue.get(job).and_then(|j| j.copy)
    })
    .await
}

/// Starts the slow instance alone, sends the long job there and waits until
/// it runs; then starts `fast`, which calibrates and finds itself idle.
async fn long_job_on_slow_then_fast(fleet: &Fleet, prefix: &str) -> Job {
    fleet.start("slow").await;
    // Its calibration (the smoke test) measured it.
    wait_for(LONG, "the slow instance measured", || async {
        fleet.queue.secs_per_unit("slow")
    })
    .await;
    let job = fleet
        .queue
        .submit(chain_workflow(CHAIN, 7, prefix), JobTarget::Auto)
        .await
        .unwrap();
    let running = fleet.wait_state(&job.id, JobState::Running, LONG).await;
    assert_eq!(running.instance_id.as_deref(), Some("slow"));
    fleet.start("fast").await;
    running
}

/// The job's record as the journal holds it once it says succeeded (the
/// writer commits in groups, a moment after the queue's state changed).
async fn final_record(fleet: &Fleet, id: &str) -> serde_json::Value {
    let path = fleet.dir.path().join("jobs").join(format!("{id}.json"));
    wait_for(Duration::from_secs(10), "the succeeded record", || async {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        (v["state"] == "succeeded").then_some(v)
    })
    .await
}

#[tokio::test]
async fn a_copy_on_an_idle_fast_instance_wins_and_the_slow_run_is_interrupted() {
    let slow = slow();
    let fast = StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "0.25")
        .start();
    let fleet = fleet_of(&slow, &fast).await;
    let job = long_job_on_slow_then_fast(&fleet, "spec_win").await;
    let first_prompt = job.prompt_id.clone().unwrap();

    // The copy is recorded (written before it is sent).
    let copy = wait_copy(&fleet, &job.id).await;
    assert_eq!(copy.instance_id, "fast");

    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("fast"), "{done:?}");
    assert_eq!(done.prompt_id.as_deref(), Some(copy.prompt_id.as_str()));
    assert!(done.copy.is_none());
    assert_eq!(done.outputs.len(), 1, "{:?}", done.outputs);
    assert_eq!(outputs_with_prefix(&fast, "spec_win").len(), 1);
    let saved = final_record(&fleet, &job.id).await;
    assert!(saved.get("copy").is_none(), "{saved}");
    assert_eq!(saved["instanceId"], "fast");

    // The slow run was interrupted: its queue empties, and after the time
    // it needed in full (about 5 s) it has saved nothing.
    wait_for(
        Duration::from_secs(10),
        "the slow instance idle",
        || async {
            let (running, pending) = queue(&slow).await?;
            (running.is_empty() && pending.is_empty()).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        outputs_with_prefix(&slow, "spec_win").is_empty(),
        "the slow instance finished prompt {first_prompt}: it was not interrupted"
    );
    // Only the winner's image came into the app's outputs.
    let ours: Vec<_> = std::fs::read_dir(fleet.dir.path().join("outputs").join(&job.id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn a_copy_that_fails_is_dropped_and_the_job_ends_where_it_ran() {
    let slow = slow();
    // Fast, and its smoke test passes, but it cannot run the job's nodes.
    let fast = StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "0.25")
        .env("STANDIN_FAIL_NODE", "ImageInvert")
        .start();
    let fleet = fleet_of(&slow, &fast).await;
    let job = long_job_on_slow_then_fast(&fleet, "spec_fail").await;
    wait_copy(&fleet, &job.id).await;
    wait_for(LONG, "the failed copy dropped", || async {
        fleet.queue.get(&job.id).filter(|j| j.copy.is_none())
    })
    .await;
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("slow"), "{done:?}");
    assert_eq!(done.prompt_id, job.prompt_id);
    assert!(done.error.is_none(), "{done:?}");
    assert_eq!(outputs_with_prefix(&slow, "spec_fail").len(), 1);
    assert!(outputs_with_prefix(&fast, "spec_fail").is_empty());
    let saved = final_record(&fleet, &job.id).await;
    assert!(saved.get("copy").is_none(), "{saved}");
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn a_copy_left_by_a_stopped_app_is_interrupted_at_the_next_start() {
    // Slower than above, so the copy runs for seconds: 40 ms a node here
    // (2.5 s), 160 ms on the slow one (10 s).
    let slow = StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "4.0")
        .start();
    let fast = StandIn::builder().env("STANDIN_NODE_MS", "40").start();
    let fleet = fleet_of(&slow, &fast).await;
    let job = long_job_on_slow_then_fast(&fleet, "spec_restart").await;
    let copy = wait_copy(&fleet, &job.id).await;
    wait_for(LONG, "the copy running on the fast instance", || async {
        let (running, _) = queue(&fast).await?;
        running.contains(&copy.prompt_id).then_some(())
    })
    .await;
    // The app stops while both run; its record names the copy.
    fleet.queue.shutdown().await;
    let path = fleet
        .dir
        .path()
        .join("jobs")
        .join(format!("{}.json", job.id));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        saved["copy"]["promptId"],
        copy.prompt_id.as_str(),
        "{saved}"
    );

    // The next start stops the copy and follows the job where it ran.
    let (queue, _) =
        JobQueue::open(fleet.manager.clone(), fleet.dir.path(), fast_options()).unwrap();
    assert!(queue.get(&job.id).unwrap().copy.is_none());
    let done = wait_for(LONG, "the job to succeed", || async {
        queue
            .get(&job.id)
            .filter(|j| j.state == JobState::Succeeded)
    })
    .await;
    assert_eq!(done.instance_id.as_deref(), Some("slow"), "{done:?}");
    assert_eq!(outputs_with_prefix(&slow, "spec_restart").len(), 1);
    // The copy needed 2.5 s; the job took longer: had the copy not been
    // stopped, its image would be on the fast instance by now.
    assert!(
        outputs_with_prefix(&fast, "spec_restart").is_empty(),
        "the copy {} was not interrupted",
        copy.prompt_id
    );
    queue.shutdown().await;
}

/// The prompt ids a stand-in runs and holds: (running, pending).
async fn queue(s: &StandIn) -> Option<(Vec<String>, Vec<String>)> {
    let q: serde_json::Value = reqwest::get(format!("{}/queue", s.url()))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    // Each item is [number, prompt_id, prompt, extra_data, outputs].
    let ids = |k: &str| -> Option<Vec<String>> {
        Some(
            q[k].as_array()?
                .iter()
                .filter_map(|i| i[1].as_str().map(str::to_string))
                .collect(),
        )
    };
    Some((ids("queue_running")?, ids("queue_pending")?))
}
