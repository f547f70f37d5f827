//! The editor's own data, kept by the gateway: `/userdata` (list, read,
//! write, move, delete), `/v2/userdata`, `/settings` and `/users`, answered
//! as ComfyUI 0.3.64's `app/user_manager.py` and `app/app_settings.py`
//! answer them, never forwarded. Forwarded, a workflow saved through the
//! gateway landed on whichever instance answered and was gone from the
//! fleet while that instance was down; here there is one copy for the
//! fleet, `<config>/gateway-user/<user>/` (ComfyUI's `user/<user>/`).
//!
//! Paths are read as ComfyUI reads them (a name still percent-encoded is
//! decoded again; `..` may not leave the user's folder: 403), and writes
//! are atomic and synced: a saved workflow survives a crash of the app.

use super::shapes::{empty, json_answer, json_ok, trouble};
use super::state::GatewayState;
use super::tokens::Caller;
pub use super::user_files::USER_FOLDER;
use super::user_files::{file_info, files_in, listed, relative, resolve, user_of, SETTINGS_FILE};
use axum::body::Bytes;
use axum::extract::{Extension, Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type St = State<Arc<GatewayState>>;
type Params = Query<HashMap<String, String>>;
type Who = Extension<Caller>;

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Runs file work off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// `GET /users`: one user, stored on the server.
pub(crate) async fn get_users(State(st): St, Extension(who): Who) -> Response {
    let dir = st.userdata.user_root(user_of(&who));
    let migrated = blocking(move || dir.exists()).await.unwrap_or(false);
    json_ok(&json!({"storage": "server", "migrated": migrated}))
}

/// `POST /users`: ComfyUI's multi-user sign-up. The gateway's users are
/// its tokens' names, so none is made here.
pub(crate) async fn post_users() -> Response {
    json_answer(
        StatusCode::BAD_REQUEST,
        &json!({"error": "This gateway's users are the names of its tokens; ask whoever runs it for a token of your own."}),
    )
}

/// `GET /userdata?dir=&recurse=&full_info=&split=`.
pub(crate) async fn list(State(st): St, Extension(who): Who, Query(q): Params) -> Response {
    let Some(dir) = q.get("dir").filter(|d| !d.is_empty()).cloned() else {
        return text(StatusCode::BAD_REQUEST, "Directory not provided");
    };
    let root = st.userdata.user_root(user_of(&who));
    let Some(path) = resolve(&root, &dir).or_else(|| is_root(&dir).then(|| root.clone())) else {
        return text(StatusCode::FORBIDDEN, "Invalid directory");
    };
    let (recurse, full, split) = (
        flag(&q, "recurse"),
        flag(&q, "full_info"),
        flag(&q, "split"),
    );
    let listing = blocking(move || {
        if !path.exists() {
            return None;
        }
        let items: Vec<Value> = files_in(&path, recurse, listed)
            .iter()
            .map(|f| {
                if full {
                    return file_info(f, &path);
                }
                let rel = relative(f, &path);
                if split {
                    let mut parts = vec![json!(rel)];
                    parts.extend(rel.split('/').map(|p| json!(p)));
                    Value::Array(parts)
                } else {
                    json!(rel)
                }
            })
            .collect();
        Some(items)
    })
    .await
    .flatten();
    match listing {
        Some(items) => json_ok(&Value::Array(items)),
        None => text(StatusCode::NOT_FOUND, "Directory not found"),
    }
}

/// A `dir` that names the user's folder itself.
fn is_root(dir: &str) -> bool {
    dir.split(['/', '\\']).all(|p| p.is_empty() || p == ".")
}

/// `GET /v2/userdata?path=`: files and folders, folders first.
pub(crate) async fn list_v2(State(st): St, Extension(who): Who, Query(q): Params) -> Response {
    let root = st.userdata.user_root(user_of(&who));
    let wanted = q.get("path").cloned().unwrap_or_default();
    let target = if is_root(&wanted) {
        root.clone()
    } else {
        match resolve(&root, &wanted) {
            Some(p) => p,
            None => return text(StatusCode::BAD_REQUEST, "Invalid path requested"),
        }
    };
    let answer = blocking(move || {
        if !target.exists() {
            return if target == root {
                json_ok(&json!([]))
            } else {
                text(StatusCode::NOT_FOUND, "Requested path not found")
            };
        }
        if !target.is_dir() {
            return text(StatusCode::BAD_REQUEST, "Requested path is not a directory");
        }
        let mut out = Vec::new();
        let mut folders = vec![target];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(crate::store::PARTIAL_MARKER) {
                    continue;
                }
                let path = e.path();
                let rel = relative(&path, &root);
                if path.is_dir() {
                    out.push(json!({"name": name, "path": rel, "type": "directory"}));
                    folders.push(path);
                } else {
                    let mut entry = json!({"name": name, "path": rel, "type": "file"});
                    if let Ok(m) = e.metadata() {
                        let secs = m
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0.0, |d| d.as_secs_f64());
                        entry["size"] = json!(m.len());
                        entry["modified"] = json!(secs);
                    }
                    out.push(entry);
                }
            }
        }
        out.sort_by_key(|e| {
            (
                e["type"] != "directory",
                e["name"].as_str().unwrap_or_default().to_lowercase(),
            )
        });
        json_ok(&Value::Array(out))
    })
    .await;
    answer.unwrap_or_else(trouble)
}

