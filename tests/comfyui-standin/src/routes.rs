//! HTTP routes, answered the way ComfyUI 0.3.64 (aiohttp) answers them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::faults::KeyAuth;
use crate::state::{App, QueueItem};
use comfyui_rules::{self as validate, py_str};

pub const OBJECT_INFO: &str = include_str!("../data/object_info.json");
const EXTENSIONS: &str = include_str!("../data/extensions.json");
const MODELS: &str = include_str!("../data/models.json");
const EXPERIMENT_MODELS: &str = include_str!("../data/experiment_models.json");
const JSON_CT: &str = "application/json; charset=utf-8";
const TROUBLE: &str = "500 Internal Server Error\n\nServer got itself in trouble";

pub fn features() -> Value {
    json!({"supports_preview_metadata": true, "max_upload_size": 104857600})
}

pub fn json_raw(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, JSON_CT)], body).into_response()
}

pub fn json_ok(v: &Value) -> Response {
    json_raw(StatusCode::OK, v.to_string())
}

pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// aiohttp's answer to an exception in a handler.
pub fn trouble() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        TROUBLE,
    )
        .into_response()
}

fn parse_json(body: &Bytes) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/", get(index))
        .route("/ws", get(crate::ws::handler))
        .route("/system_stats", get(system_stats))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{id}", get(get_history_item))
        .route("/interrupt", post(interrupt))
        .route("/free", post(free))
        .route(
            "/object_info",
            get(|State(app): State<Arc<App>>| async move {
                json_raw(StatusCode::OK, app.catalog.now().1.to_string())
            }),
        )
        .route("/object_info/{class}", get(object_info_class))
        .route("/features", get(|| async { json_ok(&features()) }))
        .route("/embeddings", get(|| async { json_ok(&json!([])) }))
        .route(
            "/extensions",
            get(|| async { json_raw(StatusCode::OK, EXTENSIONS.to_string()) }),
        )
        .route(
            "/models",
            get(|| async { json_raw(StatusCode::OK, MODELS.to_string()) }),
        )
        .route("/models/{folder}", get(models_folder))
        .route(
            "/experiment/models",
            get(|| async { json_raw(StatusCode::OK, EXPERIMENT_MODELS.to_string()) }),
        )
        .route("/view", get(crate::files::view))
        .route("/upload/image", post(crate::files::upload_image))
        .route("/upload/mask", post(crate::files::upload_mask))
        .route(
            "/users",
            get(|| async { json_ok(&json!({"storage": "server", "migrated": false})) }),
        )
        .route("/settings", get(|| async { json_ok(&json!({})) }))
        .route("/i18n", get(|| async { json_ok(&json!({})) }))
        .route("/workflow_templates", get(|| async { json_ok(&json!({})) }))
        .route("/userdata", get(userdata));
    let internal = Router::new()
        .route(
            "/internal/logs",
            get(|| async { json_ok(&json!("comfyui-standin\n")) }),
        )
        .route("/internal/folder_paths", get(folder_paths))
        .route("/internal/files/{kind}", get(internal_files));
    Router::new()
        .merge(api.clone())
        .nest("/api", api)
        .merge(internal)
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn(fix_status))
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::empty(),
    )
        .into_response()
}

/// Faults (hang, slow), OPTIONS, the origin check and CORS headers.
async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if app.hung.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    if app.cfg.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(app.cfg.slow_ms)).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let cors = app.args.enable_cors_header.clone();
    if let Some(key) = &app.cfg.api_key {
        if !key_matches(&app.cfg.api_key_auth, key, req.headers()) {
            return unauthorized(&app.cfg.api_key_auth);
        }
    }
    if req.method() == Method::OPTIONS {
        return add_cors(empty(StatusCode::OK), cors.as_deref(), origin.as_deref());
    }
    if cors.is_none() {
        if let (Some(host), Some(origin)) = (
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
            origin.as_deref(),
        ) {
            if origin_mismatch(host, origin) {
                app.log(&format!("WARNING: request with non matching host and origin {host} != {origin}, returning 403"));
                return empty(StatusCode::FORBIDDEN);
            }
        }
    }
    add_cors(next.run(req).await, cors.as_deref(), origin.as_deref())
}

