//! ComfyUI's binary WebSocket frames (FACTS section 4): a big-endian u32
//! event type, then a type-specific layout. Types 1 and 4 carry preview images,
//! type 3 a node's progress text.

use serde::{Deserialize, Serialize};

/// A `/ws` frame that could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("WebSocket text frame is not {{\"type\", \"data\"}} JSON: {0}")]
    NotAFrame(String),
    #[error("WebSocket '{kind}' message has an unexpected shape: {detail}")]
    BadData { kind: String, detail: String },
    #[error("WebSocket binary frame is truncated: {0}")]
    Truncated(String),
}

/// A binary frame: previews and progress text.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryFrame {
    /// Type 1: `[1][image type: 1 JPEG, 2 PNG][image]`, sent to clients that did
    /// not announce `supports_preview_metadata`.
    Preview {
        image_format: ImageFormat,
        image: Vec<u8>,
    },
    /// Type 3: `[3][node id length][node id][utf-8 text]`, broadcast to every socket.
    ProgressText { node_id: String, text: String },
    /// Type 4: `[4][metadata length][metadata JSON][image]`.
    PreviewWithMetadata {
        metadata: PreviewMetadata,
        image: Vec<u8>,
    },
    /// A type this code does not know, kept whole.
    Other { event_type: u32, payload: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Other(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewMetadata {
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub prompt_id: Option<String>,
    #[serde(default)]
    pub display_node_id: Option<String>,
    #[serde(default)]
    pub parent_node_id: Option<String>,
    #[serde(default)]
    pub real_node_id: Option<String>,
    /// A MIME type: `image/jpeg` or `image/png`.
    pub image_type: String,
}

/// Parses one binary frame (all integers big-endian u32).
pub fn parse_binary(frame: &[u8]) -> Result<BinaryFrame, MessageError> {
    let (event_type, rest) = split_u32(frame, "event type")?;
    Ok(match event_type {
        1 => {
            let (format, image) = split_u32(rest, "preview image type")?;
            BinaryFrame::Preview {
                image_format: match format {
                    1 => ImageFormat::Jpeg,
                    2 => ImageFormat::Png,
                    n => ImageFormat::Other(n),
                },
                image: image.to_vec(),
            }
        }
        3 => {
            let (len, rest) = split_u32(rest, "progress text node id length")?;
            let (node_id, text) = split_at(rest, len, "progress text node id")?;
            BinaryFrame::ProgressText {
                node_id: String::from_utf8_lossy(node_id).into_owned(),
                text: String::from_utf8_lossy(text).into_owned(),
            }
        }
        4 => {
            let (len, rest) = split_u32(rest, "preview metadata length")?;
            let (meta, image) = split_at(rest, len, "preview metadata")?;
            let metadata = serde_json::from_slice(meta).map_err(|e| MessageError::BadData {
                kind: "binary preview metadata".into(),
                detail: e.to_string(),
            })?;
            BinaryFrame::PreviewWithMetadata {
                metadata,
                image: image.to_vec(),
            }
        }
        other => BinaryFrame::Other {
            event_type: other,
            payload: rest.to_vec(),
        },
    })
}

fn split_u32<'a>(b: &'a [u8], what: &str) -> Result<(u32, &'a [u8]), MessageError> {
    let (head, rest) = split_at(b, 4, what)?;
    let n = u32::from_be_bytes(head.try_into().expect("split_at returned 4 bytes"));
    Ok((n, rest))
}

fn split_at<'a>(b: &'a [u8], len: u32, what: &str) -> Result<(&'a [u8], &'a [u8]), MessageError> {
    let len = len as usize;
    if b.len() < len {
        return Err(MessageError::Truncated(format!(
            "{what}: wanted {len} bytes, {} left",
            b.len()
        )));
    }
    Ok(b.split_at(len))
}
