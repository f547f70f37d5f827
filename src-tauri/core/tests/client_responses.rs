//! The typed answers read what a real ComfyUI 0.3.64 sent (recorded bodies).

use crate::support;

use std::collections::HashMap;
use storycore_core::client::{
    ErrorBody, HistoryEntry, PromptAccepted, QueueSnapshot, SystemStatsResponse,
};
use storycore_core::health::resource_sample;

#[test]
fn system_stats_recording_parses() {
    let s: SystemStatsResponse =
        serde_json::from_str(&support::read_fixture("http/system_stats.json")).unwrap();
    assert_eq!(s.system.comfyui_version, "0.3.64");
    assert_eq!(s.system.ram_total, 25_276_502_016);
    assert_eq!(s.system.argv[0], "main.py");
    assert_eq!(s.devices.len(), 1);
    assert!(s.devices[0].is_cpu());
    assert_eq!(s.devices[0].index, None);

    // The CPU "device" repeats RAM: it must not be reported as VRAM.
    let sample = resource_sample(&s, 3);
    assert_eq!(sample.stats.active_workflows, 3);
    assert_eq!(sample.stats.vram_total_bytes, None);
    let ram = 100.0 * (25_276_502_016.0 - 23_931_109_376.0) / 25_276_502_016.0;
    assert!((sample.stats.memory_usage - ram).abs() < 1e-9);
    assert_eq!(sample.usage.len(), 1);
    assert_eq!(sample.usage[0].0, "RAM");
}

#[test]
fn gpu_devices_count_as_vram() {
    let mut s: SystemStatsResponse =
        serde_json::from_str(&support::read_fixture("http/system_stats.json")).unwrap();
    let mut gpu = s.devices[0].clone();
    gpu.kind = "cuda".into();
    gpu.name = "cuda:0 Test GPU".into();
    gpu.index = Some(0);
    gpu.vram_total = 1000;
    gpu.vram_free = 50;
    s.devices.push(gpu);
    let sample = resource_sample(&s, 0);
    assert_eq!(sample.stats.vram_total_bytes, Some(1000));
    assert_eq!(sample.stats.vram_used_bytes, Some(950));
    let (name, pct) = &sample.usage[1];
    assert_eq!(name, "GPU memory (cuda:0 Test GPU)");
    assert!((pct - 95.0).abs() < 1e-9);
}

#[test]
fn queue_items_are_arrays_parsed_into_structs() {
    let q: QueueSnapshot = serde_json::from_str(&support::read_fixture(
        "queue_control/B_queue_while_running.json",
    ))
    .unwrap();
    assert_eq!(q.running.len(), 1);
    let item = &q.running[0];
    assert_eq!(item.number, 38.0);
    assert_eq!(item.prompt_id, "ebb41653-b864-4ecd-baa3-b40a7e0c65a5");
    assert_eq!(item.prompt["1"]["class_type"], "EmptyImage");
    assert!(!item.outputs_to_execute.is_empty());
    assert!(q.contains("ebb41653-b864-4ecd-baa3-b40a7e0c65a5"));
    assert_eq!(q.active(), q.running.len() + q.pending.len());

    let empty: QueueSnapshot =
        serde_json::from_str(r#"{"queue_running": [], "queue_pending": []}"#).unwrap();
    assert_eq!(empty.active(), 0);
    let broken = r#"{"queue_running": [["x", "id"]], "queue_pending": []}"#;
    assert!(serde_json::from_str::<QueueSnapshot>(broken).is_err());
}

#[test]
fn history_recording_parses() {
    let all: HashMap<String, HistoryEntry> =
        serde_json::from_str(&support::read_fixture("queue_control/A_history_after.json")).unwrap();
    let e = &all["b91be30e-72fc-4058-968b-a77bc4728803"];
    assert!(e.succeeded());
    assert_eq!(
        e.prompt.client_id(),
        Some("9b13da32-c1f8-46ee-8b8d-2c56b2579f71")
    );
    let images: Vec<_> = e.images().collect();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0, "2");
    assert_eq!(images[0].1.filename, "fixture_empty_00001_.png");
    assert_eq!(images[0].1.kind, "output");
    assert_eq!(e.status.as_ref().unwrap().messages[0].0, "execution_start");
}

#[test]
fn accepted_prompt_parses() {
    let a: PromptAccepted =
        serde_json::from_str(&support::read_fixture("queue_control/A_post_0.json")).unwrap();
    assert_eq!(a.prompt_id, "d162b5d0-abbb-48a8-b845-98e2814f6f56");
    assert_eq!(a.number, 33.0);
    assert!(a.node_errors.is_empty());
}

#[test]
fn every_recorded_prompt_error_is_read_as_comfyui_error_or_text() {
    let dir = support::fixture("errors");
    let mut comfy = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).unwrap();
        let body = ErrorBody::parse(&text);
        if name.ends_with(".body.txt") {
            assert!(matches!(body, ErrorBody::Text(_)), "{name}");
            continue;
        }
        // Successful answers recorded beside the errors (explicit prompt id...).
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v.get("error").is_none() {
            continue;
        }
        let ErrorBody::Comfy(b) = body else {
            panic!("{name}: not read as a ComfyUI error")
        };
        assert!(!b.error.kind.is_empty(), "{name}");
        assert!(!body_text(&b).is_empty());
        comfy += 1;
    }
    assert!(comfy >= 10, "only {comfy} error bodies");

    let b = match ErrorBody::parse(&support::read_fixture(
        "errors/post_prompt_b_missing_required_input.json",
    )) {
        ErrorBody::Comfy(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(b.error.kind, "prompt_outputs_failed_validation");
    assert_eq!(b.node_errors["1"].class_type, "EmptyImage");
    assert_eq!(b.node_errors["1"].errors[0].kind, "required_input_missing");
    let shown = b.to_string();
    assert!(
        shown.contains("node 1 (EmptyImage): Required input is missing [height]"),
        "{shown}"
    );
}

fn body_text(b: &storycore_core::client::ComfyErrorBody) -> String {
    b.to_string()
}
