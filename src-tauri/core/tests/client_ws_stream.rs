//! The `/ws` stream task against a real stand-in: a prompt's messages in order,
//! reconnection after the server dies and comes back, and cancellation.

use crate::support;

use serde_json::json;
use std::time::Duration;
use storycore_core::client::{ComfyClient, WsEvent, WsMessage, WsOptions};
use support::standin::StandIn;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_prompt_reports_its_run_in_order() {
    let server = StandIn::start();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let cancel = CancellationToken::new();
    let mut events = client.open_events(WsOptions::new("ws-test"), cancel.clone());

    support::recv_until(&mut events, WAIT, "Connected", |e| {
        matches!(e, WsEvent::Connected).then_some(())
    })
    .await;
    let sid = support::recv_until(&mut events, WAIT, "the first status", |e| match e {
        WsEvent::Message(WsMessage::Status(s)) => Some(s.sid.clone()),
        _ => None,
    })
    .await;
    assert_eq!(sid.as_deref(), Some("ws-test"));

    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ws"}}
    });
    client
        .submit_prompt(prompt, "ws-job-1", "ws-test")
        .await
        .unwrap();

    let mut seen = Vec::new();
    support::recv_until(&mut events, WAIT, "the end of ws-job-1", |e| {
        let WsEvent::Message(m) = e else { return None };
        if m.prompt_id() != Some("ws-job-1") {
            return None;
        }
        let name = match m {
            WsMessage::ExecutionStart(_) => "start",
            WsMessage::Executed(_) => "executed",
            WsMessage::ExecutionSuccess(_) => "success",
            WsMessage::Executing(x) if x.node.is_none() => "end",
            _ => return None,
        };
        seen.push(name);
        m.is_prompt_end().then_some(())
    })
    .await;
    assert_eq!(seen, ["start", "executed", "success", "end"]);
    cancel.cancel();
}

#[tokio::test]
async fn the_stream_reconnects_when_the_server_comes_back() {
    let mut server = StandIn::start();
    let port = server.port();
    let client = ComfyClient::from_endpoint(&server.url()).unwrap();
    let cancel = CancellationToken::new();
    let mut opts = WsOptions::new("reconnect-test");
    opts.max_backoff = Duration::from_millis(500);
    let mut events = client.open_events(opts, cancel.clone());
    support::recv_until(&mut events, WAIT, "Connected", |e| {
        matches!(e, WsEvent::Connected).then_some(())
    })
    .await;

    server.kill();
    let reason = support::recv_until(&mut events, WAIT, "Disconnected", |e| match e {
        WsEvent::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(!reason.is_empty());

    let _again = StandIn::builder().port(port).start();
    // Exactly one Disconnected per outage, however many attempts failed.
    let mut extra_disconnects = 0;
    support::recv_until(&mut events, WAIT, "Connected again", |e| match e {
        WsEvent::Connected => Some(()),
        WsEvent::Disconnected { .. } => {
            extra_disconnects += 1;
            None
        }
        _ => None,
    })
    .await;
    assert_eq!(extra_disconnects, 0);
    let sid = support::recv_until(
        &mut events,
        WAIT,
        "a status from the new server",
        |e| match e {
            WsEvent::Message(WsMessage::Status(s)) => Some(s.sid.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(sid.as_deref(), Some("reconnect-test"));

    cancel.cancel();
    let closed = tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await;
    assert!(closed.is_ok(), "the stream task did not stop on cancel");
}
