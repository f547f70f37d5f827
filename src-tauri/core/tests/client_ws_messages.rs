//! Every WebSocket frame recorded from a real ComfyUI parses into a known
//! variant (text) or the right binary frame type.

use crate::support;

use serde_json::Value;
use storycore_core::client::messages::{parse_binary, parse_text, ImageFormat};
use storycore_core::client::{BinaryFrame, WsMessage};

fn recorded_streams() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["workflows", "websocket", "queue_control"] {
        let root = support::fixture(dir);
        for entry in walk(&root) {
            if entry.extension().is_some_and(|e| e == "jsonl") {
                files.push(entry);
            }
        }
    }
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_recorded_text_frame_is_a_known_message() {
    let files = recorded_streams();
    assert!(files.len() >= 20, "recordings missing: {files:?}");
    let mut text_frames = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for file in &files {
        let body = std::fs::read_to_string(file).unwrap();
        for (n, line) in body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let rec: Value = serde_json::from_str(line).unwrap();
            if rec["frame"] != "text" {
                continue;
            }
            let text = serde_json::to_string(&rec["message"]).unwrap();
            let msg = parse_text(&text)
                .unwrap_or_else(|e| panic!("{}:{}: {e}\n{text}", file.display(), n + 1));
            assert!(
                !matches!(msg, WsMessage::Unknown { .. }),
                "{}:{}: parsed as Unknown: {text}",
                file.display(),
                n + 1
            );
            kinds.insert(rec["message"]["type"].as_str().unwrap().to_string());
            text_frames += 1;
        }
    }
    assert!(text_frames > 400, "only {text_frames} text frames read");
    for k in [
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "feature_flags",
    ] {
        assert!(kinds.contains(k), "no recorded '{k}' frame was checked");
    }
}

#[test]
fn recorded_fields_land_in_the_right_places() {
    let first = r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "abc"}}"#;
    match parse_text(first).unwrap() {
        WsMessage::Status(s) => {
            assert_eq!(s.queue_remaining(), 2);
            assert_eq!(s.sid.as_deref(), Some("abc"));
        }
        other => panic!("{other:?}"),
    }
    let end = r#"{"type": "executing", "data": {"node": null, "prompt_id": "p1"}}"#;
    let m = parse_text(end).unwrap();
    assert!(m.is_prompt_end());
    assert_eq!(m.prompt_id(), Some("p1"));
    // After a reconnection mid-run: neither prompt_id nor display_node.
    let resumed = r#"{"type": "executing", "data": {"node": "2"}}"#;
    let m = parse_text(resumed).unwrap();
    assert!(!m.is_prompt_end());
    assert_eq!(m.prompt_id(), None);
    let unknown = r#"{"type": "crystools.monitor", "data": {"cpu": 3}}"#;
    match parse_text(unknown).unwrap() {
        WsMessage::Unknown { kind, data } => {
            assert_eq!(kind, "crystools.monitor");
            assert_eq!(data["cpu"], 3);
        }
        other => panic!("{other:?}"),
    }
    let bad = r#"{"type": "execution_start", "data": {"no_prompt_id": 1}}"#;
    assert!(parse_text(bad).is_err());
    assert!(parse_text("not json").is_err());
}

#[test]
fn every_recorded_binary_frame_parses_to_its_type() {
    let mut checked = 0;
    for file in recorded_streams() {
        let body = std::fs::read_to_string(&file).unwrap();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let rec: Value = serde_json::from_str(line).unwrap();
            let Some(rel) = rec["file"].as_str() else {
                continue;
            };
            let bytes = std::fs::read(support::fixture(rel)).unwrap();
            let frame = parse_binary(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
            match (rec["event_type"].as_u64().unwrap(), frame) {
                (
                    1,
                    BinaryFrame::Preview {
                        image_format,
                        image,
                    },
                ) => {
                    let want = match rec["image_type"].as_u64() {
                        Some(1) => ImageFormat::Jpeg,
                        Some(2) => ImageFormat::Png,
                        other => panic!("{rel}: image_type {other:?}"),
                    };
                    assert_eq!(image_format, want, "{rel}");
                    assert_eq!(image.len() + 8, bytes.len(), "{rel}");
                }
                (3, BinaryFrame::ProgressText { node_id, text }) => {
                    assert_eq!(node_id, "2", "{rel}");
                    assert!(text.contains("width: 320"), "{rel}: {text}");
                }
                (4, BinaryFrame::PreviewWithMetadata { metadata, image }) => {
                    assert_eq!(
                        Some(metadata.image_type.as_str()),
                        rec["metadata"]["image_type"].as_str()
                    );
                    assert_eq!(
                        metadata.prompt_id.as_deref(),
                        rec["metadata"]["prompt_id"].as_str()
                    );
                    let offset = rec["payload_offset"].as_u64().unwrap() as usize;
                    assert_eq!(image, bytes[offset..].to_vec(), "{rel}");
                }
                (t, f) => panic!("{rel}: event type {t} parsed as {f:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} binary frames checked");
}

#[test]
fn truncated_binary_frames_are_errors() {
    assert!(parse_binary(&[0, 0]).is_err());
    assert!(parse_binary(&[0, 0, 0, 4, 0, 0, 0, 99, b'{']).is_err());
    assert!(parse_binary(&[0, 0, 0, 3, 0, 0, 0, 5, b'a']).is_err());
    match parse_binary(&[0, 0, 0, 9, 1, 2]).unwrap() {
        BinaryFrame::Other {
            event_type,
            payload,
        } => {
            assert_eq!(event_type, 9);
            assert_eq!(payload, vec![1, 2]);
        }
        f => panic!("{f:?}"),
    }
}
