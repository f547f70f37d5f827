//! The job queue against real stand-ins: a job runs and keeps its outputs,
//! bad workflows are refused (by shape here, by ComfyUI with its reasons),
//! cancel, timeout, templates.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, chain_workflow, fast_options, outputs_with_prefix, Fleet};
use serde_json::{json, Map};
use std::time::Duration;
use storycore_core::dispatch::instance_log::InstanceWorkflowsFile;
use storycore_core::dispatch::templates::{self, SMOKE_TEST_ID};
use storycore_core::dispatch::DispatchError;
use storycore_types::{AppEvent, ErrorCode, JobState, JobTarget};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_job_runs_reports_progress_and_keeps_its_outputs() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    let mut events = fleet.manager.subscribe();
    fleet.start("gpu0").await;

    let job = fleet
        .queue
        .submit(chain_workflow(2, 7, "first"), JobTarget::Auto)
        .await
        .unwrap();
    // Placed at once when the instance is ready (then its one record is the
    // dispatched one), else queued.
    assert!(
        matches!(job.state, JobState::Queued | JobState::Dispatched),
        "{:?}",
        job.state
    );
    assert!(
        fleet
            .dir
            .path()
            .join("jobs")
            .join(format!("{}.json", job.id))
            .is_file(),
        "accepted means on disk"
    );
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("gpu0"));
    assert_eq!(done.attempts, 1);
    // The smoke test calibrated the instance before it took the job; the
    // job's own run refined its cost model.
    assert_eq!(fleet.queue.measured(), ["gpu0"]);
    let (fixed, per_unit) = fleet.queue.cost_model("gpu0").unwrap();
    assert!(fixed >= 0.0 && per_unit > 0.0, "{fixed} {per_unit}");
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(done.outputs.len(), 1, "{done:?}");
    let local = std::path::Path::new(&done.outputs[0].path);
    assert!(local.starts_with(fleet.dir.path().join("outputs").join(&job.id)));
    assert_eq!(&std::fs::read(local).unwrap()[1..4], b"PNG");
    assert_eq!(outputs_with_prefix(&s, "first").len(), 1);

    // The states went out as events, in order.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let AppEvent::JobUpdated(j) = e {
            assert!(j.workflow.is_null(), "job events carry no workflow");
            if seen.last() != Some(&j.state) {
                seen.push(j.state);
            }
        }
    }
    if seen.first() == Some(&JobState::Queued) {
        seen.remove(0);
    }
    assert_eq!(
        seen,
        [JobState::Dispatched, JobState::Running, JobState::Succeeded]
    );
    // The instance's workflows file has the run, with timestamps.
    fleet.queue.flush().await;
    let log = InstanceWorkflowsFile::load(fleet.dir.path(), "gpu0");
    assert_eq!(log.execution_history.len(), 1);
    assert_eq!(log.execution_history[0].job_id, job.id);
    assert_eq!(log.execution_history[0].state, JobState::Succeeded);
    assert_eq!(log.saved_workflows[0].workflow, done.workflow);
    assert_eq!(fleet.manager.stats("gpu0").unwrap().successful_workflows, 1);
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn bad_workflows_are_refused_with_comfyuis_reasons() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;

    // Not API format: refused before it is accepted.
    let e = fleet
        .queue
        .submit(json!({"nodes": [], "links": []}), JobTarget::Auto)
        .await
        .unwrap_err();
    assert!(matches!(e, DispatchError::BadWorkflow { .. }));
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(e.to_string().contains("editor format"), "{e}");
    assert!(fleet.queue.list().is_empty());
    let e = storycore_core::dispatch::workflow::parse_workflow("{not json").unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");

    // A node class no instance has: not sent, it waits saying which class
    // and where it was looked for. A missing input: ComfyUI's 400, node by
    // node.
    let unknown = json!({
        "1": {"class_type": "NoSuchNode", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    let mut missing = chain_workflow(0, 1, "m");
    missing["1"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("width");
    let a = fleet.queue.submit(unknown, JobTarget::Auto).await.unwrap();
    let b = fleet.queue.submit(missing, JobTarget::Auto).await.unwrap();
    let b = fleet.wait_state(&b.id, JobState::Failed, LONG).await;
    let why = wait_for(
        LONG,
        "the job with an unknown class to say why it waits",
        || async { fleet.queue.get(&a.id).and_then(|j| j.waiting) },
    )
    .await;
    assert!(
        why.contains("gpu0 lacks the node class \"NoSuchNode\""),
        "{why}"
    );
    assert_eq!(fleet.queue.get(&a.id).unwrap().state, JobState::Queued);
    assert_eq!(fleet.queue.get(&a.id).unwrap().attempts, 0, "never sent");
    let eb = b.error.unwrap();
    assert_eq!(
        eb.comfy_type.as_deref(),
        Some("prompt_outputs_failed_validation")
    );
    assert!(
        eb.node_errors.iter().any(|n| n.node_id == "1"
            && n.message == "Required input is missing"
            && n.details.contains("width")),
        "{eb:?}"
    );
    assert_eq!(b.attempts, 1, "a refused workflow is not sent again");
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn cancel_a_queued_and_a_running_job() {
    let s = StandIn::builder().env("STANDIN_NODE_MS", "400").start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let running = fleet
        .queue
        .submit(chain_workflow(20, 1, "long"), JobTarget::Auto)
        .await
        .unwrap();
    let queued = fleet
        .queue
        .submit(chain_workflow(1, 2, "second"), JobTarget::Auto)
        .await
        .unwrap();
    fleet.wait_state(&running.id, JobState::Running, LONG).await;
    assert_eq!(fleet.queue.get(&queued.id).unwrap().state, JobState::Queued);

    let c = fleet.queue.cancel(&queued.id).await.unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    let c = fleet.queue.cancel(&running.id).await.unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    // Interrupted on the instance: it runs nothing any more.
    let client = storycore_core::client::ComfyClient::from_endpoint(&s.url()).unwrap();
    wait_for(LONG, "the stand-in's queue to empty", || async {
        client.queue().await.ok().filter(|q| q.active() == 0)
    })
    .await;
    let prompt = c.prompt_id.unwrap();
    let h = client.history(&prompt).await.unwrap().expect("in history");
    assert!(!h.succeeded());
    assert!(outputs_with_prefix(&s, "long").is_empty());
    // Finished jobs cannot be cancelled again; they can be retried.
    let e = fleet.queue.cancel(&running.id).await.unwrap_err();
    assert!(e.to_string().contains("is cancelled"), "{e}");
    let again = fleet.queue.retry(&queued.id).await.unwrap();
    assert_eq!(again.state, JobState::Queued);
    fleet
        .wait_state(&queued.id, JobState::Succeeded, LONG)
        .await;
    fleet.queue.shutdown().await;
}

/// The prompt ended on its instance without succeeding: it was interrupted
/// there, not just forgotten by the queue.
async fn assert_interrupted_there(s: &StandIn, prompt_id: &str) {
    let client = storycore_core::client::ComfyClient::from_endpoint(&s.url()).unwrap();
    let h = wait_for(LONG, "the interrupted prompt in history", || async {
        client.history(prompt_id).await.ok().flatten()
    })
    .await;
    assert!(
        !h.succeeded(),
        "prompt {prompt_id} was not stopped on its instance"
    );
}

#[tokio::test]
async fn a_job_past_the_instance_timeout_is_interrupted_and_failed() {
    let s = StandIn::builder()
        .env("STANDIN_NODE_MS", "500")
        .env("STANDIN_PROGRESS_STEPS", "5")
        .start();
    let mut c = attached("gpu0", s.port(), 1);
    c.timeout_ms = Some(1000);
    let fleet = Fleet::open(vec![c], fast_options()).await;
    fleet.start("gpu0").await;
    let job = fleet
        .queue
        .submit(chain_workflow(10, 3, "slow"), JobTarget::Auto)
        .await
        .unwrap();
    let failed = fleet.wait_state(&job.id, JobState::Failed, LONG).await;
    let msg = failed.error.unwrap().message;
    assert!(msg.contains("timed out after 1000 ms"), "{msg}");
    assert!(msg.contains("interrupted"), "{msg}");
    assert_interrupted_there(&s, failed.prompt_id.as_deref().unwrap()).await;
    assert!(outputs_with_prefix(&s, "slow").is_empty());
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn templates_import_mark_save_and_run() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;

    let store = fleet.queue.templates();
    let smoke = store.get(SMOKE_TEST_ID).expect("built in");
    let mut values = Map::new();
    values.insert("width".into(), json!(32));
    values.insert("filenamePrefix".into(), json!("smoke"));
    let job = fleet
        .queue
        .submit_template(&smoke, &values, JobTarget::Instance { id: "gpu0".into() })
        .await
        .unwrap();
    assert_eq!(job.workflow["1"]["inputs"]["width"], 32);
    assert_eq!(job.workflow["1"]["inputs"]["height"], 512, "the default");
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.template_id.as_deref(), Some(SMOKE_TEST_ID));
    assert_eq!(outputs_with_prefix(&s, "smoke").len(), 1);

    // Import a workflow file, mark parameters, save, list, run with values.
    let text = serde_json::to_string(&chain_workflow(1, 5, "mine")).unwrap();
    let mut t = templates::from_workflow_json("invert", "Invert", &text).unwrap();
    templates::mark_parameter(&mut t, "prefix", "2", "filename_prefix", None).unwrap();
    templates::mark_parameter(&mut t, "color", "1", "color", None).unwrap();
    let e = templates::mark_parameter(&mut t, "img", "2", "images", None).unwrap_err();
    assert!(e.to_string().contains("is a link"), "{e}");
    let e = templates::mark_parameter(&mut t, "x", "9", "width", None).unwrap_err();
    assert!(e.to_string().contains("no node \"9\""), "{e}");
    store.save(&t).unwrap();
    assert!(store.save(&smoke).is_err(), "built-ins are not overwritten");
    let loaded = store.get("invert").unwrap();
    assert_eq!(loaded, t);
    let mut bad = Map::new();
    bad.insert("color".into(), json!("red"));
    assert!(fleet
        .queue
        .submit_template(&loaded, &bad, JobTarget::Auto)
        .await
        .unwrap_err()
        .to_string()
        .contains("must be a Int"));
    let mut v = Map::new();
    v.insert("prefix".into(), json!("from_template"));
    v.insert("color".into(), json!(99));
    let job = fleet
        .queue
        .submit_template(&loaded, &v, JobTarget::Active)
        .await
        .unwrap();
    fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(outputs_with_prefix(&s, "from_template").len(), 1);
    store.delete("invert").unwrap();
    assert!(store.get("invert").is_none());
    fleet.queue.shutdown().await;
}

/// A running job whose instance stops reporting is stalled: interrupted there
/// and failed, long before its `timeoutMs`. A job as slow that keeps
/// reporting progress is left alone and succeeds.
#[tokio::test]
async fn a_job_without_progress_is_stalled_one_with_progress_is_not() {
    let silent = StandIn::builder()
        .env("STANDIN_NODE_MS", "1500")
        .env("STANDIN_PROGRESS_STEPS", "0")
        .start();
    let chatty = StandIn::builder()
        .env("STANDIN_NODE_MS", "1500")
        .env("STANDIN_PROGRESS_STEPS", "15")
        .start();
    let mut a = attached("silent", silent.port(), 1);
    a.timeout_ms = Some(60_000);
    let mut b = attached("chatty", chatty.port(), 1);
    b.timeout_ms = Some(60_000);
    let options = storycore_core::dispatch::DispatchOptions {
        stall_after: Some(Duration::from_millis(800)),
        ..fast_options()
    };
    let fleet = Fleet::open(vec![a, b], options).await;
    fleet.start("silent").await;
    fleet.start("chatty").await;
    let on = |id: &str| JobTarget::Instance { id: id.into() };
    let stalled = fleet
        .queue
        .submit(chain_workflow(2, 11, "stalled"), on("silent"))
        .await
        .unwrap();
    let slow = fleet
        .queue
        .submit(chain_workflow(2, 12, "reporting"), on("chatty"))
        .await
        .unwrap();

    let failed = fleet.wait_state(&stalled.id, JobState::Failed, LONG).await;
    let msg = failed.error.unwrap().message;
    assert!(msg.contains("stalled: no progress for 800 ms"), "{msg}");
    assert!(msg.contains("interrupted"), "{msg}");
    let took = failed.finished_at.unwrap() - failed.started_at.unwrap();
    assert!(
        took < chrono::Duration::seconds(30),
        "stalled long before the 60 s timeout: {took}"
    );
    assert_interrupted_there(&silent, failed.prompt_id.as_deref().unwrap()).await;
    assert!(outputs_with_prefix(&silent, "stalled").is_empty());

    let done = fleet.wait_state(&slow.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.attempts, 1, "never treated as stalled");
    let ran = done.finished_at.unwrap() - done.started_at.unwrap();
    assert!(
        ran > chrono::Duration::milliseconds(800),
        "it ran longer than the stall limit ({ran}), reporting all along"
    );
    assert_eq!(outputs_with_prefix(&chatty, "reporting").len(), 1);
    fleet.queue.shutdown().await;
}

/// An instance created and started while the queue runs, or stopped and
/// started again, takes work as soon as it is running and healthy: its
/// stop is no failure, so no cooldown holds it (one did, for the whole
/// cooldown: a burst on an instance just attached, or on a pool member
/// started at once, waited 5 s).
#[tokio::test]
async fn an_instance_started_or_restarted_takes_work_at_once() {
    let s = StandIn::start();
    let options = storycore_core::dispatch::DispatchOptions {
        cooldown: Duration::from_secs(600),
        ..fast_options()
    };
    let fleet = Fleet::open(vec![], options).await;
    fleet
        .manager
        .create(attached("gpu0", s.port(), 1))
        .await
        .unwrap();
    fleet.start("gpu0").await;
    let first = fleet
        .queue
        .submit(chain_workflow(1, 3, "fresh"), JobTarget::Auto)
        .await
        .unwrap();
    fleet.wait_state(&first.id, JobState::Succeeded, LONG).await;
    fleet.manager.stop("gpu0").await.unwrap();
    fleet.start("gpu0").await;
    let second = fleet
        .queue
        .submit(chain_workflow(1, 4, "again"), JobTarget::Auto)
        .await
        .unwrap();
    fleet
        .wait_state(&second.id, JobState::Succeeded, LONG)
        .await;
    fleet.queue.shutdown().await;
}

/// The seed's balancing calls (`getHealthyInstance`, `getInstancesByLoad`)
/// are the queue's: they rank on its own load, so an instance running a job
/// of this app ranks below an idle one, and the gateway asks the idle one.
#[tokio::test]
async fn balancing_ranks_on_the_queues_own_load() {
    let (a, b) = (
        StandIn::builder().env("STANDIN_NODE_MS", "300").start(),
        StandIn::builder().env("STANDIN_NODE_MS", "300").start(),
    );
    let fleet = Fleet::running_pair(&a, &b).await;
    let order = || -> Vec<String> {
        fleet
            .queue
            .instances_by_load()
            .into_iter()
            .map(|i| i.id)
            .collect()
    };
    wait_for(LONG, "both instances to take work", || async {
        (order().len() == 2).then_some(())
    })
    .await;
    let job = fleet
        .queue
        .submit(
            chain_workflow(20, 3, "held"),
            JobTarget::Instance { id: "a".into() },
        )
        .await
        .unwrap();
    fleet.wait_state(&job.id, JobState::Running, LONG).await;
    // ComfyUI's own figures (read every few seconds) may not show it yet:
    // the queue's count does.
    assert_eq!(order(), ["b", "a"]);
    assert_eq!(fleet.queue.healthy_instance().unwrap().id, "b");
    fleet.queue.cancel(&job.id).await.unwrap();
}
