//! Jobs as ComfyUI shows prompts: `/queue` items, `/history` entries, the
//! outputs a client fetches again through `/view`, and ComfyUI's error bodies.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use storycore_types::{GatewayPrompt, Job, JobOutput, JobState};

/// Outputs are shown in a subfolder of their own per job: two instances
/// both write `ComfyUI_00001_.png`, and a client asks `/view` for exactly
/// what its history said.
pub const SUBFOLDER_PREFIX: &str = "storycore-";

pub fn subfolder_of(job_id: &str, original: &str) -> String {
    if original.is_empty() {
        format!("{SUBFOLDER_PREFIX}{job_id}")
    } else {
        format!("{SUBFOLDER_PREFIX}{job_id}/{original}")
    }
}

/// The job id and the instance's own subfolder, from a subfolder shown by
/// [`subfolder_of`].
pub fn split_subfolder(shown: &str) -> Option<(&str, &str)> {
    let rest = shown.strip_prefix(SUBFOLDER_PREFIX)?;
    Some(match rest.split_once('/') {
        Some((job, original)) => (job, original),
        None => (rest, ""),
    })
}

pub fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// Output nodes of a workflow, as ComfyUI's `outputs_to_execute`: the nodes
/// no other node takes an input from.
pub fn outputs_to_execute(workflow: &Value) -> Vec<String> {
    let Some(nodes) = workflow.as_object() else {
        return Vec::new();
    };
    let mut linked = std::collections::HashSet::new();
    for node in nodes.values() {
        for input in node["inputs"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            if let Some(from) = input
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
            {
                linked.insert(from.to_string());
            }
        }
    }
    nodes
        .keys()
        .filter(|k| !linked.contains(*k))
        .cloned()
        .collect()
}

/// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
pub fn queue_item(job: &Job, g: &GatewayPrompt) -> Value {
    json!([
        g.number,
        g.prompt_id,
        job.workflow,
        g.extra_data,
        outputs_to_execute(&job.workflow)
    ])
}

/// A job's images by node, as ComfyUI's `outputs` (and `executed`'s `output`).
pub fn outputs_by_node(job: &Job) -> Map<String, Value> {
    let mut out = Map::new();
    for o in &job.outputs {
        let entry = out
            .entry(o.node_id.clone())
            .or_insert_with(|| json!({"images": []}));
        if let Some(images) = entry["images"].as_array_mut() {
            images.push(image(job, o));
        }
    }
    out
}

fn image(job: &Job, o: &JobOutput) -> Value {
    json!({
        "filename": o.filename,
        "subfolder": subfolder_of(&job.id, &o.subfolder),
        "type": o.kind,
    })
}

/// The message that ended the prompt, as `/ws` sends it and `/history` keeps it.
pub fn end_message(job: &Job, g: &GatewayPrompt) -> (&'static str, Value) {
    let at = millis(job.finished_at.unwrap_or(job.updated_at));
    let executed: Vec<&String> = job.progress.executed_nodes.iter().collect();
    let node = job.progress.node.clone();
    match job.state {
        JobState::Succeeded => (
            "execution_success",
            json!({"prompt_id": g.prompt_id, "timestamp": at}),
        ),
        JobState::Cancelled => (
            "execution_interrupted",
            json!({"prompt_id": g.prompt_id, "node_id": node, "node_type": Value::Null,
                   "executed": executed, "timestamp": at}),
        ),
        _ => {
            let e = job.error.as_ref();
            let failed = e.and_then(|e| e.node_errors.first());
            (
                "execution_error",
                json!({
                    "prompt_id": g.prompt_id,
                    "node_id": failed.map(|n| n.node_id.clone()).or(node),
                    "node_type": failed.map(|n| n.class_type.clone()),
                    "executed": executed,
                    // The node's own words when ComfyUI gave them, else why
                    // the app failed the job.
                    "exception_message": failed.map(|n| n.message.clone())
                        .or_else(|| e.map(|e| e.message.clone())).unwrap_or_default(),
                    "exception_type": e.and_then(|e| e.comfy_type.clone()).unwrap_or_else(|| "StoryCoreEngineError".into()),
                    "traceback": failed.map(|n| n.traceback.clone()).unwrap_or_default(),
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": at,
                }),
            )
        }
    }
}

/// A finished job as one `/history` entry.
pub fn history_entry(job: &Job, g: &GatewayPrompt) -> Value {
    let started = millis(job.started_at.unwrap_or(job.created_at));
    let (end, data) = end_message(job, g);
    let outputs = outputs_by_node(job);
    let meta: Map<String, Value> = outputs
        .keys()
        .map(|n| {
            (
                n.clone(),
                json!({"node_id": n, "display_node": n, "parent_node": null, "real_node_id": n}),
            )
        })
        .collect();
    json!({
        "prompt": queue_item(job, g),
        "outputs": outputs,
        "status": {
            "status_str": if job.state == JobState::Succeeded { "success" } else { "error" },
            "completed": job.state == JobState::Succeeded,
            "messages": [
                ["execution_start", {"prompt_id": g.prompt_id, "timestamp": started}],
                ["execution_cached", {"nodes": job.progress.cached_nodes, "prompt_id": g.prompt_id, "timestamp": started}],
                [end, data],
            ],
        },
        "meta": meta,
    })
}

/// ComfyUI's JSON answer to a refused prompt.
pub fn prompt_error(kind: &str, message: &str, details: &str, node_errors: Value) -> Response {
    refused(
        json!({"type": kind, "message": message, "details": details, "extra_info": {}}),
        node_errors,
    )
}

/// A prompt refused (400) with ComfyUI's `error` and `node_errors`.
pub fn refused(error: Value, node_errors: Value) -> Response {
    json_answer(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "node_errors": node_errors}),
    )
}

/// A JSON answer with the content type aiohttp gives it.
pub fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub fn json_ok(body: &Value) -> Response {
    json_answer(StatusCode::OK, body)
}

/// What aiohttp answers when a handler raises (invalid JSON, for one).
pub fn trouble() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
        .into_response()
}

/// An empty answer with a status, as ComfyUI gives for `/view`'s refusals.
pub fn empty(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        "",
    )
        .into_response()
}

/// A file's content type, by its extension.
pub fn content_type(filename: &str) -> &'static str {
    match filename
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("mp3") => "audio/mpeg",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_nodes_are_those_nothing_links_from() {
        let wf = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        });
        let mut o = outputs_to_execute(&wf);
        o.sort();
        assert_eq!(o, ["2", "3"]);
    }

    #[test]
    fn subfolders_name_the_job_and_come_apart_again() {
        assert_eq!(split_subfolder(&subfolder_of("j1", "")), Some(("j1", "")));
        assert_eq!(
            split_subfolder(&subfolder_of("j1", "a/b")),
            Some(("j1", "a/b"))
        );
        assert_eq!(split_subfolder("other"), None);
    }
}
