//! The window never stays stale: a flood of events larger than the event
//! channel (1,500 instances imported at once, then 300 jobs submitted in
//! parallel) makes the UI bridge fall behind; it then sends one snapshot, and
//! the window ends showing exactly what the backend holds.

use crate::support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::App;

const INSTANCES: usize = 1500;
const JOBS: usize = 300;

async fn ids_on_screen(app: &App, css: &str) -> BTreeSet<String> {
    let v = app
        .client
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.id);",
            vec![css.into()],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn ids_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the screen shows exactly `want` (or fails with the difference).
async fn wait_equal(app: &App, css: &str, want: &BTreeSet<String>, what: &str) -> Duration {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(120);
    loop {
        let shown = ids_on_screen(app, css).await;
        if &shown == want {
            return t.elapsed();
        }
        if Instant::now() > deadline {
            let missing = want.difference(&shown).count();
            let extra = shown.difference(want).count();
            panic!(
                "{what}: the window shows {} ({missing} missing, {extra} not in the backend) of {}",
                shown.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_flood_of_events_the_window_equals_the_backend() {
    let app = App::launch("flood", &[]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    // Ports nothing listens on: the instances stay stopped.
    let instances: Vec<Value> = (0..INSTANCES)
        .map(|n| {
            json!({"id": format!("flood_{n:04}"), "name": format!("Flood {n:04}"),
                        "port": 20000 + n, "host": "127.0.0.1"})
        })
        .collect();
    let file = json!({"version": "1.0", "instances": instances}).to_string();
    app.invoke("import_instances", json!({"data": file}))
        .await
        .unwrap();
    let backend = ids_of(&app.invoke("list_instances", json!({})).await.unwrap());
    assert_eq!(backend.len(), INSTANCES);
    let took = wait_equal(&app, ".instance-card", &backend, "instances").await;
    println!("flood: {INSTANCES} instances shown, equal to the backend, {took:?} after the import");

    // Jobs, submitted all at once from the page (no instance runs: they wait).
    let submitted = app
        .client
        .execute_async(
            "const [n, done] = arguments;\
             const w = JSON.stringify({'1': {class_type: 'EmptyImage', inputs: {width: 8, height: 8, batch_size: 1, color: 1}},\
                                       '2': {class_type: 'SaveImage', inputs: {images: ['1', 0], filename_prefix: 'flood'}}});\
             Promise.all([...Array(n).keys()].map(() => window.__TAURI__.core.invoke('submit_workflow', {workflow: w})))\
               .then(v => done(v.length), e => done(String(e)));",
            vec![JOBS.into()],
        )
        .await
        .unwrap();
    assert_eq!(submitted, json!(JOBS), "{submitted}");
    app.click("#tab-workflows").await;
    let jobs = ids_of(&app.invoke("list_jobs", json!({})).await.unwrap());
    assert_eq!(jobs.len(), JOBS);
    wait_equal(&app, ".job-row", &jobs, "jobs").await;

    // The flood did overrun the bridge: the snapshot path was taken.
    let log = support::app_log_text(app.config_dir.path());
    assert!(
        log.contains("sending a snapshot"),
        "the bridge never fell behind: the test proved nothing"
    );
    app.finish().await;
}
