//! Projects in the window: two created in the projects dialog and switched
//! in the toolbar; a template run in a project lands its outputs in that
//! project's folder; the queue shows the current project's jobs unless
//! told otherwise; a project's own templates are listed only in it; a
//! template pinned to a stopped instance says why its job waits.

use crate::support;

use serde_json::json;
use std::path::Path;
use support::app_with_one_instance;

async fn create_project(app: &support::App, name: &str, folder: &Path) {
    app.fill("#project-name", name).await;
    app.fill("#project-folder", folder.to_str().unwrap()).await;
    app.click("#project-save").await;
    app.wait_text("#project-list", "the new project", |t| t.contains(name))
        .await;
}

/// Chooses a project in the toolbar and waits until the backend has it.
async fn switch_to(app: &support::App, id: &str) {
    app.choose("#project-select", id).await;
    for _ in 0..100 {
        if current_project(app).await.as_deref() == Some(id) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the current project never became {id}");
}

async fn current_project(app: &support::App) -> Option<String> {
    let list = app.invoke("list_projects", json!({})).await.unwrap();
    list["currentProjectId"].as_str().map(String::from)
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_projects_switched_and_a_template_run_lands_in_the_projects_folder() {
    let (server, app) = app_with_one_instance("projects").await;
    let work = tempfile::tempdir().unwrap();
    let (film, ads) = (work.path().join("film"), work.path().join("ads"));
    app.wait_text(".instance-card[data-id='instance_001']", "running", |t| {
        t.contains("running")
    })
    .await;

    // Two projects, made in the dialog; each new one becomes current.
    app.click("#projects-button").await;
    create_project(&app, "Film", &film).await;
    assert_eq!(current_project(&app).await.as_deref(), Some("project_001"));
    create_project(&app, "Ads", &ads).await;
    assert_eq!(current_project(&app).await.as_deref(), Some("project_002"));
    assert!(film.is_dir() && ads.is_dir(), "the folders were made");
    app.click("#projects-close").await;
    assert_eq!(app.value("#project-select").await, "project_002");

    // Switched in the toolbar.
    switch_to(&app, "project_001").await;

    // A template of Film's own, listed only while Film is current.
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 99}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "film_shot"}}
    });
    app.invoke(
        "create_template",
        json!({"draft": {"name": "Film shot", "workflow": wf, "parameters": []}}),
    )
    .await
    .unwrap();
    app.click("#tab-workflows").await;
    app.wait_text("#job-target", "the project's default", |t| {
        t.contains("the project's default (automatic)")
    })
    .await;
    app.wait_text("#template-select", "Film's template", |t| {
        t.contains("Film shot")
    })
    .await;
    app.choose("#template-select", "film-shot").await;
    app.click("#run-template").await;
    let row = app
        .wait_text("#job-list .job-row", "the job done", |t| {
            t.contains("succeeded")
        })
        .await;
    assert!(row.contains("Film"), "the row names its project: {row}");

    // The output is in Film's folder, not in Ads'.
    let outputs = files_in(&film.join("outputs"));
    println!("projects: Film's outputs folder holds {outputs:?}");
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert!(outputs[0].ends_with(".png") && outputs[0].contains("film_shot"));
    assert!(files_in(&ads.join("outputs")).is_empty());
    let jobs = app.invoke("list_jobs", json!({})).await.unwrap();
    assert_eq!(jobs[0]["projectId"], "project_001");

    // In Ads: Film's template is not offered, and the queue shows Ads' jobs
    // only until "Only Ads" is unticked.
    switch_to(&app, "project_002").await;
    app.wait_text("#job-list", "Ads' empty queue", |t| {
        t.contains("Only Ads") && !t.contains("succeeded")
    })
    .await;
    app.wait_text("#template-select", "no Film template", |t| {
        !t.contains("Film shot")
    })
    .await;
    app.click("#job-filter").await;
    app.wait_text("#job-list", "every job", |t| t.contains("succeeded"))
        .await;

    // A template pinned to a stopped instance: its job waits and says why.
    app.invoke(
        "create_instance",
        json!({"config": {"id": "", "name": "Big GPU", "port": 9, "host": "127.0.0.1"}}),
    )
    .await
    .unwrap();
    app.invoke(
        "create_template",
        json!({"draft": {"name": "Needs big model", "workflow": wf, "parameters": []}}),
    )
    .await
    .unwrap();
    // Made outside the view: switching projects reads the templates again
    // (each switch waited for, or two quick ones can leave the view as it was).
    switch_to(&app, "project_001").await;
    app.wait_text("#template-select", "Film's list", |t| {
        t.contains("Film shot")
    })
    .await;
    switch_to(&app, "project_002").await;
    app.wait_text("#template-select", "the new template", |t| {
        t.contains("Needs big model")
    })
    .await;
    app.choose("#template-select", "needs-big-model").await;
    app.click("#template-pins input[data-pin='instance_002']")
        .await;
    app.click("#save-pins").await;
    for _ in 0..50 {
        let list = app.invoke("list_templates", json!({})).await.unwrap();
        let pinned = list.as_array().unwrap().iter().any(|t| {
            t["id"] == "needs-big-model" && t["pinnedInstances"] == json!(["instance_002"])
        });
        if pinned {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.click("#run-template").await;
    let waiting = app
        .wait_text("#job-list .job-waiting", "why it waits", |t| {
            t.contains("pinned to")
        })
        .await;
    println!("projects: a pinned job says: {waiting}");
    assert!(waiting.contains("Big GPU (stopped)"), "{waiting}");
    app.finish().await;
    drop(server);
}
