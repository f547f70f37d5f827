//! Nothing blocks the window nor the runtime: Tauri runs a command that is
//! not `async` on the main thread, which also runs the window, and every
//! task of the backend runs on the runtime's few worker threads. The real
//! app runs under strace (syncs, writes and reads, with the file behind each
//! descriptor); every command that touches the disk is called from the
//! page, as the UI calls it, around a stream of jobs; then the syncs, file
//! writes and large file reads of the main thread and of the runtime's
//! workers (named `storycore-work`, see `engine::runtime`) are counted and
//! printed. Syncs and large reads there must be none.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::App;

/// A read of a regular file this big or more is a large read.
const LARGE_READ: u64 = 64 << 10;

/// Large reads of regular files in one thread's trace, with a few examples.
fn large_reads(trace: &str) -> (usize, Vec<String>) {
    let (mut n, mut seen) = (0, Vec::new());
    for l in trace.lines() {
        let call = l.split('(').next().unwrap_or("").trim();
        let file = l.split_once('<').is_some_and(|(_, p)| p.starts_with('/'));
        let got: u64 = l
            .rsplit_once(" = ")
            .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if matches!(call, "read" | "pread64" | "readv" | "preadv") && file && got >= LARGE_READ {
            n += 1;
            if seen.len() < 5 {
                seen.push(l.chars().take(160).collect());
            }
        }
    }
    (n, seen)
}

/// In one thread's trace: (syncs, writes to regular files or renames, a few examples).
fn count_io(trace: &str) -> (usize, usize, Vec<String>) {
    let (mut syncs, mut writes, mut seen) = (0, 0, Vec::new());
    for l in trace.lines() {
        let call = l.split('(').next().unwrap_or("").trim();
        let is_sync = matches!(call, "fsync" | "fdatasync" | "syncfs" | "sync_file_range");
        // `write(12</path/to/file>, ...`: a file, not a socket, pipe or event fd.
        let to_file = matches!(call, "write" | "pwrite64" | "writev" | "pwritev")
            && l.split_once('<').is_some_and(|(_, p)| p.starts_with('/'));
        let renames = call.starts_with("rename");
        syncs += usize::from(is_sync);
        writes += usize::from(to_file || renames);
        if (is_sync || to_file || renames) && seen.len() < 5 {
            seen.push(l.chars().take(160).collect());
        }
    }
    (syncs, writes, seen)
}

/// The traces `strace -ff -o <prefix>` wrote, one per thread: (thread id, text).
fn traces(prefix: &Path) -> Vec<(u32, String)> {
    let dir = prefix.parent().unwrap();
    let stem = format!("{}.", prefix.file_name().unwrap().to_string_lossy());
    let mut out: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let tid = name.strip_prefix(&stem)?.parse().ok()?;
            Some((tid, std::fs::read_to_string(e.path()).unwrap_or_default()))
        })
        .collect();
    out.sort();
    out
}

