//! Replaying what a real ComfyUI 0.3.64 answered (`tests/comfyui-api`)
//! against a server that claims to answer the same: the stand-in, and the
//! app's gateway in front of stand-ins (which includes this file).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The recorded ComfyUI answers (`COMFYUI_API_FIXTURES` overrides).
pub fn fixtures() -> PathBuf {
    std::env::var_os("COMFYUI_API_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The test's crate is somewhere under the repository's root.
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("tests/comfyui-api"))
                .find(|f| f.join("FACTS.md").is_file())
                .expect("tests/comfyui-api above the crate")
        })
}

pub fn read_json(rel: &str) -> Value {
    let p = fixtures().join(rel);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

pub fn read_jsonl(rel: &str) -> Vec<Value> {
    let p = fixtures().join(rel);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Recursively compares JSON shapes: object key sets must match; arrays are
/// compared element-wise over the common length; scalars only by kind
/// (object/array/other). Returns the list of differences.
pub fn shape_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = vec![];
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            for k in eo.keys() {
                match ao.get(k) {
                    Some(av) => diff_at(&format!("{path}.{k}"), &eo[k], av, out),
                    None => out.push(format!("{path}: missing key {k:?}")),
                }
            }
            for k in ao.keys().filter(|k| !eo.contains_key(*k)) {
                out.push(format!("{path}: unexpected key {k:?}"));
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            for (i, (x, y)) in ea.iter().zip(aa).enumerate() {
                diff_at(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Object(_), _)
        | (_, Value::Object(_))
        | (Value::Array(_), _)
        | (_, Value::Array(_)) => {
            out.push(format!("{path}: expected {e}, got {a}"));
        }
        _ => {}
    }
}

/// Recordings that are not replayed, with the reason.
pub const SKIP: &[(&str, &str)] = &[
    (
        "internal_folder_paths",
        "lists the real machine's model folders; the stand-in reports only output/input/temp",
    ),
    (
        "get_view_preview_webp",
        "no WebP encoder: preview= returns the PNG",
    ),
    (
        "04_large_blur_scale_save",
        "same sequence as 03 with more nodes; 10.9 s of real work, covered by 03/06",
    ),
    (
        "08_save_image_websocket_binary",
        "SaveImageWebsocket binary preview frames are not emulated",
    ),
    (
        "08b_save_image_websocket_with_feature_flags",
        "SaveImageWebsocket binary preview frames are not emulated",
    ),
    (
        "12_progress_custom_node_legacy_preview",
        "needs the test-only FixtureSlowProgress custom node",
    ),
    (
        "13_progress_custom_node_preview_metadata",
        "needs the test-only FixtureSlowProgress custom node",
    ),
    (
        "13b_progress_no_preview",
        "needs the test-only FixtureSlowProgress custom node",
    ),
    (
        "14_interrupt_during_progress_node",
        "needs the test-only FixtureSlowProgress custom node",
    ),
    (
        "15_get_image_size_progress_text_binary",
        "binary progress-text frames (type 3) are not emulated",
    ),
];

pub fn skipped(name: &str) -> bool {
    SKIP.iter().any(|(n, _)| *n == name)
}

/// Sends one recorded request (index.jsonl row) to the server at `base`
/// (listening on `port`, which stands for the recording's 8188 in its
/// headers) and checks the answer: status, content type, Allow, and the
/// body (exactly for a refusal, by shape otherwise).
pub async fn replay(
    http: &reqwest::Client,
    base: &str,
    port: u16,
    rec: &Value,
    failures: &mut Vec<String>,
) {
    let name = rec["name"].as_str().unwrap();
    if skipped(name) {
        return;
    }
    let method = reqwest::Method::from_bytes(rec["method"].as_str().unwrap().as_bytes()).unwrap();
    let mut req = http.request(method, format!("{base}{}", rec["path"].as_str().unwrap()));
    if let Some(h) = rec["request_headers"].as_object() {
        for (k, v) in h {
            req = req.header(k, v.as_str().unwrap().replace("8188", &port.to_string()));
        }
    }
    match &rec["request_body"] {
        Value::Null => {}
        Value::Object(o) if o.len() == 1 && o.contains_key("raw") => {
            req = req.body(o["raw"].as_str().unwrap().to_string())
        }
        body => req = req.body(body.to_string()),
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = r.bytes().await.unwrap();
    let mut fail = |m: String| failures.push(format!("{name}: {m}"));
    if status != rec["status"].as_u64().unwrap() as u16 {
        fail(format!("status {status}, recorded {}", rec["status"]));
        return;
    }
    let headers = rec["headers"].as_object().cloned().unwrap_or_default();
    if let Some(ct) = headers.get("Content-Type").and_then(Value::as_str) {
        if ctype.as_deref() != Some(ct) {
            fail(format!("content-type {ctype:?}, recorded {ct:?}"));
        }
    }
    if let Some(al) = headers.get("Allow").and_then(Value::as_str) {
        if status == 405 && allow.as_deref() != Some(al) {
            fail(format!("allow {allow:?}, recorded {al:?}"));
        }
    }
    match rec["body_file"].as_str() {
        Some(f) if f.ends_with(".json") => {
            let expected = read_json(f);
            let actual: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => return fail(format!("body is not JSON: {e}")),
            };
            if status == 400 {
                if expected != actual {
                    fail(format!(
                        "body differs:\n  recorded {expected}\n  actual   {actual}"
                    ));
                }
            } else {
                let d = shape_diff(&expected, &actual);
                if !d.is_empty() {
                    fail(format!("shape differs: {}", d.join("; ")));
                }
            }
        }
        Some(f) if f.ends_with(".txt") => {
            let expected = std::fs::read(fixtures().join(f)).unwrap();
            if expected != bytes.as_ref() {
                fail(format!(
                    "body {:?}, recorded {:?}",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(&expected)
                ));
            }
        }
        Some(_) => {}
        None => {
            if !bytes.is_empty() || rec["body_text"] != json!("") {
                fail(format!(
                    "body {:?}, recorded empty",
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
}
