//! Process behaviour: folders, signals, exit codes, argparse, fault switches, devices.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const SECS: Duration = Duration::from_secs(10);

fn kill(s: &Server, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(s.child.id() as i32, sig);
    }
}

fn run_once(args: &[&str], env: &[(&str, &str)], with_main: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    if with_main {
        std::fs::write(dir.path().join("main.py"), "").unwrap();
    }
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(dir.path())
        .arg("main.py")
        .args(args)
        .env_remove("STANDIN_NODE_MS");
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

async fn prompt(s: &Server, color: u32) -> String {
    let mut req = read_json("workflows/01_empty_save/request.json");
    req["prompt"]["1"]["inputs"]["color"] = json!(color);
    let (st, r) = s.post_json("/prompt", &req).await;
    assert_eq!(st, 200, "{r}");
    r["prompt_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn temp_is_wiped_at_start_and_removed_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("temp")).unwrap();
    std::fs::write(dir.path().join("temp/foreign_marker.txt"), "x").unwrap();
    let port = free_port();
    let child = spawn_in(dir.path(), port, &[], &[]);
    let mut s = Server {
        dir,
        port,
        child,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    s.wait_ready().await;
    assert!(
        !s.path("temp/foreign_marker.txt").exists(),
        "temp is emptied at start"
    );
    assert!(
        s.path("temp").is_dir()
            && s.path("output").is_dir()
            && s.path("input").is_dir()
            && s.path("user").is_dir()
    );
    std::fs::write(s.path("temp/marker"), "x").unwrap();
    let t = Instant::now();
    kill(&s, libc::SIGINT);
    let st = s.wait_exit(SECS).await;
    assert_eq!(st.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!s.path("temp").exists(), "SIGINT deletes the temp folder");
    assert!(s.stderr().contains("Stopped server"));
}

#[tokio::test]
async fn sigterm_kills_by_signal_and_keeps_temp() {
    let mut s = Server::with_env(vec![("STANDIN_NODE_MS", "2000")]).await;
    prompt(&s, 1).await;
    std::fs::write(s.path("temp/marker"), "x").unwrap();
    kill(&s, libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(2)).await;
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    assert!(s.path("temp/marker").exists());
}

#[tokio::test]
async fn port_taken_exits_1_like_comfyui() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("temp")).unwrap();
    std::fs::write(dir.path().join("temp/marker"), "x").unwrap();
    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["main.py", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address already in use");
    assert!(err.trim_end().ends_with(&want), "{err}");
    assert!(
        !dir.path().join("temp/marker").exists(),
        "temp is wiped even when binding fails"
    );
}

#[test]
fn argparse_behaviour() {
    let out = run_once(&["--cpu", "--foo", "--port", "1"], &[], true);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("usage: main.py [-h] [--listen [IP]]"),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("main.py: error: unrecognized arguments: --foo"),
        "{err}"
    );
    let out = run_once(&["-h"], &[], true);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--extra-model-paths-config PATH [PATH ...]")
    );
    let out = run_once(&["--port", "8188"], &[], false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can't open file '")
            && err.contains("main.py': [Errno 2] No such file or directory"),
        "{err}"
    );
}