async fn wait_final(app: &App, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = app.invoke("list_jobs", json!({})).await.unwrap();
        let jobs = jobs.as_array().unwrap().clone();
        let done = jobs
            .iter()
            .filter(|j| {
                matches!(
                    j["state"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
            })
            .count();
        if done >= n {
            return jobs;
        }
        assert!(Instant::now() < deadline, "jobs did not end: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_main_thread_makes_no_sync_while_the_ui_works() {
    let work = tempfile::tempdir().unwrap();
    let trace = work.path().join("trace");
    let wrapper = work.path().join("traced-app.sh");
    // The app to trace: `STORYCORE_E2E_APP` when set (e.g. an older build,
    // to compare), else the one cargo built.
    let traced = support::app_bin();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -ff -y -e trace=fsync,fdatasync,syncfs,sync_file_range,\
             write,pwrite64,writev,pwritev,rename,renameat,renameat2,read,pread64,readv,preadv \
             -o '{}' '{}' \"$@\"\n",
            trace.display(),
            traced
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // This test binary holds this one test: the variable concerns it alone.
    std::env::set_var("STORYCORE_E2E_APP", &wrapper);

    let (_server, app) = support::app_with_one_instance("main-thread-io").await;

    // Every command that touches the disk, as the UI calls them.
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "io"}}
    });
    let file = work.path().join("workflow.json");
    std::fs::write(&file, wf.to_string()).unwrap();
    app.invoke("read_workflow_file", json!({"path": file}))
        .await
        .unwrap();
    let template = app
        .invoke(
            "create_template",
            json!({"draft": {"name": "io", "workflow": wf, "parameters": []}}),
        )
        .await
        .unwrap();
    app.invoke("list_templates", json!({})).await.unwrap();
    const JOBS: usize = 20;
    for k in 0..JOBS {
        let mut w = wf.clone();
        w["1"]["inputs"]["color"] = json!(100 + k);
        app.invoke("submit_workflow", json!({"workflow": w.to_string()}))
            .await
            .unwrap();
    }
    app.invoke(
        "submit_template",
        json!({"templateId": template["id"], "values": {}}),
    )
    .await
    .unwrap();
    let jobs = wait_final(&app, JOBS + 1).await;
    let first = jobs[0]["id"].clone();
    app.invoke("job_output_image", json!({"id": first, "index": 0}))
        .await
        .unwrap();
    app.invoke("retry_job", json!({"id": first}))
        .await
        .expect_err("a succeeded job is not retried");
    let last = jobs[JOBS]["id"].clone();
    app.invoke("remove_job", json!({"id": last})).await.unwrap();
    app.invoke("get_health_history", json!({"id": "instance_001"}))
        .await
        .unwrap();
    app.invoke("delete_template", json!({"id": template["id"]}))
        .await
        .unwrap();
    app.invoke("suggest_port", json!({})).await.unwrap();
    app.invoke("list_gpus", json!({})).await.unwrap();
    let settings = app.invoke("get_settings", json!({})).await.unwrap();
    app.invoke("set_settings", json!({"settings": settings}))
        .await
        .unwrap();
    // A large file read by a command: the trace must see it (off the workers).
    let big = work.path().join("big-workflow.json");
    let mut w = wf.clone();
    w["2"]["inputs"]["filename_prefix"] = json!("x".repeat(300 << 10));
    std::fs::write(&big, w.to_string()).unwrap();
    app.invoke("read_workflow_file", json!({"path": big}))
        .await
        .unwrap();
    // The runtime's workers, by name, while the app runs.
    let pid = traces(&trace).first().expect("no trace yet").0;
    let names: std::collections::HashMap<u32, String> =
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .filter_map(|t| {
                let tid = t.file_name().to_string_lossy().parse().ok()?;
                let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
                Some((tid, comm.trim().to_string()))
            })
            .collect();
    let workers: Vec<u32> = names
        .iter()
        .filter(|(_, n)| n.as_str() == "storycore-work")
        .map(|(t, _)| *t)
        .collect();
    assert!(!workers.is_empty(), "no runtime worker among {names:?}");
    app.finish().await;

    // The app's main thread has the lowest thread id of all it traced
    // (its process id; threads and WebKit's processes come after).
    // Read once strace has let go (the traces stop growing).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0;
    let all = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let all = traces(&trace);
        let size: usize = all.iter().map(|(_, t)| t.len()).sum();
        if (size == last && size > 0) || Instant::now() > deadline {
            break all;
        }
        last = size;
    };
    let (main_tid, main_trace) = all.first().expect("no trace was written");
    let (syncs, writes, seen) = count_io(main_trace);
    let all_syncs: usize = all.iter().map(|(_, t)| count_io(t).0).sum();
    println!(
        "main thread ({main_tid}), {JOBS} jobs and every disk command: {syncs} syncs, \
         {writes} file writes or renames{}; all {} threads: {all_syncs} syncs",
        if seen.is_empty() {
            String::new()
        } else {
            format!(": {seen:#?}")
        },
        all.len()
    );
    assert!(all_syncs > 0, "the trace did not see the app's own syncs");
    assert_eq!(syncs, 0, "syncs on the main thread: {seen:#?}");
    let (main_reads, seen_reads) = large_reads(main_trace);
    assert_eq!(
        main_reads, 0,
        "large reads on the main thread: {seen_reads:#?}"
    );
    let (mut w_syncs, mut w_reads, mut w_seen) = (0, 0, Vec::new());
    for (tid, t) in all.iter().filter(|(tid, _)| workers.contains(tid)) {
        let (s, _, seen) = count_io(t);
        let (r, seen_r) = large_reads(t);
        w_syncs += s;
        w_reads += r;
        w_seen.extend(
            seen.into_iter()
                .chain(seen_r)
                .map(|l| format!("{tid}: {l}")),
        );
    }
    let all_reads: usize = all.iter().map(|(_, t)| large_reads(t).0).sum();
    println!(
        "the runtime's {} workers: {w_syncs} syncs, {w_reads} large file reads (of {all_reads} in all threads)",
        workers.len()
    );
    assert!(
        all_reads > 0,
        "the trace did not see the log export's large read"
    );
    assert_eq!(
        (w_syncs, w_reads),
        (0, 0),
        "syncs or large reads on the runtime's workers: {w_seen:#?}"
    );
}
