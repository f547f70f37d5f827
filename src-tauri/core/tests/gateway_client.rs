//! A real third-party ComfyUI client, comfy-api-simplified from PyPI
//! (installed by `scripts/setup.sh` in `target/py-comfy-client`), runs a
//! workflow through the gateway unchanged, to its image: once on a quiet
//! fleet, and once while the instance running it is killed.

use crate::dispatch_fleet;
use crate::gateway_support;
use crate::support;

use dispatch_fleet::{attached, fast_options, Fleet};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use storycore_types::JobState;
use support::standin::StandIn;
use support::wait_for;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap()
        .to_path_buf()
}

/// Starts the client's run; its one JSON line comes back when it ends.
fn run_client(base: &str, out: &Path, prefix: &str) -> std::process::Child {
    run_client_with(base, out, prefix, &[])
}

/// [`run_client`] with environment variables (trust, pin, credentials).
fn run_client_with(
    base: &str,
    out: &Path,
    prefix: &str,
    env: &[(&str, String)],
) -> std::process::Child {
    let root = workspace();
    let python = root.join("target/py-comfy-client/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs comfy-api-simplified)",
        python.display()
    );
    Command::new(python)
        .arg(root.join("tests/clients/comfy_api_simplified_run.py"))
        .args([base, &out.display().to_string(), prefix])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pypi_comfyui_client_gets_its_image_through_the_gateway() {
    let g = gateway_support::GatewayFleet::of(vec![StandIn::start(), StandIn::start()]).await;
    let out = tempfile::tempdir().unwrap();
    let client = run_client(&g.base, out.path(), "pypi");
    let report = tokio::task::spawn_blocking(move || finish(client))
        .await
        .unwrap();
    println!("gateway_client: comfy-api-simplified got {report}");
    assert_eq!(report["first_bytes"], "PNG");
    let images = report["images"].as_object().unwrap();
    assert_eq!(images.len(), 1, "{report}");
    assert!(images.keys().next().unwrap().starts_with("pypi_"));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_gets_its_image_when_the_instance_running_it_is_killed() {
    let mut doomed = StandIn::builder().env("STANDIN_NODE_MS", "1500").start();
    let other = StandIn::builder().env("STANDIN_NODE_MS", "300").start();
    let fleet = Fleet::open(vec![attached("doomed", doomed.port(), 1)], fast_options()).await;
    fleet.start("doomed").await;
    let gw = gateway_support::start(&fleet).await;
    let out = tempfile::tempdir().unwrap();
    let client = run_client(&format!("http://{}", gw.addr()), out.path(), "killed");
    // Its prompt runs on the only instance; another joins; the first dies.
    wait_for(
        Duration::from_secs(30),
        "the client's prompt running",
        || async {
            fleet
                .queue
                .list()
                .into_iter()
                .find(|j| j.gateway.is_some() && j.state == JobState::Running)
        },
    )
    .await;
    fleet
        .manager
        .create(attached("other", other.port(), 1))
        .await
        .unwrap();
    fleet.start("other").await;
    doomed.kill();
    let report = tokio::task::spawn_blocking(move || finish(client))
        .await
        .unwrap();
    println!("gateway_client: after the kill, comfy-api-simplified got {report}");
    assert_eq!(report["first_bytes"], "PNG");
    let job = fleet
        .queue
        .list()
        .into_iter()
        .find(|j| j.gateway.is_some())
        .unwrap();
    assert_eq!(job.instance_id.as_deref(), Some("other"));
    assert_eq!(job.instances_killed, ["doomed"]);
    gw.stop().await;
    fleet.queue.shutdown().await;
}

/// Over HTTPS, on a network address behind a token: the client trusts the
/// certificate the gateway made (its authority file), checks it against the
/// fingerprint first, and gets its image over `https` and `wss`. A
/// plain-HTTP request to the port is refused cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_runs_its_prompt_over_https_pinned_to_the_fingerprint() {
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let tls = storycore_core::gateway::TlsIdentity::generated(
        &fleet.dir.path().join(storycore_core::gateway::TLS_FOLDER),
        &[],
    )
    .unwrap();
    let (user, password) = ("team", "0123456789abcdef-secret");
    let access = storycore_core::gateway::Access::token(
        &format!("{user}:{password}"),
        storycore_types::KeyAuth::Basic,
    )
    .unwrap()
    .with_tls(tls.clone());
    let gw = storycore_core::gateway::Gateway::start_with(
        fleet.queue.clone(),
        fleet.manager.clone(),
        "0.0.0.0:0".parse().unwrap(),
        access,
    )
    .await
    .unwrap();
    assert!(gw.https());
    let port = gw.addr().port();
    let trust = tls.trust_file().display().to_string();
    let out = tempfile::tempdir().unwrap();
    let client = run_client_with(
        &format!("https://localhost:{port}"),
        out.path(),
        "tls",
        &[
            ("REQUESTS_CA_BUNDLE", trust.clone()),
            ("SSL_CERT_FILE", trust.clone()),
            ("PIN_SHA256", tls.fingerprint().to_string()),
            ("COMFY_USER", user.to_string()),
            ("COMFY_PASSWORD", password.to_string()),
        ],
    );
    let report = tokio::task::spawn_blocking(move || finish(client))
        .await
        .unwrap();
    println!(
        "gateway_client: over HTTPS, pinned to {}, comfy-api-simplified got {report}",
        tls.fingerprint()
    );
    assert_eq!(report["first_bytes"], "PNG");

    // A wrong pin stops the client before it sends anything.
    let wrong = run_client_with(
        &format!("https://localhost:{port}"),
        out.path(),
        "tls",
        &[
            ("REQUESTS_CA_BUNDLE", trust.clone()),
            ("SSL_CERT_FILE", trust),
            ("PIN_SHA256", "00:11".to_string()),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not the pinned"));

    // Plain HTTP to the HTTPS port: a plain 400 that says to use https.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/queue"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let said = plain.text().await.unwrap();
    assert!(said.contains("https://"), "{said}");
    println!("gateway_client: plain HTTP to the HTTPS port: {said:?}");
    gw.stop().await;
    fleet.queue.shutdown().await;
}
