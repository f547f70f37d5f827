//! The files clients uploaded through the gateway, kept by the app: each
//! job that reads one takes it to whichever instance runs it.

use super::shapes::{empty, json_ok, trouble};
use axum::http::StatusCode;
use axum::response::Response;
use comfyui_rules::upload::{self, inside, UploadError};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use storycore_types::InputFile;

/// The kept files: `<root>/<type>/<subfolder>/<name>`.
pub(crate) struct Uploads {
    root: PathBuf,
}

impl Uploads {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn folder(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    /// The kept file of that type, subfolder and name, if there is one.
    pub fn find(&self, kind: &str, subfolder: &str, name: &str) -> Option<PathBuf> {
        if !matches!(kind, "input" | "temp" | "output") || name.is_empty() {
            return None;
        }
        let folder = self.folder(kind);
        let path = folder.join(subfolder).join(name);
        (inside(&folder, &path) && path.is_file()).then_some(path)
    }

    /// The kept files `nodes` read: string inputs naming one, as LoadImage
    /// takes them (`name`, `sub/name`, with or without ` [type]`).
    pub fn read_by(&self, nodes: &Map<String, Value>) -> Vec<InputFile> {
        let mut files: Vec<InputFile> = Vec::new();
        let values = nodes
            .values()
            .filter_map(|n| n.get("inputs").and_then(Value::as_object))
            .flat_map(|inputs| inputs.values())
            .filter_map(Value::as_str);
        for value in values {
            let (named, kind) = upload::annotated(value);
            let kind = kind.unwrap_or("input");
            let (subfolder, name) = named.rsplit_once('/').unwrap_or(("", named));
            let Some(path) = self.find(kind, subfolder, name) else {
                continue;
            };
            let file = InputFile {
                path: path.to_string_lossy().into_owned(),
                filename: name.to_string(),
                subfolder: subfolder.to_string(),
                kind: kind.to_string(),
            };
            if !files.contains(&file) {
                files.push(file);
            }
        }
        files
    }

    pub(crate) fn save(
        &self,
        kind: &'static str,
        subfolder: &str,
        filename: &str,
        data: &[u8],
        overwrite: bool,
    ) -> Response {
        let folder = self.folder(kind);
        match upload::save_upload(&folder, kind, subfolder, filename, data, overwrite) {
            Ok(s) => json_ok(&json!({"name": s.name, "subfolder": s.subfolder, "type": s.kind})),
            Err(UploadError::OutsideFolder) => empty(StatusCode::BAD_REQUEST),
            Err(UploadError::Io(e)) => {
                tracing::error!(folder = %folder.display(), "gateway: an upload could not be kept: {e}");
                trouble()
            }
        }
    }
}
