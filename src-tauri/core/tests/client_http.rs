//! The HTTP client against a real stand-in process: every typed method, and
//! every error kind (refused, timed out, HTTP error with ComfyUI's body).

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use storycore_core::client::{ClientError, ComfyClient};
use storycore_types::ErrorCode;
use support::standin::{free_port, StandIn};

fn tiny_prompt(prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

#[tokio::test]
async fn a_prompt_runs_and_its_output_is_downloaded() {
    let server = StandIn::start();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();

    let stats = client.system_stats().await.unwrap();
    assert!(stats.system.ram_total > 0);
    assert!(stats
        .system
        .argv
        .iter()
        .any(|a| a == &server.port().to_string()));
    assert!(!stats.devices.is_empty());

    let info = client.object_info().await.unwrap();
    assert!(
        info.contains_key("SaveImage"),
        "object_info lacks SaveImage"
    );

    let prompt_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        client.history(&prompt_id).await.unwrap(),
        None,
        "unknown id must be None"
    );
    let accepted = client
        .submit_prompt(tiny_prompt("client_test"), &prompt_id, "test-client")
        .await
        .unwrap();
    assert_eq!(accepted.prompt_id, prompt_id);
    assert!(accepted.node_errors.is_empty());

    let entry = support::wait_for(Duration::from_secs(10), "the prompt in history", || {
        let client = client.clone();
        let id = prompt_id.clone();
        async move { client.history(&id).await.unwrap() }
    })
    .await;
    assert!(entry.succeeded(), "{entry:?}");
    assert_eq!(entry.prompt.client_id(), Some("test-client"));
    let (_, image) = entry.images().next().expect("an output image");
    let png = client
        .view(&image.filename, &image.subfolder, &image.kind)
        .await
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(client.queue().await.unwrap().active(), 0);
    assert_eq!(client.queue_remaining().await.unwrap(), 0);
    client.free(true, true).await.unwrap();
}

#[tokio::test]
async fn queue_control_deletes_clears_and_interrupts() {
    let server = StandIn::builder().env("STANDIN_NODE_MS", "2000").start();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let ids: Vec<String> = (0..3).map(|i| format!("job-{i}")).collect();
    for id in &ids {
        client
            .submit_prompt(tiny_prompt("q"), id, "c")
            .await
            .unwrap();
    }
    let q = client.queue().await.unwrap();
    assert_eq!(q.active(), 3, "{q:?}");
    assert_eq!(q.running.len(), 1);

    client.delete_from_queue(&ids[2..]).await.unwrap();
    let q = client.queue().await.unwrap();
    assert!(!q.contains(&ids[2]));
    assert_eq!(q.active(), 2);

    client.clear_queue().await.unwrap();
    let q = client.queue().await.unwrap();
    assert!(q.pending.is_empty());
    assert_eq!(q.running.len(), 1, "the running prompt survives a clear");

    client.interrupt(Some(&ids[0])).await.unwrap();
    let entry = support::wait_for(Duration::from_secs(10), "the interrupted prompt", || {
        let client = client.clone();
        let id = ids[0].clone();
        async move { client.history(&id).await.unwrap() }
    })
    .await;
    assert!(!entry.succeeded());
    assert_eq!(entry.status.unwrap().status_str, "error");
}

#[tokio::test]
async fn a_rejected_prompt_carries_comfyui_error_body() {
    let server = StandIn::start();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let bad = json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "batch_size": 1, "color": 0}},
                     "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}});
    let err = client.submit_prompt(bad, "bad-1", "c").await.unwrap_err();
    let ClientError::Http { status, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 400);
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    let body = err.comfy_body().expect("ComfyUI's JSON error body");
    assert_eq!(body.error.kind, "prompt_outputs_failed_validation");
    assert_eq!(body.node_errors["1"].errors[0].details, "height");
    let msg = err.to_string();
    assert!(
        msg.contains(&server.url()) && msg.contains("submitting prompt bad-1"),
        "{msg}"
    );

    let no_outputs = client
        .submit_prompt(json!({}), "bad-2", "c")
        .await
        .unwrap_err();
    assert_eq!(
        no_outputs.comfy_body().unwrap().error.kind,
        "prompt_no_outputs"
    );

    let missing = client.view("nope.png", "", "output").await.unwrap_err();
    assert!(
        matches!(missing, ClientError::Http { status: 404, .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused_and_named() {
    let port = free_port();
    let client = ComfyClient::from_endpoint(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = client.system_stats().await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert_eq!(err.code(), ErrorCode::Unreachable);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("GET /system_stats"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_hung_server_times_out() {
    let server = StandIn::builder()
        .env("STANDIN_HANG", "1")
        .no_wait()
        .start();
    // The hung server binds its port but never answers; wait for the bind.
    let addr = server.addr();
    support::wait_for(
        Duration::from_secs(20),
        "the port to be bound",
        move || async move { std::net::TcpStream::connect(addr).ok().map(|_| ()) },
    )
    .await;
    let client = ComfyClient::from_endpoint(&server.url())
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = client.system_stats().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TimedOut {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn system_stats_500_is_an_http_error() {
    let server = StandIn::builder()
        .env("STANDIN_SYSTEM_STATS_500", "1")
        .no_wait()
        .start();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let err = support::wait_for(Duration::from_secs(20), "an HTTP answer", || {
        let client = client.clone();
        async move {
            match client.system_stats().await {
                Err(e @ ClientError::Http { .. }) => Some(e),
                _ => None,
            }
        }
    })
    .await;
    assert!(
        matches!(err, ClientError::Http { status: 500, .. }),
        "{err:?}"
    );
    // The rest of the API still works.
    client.queue().await.unwrap();
}
