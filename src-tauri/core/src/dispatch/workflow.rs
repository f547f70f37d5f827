//! What the app checks in a workflow before accepting it, and how ComfyUI's own
//! refusals become a job's error. The app cannot know every node class (custom
//! nodes differ per instance), so it checks only the shape; unknown nodes and
//! missing inputs are ComfyUI's to say, and its reasons are kept word for word.

use super::error::DispatchError;
use crate::client::{ClientError, ComfyErrorBody, HistoryEntry};
use serde_json::{Map, Value};
use storycore_types::{JobError, JobNodeError};

/// The most a workflow may weigh, as JSON text. API-format workflows are
/// kilobytes; more is almost surely the wrong file.
pub const MAX_WORKFLOW_BYTES: usize = 16 << 20;

/// The deepest a workflow's JSON may nest. A workflow is 4 or 5 levels deep
/// (nodes, inputs, links); the job's record on disk adds levels, and the JSON
/// reader stops at 128: a limit far below that keeps every accepted workflow
/// readable after a restart.
pub const MAX_WORKFLOW_DEPTH: usize = 64;

/// Parses text as an API-format workflow (the JSON "Save (API)" writes).
pub fn parse_workflow(text: &str) -> Result<Value, DispatchError> {
    if text.len() > MAX_WORKFLOW_BYTES {
        return Err(DispatchError::bad(format!(
            "it is {} long; a workflow may be at most {} (an API-format workflow is a small JSON file)",
            crate::store::human_size(text.len() as u64),
            crate::store::human_size(MAX_WORKFLOW_BYTES as u64)
        )));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let why = if e.to_string().contains("recursion limit") {
            format!("it nests deeper than a workflow can ({MAX_WORKFLOW_DEPTH} levels at most)")
        } else {
            format!("it is not JSON ({e}): export it from ComfyUI with \"Save (API)\"")
        };
        DispatchError::bad(why)
    })?;
    check_workflow(&v)?;
    Ok(v)
}

/// Whether `v` nests deeper than `limit` (a scalar: 0 levels).
fn depth_over(v: &Value, limit: usize) -> bool {
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if d + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    false
}