/// What a reverse proxy (nginx `auth_request`, Caddy, a cloud gateway) checks.
fn key_matches(auth: &KeyAuth, key: &str, headers: &axum::http::HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match auth {
        KeyAuth::Bearer => value("authorization") == Some(&format!("Bearer {key}")),
        KeyAuth::Basic => {
            use base64::Engine as _;
            let want = base64::engine::general_purpose::STANDARD.encode(key);
            value("authorization") == Some(&format!("Basic {want}"))
        }
        KeyAuth::Header(name) => value(name) == Some(key),
    }
}

fn unauthorized(auth: &KeyAuth) -> Response {
    let challenge = match auth {
        KeyAuth::Basic => "Basic realm=\"ComfyUI\"",
        _ => "Bearer",
    };
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::WWW_AUTHENTICATE, challenge),
        ],
        "401: Unauthorized",
    )
        .into_response()
}

fn add_cors(mut r: Response, cors: Option<&str>, _origin: Option<&str>) -> Response {
    if let Some(allow) = cors {
        let h = r.headers_mut();
        for (k, v) in [
            ("access-control-allow-origin", allow),
            (
                "access-control-allow-methods",
                "POST, GET, DELETE, PUT, OPTIONS, PATCH",
            ),
            (
                "access-control-allow-headers",
                "Content-Type, Authorization",
            ),
            ("access-control-allow-credentials", "true"),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
    }
    r
}

fn with_port(netloc: &str, default: &str) -> String {
    let l = netloc.to_ascii_lowercase();
    let has_port = match l.rfind(']') {
        Some(i) => l[i..].contains(':'),
        None => l.contains(':'),
    };
    if has_port {
        l
    } else {
        format!("{l}:{default}")
    }
}

/// ComfyUI's origin_only_middleware: a loopback Host with a different Origin.
fn origin_mismatch(host: &str, origin: &str) -> bool {
    let (scheme, rest) = origin.split_once("://").unwrap_or(("", origin));
    let netloc = rest.split('/').next().unwrap_or("");
    let default = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let host_full = with_port(host, "80");
    let hostname = host_full
        .rsplit_once(':')
        .map(|x| x.0)
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']');
    let loopback = hostname == "localhost" || hostname == "::1" || hostname.starts_with("127.");
    loopback && host_full != with_port(netloc, default)
}

/// aiohttp answers: 405 with a text body; GET/HEAD on a POST-only path fall
/// through to the static route and get 404.
async fn fix_status(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let mut r = next.run(req).await;
    if r.status() == StatusCode::METHOD_NOT_ALLOWED {
        if method == Method::GET || method == Method::HEAD {
            return not_found();
        }
        let allow = r.headers().get(header::ALLOW).cloned();
        r = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "405: Method Not Allowed",
        )
            .into_response();
        if let Some(a) = allow {
            r.headers_mut().insert(header::ALLOW, a);
        }
    }
    r
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html"), (header::CACHE_CONTROL, "no-cache"), (header::PRAGMA, "no-cache"), (header::EXPIRES, "0")],
        // Like ComfyUI's frontend at load, it asks the server for the
        // user's saved workflows (the request its workflow browser makes)
        // and lists them: so a test sees what an editor on this server
        // would show.
        "<!doctype html><html><head><title>ComfyUI</title></head><body>comfyui-standin: no frontend\
         <ul id=\"workflows\"></ul><script>\
         fetch('api/userdata?dir=workflows&recurse=true&split=false&full_info=true')\
         .then(r => r.ok ? r.json() : []).then(files => {\
         const ul = document.getElementById('workflows');\
         for (const f of files) { const li = document.createElement('li'); li.textContent = f.path; ul.appendChild(li); }\
         ul.dataset.loaded = 'yes'; });\
         </script></body></html>",
    )
        .into_response()
}

async fn system_stats(State(app): State<Arc<App>>) -> Response {
    if app.cfg.system_stats_fails() {
        return trouble();
    }
    json_raw(StatusCode::OK, app.system_stats.clone())
}

async fn get_queue(State(app): State<Arc<App>>) -> Response {
    let inner = app.lock();
    let running: Vec<Value> = inner.running.iter().map(QueueItem::to_json).collect();
    let pending: Vec<Value> = inner.pending.iter().map(QueueItem::to_json).collect();
    json_ok(&json!({"queue_running": running, "queue_pending": pending}))
}