/// A user file's path, or ComfyUI's refusal: 403 outside the user's
/// folder, 404 when `must_exist` and it is not there.
async fn file_path(
    st: &GatewayState,
    who: &Caller,
    file: &str,
    must_exist: bool,
) -> Result<(PathBuf, PathBuf), Response> {
    let root = st.userdata.user_root(user_of(who));
    let path = resolve(&root, file).ok_or_else(|| empty(StatusCode::FORBIDDEN))?;
    if must_exist {
        let p = path.clone();
        if !blocking(move || p.is_file()).await.unwrap_or(false) {
            return Err(empty(StatusCode::NOT_FOUND));
        }
    }
    Ok((root, path))
}

/// `GET /userdata/{file}`: the file, never rendered inline (it is the
/// user's content: no stored script runs in the editor's origin), but for
/// `user.css`.
pub(crate) async fn read(
    State(st): St,
    Extension(who): Who,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let (root, path) = match file_path(&st, &who, &file, true).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let is_css = path == root.join("user.css");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(Ok(bytes)) = blocking(move || std::fs::read(path)).await else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (kind, disposition) = if is_css {
        ("text/css", "inline")
    } else {
        (safe_content_type(&name), "attachment")
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

/// A content type that a browser will not run.
fn safe_content_type(name: &str) -> &'static str {
    match super::shapes::content_type(name) {
        "application/octet-stream" => match name.rsplit('.').next().map(str::to_ascii_lowercase) {
            Some(e) if e == "css" => "text/css",
            _ => "application/octet-stream",
        },
        kind => kind,
    }
}

/// `POST /userdata/{file}?overwrite=&full_info=`: the body written as it is.
pub(crate) async fn write(
    State(st): St,
    Extension(who): Who,
    UrlPath(file): UrlPath<String>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let (root, path) = match file_path(&st, &who, &file, false).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let full = flag(&q, "full_info");
    let _one_at_a_time = st.userdata.writing.lock().await;
    let done = blocking(move || {
        if let Some(refused) = refused_overwrite(&q, &path) {
            return refused;
        }
        if let Err(e) = save(&path, &body) {
            tracing::warn!(path = %path.display(), "gateway: a user file was not saved: {e}");
            return invalid_filename();
        }
        saved_answer(&path, &root, full)
    })
    .await;
    done.unwrap_or_else(trouble)
}

/// What ComfyUI answers a write or a move: the file's path under the
/// user's folder, or its information with `full_info`.
fn saved_answer(path: &Path, root: &Path, full: bool) -> Response {
    json_ok(&if full {
        file_info(path, root)
    } else {
        json!(relative(path, root))
    })
}

/// `overwrite=false` and the file is there: 409, as ComfyUI.
fn refused_overwrite(q: &HashMap<String, String>, path: &Path) -> Option<Response> {
    let overwrite = q.get("overwrite").map(String::as_str) != Some("false");
    (!overwrite && path.exists()).then(|| text(StatusCode::CONFLICT, "File already exists"))
}

fn invalid_filename() -> Response {
    let mut r = empty(StatusCode::BAD_REQUEST);
    *r.body_mut() = axum::body::Body::from(
        "400: Invalid filename. Please avoid special characters like :\\/*?\"<>|",
    );
    r
}

/// Writes `bytes` to `path` atomically and durably, its folders made.
fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        crate::privacy::create_private_dir(folder)?;
    }
    crate::store::atomic_write(path, bytes).map_err(std::io::Error::other)
}

/// `DELETE /userdata/{file}`: 204.
pub(crate) async fn delete(
    State(st): St,
    Extension(who): Who,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let (_, path) = match file_path(&st, &who, &file, true).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let _one_at_a_time = st.userdata.writing.lock().await;
    match blocking(move || std::fs::remove_file(path)).await {
        Some(Ok(())) => empty(StatusCode::NO_CONTENT),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => empty(StatusCode::NOT_FOUND),
        _ => trouble(),
    }
}

