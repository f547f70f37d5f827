//! `storycore-engine serve`: no display, no window, no D-Bus. It launches
//! its local instance, answers as ComfyUI on its gateway (a prompt runs to
//! its image), and on SIGTERM stops cleanly, leaving nothing running.

use crate::support;

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{app_bin, free_port, standin, Group};

/// Pids of processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

async fn wait_until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_headless_answers_as_comfyui_and_stops_on_sigterm() {
    let config = tempfile::tempdir().unwrap();
    let comfyui = standin::comfyui_folder();
    let instance_port = free_port();
    let mut c = standin::local_config("local", comfyui.path(), instance_port);
    c.auto_start = Some(true);
    std::fs::write(
        config.path().join("comfyui_instances.json"),
        serde_json::to_vec(&json!({"version": "1.0", "instances": [c]})).unwrap(),
    )
    .unwrap();
    let gateway = format!("127.0.0.1:{}", free_port());
    let mut serve = Group::spawn(
        Command::new(app_bin())
            .args(["serve", "--gateway", &gateway])
            .env("STORYCORE_CONFIG_DIR", config.path())
            .env("STORYCORE_DATA_DIR", config.path().join("data"))
            .env("STORYCORE_HEALTH_INTERVAL_MS", "300")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .expect("the app binary");
    let base = format!("http://{gateway}");
    let http = reqwest::Client::new();

    // Its instance launched and healthy: the gateway passes /system_stats on.
    wait_until("the local instance behind the gateway", async || {
        let r = http.get(format!("{base}/system_stats")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let launched = processes_with(&format!("--port\0{instance_port}"));
    assert_eq!(launched.len(), 1, "one ComfyUI launched: {launched:?}");

    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 5}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "headless"}}
    });
    let r: Value = http
        .post(format!("{base}/prompt"))
        .body(json!({"prompt": wf}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["prompt_id"].as_str().unwrap().to_string();
    let entry = wait_until("the prompt's history", async || {
        let h: Value = http
            .get(format!("{base}/history/{id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        h.get(&id).cloned()
    })
    .await;
    assert_eq!(entry["status"]["status_str"], "success");

    // SIGTERM: a clean stop, and what it launched is gone.
    let t = Instant::now();
    unsafe { libc::kill(serve.pid(), libc::SIGTERM) };
    let status = wait_until("serve to exit", async || serve.0.try_wait().unwrap()).await;
    println!(
        "serve: exited {status} {:.2} s after SIGTERM",
        t.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{status}");
    for pid in launched {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "the instance it launched ({pid}) still runs"
        );
    }
    assert!(
        http.get(format!("{base}/prompt")).send().await.is_err(),
        "the gateway is closed"
    );
}

/// `serve` on a network address: refused without a token, with the
/// variable to set named; with `STORYCORE_GATEWAY_TOKEN` (sent as
/// `STORYCORE_GATEWAY_AUTH` says) it serves only requests that carry it,
/// addressed to this machine or a name of `STORYCORE_GATEWAY_HOSTS`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_on_the_network_needs_a_token() {
    let config = tempfile::tempdir().unwrap();
    let port = free_port();
    let serve = |token: Option<&str>| {
        let mut cmd = Command::new(app_bin());
        cmd.args(["serve", "--gateway", &format!("0.0.0.0:{port}")])
            .env("STORYCORE_CONFIG_DIR", config.path())
            .env("STORYCORE_DATA_DIR", config.path().join("data"))
            .env_remove("DISPLAY")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("STORYCORE_GATEWAY_TOKEN")
            .env("STORYCORE_GATEWAY_AUTH", "basic")
            .env("STORYCORE_GATEWAY_HOSTS", "fleet.studio.lan")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("STORYCORE_GATEWAY_TOKEN", t);
        }
        cmd
    };
    // It refuses before it starts anything.
    let out = serve(None).output().expect("the app binary");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("STORYCORE_GATEWAY_TOKEN"), "{said}");
    println!("serve: on 0.0.0.0 without a token: exit {}", out.status);

    let token = "fleet:0123456789abcdef";
    let mut running = Group::spawn(&mut serve(Some(token))).expect("the app binary");
    // HTTPS with a certificate it made and kept: its fingerprint is printed.
    let stderr = running.0.stderr.take().unwrap();
    let printed = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let found = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("fingerprint"));
        // Keep reading, so serve never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    })
    .await
    .unwrap()
    .expect("serve prints the certificate's fingerprint");
    let ca = config.path().join("gateway-tls/ca.pem");
    let cert = std::fs::read_to_string(config.path().join("gateway-tls/cert.pem")).unwrap();
    let leaf = cert.split("-----END CERTIFICATE-----").next().unwrap();
    let der = base64_der(leaf);
    let fingerprint = sha256_colons(&der);
    assert!(
        printed.contains(&fingerprint),
        "{printed} names {fingerprint}"
    );
    println!("serve: {}", printed.trim());
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let refused = wait_until("the gateway on the network", async || {
        http.get(format!("{base}/queue")).send().await.ok()
    })
    .await;
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"),
        "a browser asks its user"
    );
    let (user, password) = token.split_once(':').unwrap();
    let r = http
        .get(format!("{base}/queue"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A name the box is known by (STORYCORE_GATEWAY_HOSTS) is served; a
    // foreign one is refused even with the token (DNS rebinding).
    for (host, want) in [("fleet.studio.lan:8288", 200), ("evil.example:8288", 403)] {
        let r = http
            .get(format!("{base}/queue"))
            .header("host", host)
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{host}");
    }
    // Plain HTTP to it: refused, with what to use.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/queue"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    unsafe { libc::kill(running.pid(), libc::SIGTERM) };
    let status = wait_until("serve to exit", async || running.0.try_wait().unwrap()).await;
    assert!(status.success(), "{status}");
}

/// The DER bytes of one PEM certificate.
fn base64_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap()
}

/// SHA-256 as `AB:CD:...`, by `sha256sum` (a tool apart from the app's).
fn sha256_colons(der: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(der).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}
