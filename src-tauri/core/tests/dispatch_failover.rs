//! Several stand-ins: work spreads by speed; a stand-in killed mid-job gives
//! its jobs to the others; pause takes queued work back; a job that killed
//! two instances is held as suspect until released.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, chain_workflow, fast_options, history_runs, Fleet};
use std::time::Duration;
use storycore_core::client::ComfyClient;
use storycore_core::dispatch::instance_log::InstanceWorkflowsFile;
use storycore_core::dispatch::DispatchOptions;
use storycore_types::{JobState, JobTarget};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn jobs_spread_by_speed() {
    let fast = StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "0.25")
        .start();
    let slow = StandIn::builder()
        .env("STANDIN_NODE_MS", "40")
        .env("STANDIN_SPEED", "2.0")
        .start();
    let fleet = Fleet::open(
        vec![
            attached("fast", fast.port(), 1),
            attached("slow", slow.port(), 1),
        ],
        fast_options(),
    )
    .await;
    fleet.start("fast").await;
    fleet.start("slow").await;
    let mut ids: Vec<String> = Vec::new();
    for k in 0..16 {
        ids.push(
            fleet
                .queue
                .submit(chain_workflow(3, k, &format!("spread{k}")), JobTarget::Auto)
                .await
                .unwrap()
                .id,
        );
    }
    let jobs = fleet.wait_all_final(&ids, LONG).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));
    let on_fast = jobs
        .iter()
        .filter(|j| j.instance_id.as_deref() == Some("fast"))
        .count();
    // 8x faster: an even split (8/8) or round-robin would be far from this.
    assert!(on_fast >= 12, "only {on_fast} of 16 on the fast instance");
    let (f, s) = (
        fleet.queue.secs_per_unit("fast").unwrap(),
        fleet.queue.secs_per_unit("slow").unwrap(),
    );
    assert!(s > 3.0 * f, "measured speeds: fast {f}, slow {s}");
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn a_killed_instance_gives_its_jobs_to_the_others() {
    let mut doomed = StandIn::builder().env("STANDIN_NODE_MS", "150").start();
    let other = StandIn::builder().env("STANDIN_NODE_MS", "50").start();
    let fleet = Fleet::open(
        vec![
            attached("doomed", doomed.port(), 2),
            attached("other", other.port(), 2),
        ],
        fast_options(),
    )
    .await;
    fleet.start("doomed").await;
    fleet.start("other").await;
    let mut ids: Vec<String> = Vec::new();
    for k in 0..8 {
        ids.push(
            fleet
                .queue
                .submit(
                    chain_workflow(4, 100 + k, &format!("kill{k}")),
                    JobTarget::Auto,
                )
                .await
                .unwrap()
                .id,
        );
    }
    let victim =
        wait_for(LONG, "a job running on the doomed instance", || async {
            fleet.queue.list().into_iter().find(|j| {
                j.state == JobState::Running && j.instance_id.as_deref() == Some("doomed")
            })
        })
        .await;
    doomed.kill();
    let jobs = fleet.wait_all_final(&ids, LONG).await;
    for j in &jobs {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    }
    let v = jobs.iter().find(|j| j.id == victim.id).unwrap();
    assert_eq!(v.instance_id.as_deref(), Some("other"));
    assert_eq!(v.instances_killed, ["doomed"]);
    assert!(v.attempts >= 2);
    // Every job ended on the survivor or had finished before the kill.
    for k in 0..8 {
        let p = format!("kill{k}");
        let here = history_runs(&other, &p).await;
        assert!(here <= 1, "{p} ran {here} times on the survivor");
    }
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn pause_takes_queued_work_back_and_resume_makes_it_eligible() {
    let a = StandIn::builder().env("STANDIN_NODE_MS", "300").start();
    let b = StandIn::builder().env("STANDIN_NODE_MS", "20").start();
    let fleet = Fleet::open(
        vec![attached("a", a.port(), 4), attached("b", b.port(), 4)],
        fast_options(),
    )
    .await;
    fleet.start("a").await; // b stays stopped for now
    let mut ids: Vec<String> = Vec::new();
    for k in 0..4 {
        ids.push(
            fleet
                .queue
                .submit(
                    chain_workflow(3, 200 + k, &format!("p{k}")),
                    JobTarget::Auto,
                )
                .await
                .unwrap()
                .id,
        );
    }
    let client_a = ComfyClient::from_endpoint(&a.url()).unwrap();
    // Late binding: one running and one queued on a; the rest wait in the app.
    wait_for(LONG, "1 running and 1 pending on a", || async {
        let q = client_a.queue().await.ok()?;
        (q.running.len() == 1 && q.pending.len() == 1).then_some(())
    })
    .await;

    fleet.manager.pause("a").await.unwrap();
    wait_for(LONG, "3 jobs back in the app's queue", || async {
        let n = fleet
            .queue
            .list()
            .iter()
            .filter(|j| j.state == JobState::Queued)
            .count();
        (n == 3).then_some(())
    })
    .await;
    let q = client_a.queue().await.unwrap();
    assert!(q.pending.is_empty(), "deleted from a's queue: {q:?}");
    fleet.queue.flush().await;
    let log = InstanceWorkflowsFile::load(fleet.dir.path(), "a");
    assert_eq!(
        log.paused_work.len(),
        1,
        "the one taken back from a's queue"
    );

    // Nowhere to go while a is paused and b stopped: they wait.
    fleet.start("b").await;
    let jobs = fleet.wait_all_final(&ids, LONG).await;
    let on_b = jobs
        .iter()
        .filter(|j| j.instance_id.as_deref() == Some("b"))
        .count();
    assert_eq!(on_b, 3, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));

    // Resume: a takes work again.
    fleet.manager.stop("b").await.unwrap();
    fleet.manager.resume("a").await.unwrap();
    let j = fleet
        .queue
        .submit(chain_workflow(0, 250, "after"), JobTarget::Auto)
        .await
        .unwrap();
    let j = fleet.wait_state(&j.id, JobState::Succeeded, LONG).await;
    assert_eq!(j.instance_id.as_deref(), Some("a"));
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn a_job_that_killed_two_instances_is_held_until_released() {
    let k1 = StandIn::builder()
        .env("STANDIN_CRASH_AFTER_PROMPTS", "1")
        .start();
    let k2 = StandIn::builder()
        .env("STANDIN_CRASH_AFTER_PROMPTS", "1")
        .start();
    let safe = StandIn::start();
    let fleet = Fleet::open(
        vec![
            attached("k1", k1.port(), 1),
            attached("k2", k2.port(), 1),
            attached("safe", safe.port(), 1),
        ],
        // The stand-ins crash at their first prompt: that must be the job,
        // not the calibration a new instance gets.
        DispatchOptions {
            calibrate: false,
            ..fast_options()
        },
    )
    .await;
    fleet.start("k1").await;
    fleet.start("k2").await;
    let job = fleet
        .queue
        .submit(chain_workflow(1, 300, "killer"), JobTarget::Auto)
        .await
        .unwrap();
    let held = fleet.wait_state(&job.id, JobState::Suspect, LONG).await;
    let mut killed = held.instances_killed.clone();
    killed.sort();
    assert_eq!(killed, ["k1", "k2"]);
    assert!(held.error.unwrap().message.contains("release it"));

    // Not sent a third time, even with a healthy instance available.
    fleet.start("safe").await;
    let other = fleet
        .queue
        .submit(chain_workflow(0, 301, "bystander"), JobTarget::Auto)
        .await
        .unwrap();
    fleet.wait_state(&other.id, JobState::Succeeded, LONG).await;
    assert_eq!(fleet.queue.get(&job.id).unwrap().state, JobState::Suspect);
    assert_eq!(history_runs(&safe, "killer").await, 0);

    fleet.queue.release(&job.id).await.unwrap();
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("safe"));
    fleet.queue.shutdown().await;
}
