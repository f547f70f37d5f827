//! ComfyUI's `/ws` frames as a typed enum. Text frames are
//! `{"type": ..., "data": ...}`; binary frames start with a big-endian u32 event
//! type (FACTS section 4). A type this code does not know is kept as
//! [`WsMessage::Unknown`] so a newer server never breaks the stream.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use super::binary::{parse_binary, BinaryFrame, ImageFormat, MessageError, PreviewMetadata};

#[derive(Debug, Clone, PartialEq)]
pub enum WsMessage {
    Status(Status),
    ExecutionStart(ExecutionStart),
    ExecutionCached(ExecutionCached),
    Executing(Executing),
    Progress(Progress),
    ProgressState(ProgressState),
    Executed(Executed),
    ExecutionSuccess(ExecutionSuccess),
    ExecutionError(Box<ExecutionError>),
    ExecutionInterrupted(ExecutionInterrupted),
    /// The server's answer to our `feature_flags` announcement.
    FeatureFlags(Map<String, Value>),
    Binary(BinaryFrame),
    Unknown {
        kind: String,
        data: Value,
    },
}

impl WsMessage {
    /// The prompt this message is about, when it says.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::ExecutionStart(m) => Some(&m.prompt_id),
            Self::ExecutionCached(m) => Some(&m.prompt_id),
            Self::Executing(m) => m.prompt_id.as_deref(),
            Self::Progress(m) => m.prompt_id.as_deref(),
            Self::ProgressState(m) => Some(&m.prompt_id),
            Self::Executed(m) => Some(&m.prompt_id),
            Self::ExecutionSuccess(m) => Some(&m.prompt_id),
            Self::ExecutionError(m) => Some(&m.prompt_id),
            Self::ExecutionInterrupted(m) => Some(&m.prompt_id),
            Self::Binary(BinaryFrame::PreviewWithMetadata { metadata, .. }) => {
                metadata.prompt_id.as_deref()
            }
            _ => None,
        }
    }

    /// `executing` with `node: null` marks the end of a prompt's run, whatever
    /// its outcome.
    pub fn is_prompt_end(&self) -> bool {
        matches!(self, Self::Executing(Executing { node: None, .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub status: StatusBody,
    /// Only on the first frame after connecting: the client id.
    #[serde(default)]
    pub sid: Option<String>,
}

impl Status {
    pub fn queue_remaining(&self) -> u64 {
        self.status.exec_info.queue_remaining
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusBody {
    pub exec_info: ExecInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecInfo {
    pub queue_remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStart {
    pub prompt_id: String,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionCached {
    pub nodes: Vec<String>,
    pub prompt_id: String,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// `node: None` ends a prompt. After a reconnection mid-run the first one has
/// neither `prompt_id` nor `display_node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    pub node: Option<String>,
    #[serde(default)]
    pub display_node: Option<String>,
    #[serde(default)]
    pub prompt_id: Option<String>,
}

/// Sent by nodes using ComfyUI's ProgressBar. `value`/`max` may be ints or floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub value: f64,
    pub max: f64,
    #[serde(default)]
    pub prompt_id: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressState {
    pub prompt_id: String,
    pub nodes: BTreeMap<String, NodeProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProgress {
    pub value: f64,
    pub max: f64,
    /// `running` or `finished`.
    pub state: String,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub display_node_id: Option<String>,
    #[serde(default)]
    pub parent_node_id: Option<String>,
    #[serde(default)]
    pub real_node_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub node: String,
    #[serde(default)]
    pub display_node: Option<String>,
    pub output: Value,
    pub prompt_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSuccess {
    pub prompt_id: String,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
    #[serde(default)]
    pub executed: Vec<String>,
    pub exception_message: String,
    pub exception_type: String,
    #[serde(default)]
    pub traceback: Vec<String>,
    #[serde(default)]
    pub current_inputs: Value,
    #[serde(default)]
    pub current_outputs: Value,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInterrupted {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
    #[serde(default)]
    pub executed: Vec<String>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

/// Parses one text frame. An unknown `type` is `Ok(Unknown)`; a known type with
/// data of the wrong shape is an error (the server changed in a way that matters).
pub fn parse_text(text: &str) -> Result<WsMessage, MessageError> {
    let raw: RawFrame =
        serde_json::from_str(text).map_err(|e| MessageError::NotAFrame(e.to_string()))?;
    fn typed<T: serde::de::DeserializeOwned>(kind: &str, data: Value) -> Result<T, MessageError> {
        serde_json::from_value(data).map_err(|e| MessageError::BadData {
            kind: kind.to_string(),
            detail: e.to_string(),
        })
    }
    let k = raw.kind.as_str();
    let d = raw.data;
    Ok(match k {
        "status" => WsMessage::Status(typed(k, d)?),
        "execution_start" => WsMessage::ExecutionStart(typed(k, d)?),
        "execution_cached" => WsMessage::ExecutionCached(typed(k, d)?),
        "executing" => WsMessage::Executing(typed(k, d)?),
        "progress" => WsMessage::Progress(typed(k, d)?),
        "progress_state" => WsMessage::ProgressState(typed(k, d)?),
        "executed" => WsMessage::Executed(typed(k, d)?),
        "execution_success" => WsMessage::ExecutionSuccess(typed(k, d)?),
        "execution_error" => WsMessage::ExecutionError(Box::new(typed(k, d)?)),
        "execution_interrupted" => WsMessage::ExecutionInterrupted(typed(k, d)?),
        "feature_flags" => WsMessage::FeatureFlags(typed(k, d)?),
        _ => WsMessage::Unknown {
            kind: raw.kind,
            data: d,
        },
    })
}
