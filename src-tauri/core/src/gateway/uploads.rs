//! `/upload/image` and `/upload/mask`: a client's files are kept by the
//! gateway (named as ComfyUI names them) and sent to whichever instance runs
//! a prompt that reads them, before the prompt (see the runner). A prompt's
//! string inputs that name a kept file (`name`, `sub/name`, `name [input]`)
//! make it a job input.
//!
//! A mask is composed by an instance of the fleet at once (ComfyUI applies
//! the mask's alpha to the image `original_ref` names), and the result is
//! kept like an uploaded image.

use super::shapes::{self, empty, json_ok, trouble};
use super::state::GatewayState;
use crate::client::ComfyClient;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use comfyui_rules::upload;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type St = State<Arc<GatewayState>>;

/// Where an instance keeps what the gateway sends it to compose a mask.
const MASK_WORK_SUBFOLDER: &str = "storycore-gateway";

/// A multipart form: the `image` file (name, bytes) and the text fields.
/// Anything else (not multipart, no file) is ComfyUI's 400.
async fn read_form(
    form: Result<Multipart, MultipartRejection>,
) -> Result<(String, Vec<u8>, HashMap<String, String>), Response> {
    let mut form = form.map_err(|_| empty(StatusCode::BAD_REQUEST))?;
    let mut image = None;
    let mut fields = HashMap::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!("gateway: an upload's form could not be read: {e}");
                return Err(empty(StatusCode::BAD_REQUEST));
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" {
            let filename = field.file_name().unwrap_or_default().to_string();
            let data = field
                .bytes()
                .await
                .map_err(|_| empty(StatusCode::BAD_REQUEST))?;
            image = Some((filename, data.to_vec()));
        } else {
            let text = field.text().await.unwrap_or_default();
            fields.insert(name, text);
        }
    }
    match image {
        Some((filename, data)) if !filename.is_empty() => Ok((filename, data, fields)),
        _ => Err(empty(StatusCode::BAD_REQUEST)),
    }
}

pub(crate) async fn upload_image(
    State(st): St,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let (filename, data, fields) = match read_form(form).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let field = |k: &str| fields.get(k).map(String::as_str);
    let kind = upload::upload_kind(field("type"));
    let subfolder = field("subfolder").unwrap_or_default();
    let overwrite = upload::overwrites(field("overwrite"));
    let uploads = st.uploads.clone();
    let (sub, name) = (subfolder.to_string(), filename.clone());
    tokio::task::spawn_blocking(move || uploads.save(kind, &sub, &name, &data, overwrite))
        .await
        .unwrap_or_else(|_| trouble())
}

pub(crate) async fn upload_mask(
    State(st): St,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let (filename, mask, fields) = match read_form(form).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let field = |k: &str| fields.get(k).map(String::as_str);
    let Some(Ok(original_ref)) = field("original_ref").map(serde_json::from_str::<Value>) else {
        return trouble();
    };
    let kind = upload::upload_kind(field("type"));
    let subfolder = field("subfolder").unwrap_or_default().to_string();
    let overwrite = upload::overwrites(field("overwrite"));
    let Some(client) = super::fleet::instance_client(&st.queue) else {
        return super::fleet::no_instance();
    };
    let masked = match compose_mask(&st, &client, &original_ref, &filename, mask).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(
                instance = client.base_url(),
                "gateway: a mask could not be composed: {e}"
            );
            return (
                StatusCode::BAD_GATEWAY,
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; charset=utf-8",
                )],
                format!("502: the instance composing the mask failed: {e}"),
            )
                .into_response();
        }
    };
    let uploads = st.uploads.clone();
    tokio::task::spawn_blocking(move || match masked {
        Some(bytes) => uploads.save(kind, &subfolder, &filename, &bytes, overwrite),
        // ComfyUI answers the name when the original is not there, and
        // writes nothing.
        None => json_ok(&json!({"name": filename, "subfolder": subfolder, "type": kind})),
    })
    .await
    .unwrap_or_else(|_| trouble())
}

/// Has `client`'s instance mask the image `original_ref` names, and
/// returns the result (`None`: the original is nowhere, as ComfyUI would
/// find it). An original the gateway holds (an upload, a prompt's output)
/// is sent first.
async fn compose_mask(
    st: &GatewayState,
    client: &ComfyClient,
    original_ref: &Value,
    filename: &str,
    mask: Vec<u8>,
) -> Result<Option<Vec<u8>>, crate::client::ClientError> {
    let work = uuid::Uuid::new_v4().simple().to_string();
    let ext = Path::new(filename)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let reference = match held_original(st, original_ref) {
        Some(path) => {
            let Ok(bytes) = tokio::fs::read(&path).await else {
                return Ok(None);
            };
            let name = format!("{work}-original.png");
            client
                .upload(bytes, &name, MASK_WORK_SUBFOLDER, "input", None)
                .await?;
            json!({"filename": name, "subfolder": MASK_WORK_SUBFOLDER, "type": "input"})
        }
        None => original_ref.clone(),
    };
    let name = format!("{work}-mask{ext}");
    client
        .upload(mask, &name, MASK_WORK_SUBFOLDER, "input", Some(&reference))
        .await?;
    match client.view(&name, MASK_WORK_SUBFOLDER, "input").await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(crate::client::ClientError::Http { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The gateway's own copy of the image an `original_ref` names: a kept
/// upload, or a gateway prompt's output.
fn held_original(st: &GatewayState, r: &Value) -> Option<PathBuf> {
    let (name, annotated) = upload::annotated(r["filename"].as_str()?);
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return None;
    }
    let kind = annotated.unwrap_or_else(|| r["type"].as_str().unwrap_or("output"));
    let subfolder = r["subfolder"].as_str().unwrap_or("");
    held_file(st, kind, subfolder, name)
}

/// A file the gateway holds: a gateway prompt's output (in its
/// `storycore-<job>` subfolder) or a kept upload.
pub(crate) fn held_file(
    st: &GatewayState,
    kind: &str,
    subfolder: &str,
    name: &str,
) -> Option<PathBuf> {
    if let Some((job_id, original)) = shapes::split_subfolder(subfolder) {
        let job = st.queue.summary(job_id).filter(|j| j.gateway.is_some())?;
        let output = job
            .outputs
            .iter()
            .find(|o| o.filename == name && o.subfolder == original && o.kind == kind)?;
        return Some(PathBuf::from(&output.path));
    }
    st.uploads.find(kind, subfolder, name)
}
