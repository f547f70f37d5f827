//! Remote instances behind a proxy that wants a key, and behind HTTPS with a
//! self-signed certificate: the stand-in demands the key (401 without it, on
//! HTTP and on `/ws`) and serves TLS with a certificate made for the test.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use storycore_core::client::{ClientError, ComfyClient, WsEvent, WsOptions};
use storycore_core::health::{HealthHandle, HealthMonitor, HealthPolicy};
use storycore_core::secrets;
use storycore_types::{AppEvent, HealthStatus, InstanceConfig, KeyAuth, Scheme};
use support::standin::StandIn;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-0123456789abcdef";

fn remote(id: &str, s: &StandIn) -> InstanceConfig {
    let mut c = InstanceConfig::new(id, id, u32::from(s.port()));
    c.host = Some("127.0.0.1".into());
    c.timeout_ms = Some(5_000);
    c
}

/// The first thing the event stream reports: connected, or why not.
async fn first_ws_event(client: &ComfyClient) -> WsEvent {
    let cancel = CancellationToken::new();
    let mut rx = client.open_events(WsOptions::new("auth-test"), cancel.clone());
    let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the event stream said nothing within 10 s")
        .expect("the event stream ended");
    cancel.cancel();
    ev
}

#[tokio::test]
async fn a_key_is_sent_the_way_the_proxy_wants_it_on_http_and_ws() {
    for (mode, auth) in [
        ("bearer", KeyAuth::Bearer),
        ("basic", KeyAuth::Basic),
        ("header:X-API-Key", KeyAuth::Header("X-API-Key".into())),
    ] {
        let key = if auth == KeyAuth::Basic {
            "comfy:pa55word"
        } else {
            KEY
        };
        let s = StandIn::builder()
            .env("STANDIN_API_KEY", key)
            .env("STANDIN_API_KEY_AUTH", mode)
            .start();
        let mut config = remote(&format!("auth-{}", mode.replace(':', "-")), &s);
        config.api_key_auth = Some(mode.into());

        // No key known: a clear 401 on HTTP and on /ws.
        let bare = ComfyClient::for_instance(&config).unwrap();
        assert!(!bare.has_api_key());
        let e = bare.system_stats().await.unwrap_err();
        assert!(
            matches!(e, ClientError::Unauthorized { .. }),
            "{mode}: {e:?}"
        );
        assert!(e.to_string().starts_with("401: check the API key"), "{e}");
        match first_ws_event(&bare).await {
            WsEvent::Disconnected { reason, .. } => {
                assert!(
                    reason.contains("401: check the API key"),
                    "{mode}: {reason}"
                )
            }
            other => panic!("{mode}: /ws without a key gave {other:?}"),
        }

        // The key known under apiKeyRef: both work.
        let reference = format!("test/{}", config.id);
        secrets::remember(&reference, key);
        config.api_key_ref = Some(reference);
        let keyed = ComfyClient::for_instance(&config).unwrap();
        assert!(keyed.has_api_key());
        keyed
            .system_stats()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            first_ws_event(&keyed).await,
            WsEvent::Connected,
            "{mode}: /ws with the key"
        );
        // The key never shows in the client's debug form.
        assert!(!format!("{keyed:?}").contains(key), "{mode}: {keyed:?}");

        // A wrong key says the key was refused.
        secrets::remember(config.api_key_ref.as_deref().unwrap(), "wrong:key");
        let wrong = ComfyClient::for_instance(&config).unwrap();
        let e = wrong.system_stats().await.unwrap_err();
        assert!(e.to_string().contains("refused the key it was sent"), "{e}");
    }
}

#[test]
fn basic_needs_user_and_password_and_header_names_are_checked() {
    let c = ComfyClient::from_endpoint("http://127.0.0.1:9").unwrap();
    let e = c
        .clone()
        .with_api_key(&KeyAuth::Basic, "no-colon")
        .unwrap_err();
    assert!(e.to_string().contains("user:password"), "{e}");
    assert!(KeyAuth::parse("header:X API").is_err());
    assert!(KeyAuth::parse("digest")
        .unwrap_err()
        .contains("bearer, basic or header:"));
    let e = c.with_api_key(&KeyAuth::Bearer, "line\nbreak").unwrap_err();
    assert!(e.to_string().contains("cannot carry"), "{e}");
}

