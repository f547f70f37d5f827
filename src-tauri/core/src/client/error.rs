//! What can go wrong talking to one ComfyUI server. Every variant names the
//! server (its base URL) and what was being done, so a message read in a log or
//! a notification is enough to act on.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use storycore_types::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("'{endpoint}' is not a usable ComfyUI address: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("ComfyUI at {url} refused the connection while {action}: is the server running?")]
    Refused { url: String, action: String },

    #[error("ComfyUI at {url} did not answer within {timeout_ms} ms while {action}")]
    TimedOut {
        url: String,
        action: String,
        timeout_ms: u64,
    },

    #[error("ComfyUI at {url} could not be reached while {action}: {detail}")]
    Unreachable {
        url: String,
        action: String,
        detail: String,
    },

    #[error("ComfyUI at {url} answered HTTP {status} while {action}: {body}")]
    Http {
        url: String,
        action: String,
        status: u16,
        /// Boxed: ComfyUI's error body is large and errors travel in every `Result`.
        body: Box<ErrorBody>,
    },

    /// 401: the server, or the proxy in front of it, wants an API key.
    #[error("401: check the API key. ComfyUI at {url} (or the proxy in front of it) refused {} while {action}: {}", if *.sent_key { "the key it was sent" } else { "access without a key" }, if *.sent_key { "enter the right key in the instance's settings, or choose how it is sent (bearer, basic, header)" } else { "enter the key in the instance's settings" })]
    Unauthorized {
        url: String,
        action: String,
        sent_key: bool,
    },

    #[error("ComfyUI at {url} sent an unexpected {what} while {action}: {detail}")]
    Malformed {
        url: String,
        action: String,
        what: String,
        detail: String,
    },
}

impl ClientError {
    /// The closed code the app's boundary answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidEndpoint { .. } => ErrorCode::InvalidInput,
            Self::Refused { .. } | Self::TimedOut { .. } | Self::Unreachable { .. } => {
                ErrorCode::Unreachable
            }
            // A 400 from ComfyUI means the workflow itself is wrong.
            Self::Http { status: 400, .. } => ErrorCode::InvalidInput,
            Self::Unauthorized { .. } => ErrorCode::InvalidInput,
            Self::Http { .. } | Self::Malformed { .. } => ErrorCode::Internal,
        }
    }

    /// True when the server could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::TimedOut { .. } | Self::Unreachable { .. }
        )
    }

    /// ComfyUI's own error body, when the server sent one.
    pub fn comfy_body(&self) -> Option<&ComfyErrorBody> {
        match self {
            Self::Http { body, .. } => match body.as_ref() {
                ErrorBody::Comfy(b) => Some(b),
                ErrorBody::Text(_) => None,
            },
            _ => None,
        }
    }
}

impl From<ClientError> for storycore_types::ApiError {
    fn from(e: ClientError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// The body of a failed answer: ComfyUI's JSON error when it is one (400 on
/// `POST /prompt`), else the text as sent (aiohttp's 500 page, often empty).
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorBody {
    Comfy(ComfyErrorBody),
    Text(String),
}

impl ErrorBody {
    pub fn parse(text: &str) -> Self {
        match serde_json::from_str::<ComfyErrorBody>(text) {
            Ok(b) => Self::Comfy(b),
            Err(_) => Self::Text(text.trim().to_string()),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) if t.is_empty() => f.write_str("(empty body)"),
            Self::Text(t) => f.write_str(t.lines().next().unwrap_or(t)),
            Self::Comfy(b) => b.fmt(f),
        }
    }
}

/// `{"error": {...}, "node_errors": {...}}` as `POST /prompt` answers with a 400.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComfyErrorBody {
    pub error: ComfyErrorDetail,
    #[serde(default)]
    pub node_errors: BTreeMap<String, NodeError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComfyErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub extra_info: Value,
}

/// The problems of one node of a rejected prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    #[serde(default)]
    pub errors: Vec<ComfyErrorDetail>,
    #[serde(default)]
    pub dependent_outputs: Vec<String>,
    #[serde(default)]
    pub class_type: String,
}

impl fmt::Display for ComfyErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error.message, self.error.kind)?;
        if !self.error.details.is_empty() {
            write!(f, ": {}", self.error.details)?;
        }
        for (node, e) in &self.node_errors {
            for d in &e.errors {
                write!(f, "; node {node} ({}): {}", e.class_type, d.message)?;
                if !d.details.is_empty() {
                    write!(f, " [{}]", d.details)?;
                }
            }
        }
        Ok(())
    }
}