async fn post_queue(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(v) = parse_json(&body) else {
        return trouble();
    };
    if validate::truthy_field(&v, "clear") {
        app.lock().pending.clear();
        app.queue_updated();
    }
    if let Some(ids) = v.get("delete").and_then(Value::as_array) {
        for id in ids {
            let removed = {
                let mut inner = app.lock();
                let pos = inner.pending.iter().position(|p| json!(p.prompt_id) == *id);
                pos.map(|i| inner.pending.remove(i)).is_some()
            };
            if removed {
                app.queue_updated();
            }
        }
    }
    empty(StatusCode::OK)
}

async fn get_prompt(State(app): State<Arc<App>>) -> Response {
    json_ok(&json!({"exec_info": {"queue_remaining": app.lock().queue_remaining()}}))
}

async fn post_prompt(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(data) = parse_json(&body) else {
        return trouble();
    };
    app.log("got prompt");
    let number = match data.get("number") {
        Some(n) => match n
            .as_f64()
            .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(f) => json!(f),
            None => return trouble(),
        },
        None => {
            let mut inner = app.lock();
            let n = inner.number;
            inner.number += 1;
            if validate::truthy_field(&data, "front") {
                json!(-n)
            } else {
                json!(n)
            }
        }
    };
    let Some(prompt) = data.get("prompt") else {
        let err = json!({"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}});
        return json_raw(
            StatusCode::BAD_REQUEST,
            json!({"error": err, "node_errors": {}}).to_string(),
        );
    };
    let Value::Object(prompt) = prompt else {
        return trouble();
    };
    let mut prompt: Map<String, Value> = prompt.clone();
    let prompt_id = data
        .get("prompt_id")
        .map(py_str)
        .unwrap_or_else(crate::state::uuid4);
    // The image loaders check that their file is there (VALIDATE_INPUTS).
    let dirs = &app.dirs;
    let custom = |class: &str, input: &str, value: &Value, _: Option<&[Value]>| {
        if !validate::checks_image_file(class, input) {
            return None;
        }
        let (name, dir) = crate::files::annotated(&py_str(value), dirs);
        let there = dir.unwrap_or(&dirs.input).join(name).is_file();
        Some(if there {
            Ok(())
        } else {
            Err(validate::invalid_image_file(value))
        })
    };
    let (info, _) = app.catalog.now();
    let outcome = match validate::validate(&mut prompt, &info, &custom) {
        Ok(o) => o,
        Err(validate::ServerRaises) => return trouble(),
    };
    let mut extra = data.get("extra_data").cloned().unwrap_or(json!({}));
    if let Some(cid) = data.get("client_id") {
        match extra.as_object_mut() {
            Some(m) => {
                m.insert("client_id".into(), cid.clone());
            }
            None => return trouble(),
        }
    }
    if let Some(m) = extra.as_object_mut() {
        m.remove("auth_token_comfy_org");
        m.remove("api_key_comfy_org");
    }
    match outcome {
        validate::Outcome::Invalid { error, node_errors } => {
            app.log(&format!("invalid prompt: {}", py_str(&error["message"])));
            json_raw(
                StatusCode::BAD_REQUEST,
                json!({"error": error, "node_errors": node_errors}).to_string(),
            )
        }
        validate::Outcome::Ok {
            outputs,
            node_errors,
        } => {
            {
                let mut inner = app.lock();
                inner.seq += 1;
                let seq = inner.seq;
                inner.push(QueueItem {
                    number: number.clone(),
                    prompt_id: prompt_id.clone(),
                    prompt,
                    extra_data: extra,
                    outputs,
                    seq,
                });
            }
            app.queue_updated();
            app.work.notify_one();
            json_ok(&json!({"prompt_id": prompt_id, "number": number, "node_errors": node_errors}))
        }
    }
}

fn history_json(entries: &[&(String, Value)]) -> Response {
    // Built by hand to keep oldest-to-newest order.
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    json_raw(StatusCode::OK, format!("{{{}}}", body.join(",")))
}

async fn get_history(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parse = |k: &str| q.get(k).map(|v| v.trim().replace('_', "").parse::<i64>());
    let max_items = match parse("max_items").transpose() {
        Ok(v) => v,
        Err(_) => return trouble(),
    };
    let mut offset = match parse("offset").transpose() {
        Ok(v) => v.unwrap_or(-1),
        Err(_) => return trouble(),
    };
    let inner = app.lock();
    if let (true, Some(m)) = (offset < 0, max_items) {
        offset = inner.history.len() as i64 - m;
    }
    let mut out = Vec::new();
    for (i, e) in inner.history.iter().enumerate() {
        if i as i64 >= offset {
            out.push(e);
            if max_items.is_some_and(|m| out.len() as i64 >= m) {
                break;
            }
        }
    }
    history_json(&out)
}

async fn get_history_item(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let inner = app.lock();
    let found: Vec<&(String, Value)> = inner.history.iter().filter(|(k, _)| *k == id).collect();
    history_json(&found)
}

async fn post_history(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(v) = parse_json(&body) else {
        return trouble();
    };
    let mut inner = app.lock();
    if validate::truthy_field(&v, "clear") {
        inner.history.clear();
    }
    if let Some(ids) = v.get("delete").and_then(Value::as_array) {
        inner.history.retain(|(k, _)| !ids.contains(&json!(k)));
    }
    empty(StatusCode::OK)
}

async fn interrupt(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    match v.get("prompt_id").filter(|p| validate::truthy(p)) {
        Some(pid) => {
            let running = app
                .lock()
                .running
                .as_ref()
                .is_some_and(|r| json!(r.prompt_id) == *pid);
            if running {
                app.log("Interrupting prompt");
                app.interrupt.store(true, Ordering::SeqCst);
            } else {
                app.log(&format!(
                    "Prompt {} is not currently running, skipping interrupt",
                    py_str(pid)
                ));
            }
        }
        None => app.interrupt.store(true, Ordering::SeqCst),
    }
    empty(StatusCode::OK)
}

async fn free(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(v) = parse_json(&body) else {
        return trouble();
    };
    if validate::truthy_field(&v, "unload_models") || validate::truthy_field(&v, "free_memory") {
        app.lock().cache.clear();
        app.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .files
            .clear();
    }
    empty(StatusCode::OK)
}

async fn object_info_class(State(app): State<Arc<App>>, Path(class): Path<String>) -> Response {
    let (info, _) = app.catalog.now();
    match info.get(&class) {
        Some(v) => {
            let mut m = Map::new();
            m.insert(class, v.clone());
            json_ok(&Value::Object(m))
        }
        None => json_ok(&json!({})),
    }
}

async fn models_folder(State(app): State<Arc<App>>, Path(folder): Path<String>) -> Response {
    let known: Vec<String> = serde_json::from_str(MODELS).unwrap_or_default();
    if known.contains(&folder) {
        json_ok(&json!(crate::models::list(&app.dirs.models, &folder)))
    } else {
        empty(StatusCode::NOT_FOUND)
    }
}

async fn userdata(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dir = q.get("dir").cloned().unwrap_or_default();
    let path = app.dirs.user.join("default").join(&dir);
    if dir.contains("..") || !path.is_dir() {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Directory not found",
        )
            .into_response();
    }
    json_ok(&json!(sorted_names(&path)))
}

async fn folder_paths(State(app): State<Arc<App>>) -> Response {
    json_ok(
        &json!({"output": [app.dirs.output], "input": [app.dirs.input], "temp": [app.dirs.temp]}),
    )
}

async fn internal_files(State(app): State<Arc<App>>, Path(kind): Path<String>) -> Response {
    let Some(dir) = app.dirs.by_type(&kind) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    json_ok(&json!(sorted_names(dir)))
}

/// The names in a folder, sorted (empty when it cannot be read), as ComfyUI
/// lists user data and internal files.
fn sorted_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_rule() {
        assert!(super::origin_mismatch(
            "127.0.0.1:8188",
            "http://evil.example.com"
        ));
        assert!(!super::origin_mismatch(
            "127.0.0.1:8188",
            "http://127.0.0.1:8188"
        ));
        assert!(!super::origin_mismatch(
            "example.com:8188",
            "http://evil.example.com"
        ));
    }
}