#[test]
fn bad_standin_values_exit_2() {
    for (k, v) in [
        ("STANDIN_NODE_MS", "fast"),
        ("STANDIN_CRASH_SIGNAL", "HUP"),
        ("STANDIN_GPUS", "H100"),
        ("STANDIN_SPEED", "-1"),
        ("STANDIN_NO_SUCH_SWITCH", "1"),
    ] {
        let out = run_once(&[], &[(k, v)], true);
        assert_eq!(out.status.code(), Some(2), "{k}={v}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(k), "{k}");
    }
}

#[tokio::test]
async fn crash_after_prompts_with_exit_code() {
    let mut s = Server::with_env(vec![
        ("STANDIN_CRASH_AFTER_PROMPTS", "2"),
        ("STANDIN_CRASH_EXIT_CODE", "3"),
    ])
    .await;
    let first = prompt(&s, 1).await;
    s.wait_history(&first).await;
    prompt(&s, 2).await;
    let st = s.wait_exit(SECS).await;
    assert_eq!(st.code(), Some(3));
}

#[tokio::test]
async fn crash_after_prompts_with_signal() {
    let mut s = Server::with_env(vec![
        ("STANDIN_CRASH_AFTER_PROMPTS", "1"),
        ("STANDIN_CRASH_SIGNAL", "KILL"),
    ])
    .await;
    prompt(&s, 1).await;
    assert_eq!(s.wait_exit(SECS).await.signal(), Some(libc::SIGKILL));
}

#[tokio::test]
async fn crash_after_ms_with_segv() {
    let mut s = Server::with_env(vec![
        ("STANDIN_CRASH_AFTER_MS", "300"),
        ("STANDIN_CRASH_SIGNAL", "SEGV"),
    ])
    .await;
    assert_eq!(s.wait_exit(SECS).await.signal(), Some(libc::SIGSEGV));
}

#[tokio::test]
async fn hang_accepts_but_never_answers() {
    let s = Server::launch(Launch {
        env: vec![("STANDIN_HANG", "1")],
        wait_ready: false,
        ..Default::default()
    })
    .await;
    let port = s.port;
    wait_for(SECS, "port open", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let r = s
        .http
        .get(s.url("/system_stats"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
}

#[tokio::test]
async fn hang_after_ms() {
    let s = Server::with_env(vec![("STANDIN_HANG_AFTER_MS", "300")]).await;
    let end = Instant::now() + SECS;
    loop {
        match s
            .http
            .get(s.url("/system_stats"))
            .timeout(Duration::from_millis(400))
            .send()
            .await
        {
            Err(e) if e.is_timeout() => break,
            _ => assert!(Instant::now() < end, "never started hanging"),
        }
    }
}

#[tokio::test]
async fn slow_answers() {
    let s = Server::with_env(vec![("STANDIN_SLOW_MS", "300")]).await;
    let t = Instant::now();
    assert_eq!(
        s.http.get(s.url("/queue")).send().await.unwrap().status(),
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn failing_execution() {
    let s = Server::with_env(vec![("STANDIN_FAIL_EXECUTION", "1")]).await;
    let mut ws = s.ws(Some("c")).await;
    let mut req = read_json("workflows/03_empty_invert_save/request.json");
    req["client_id"] = json!("c");
    let (_, r) = s.post_json("/prompt", &req).await;
    let pid = r["prompt_id"].as_str().unwrap();
    ws.wait_done(pid).await;
    assert!(ws.types().contains(&"execution_error".to_string()));
    let h = s.wait_history(pid).await;
    assert_eq!(h["status"]["status_str"], "error");
    assert_eq!(h["status"]["messages"][2][0], "execution_error");
    assert_eq!(h["status"]["messages"][2][1]["node_id"], "3");

    let s = Server::with_env(vec![("STANDIN_FAIL_NODE", "ImageInvert")]).await;
    let (_, r) = s.post_json("/prompt", &req).await;
    let h = s.wait_history(r["prompt_id"].as_str().unwrap()).await;
    assert_eq!(h["status"]["messages"][2][1]["node_type"], "ImageInvert");
    assert_eq!(h["status"]["messages"][2][1]["executed"], json!(["1"]));
}

#[tokio::test]
async fn system_stats_500() {
    let s = Server::with_env(vec![("STANDIN_SYSTEM_STATS_500", "1")]).await;
    let r = s.http.get(s.url("/system_stats")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        s.http.get(s.url("/queue")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn never_ready_and_startup_delay() {
    let mut s = Server::launch(Launch {
        env: vec![("STANDIN_NEVER_READY", "1")],
        wait_ready: false,
        ..Default::default()
    })
    .await;
    // Observation window: the process stays up and the port stays closed.
    let end = Instant::now() + Duration::from_millis(800);
    while Instant::now() < end {
        assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err());
        assert!(s.child.try_wait().unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let s = Server::with_env(vec![("STANDIN_STARTUP_DELAY_MS", "400")]).await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    drop(s);
}

#[tokio::test]
async fn devices_follow_cuda_visible_devices() {
    const GPUS: &str = "NVIDIA H100 80GB HBM3:81559,NVIDIA GeForce RTX 4090:24564";
    let name = |s: &serde_json::Value| s["devices"][0]["name"].as_str().unwrap().to_string();
    let s = Server::with_env(vec![("STANDIN_GPUS", GPUS)]).await;
    let st = s.get_json("/system_stats").await;
    assert_shape("system_stats", &read_json("http/system_stats.json"), &st);
    assert_eq!(name(&st), "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync");
    assert_eq!(
        (
            st["devices"][0]["type"].clone(),
            st["devices"][0]["index"].clone()
        ),
        (json!("cuda"), json!(0))
    );
    assert_eq!(
        st["devices"][0]["vram_total"],
        json!(81559u64 * 1024 * 1024)
    );
    assert_eq!(
        st["system"]["argv"],
        json!(["main.py", "--port", s.port.to_string()])
    );
    let s = Server::with_env(vec![
        ("STANDIN_GPUS", GPUS),
        ("CUDA_VISIBLE_DEVICES", "1,0"),
    ])
    .await;
    assert_eq!(
        name(&s.get_json("/system_stats").await),
        "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"
    );
    let s = Server::launch(Launch {
        args: vec!["--cuda-device", "1"],
        env: vec![("STANDIN_GPUS", GPUS)],
        ..Default::default()
    })
    .await;
    assert_eq!(
        name(&s.get_json("/system_stats").await),
        "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"
    );
    let s = Server::launch(Launch {
        args: vec!["--cpu"],
        env: vec![("STANDIN_GPUS", GPUS)],
        ..Default::default()
    })
    .await;
    assert_eq!(name(&s.get_json("/system_stats").await), "cpu");
    let s = Server::start().await;
    let st = s.get_json("/system_stats").await;
    assert_eq!(
        (name(&st), st["devices"][0]["index"].clone()),
        ("cpu".to_string(), json!(null))
    );
}

#[tokio::test]
async fn system_stats_is_cheap() {
    let s = Server::start().await;
    let t = Instant::now();
    for _ in 0..500 {
        assert_eq!(
            s.http
                .get(s.url("/system_stats"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