/// `POST /userdata/{file}/move/{dest}?overwrite=&full_info=`.
pub(crate) async fn rename(
    State(st): St,
    Extension(who): Who,
    UrlPath((file, dest)): UrlPath<(String, String)>,
    Query(q): Params,
) -> Response {
    let (root, source) = match file_path(&st, &who, &file, true).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let (_, dest) = match file_path(&st, &who, &dest, false).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let full = flag(&q, "full_info");
    let _one_at_a_time = st.userdata.writing.lock().await;
    let done = blocking(move || {
        if let Some(refused) = refused_overwrite(&q, &dest) {
            return refused;
        }
        let moved = dest
            .parent()
            .map_or(Ok(()), crate::privacy::create_private_dir)
            .and_then(|()| std::fs::rename(&source, &dest))
            .and_then(|()| crate::store::sync_folder(&dest));
        if let Err(e) = moved {
            tracing::warn!("gateway: a user file was not moved: {e}");
            return trouble();
        }
        saved_answer(&dest, &root, full)
    })
    .await;
    done.unwrap_or_else(trouble)
}

/// The user's settings; `{}` without a file, or when it is not an object
/// (ComfyUI reads a corrupt file as none).
fn settings_of(root: &Path) -> Map<String, Value> {
    let path = root.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            _ => {
                tracing::error!(path = %path.display(), "gateway: the user settings file is corrupted; read as empty");
                Map::new()
            }
        },
        Err(_) => Map::new(),
    }
}

/// Written as ComfyUI writes it (indented by four).
fn save_settings(root: &Path, settings: &Map<String, Value>) -> std::io::Result<()> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(settings, &mut ser).map_err(std::io::Error::other)?;
    save(&root.join(SETTINGS_FILE), &out)
}

/// `GET /settings`.
pub(crate) async fn get_settings(State(st): St, Extension(who): Who) -> Response {
    let root = st.userdata.user_root(user_of(&who));
    match blocking(move || settings_of(&root)).await {
        Some(s) => json_ok(&Value::Object(s)),
        None => trouble(),
    }
}

/// `GET /settings/{id}`: the value, or `null`.
pub(crate) async fn get_setting(
    State(st): St,
    Extension(who): Who,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let root = st.userdata.user_root(user_of(&who));
    match blocking(move || settings_of(&root).remove(&id)).await {
        Some(v) => json_ok(&v.unwrap_or(Value::Null)),
        None => trouble(),
    }
}

/// `POST /settings`: the body's settings merged over the saved ones.
pub(crate) async fn post_settings(State(st): St, Extension(who): Who, body: Bytes) -> Response {
    let Ok(Value::Object(new)) = serde_json::from_slice::<Value>(&body) else {
        return trouble();
    };
    change_settings(&st, &who, move |s| s.extend(new)).await
}

/// `POST /settings/{id}`: one setting, the body its JSON value.
pub(crate) async fn post_setting(
    State(st): St,
    Extension(who): Who,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return trouble();
    };
    change_settings(&st, &who, move |s| {
        s.insert(id, value);
    })
    .await
}

async fn change_settings(
    st: &GatewayState,
    who: &Caller,
    change: impl FnOnce(&mut Map<String, Value>) + Send + 'static,
) -> Response {
    let root = st.userdata.user_root(user_of(who));
    let _one_at_a_time = st.userdata.writing.lock().await;
    let saved = blocking(move || {
        let mut s = settings_of(&root);
        change(&mut s);
        save_settings(&root, &s)
    })
    .await;
    match saved {
        Some(Ok(())) => empty(StatusCode::OK),
        Some(Err(e)) => {
            tracing::warn!("gateway: the user settings were not saved: {e}");
            trouble()
        }
        None => trouble(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::user_files::percent_decoded;

    #[test]
    fn paths_stay_in_the_users_folder() {
        let root = Path::new("/data/gateway-user/default");
        assert_eq!(
            resolve(root, "workflows/a.json"),
            Some(root.join("workflows").join("a.json"))
        );
        // Still encoded once more: decoded again, as ComfyUI does.
        assert_eq!(
            resolve(root, "workflows%2Fa.json"),
            Some(root.join("workflows").join("a.json"))
        );
        assert_eq!(resolve(root, "a/../b.json"), Some(root.join("b.json")));
        for bad in [
            "../other/comfy.settings.json",
            "..%2F..%2Fetc%2Fpasswd",
            "/etc/passwd",
            "a/../../x",
            "..\\x",
            ".",
            "",
            "a\0b",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad:?}");
        }
        assert_eq!(percent_decoded("a%20b%").as_deref(), Some("a b%"));
        assert_eq!(percent_decoded("%zz").as_deref(), Some("%zz"));
    }
}
