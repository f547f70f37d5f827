//! What a real ComfyUI 0.3.64 answered (`tests/comfyui-api`), replayed
//! against the gateway with two stand-ins behind it: the same statuses,
//! content types, refusal bodies and shapes, so a client written against
//! ComfyUI cannot tell the fleet from one server.

use crate::gateway_support;
use crate::replay;
use crate::support;

use gateway_support::GatewayFleet;
use replay::{fixtures, read_jsonl, replay};
use storycore_core::gateway::Gateway;
use support::standin::StandIn;

async fn replay_index(gw: &Gateway, index: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.addr());
    let mut failures = Vec::new();
    let rows = read_jsonl(index);
    for rec in &rows {
        replay(&http, &base, gw.addr().port(), rec, &mut failures).await;
    }
    println!(
        "{index}: {} recorded requests, {} differ",
        rows.len(),
        failures.len()
    );
    failures
}

#[tokio::test]
async fn the_gateway_answers_the_recorded_requests_as_comfyui_did() {
    let g = GatewayFleet::of(vec![StandIn::start(), StandIn::start()]).await;
    let failures = replay_index(&g.gw, "http/index.jsonl").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_gateway_refuses_what_comfyui_refused_with_the_same_bodies() {
    let g = GatewayFleet::of(vec![StandIn::start(), StandIn::start()]).await;
    let (a, b) = (&g.standins[0], &g.standins[1]);
    // The input image is on one instance, the earlier output on the
    // other: /view finds each where it is.
    std::fs::copy(
        fixtures().join("errors/get_view_input_example.png"),
        b.folder().join("input/example.png"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("errors/get_view_output_default_type.png"),
        a.folder().join("output/fixture_empty_00001_.png"),
    )
    .unwrap();
    let failures = replay_index(&g.gw, "errors/index.jsonl").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
