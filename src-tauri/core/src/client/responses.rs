//! ComfyUI's HTTP answers as typed structs, shaped like the recordings of a real
//! 0.3.64 server. Fields a newer server might drop are defaulted; the figures the
//! app relies on (memory, queue items, prompt ids) are required, so a changed API
//! shows up as a `Malformed` error instead of silent zeros.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `GET /system_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatsResponse {
    pub system: SystemInfo,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    #[serde(default)]
    pub os: String,
    pub ram_total: u64,
    pub ram_free: u64,
    #[serde(default)]
    pub comfyui_version: String,
    #[serde(default)]
    pub required_frontend_version: Option<String>,
    #[serde(default)]
    pub python_version: String,
    #[serde(default)]
    pub pytorch_version: String,
    #[serde(default)]
    pub embedded_python: bool,
    #[serde(default)]
    pub argv: Vec<String>,
}

/// One compute device. On a CPU-only server there is one `cpu` device whose
/// `vram_*` figures are the machine's RAM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub index: Option<u32>,
    pub vram_total: u64,
    pub vram_free: u64,
    #[serde(default)]
    pub torch_vram_total: u64,
    #[serde(default)]
    pub torch_vram_free: u64,
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        self.kind == "cpu"
    }
}

/// `GET /queue`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueueSnapshot {
    #[serde(rename = "queue_running")]
    pub running: Vec<QueueItem>,
    /// In the server's heap order, not sorted.
    #[serde(rename = "queue_pending")]
    pub pending: Vec<QueueItem>,
}

impl QueueSnapshot {
    /// Running plus pending: the seed's `activeWorkflows`.
    pub fn active(&self) -> usize {
        self.running.len() + self.pending.len()
    }

    pub fn contains(&self, prompt_id: &str) -> bool {
        self.running
            .iter()
            .chain(&self.pending)
            .any(|i| i.prompt_id == prompt_id)
    }
}

/// A queue (or history) item, sent by ComfyUI as the array
/// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    /// A float because `"front": true` makes it negative and a client-given
    /// `number` is echoed as sent (42.5 stays 42.5).
    pub number: f64,
    pub prompt_id: String,
    pub prompt: Value,
    pub extra_data: Value,
    pub outputs_to_execute: Vec<String>,
}

impl QueueItem {
    /// The WebSocket client id the prompt was submitted with.
    pub fn client_id(&self) -> Option<&str> {
        self.extra_data.get("client_id").and_then(Value::as_str)
    }
}

impl<'de> Deserialize<'de> for QueueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut parts = Vec::<Value>::deserialize(d)?.into_iter();
        let number = parts
            .next()
            .and_then(|v| v.as_f64())
            .ok_or_else(|| D::Error::custom("queue item: element 0 (number) is not a number"))?;
        let prompt_id = match parts.next() {
            Some(Value::String(s)) => s,
            _ => {
                return Err(D::Error::custom(
                    "queue item: element 1 (prompt_id) is not a string",
                ))
            }
        };
        let prompt = parts.next().unwrap_or(Value::Null);
        let extra_data = parts.next().unwrap_or(Value::Null);
        let outputs_to_execute = match parts.next() {
            Some(v) => serde_json::from_value(v).map_err(D::Error::custom)?,
            None => Vec::new(),
        };
        Ok(Self {
            number,
            prompt_id,
            prompt,
            extra_data,
            outputs_to_execute,
        })
    }
}

/// `POST /prompt` accepted the prompt (HTTP 200). It has only been queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptAccepted {
    pub prompt_id: String,
    pub number: f64,
    #[serde(default)]
    pub node_errors: Map<String, Value>,
}

/// One entry of `GET /history/{prompt_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub prompt: QueueItem,
    /// Keyed by node id; the order is not the execution order.
    #[serde(default)]
    pub outputs: BTreeMap<String, NodeOutput>,
    #[serde(default)]
    pub status: Option<HistoryStatus>,
    #[serde(default)]
    pub meta: Value,
}

impl HistoryEntry {
    /// Every image the prompt produced, node by node.
    pub fn images(&self) -> impl Iterator<Item = (&str, &ImageRef)> {
        self.outputs
            .iter()
            .flat_map(|(node, o)| o.images.iter().map(move |i| (node.as_str(), i)))
    }

    pub fn succeeded(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.status_str == "success" && s.completed)
    }

    /// Seconds from `execution_start` to `execution_success`, by ComfyUI's
    /// own timestamps in the status messages (None if either is missing).
    pub fn execution_secs(&self) -> Option<f64> {
        let at = |kind: &str| {
            self.status
                .as_ref()?
                .messages
                .iter()
                .find(|(k, _)| k == kind)?
                .1
                .get("timestamp")?
                .as_i64()
        };
        let (start, end) = (at("execution_start")?, at("execution_success")?);
        (end >= start).then(|| (end - start) as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeOutput {
    #[serde(default)]
    pub images: Vec<ImageRef>,
    /// Any other output kind (`text`, `gifs`, ...), kept as sent.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Where an output file lives, as `GET /view` wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type", default = "default_image_type")]
    pub kind: String,
}

fn default_image_type() -> String {
    "output".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStatus {
    /// `success` or `error`.
    pub status_str: String,
    pub completed: bool,
    /// `[event name, data]` pairs, e.g. `["execution_error", {...}]`.
    #[serde(default)]
    pub messages: Vec<(String, Value)>,
}