/// Checks the shape: `{node id: {"class_type": "...", "inputs": {...}}, ...}`.
/// The UI's own format (with `nodes` and `links`) is refused with a hint.
pub fn check_workflow(v: &Value) -> Result<(), DispatchError> {
    let Some(nodes) = v.as_object() else {
        return Err(DispatchError::bad(
            "it is not an API-format workflow: expected a JSON object of nodes",
        ));
    };
    if nodes.contains_key("nodes") && nodes.contains_key("links") {
        return Err(DispatchError::bad(
            "this is ComfyUI's editor format, not the API format: in ComfyUI use \
             \"Export (API)\" / \"Save (API)\" and import that file",
        ));
    }
    if nodes.is_empty() {
        return Err(DispatchError::bad("the workflow has no nodes"));
    }
    if depth_over(v, MAX_WORKFLOW_DEPTH) {
        return Err(DispatchError::bad(format!(
            "it nests deeper than {MAX_WORKFLOW_DEPTH} levels; an API-format workflow is 4 or 5 levels deep"
        )));
    }
    let mut problems = Vec::new();
    for (id, node) in nodes {
        if problems.len() >= 5 {
            problems.push(format!("and more ({} nodes in all)", nodes.len()));
            break;
        }
        let id = crate::model::quote(id);
        match node.as_object() {
            None => problems.push(format!("node {id} is not an object")),
            Some(n) => {
                match n.get("class_type") {
                    Some(Value::String(c)) if !c.trim().is_empty() => {}
                    _ => problems.push(format!("node {id} has no class_type")),
                }
                if !n.get("inputs").is_some_and(Value::is_object) {
                    problems.push(format!("node {id} has no inputs object"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DispatchError::bad(format!(
            "it is not an API-format workflow: {}",
            problems.join("; ")
        )))
    }
}

/// The work a workflow is expected to take, in units the instances' measured
/// speeds are expressed in. A sampler's `steps` dominate a real run, so a node
/// counts its steps (or 1): a crude figure, but one the EWMA of each instance
/// turns into seconds consistently across instances.
pub fn estimate_work(workflow: &Value) -> f64 {
    let Some(nodes) = workflow.as_object() else {
        return 1.0;
    };
    nodes
        .values()
        .map(|n| {
            n.pointer("/inputs/steps")
                .and_then(Value::as_f64)
                .filter(|s| *s >= 1.0)
                .unwrap_or(1.0)
        })
        .sum::<f64>()
        .max(1.0)
}

pub fn node_count(workflow: &Value) -> u32 {
    workflow.as_object().map_or(0, Map::len) as u32
}

/// A refusal of `POST /prompt` (HTTP 400) as the job's error, with ComfyUI's
/// reasons node by node.
pub fn rejection_error(body: &ComfyErrorBody, instance: &str) -> JobError {
    JobError {
        message: format!("instance \"{instance}\" refused the workflow: {body}"),
        comfy_type: Some(body.error.kind.clone()),
        node_errors: body
            .node_errors
            .iter()
            .flat_map(|(node, e)| {
                e.errors.iter().map(move |d| JobNodeError {
                    node_id: node.clone(),
                    class_type: e.class_type.clone(),
                    message: d.message.clone(),
                    details: d.details.clone(),
                    traceback: Vec::new(),
                })
            })
            .collect(),
    }
}

/// True when the instance said "this workflow is wrong" (as opposed to "I am
/// unwell"): retrying elsewhere would be refused the same way.
pub fn is_rejection(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 400, .. })
}

/// A finished-with-error history entry as the job's error, from the
/// `execution_error` message ComfyUI keeps in the entry's status.
pub fn execution_error(entry: &HistoryEntry, instance: &str) -> JobError {
    let messages = entry
        .status
        .as_ref()
        .map(|s| s.messages.as_slice())
        .unwrap_or_default();
    for (kind, data) in messages {
        let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default();
        if kind == "execution_error" {
            return JobError {
                message: format!(
                    "node {} ({}) failed on instance \"{instance}\": {}: {}",
                    text("node_id"),
                    text("node_type"),
                    text("exception_type"),
                    text("exception_message").trim()
                ),
                comfy_type: Some(text("exception_type").to_string()),
                node_errors: vec![JobNodeError {
                    node_id: text("node_id").into(),
                    class_type: text("node_type").into(),
                    message: text("exception_message").trim().into(),
                    details: String::new(),
                    traceback: data
                        .get("traceback")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                }],
            };
        }
        if kind == "execution_interrupted" {
            return JobError::new(format!(
                "the run was interrupted on instance \"{instance}\" at node {} ({})",
                text("node_id"),
                text("node_type")
            ));
        }
    }
    JobError::new(format!(
        "instance \"{instance}\" reports the run as not successful, without a reason"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_that_are_not_api_workflows_are_refused_with_why() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "expected a JSON object"),
            ("{}", "no nodes"),
            (r#"{"nodes": [], "links": []}"#, "editor format"),
            (r#"{"1": {"inputs": {}}}"#, "node '1' has no class_type"),
            (r#"{"1": {"class_type": "X"}}"#, "node '1' has no inputs"),
            (r#"{"1": 5}"#, "node '1' is not an object"),
        ];
        for (text, want) in cases {
            let e = parse_workflow(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        parse_workflow(r#"{"1": {"class_type": "EmptyImage", "inputs": {}}}"#).unwrap();
    }

    #[test]
    fn work_counts_sampler_steps() {
        let w = json!({
            "1": {"class_type": "KSampler", "inputs": {"steps": 20}},
            "2": {"class_type": "SaveImage", "inputs": {}}
        });
        assert_eq!(estimate_work(&w), 21.0);
        assert_eq!(node_count(&w), 2);
    }
}
