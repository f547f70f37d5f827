//! The queue's store seam: every write of a job's record is a
//! compare-and-set on the revision it read, so that two holders of one
//! store (two processes sharing PostgreSQL, in a cluster) never both move a
//! job. The file journal implements it; here another holder is played by
//! the test, writing the same journal the queue holds.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{
    attached, chain_workflow, fast_options, history_runs, open_manager, wait_ready,
};
use std::sync::Arc;
use std::time::Duration;
use storycore_core::dispatch::journal::Journal;
use storycore_core::dispatch::store::{Cas, JobStore, Revision};
use storycore_core::dispatch::JobQueue;
use storycore_types::{Job, JobState, JobTarget};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(30);

fn json(job: &Job) -> Arc<[u8]> {
    serde_json::to_vec(&job.workflow).unwrap().into()
}

/// A queued job, as the queue of a fleet with no instance running holds it.
async fn queued_job(dir: &std::path::Path) -> Job {
    let m = open_manager(dir);
    m.create(attached("gpu0", 9, 1)).await.unwrap();
    let (q, _) = JobQueue::open(m.clone(), dir, fast_options()).unwrap();
    let job = q
        .submit(chain_workflow(1, 1, "cas"), JobTarget::Auto)
        .await
        .unwrap();
    q.shutdown().await;
    m.shutdown().await;
    job
}

#[tokio::test]
async fn a_write_over_a_revision_that_moved_on_is_refused_and_changes_nothing() {
    let first = tempfile::tempdir().unwrap();
    let job = queued_job(first.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Journal::open(dir.path()).unwrap();
    let wf = json(&job);

    // Created: over no revision.
    let created = Cas::over(Revision::NONE);
    store
        .put_durable(&job, &wf, created)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.revision(&job.id), created.next);
    // A second creation of the same job loses: it is stored already.
    let again = store
        .put_durable(&job, &wf, Cas::over(Revision::NONE))
        .await
        .unwrap()
        .unwrap_err();
    assert!(again.conflict, "{again}");

    // Two writers read the same revision; the first wins, the second is
    // refused and its record is not written.
    let mut mine = job.clone();
    mine.instance_id = Some("mine".into());
    let mut theirs = job.clone();
    theirs.instance_id = Some("theirs".into());
    let won = Cas::over(created.next);
    store.put_durable(&mine, &wf, won).await.unwrap().unwrap();
    let lost = store
        .put_durable(&theirs, &wf, Cas::over(created.next))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        lost.conflict && lost.message.contains("moved it on"),
        "{lost}"
    );
    // A lazy write that loses is not written either.
    store.put(&theirs, &wf, Cas::over(created.next));
    let (stored, revision) = JobStore::get(&store, &job.id).await.unwrap().unwrap();
    assert_eq!(stored.instance_id.as_deref(), Some("mine"));
    assert_eq!(revision, won.next);

    // A restarted process reads what is on disk, at a revision of its own.
    drop(store);
    let reopened = Journal::open(dir.path()).unwrap();
    let replayed = reopened.replay().unwrap();
    assert_eq!(replayed.jobs.len(), 1);
    let r = replayed.revisions[&job.id];
    assert_ne!(r, Revision::NONE);
    assert_eq!(reopened.revision(&job.id), r);
}

/// Another holder of the store places the job first: the queue's own
/// placement loses its compare-and-set, sends nothing, and takes the job
/// as the store holds it.
#[tokio::test]
async fn a_job_another_holder_moved_first_is_not_sent_here() {
    let s = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let m = open_manager(dir.path());
    m.create(attached("gpu0", s.port(), 1)).await.unwrap();
    let journal = Arc::new(Journal::open(dir.path()).unwrap());
    let (q, _) =
        JobQueue::open_with_store(m.clone(), dir.path(), fast_options(), journal.clone()).unwrap();
    // No instance runs: the job waits.
    let job = q
        .submit(chain_workflow(2, 5, "moved"), JobTarget::Auto)
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    q.flush().await;

    // The other holder sends it to an instance of its own.
    let mut theirs = q.get(&job.id).unwrap();
    theirs.state = JobState::Dispatched;
    theirs.instance_id = Some("elsewhere".into());
    theirs.prompt_id = Some("their-prompt".into());
    theirs.attempts = 1;
    let read = journal.revision(&job.id);
    journal
        .put_durable(&theirs, &json(&theirs), Cas::over(read))
        .await
        .unwrap()
        .unwrap();

    // Here, the instance comes up and the queue places the job: its write
    // names the revision it read at submission, which moved on.
    m.start("gpu0").await.unwrap();
    wait_ready(&m, "gpu0").await;
    let now = wait_for(LONG, "the job as the store holds it", || async {
        q.get(&job.id)
            .filter(|j| j.instance_id.as_deref() == Some("elsewhere"))
    })
    .await;
    assert_eq!(now.state, JobState::Dispatched);
    assert_eq!(now.prompt_id.as_deref(), Some("their-prompt"));
    // Nothing was sent here (the runner stopped before `POST /prompt` when
    // its write lost, before the job was read again), and the job is not
    // queued here to be placed again.
    assert_eq!(history_runs(&s, "moved").await, 0);
    assert_eq!(
        q.get(&job.id).unwrap().instance_id.as_deref(),
        Some("elsewhere")
    );
    q.shutdown().await;
    m.shutdown().await;
}
