//! Jobs in projects against real stand-ins: a project's template runs with
//! its outputs copied to the project's folder and the job tagged; a
//! template pinned to instances runs only there and says why it waits
//! while none of them can take it; a folder that cannot be written to
//! does not lose the job.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, fast_options, Fleet};
use serde_json::Map;
use std::time::Duration;
use storycore_core::dispatch::templates::TemplateStore;
use storycore_core::dispatch::{DispatchOptions, JobContext};
use storycore_core::projects::Projects;
use storycore_types::{JobState, JobTarget, ProjectDraft, TemplateDraft};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(30);

fn draft(name: &str) -> TemplateDraft {
    TemplateDraft {
        name: name.into(),
        description: None,
        workflow: serde_json::json!({
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 4242}},
            "2": {"class_type": "SaveImage",
                  "inputs": {"images": ["1", 0], "filename_prefix": name}}
        }),
        parameters: vec![],
    }
}

#[tokio::test]
async fn a_projects_template_run_lands_its_outputs_in_the_projects_folder() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let work = tempfile::tempdir().unwrap();
    let (projects, ..) = Projects::open(fleet.dir.path()).unwrap();
    let film = projects
        .create(
            &ProjectDraft {
                name: "Film".into(),
                folder: work.path().join("film").to_string_lossy().into_owned(),
                ..ProjectDraft::default()
            },
            &[],
        )
        .unwrap();
    let ads = projects
        .create(
            &ProjectDraft {
                name: "Ads".into(),
                folder: work.path().join("ads").to_string_lossy().into_owned(),
                ..ProjectDraft::default()
            },
            &[],
        )
        .unwrap();

    // A template of "Film" is seen in Film, not in Ads nor globally.
    let in_film = fleet.queue.project_templates(&film.id);
    let t = in_film.create(&draft("film shot")).unwrap();
    assert_eq!(t.project_id.as_deref(), Some(film.id.as_str()));
    let names = |s: &TemplateStore| s.list().into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert!(names(&in_film).contains(&"film shot".to_string()));
    assert!(!names(&fleet.queue.project_templates(&ads.id)).contains(&"film shot".to_string()));
    assert!(!names(&fleet.queue.templates()).contains(&"film shot".to_string()));

    let job = fleet
        .queue
        .submit_template_in(
            &t,
            &Map::new(),
            JobTarget::Auto,
            &JobContext::project(&film),
        )
        .await
        .unwrap();
    assert_eq!(job.project_id.as_deref(), Some(film.id.as_str()));
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.error, None);
    let copy = done.outputs[0].project_path.clone().expect("copied");
    let copy = std::path::Path::new(&copy);
    assert_eq!(copy.parent().unwrap(), work.path().join("film/outputs"));
    assert!(copy
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&job.id[..8]));
    assert_eq!(
        std::fs::read(copy).unwrap(),
        std::fs::read(&done.outputs[0].path).unwrap()
    );
    // Nothing went to the other project's folder.
    assert!(!work.path().join("ads/outputs").exists());
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn a_pinned_template_waits_for_its_instances_and_says_why() {
    let a = StandIn::start();
    let b = StandIn::start();
    let fleet = Fleet::open(
        vec![attached("gpu0", a.port(), 1), attached("gpu1", b.port(), 1)],
        fast_options(),
    )
    .await;
    fleet.start("gpu0").await;
    let store = fleet.queue.templates();
    let t = store.create(&draft("needs the big model")).unwrap();
    let t = store
        .set_pins(&t.id, vec!["gpu1".into(), "gpu1".into()])
        .unwrap();
    assert_eq!(t.pinned_instances, ["gpu1"]);
    assert_eq!(store.get(&t.id).unwrap().pinned_instances, ["gpu1"]);

    // Another instance than the pinned ones is refused as a target.
    let e = fleet
        .queue
        .submit_template(&t, &Map::new(), JobTarget::Instance { id: "gpu0".into() })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pinned to gpu1"), "{e}");

    let job = fleet
        .queue
        .submit_template(&t, &Map::new(), JobTarget::Auto)
        .await
        .unwrap();
    // gpu0 is idle and healthy, but the job waits for gpu1, saying so.
    let waiting = wait_for(LONG, "a waiting reason", || async {
        fleet.queue.get(&job.id).and_then(|j| j.waiting)
    })
    .await;
    assert!(waiting.contains("pinned to"), "{waiting}");
    assert!(waiting.contains("gpu1 (stopped)"), "{waiting}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fleet.queue.get(&job.id).unwrap().state, JobState::Queued);

    fleet.start("gpu1").await;
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("gpu1"));
    assert_eq!(done.waiting, None);
    fleet.queue.shutdown().await;
}

#[tokio::test]
async fn an_output_folder_that_cannot_be_written_does_not_lose_the_job() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let work = tempfile::tempdir().unwrap();
    let blocker = work.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let context = JobContext {
        project_id: Some("project_001".into()),
        output_folder: Some(blocker.join("outputs").to_string_lossy().into_owned()),
        ..JobContext::default()
    };
    let t = fleet.queue.templates().create(&draft("blocked")).unwrap();
    let job = fleet
        .queue
        .submit_template_in(&t, &Map::new(), JobTarget::Auto, &context)
        .await
        .unwrap();
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert!(std::path::Path::new(&done.outputs[0].path).is_file());
    assert_eq!(done.outputs[0].project_path, None);
    let said = done.error.expect("says the copy failed").message;
    assert!(said.contains("could not be copied"), "{said}");
    assert!(said.contains("not-a-folder"), "{said}");
    fleet.queue.shutdown().await;
}

/// A pinned job whose only pinned instance died under it is not stranded
/// because another, unpinned instance is healthy: it runs again on its own
/// instance once that is back.
#[tokio::test]
async fn a_pinned_job_goes_back_to_its_instance_after_it_died_there() {
    let mut big = StandIn::builder()
        .env("STANDIN_CRASH_AFTER_PROMPTS", "1")
        .start();
    let port = big.port();
    let other = StandIn::start();
    let fleet = Fleet::open(
        vec![attached("big", port, 1), attached("other", other.port(), 1)],
        // The stand-in crashes at its first prompt: that must be the job.
        DispatchOptions {
            calibrate: false,
            ..fast_options()
        },
    )
    .await;
    fleet.start("big").await;
    fleet.start("other").await;
    let store = fleet.queue.templates();
    let t = store.create(&draft("only on big")).unwrap();
    let t = store.set_pins(&t.id, vec!["big".into()]).unwrap();
    let job = fleet
        .queue
        .submit_template(&t, &Map::new(), JobTarget::Auto)
        .await
        .unwrap();
    wait_for(LONG, "the job to lose its instance", || async {
        fleet
            .queue
            .get(&job.id)
            .filter(|j| j.instances_killed == ["big"])
    })
    .await;
    big.kill();
    let _back = StandIn::builder().port(port).start();
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("big"));
    assert_eq!(done.attempts, 2);
    fleet.queue.shutdown().await;
}
