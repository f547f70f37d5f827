//! Job records carry a format version. The records of every state as this
//! app wrote them before versions (fixtures/jobs-1.0, made by its own
//! writer) are read whole; a record of a newer version is left as it is,
//! unread and untouched, with a notice; new records say their version.

use std::path::{Path, PathBuf};
use std::time::Duration;
use storycore_core::dispatch::record::JOB_RECORD_VERSION;
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::{InstanceConfig, Job, JobState, JobTarget};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs-1.0")
}

/// A queue over `dir` whose instances (gpu0, gpu1: attached, never started)
/// are never asked anything while the test reads.
async fn open(dir: &Path) -> (InstanceManager, JobQueue, Vec<String>) {
    let mut o = ManagerOptions::new(dir);
    o.data_dir = dir.join("data");
    let m = InstanceManager::open(o).unwrap().0;
    for (id, port) in [("gpu0", 1), ("gpu1", 2)] {
        if m.get(id).is_none() {
            m.create(InstanceConfig::new(id, id, port)).await.unwrap();
        }
    }
    let options = DispatchOptions {
        poll_interval: Duration::from_secs(3600),
        lost_after_failures: 1000,
        calibrate: false,
        ..DispatchOptions::default()
    };
    let (q, recovered) = JobQueue::open(m.clone(), dir, options).unwrap();
    (m, q, recovered.notices)
}

fn copy_fixtures(dir: &Path) -> Vec<PathBuf> {
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let mut copied = Vec::new();
    for e in std::fs::read_dir(fixtures()).unwrap().flatten() {
        let to = jobs.join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
        copied.push(to);
    }
    copied.sort();
    copied
}

fn job(q: &JobQueue, n: u32) -> Job {
    q.get(&format!("0a1b2c3d-0000-4000-8000-00000000000{n}"))
        .unwrap_or_else(|| panic!("fixture {n} was not read"))
}

#[tokio::test]
async fn todays_records_of_every_state_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_fixtures(dir.path());
    assert_eq!(files.len(), 8, "one record per state");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("\"version\""),
            "the fixtures are unversioned: {f:?}"
        );
    }
    let (m, q, notices) = open(dir.path()).await;
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(q.list().len(), 8);

    let queued = job(&q, 1);
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.template_id.as_deref(), Some("portrait"));
    assert_eq!(queued.project_id.as_deref(), Some("p1"));
    assert_eq!(queued.output_folder.as_deref(), Some("/home/me/renders"));
    assert_eq!(queued.pinned_instances, ["gpu0"]);
    assert_eq!(
        queued.workflow["1"]["inputs"]["ckpt_name"],
        "sd15.safetensors"
    );

    let dispatched = job(&q, 2);
    assert_eq!(dispatched.state, JobState::Dispatched);
    assert_eq!(dispatched.target, JobTarget::Instance { id: "gpu1".into() });
    assert_eq!(
        dispatched.prompt_id.as_deref(),
        Some("9f0e0000-0000-4000-8000-0000000000d2")
    );

    let running = job(&q, 3);
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.attempts, 2);
    assert_eq!(running.instances_killed, ["gpu2"]);
    assert_eq!(running.progress.node.as_deref(), Some("3"));
    // Its copy is stopped, not followed (the attempt is): no longer the job's.
    assert_eq!(running.copy, None);

    let done = job(&q, 4);
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(
        done.outputs[0].project_path.as_deref(),
        Some("/home/me/renders/x_00001_.png")
    );
    let g = done.gateway.as_ref().unwrap();
    assert_eq!(
        (g.prompt_id.as_str(), g.owner.as_deref()),
        ("client-prompt-4", Some("alice"))
    );
    assert_eq!(done.input_files[0].filename, "cat.png");

    let failed = job(&q, 5);
    assert_eq!(failed.state, JobState::Failed);
    let e = failed.error.unwrap();
    assert_eq!(
        e.comfy_type.as_deref(),
        Some("prompt_outputs_failed_validation")
    );
    assert_eq!(e.node_errors[0].class_type, "CheckpointLoaderSimple");
    assert_eq!(e.node_errors[0].traceback.len(), 1);

    assert_eq!(job(&q, 6).state, JobState::Suspect);
    assert_eq!(job(&q, 6).instances_killed, ["gpu0", "gpu1"]);
    assert_eq!(job(&q, 7).state, JobState::Held);
    assert_eq!(job(&q, 8).state, JobState::Cancelled);
    assert_eq!(job(&q, 8).target, JobTarget::Active);
    q.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn a_record_of_a_newer_version_is_left_as_it_is_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let id = "0a1b2c3d-0000-4000-8000-0000000000ff";
    let newer = format!(
        "{{\"version\":\"2.0\",\"id\":\"{id}\",\"state\":\"teleported\",\"someNewField\":[1,2]}}"
    );
    let path = jobs.join(format!("{id}.json"));
    std::fs::write(&path, &newer).unwrap();
    let (m, q, notices) = open(dir.path()).await;
    assert!(
        notices
            .iter()
            .any(|n| n.contains("newer version") && n.contains("2.0") && n.contains(id)),
        "{notices:?}"
    );
    assert!(q.get(id).is_none());
    q.shutdown().await;
    m.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        newer,
        "it was changed"
    );
    assert!(
        !jobs.join(format!("{id}.json.corrupt")).exists(),
        "moved aside as if broken"
    );
}

#[tokio::test]
async fn new_records_say_their_version_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (m, q, _) = open(dir.path()).await;
    let wf = serde_json::json!({"1": {"class_type": "SaveImage", "inputs": {}}});
    let j = q.submit(wf, JobTarget::Auto).await.unwrap();
    q.flush().await;
    let text = std::fs::read_to_string(dir.path().join(format!("jobs/{}.json", j.id))).unwrap();
    assert!(
        text.starts_with(&format!(
            "{{\"version\":\"{JOB_RECORD_VERSION}\",\"workflow\":"
        )),
        "{}",
        &text[..80.min(text.len())]
    );
    q.shutdown().await;
    m.shutdown().await;
    let (m, q, notices) = open(dir.path()).await;
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(
        q.get(&j.id).unwrap().workflow["1"]["class_type"],
        "SaveImage"
    );
    q.shutdown().await;
    m.shutdown().await;
}
