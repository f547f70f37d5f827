//! ComfyUI's execution cache, as placement sees it. ComfyUI keys each
//! node's outputs by the node's class and inputs, a linked input by the
//! key of the node it comes from, and keeps those of the last prompt it
//! ran: a prompt run again there (or one sharing its first nodes) is
//! answered from the cache, in no time for the nodes it shares. The queue
//! remembers the keys of the last prompt sent to each instance, and a job
//! costs there only the work of the nodes not among them.

use serde_json::Value;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Each node's cache key and its work (as `workflow::estimate_work` counts
/// it: its `steps`, else 1).
pub fn node_keys(workflow: &Value) -> Vec<(u64, f64)> {
    let Some(nodes) = workflow.as_object() else {
        return Vec::new();
    };
    let mut keys: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    for id in nodes.keys() {
        let key = key_of(nodes, id, &mut keys, 0);
        let work = nodes[id]
            .pointer("/inputs/steps")
            .and_then(Value::as_f64)
            .filter(|s| *s >= 1.0)
            .unwrap_or(1.0);
        out.push((key, work));
    }
    out
}

/// A node's key: its class, and its inputs by name, a link as the key of
/// the node it comes from and the output it takes.
fn key_of<'a>(
    nodes: &'a serde_json::Map<String, Value>,
    id: &'a str,
    keys: &mut HashMap<&'a str, u64>,
    depth: usize,
) -> u64 {
    if let Some(k) = keys.get(id) {
        return *k;
    }
    let mut h = DefaultHasher::new();
    let node = &nodes[id];
    node.get("class_type").map(Value::to_string).hash(&mut h);
    if let Some(inputs) = node.get("inputs").and_then(Value::as_object) {
        let mut names: Vec<&String> = inputs.keys().collect();
        names.sort();
        for name in names {
            name.hash(&mut h);
            let v = &inputs[name];
            match v.as_array().map(Vec::as_slice) {
                // A link, to a node of this workflow (a workflow is a DAG;
                // a cycle, which ComfyUI refuses, is cut at a depth).
                Some([Value::String(src), out]) if nodes.contains_key(src) && depth < 256 => {
                    key_of(nodes, src, keys, depth + 1).hash(&mut h);
                    out.to_string().hash(&mut h);
                }
                _ => v.to_string().hash(&mut h),
            }
        }
    }
    let k = h.finish();
    keys.insert(id, k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(seed: u64, prefix: &str) -> Value {
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": seed}},
            "3": {"class_type": "KSampler", "inputs": {"steps": 20, "image": ["1", 0]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}}
        })
    }

    #[test]
    fn the_same_nodes_have_the_same_keys_and_a_changed_input_changes_those_after_it() {
        let a = node_keys(&wf(1, "x"));
        assert_eq!(a, node_keys(&wf(1, "x")), "stable");
        assert_eq!(
            a.iter().map(|(_, w)| w).sum::<f64>(),
            22.0,
            "work as estimated"
        );
        // Another prefix: only the save differs.
        let b = node_keys(&wf(1, "y"));
        assert_eq!(a.iter().filter(|k| b.contains(k)).count(), 2);
        // Another seed at the start: every node after it differs too.
        let c = node_keys(&wf(2, "x"));
        assert_eq!(a.iter().filter(|k| c.contains(k)).count(), 0);
    }
}
