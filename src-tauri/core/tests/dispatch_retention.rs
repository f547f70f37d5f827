//! Finished jobs are kept for a set time and count, then deleted with their
//! output copies, at start and when the settings change; unfinished jobs are
//! never pruned; each instance's workflows file drops old entries too.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, chain_workflow, fast_options, Fleet};
use std::time::Duration;
use storycore_core::dispatch::instance_log::InstanceWorkflowsFile;
use storycore_core::dispatch::{JobQueue, Retention};
use storycore_types::{AppEvent, JobState, JobTarget};
use support::standin::StandIn;

#[tokio::test]
async fn finished_jobs_past_the_limits_are_deleted_with_their_outputs() {
    let server = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu", server.port(), 1)], fast_options()).await;
    fleet.start("gpu").await;
    let mut ids: Vec<String> = Vec::new();
    for k in 0..5 {
        ids.push(
            fleet
                .queue
                .submit(chain_workflow(1, k, &format!("keep{k}")), JobTarget::Auto)
                .await
                .unwrap()
                .id,
        );
    }
    fleet.wait_all_final(&ids, Duration::from_secs(60)).await;
    // One unfinished job: held, never pruned.
    fleet.manager.pause("gpu").await.unwrap();
    let waiting = fleet
        .queue
        .submit(chain_workflow(1, 9, "waiting"), JobTarget::Auto)
        .await
        .unwrap();
    let mut events = fleet.manager.subscribe();

    // At most 2 finished jobs: the 3 oldest go, files and outputs included.
    let removed = fleet
        .queue
        .set_retention(Retention {
            max_age: Duration::from_secs(3600),
            max_finished: 2,
        })
        .await;
    assert_eq!(removed, 3);
    let left: Vec<String> = fleet.queue.list().into_iter().map(|j| j.id).collect();
    assert_eq!(left, [ids[3].clone(), ids[4].clone(), waiting.id.clone()]);
    for id in &ids[..3] {
        assert!(!fleet.dir.path().join(format!("jobs/{id}.json")).exists());
        assert!(!fleet.dir.path().join(format!("outputs/{id}")).exists());
    }
    assert!(fleet
        .dir
        .path()
        .join(format!("outputs/{}", ids[4]))
        .exists());
    let mut gone = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let AppEvent::JobRemoved { id } = e {
            gone.push(id);
        }
    }
    assert_eq!(gone.len(), 3, "the window is told");

    // Past the age limit at the next start: pruned when the queue opens,
    // the instance's history too.
    fleet.queue.shutdown().await;
    let old = chrono::Utc::now() - chrono::Duration::days(45);
    {
        let id = &ids[3];
        let path = fleet.dir.path().join(format!("jobs/{id}.json"));
        let mut job: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        job["finishedAt"] = serde_json::json!(old);
        std::fs::write(&path, serde_json::to_vec(&job).unwrap()).unwrap();
    }
    let mut log = InstanceWorkflowsFile::load(fleet.dir.path(), "gpu");
    assert_eq!(log.execution_history.len(), 5);
    log.execution_history[0].finished_at = old;
    log.save(fleet.dir.path()).unwrap();
    let mut options = fast_options();
    options.retention = Retention::from_settings(30, 10_000);
    let (again, recovered) =
        JobQueue::open(fleet.manager.clone(), fleet.dir.path(), options).unwrap();
    let left: Vec<(String, JobState)> = again.list().into_iter().map(|j| (j.id, j.state)).collect();
    assert_eq!(
        left,
        [
            (ids[4].clone(), JobState::Succeeded),
            (waiting.id.clone(), JobState::Queued)
        ]
    );
    assert!(
        recovered
            .notices
            .iter()
            .any(|n| n.contains("1 finished job")),
        "{:?}",
        recovered.notices
    );
    again.flush().await;
    let log = InstanceWorkflowsFile::load(fleet.dir.path(), "gpu");
    assert_eq!(log.execution_history.len(), 4, "the old entry went");
    again.shutdown().await;
}