#[tokio::test]
async fn health_says_check_the_api_key_without_it_and_is_healthy_with_it() {
    let s = StandIn::builder().env("STANDIN_API_KEY", KEY).start();
    let mut config = remote("health-auth", &s);
    config.api_key_ref = Some("test/health-auth".into());

    let policy = HealthPolicy {
        starting: true,
        interval: Duration::from_millis(150),
        starting_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_millis(2_000),
        ..HealthPolicy::default()
    };
    let watch = |config: &InstanceConfig| {
        let (tx, rx) = broadcast::channel(256);
        let client = ComfyClient::for_instance(config).unwrap();
        let handle: HealthHandle =
            HealthMonitor::spawn(config.id.clone(), client, policy.clone(), tx);
        (handle, rx)
    };
    // Waits for `want`; answers the alerts' messages seen on the way.
    let settle = |mut rx: broadcast::Receiver<AppEvent>, want: HealthStatus| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut alerts = Vec::new();
        let mut reached = false;
        loop {
            let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(ev) => ev.unwrap(),
                Err(_) if reached => return alerts,
                Err(_) => panic!("no {want:?} within 20 s"),
            };
            match ev {
                AppEvent::HealthChanged { health, .. } if health.status == want => {
                    reached = true;
                    if want == HealthStatus::Healthy {
                        return alerts;
                    }
                }
                AppEvent::Alert(a) => {
                    alerts.push(a.message);
                    if reached {
                        return alerts;
                    }
                }
                _ => {}
            }
        }
    };

    // No key in memory: unhealthy, and the alert says what to do. The 401
    // is an answer: a start in progress is over (it does not wait out the
    // start timeout as if nothing answered).
    let (h, rx) = watch(&config);
    let alerts = settle(rx, HealthStatus::Unhealthy).await;
    assert!(
        h.start_phase_over(),
        "a 401 left the monitor in its start phase"
    );
    assert!(
        alerts.iter().any(|m| m.contains("401: check the API key")),
        "{alerts:?}"
    );
    h.stop();

    secrets::remember("test/health-auth", KEY);
    let (h, rx) = watch(&config);
    settle(rx, HealthStatus::Healthy).await;
    h.stop();
}

/// A self-signed certificate for 127.0.0.1 and localhost, by openssl.
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=storycore-test"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (run scripts/test.sh, which installs it)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_needs_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let s = StandIn::builder()
        .env("STANDIN_TLS_CERT", &cert)
        .env("STANDIN_TLS_KEY", &key)
        .env("STANDIN_API_KEY", KEY)
        .start();
    assert!(s.url().starts_with("https://"));
    let mut config = remote("tls", &s);
    config.scheme = Some(Scheme::Https);
    config.api_key_ref = Some("test/tls".into());
    secrets::remember("test/tls", KEY);

    // Without the CA file the certificate is not trusted.
    let e = ComfyClient::for_instance(&config)
        .unwrap()
        .system_stats()
        .await
        .unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    config.ca_file = Some(cert.clone());
    let client = ComfyClient::for_instance(&config).unwrap();
    let stats = client.system_stats().await.unwrap();
    assert!(!stats.system.comfyui_version.is_empty());
    assert_eq!(first_ws_event(&client).await, WsEvent::Connected, "wss://");

    // A CA file that is not a certificate says so.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    config.ca_file = Some(junk.to_string_lossy().into_owned());
    let e = ComfyClient::for_instance(&config).unwrap_err();
    assert!(e.to_string().contains("CA file"), "{e}");
}

#[tokio::test]
async fn the_editor_proxy_adds_the_key_for_the_app_window_only() {
    use storycore_core::client::editor_proxy::EditorProxy;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let s = StandIn::builder()
        .env("STANDIN_API_KEY", KEY)
        .env("STANDIN_API_KEY_AUTH", "header:X-API-Key")
        .start();
    let mut config = remote("proxied", &s);
    config.api_key_auth = Some("header:X-API-Key".into());
    config.api_key_ref = Some("test/proxied".into());
    secrets::remember("test/proxied", KEY);
    let proxy = EditorProxy::start(ComfyClient::for_instance(&config).unwrap())
        .await
        .unwrap();
    let base = proxy.url.split("/?").next().unwrap().to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Anyone else on the machine: 403, and the server is not reached.
    let r = http
        .get(format!("{base}/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The window's first request trades the token for a cookie.
    let r = http.get(&proxy.url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();

    // With it: pages, API calls and a POST with the page's own Origin.
    let r = http
        .get(format!("{base}/system_stats"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: serde_json::Value = r.json().await.unwrap();
    assert!(stats["system"]["comfyui_version"].is_string(), "{stats}");
    let r = http
        .post(format!("{base}/api/prompt"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .header("content-type", "application/json")
        .body(r#"{"prompt": {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}, "client_id": "proxy-test"}"#)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_ne!(status, 401, "{text}");
    assert_ne!(status, 403, "the Origin reached ComfyUI: {text}");

    // The WebSocket, keyed by the proxy.
    let mut req = format!(
        "{}/ws?clientId=proxy-test",
        base.replace("http://", "ws://")
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.to_text().unwrap().contains("\"status\""), "{first:?}");
    drop(proxy);
}
