//! The gateway's HTTP routes, served at the root and under `/api` as real
//! ComfyUI serves them.

use super::fleet::{instance_client, no_instance, MAX_BODY};
use super::history::{
    get_history, get_history_one, get_queue, post_history, post_interrupt, post_queue,
};
use super::shapes::{self, empty, json_ok, prompt_error, trouble};
use super::state::GatewayState;
use super::tokens::{visible, Caller};
use super::userdata as users;
use crate::client::ComfyClient;
use crate::dispatch::{DispatchError, JobContext};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use comfyui_rules::Outcome;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use storycore_types::{GatewayPrompt, JobTarget};

type St = State<Arc<GatewayState>>;
type Who = Extension<Caller>;

/// How long the node classes read from an instance are trusted.
const CLASSES_FRESH_FOR: Duration = Duration::from_secs(60);
/// How old the joined classes a client reads may be (a model file added to
/// an instance shows within this).
const OBJECT_INFO_FRESH_FOR: Duration = Duration::from_secs(5);
/// A prompt refused against node classes older than this is checked again
/// against the instance's classes of now.
const CLASSES_RECHECK_AFTER: Duration = Duration::from_secs(2);

pub(crate) fn router(state: Arc<GatewayState>) -> Router {
    // A method a route does not take is answered by an instance, as
    // ComfyUI answers it (405 with its Allow list, or 404).
    let ours = |m: MethodRouter<Arc<GatewayState>>| m.fallback(forward);
    let api = || {
        Router::new()
            .route("/prompt", ours(get(get_prompt).post(post_prompt)))
            .route("/queue", ours(get(get_queue).post(post_queue)))
            .route("/interrupt", ours(post(post_interrupt)))
            .route("/history", ours(get(get_history).post(post_history)))
            .route("/history/{id}", ours(get(get_history_one)))
            .route("/view", ours(get(view)))
            .route("/upload/image", ours(post(super::uploads::upload_image)))
            .route("/upload/mask", ours(post(super::uploads::upload_mask)))
            .route("/ws", get(super::socket::upgrade))
            .route("/object_info", get(object_info))
            .route("/object_info/{class}", get(object_info_class))
            .route("/system_stats", ours(get(system_stats)))
            .route("/embeddings", get(forward))
            .route("/models", get(forward))
            .route("/models/{folder}", get(forward))
            .route("/extensions", get(forward))
            .route("/features", get(forward))
            // The editor's own data: the gateway's, one copy for the fleet.
            .route(
                "/users",
                ours(get(users::get_users).post(users::post_users)),
            )
            .route(
                "/settings",
                ours(get(users::get_settings).post(users::post_settings)),
            )
            .route(
                "/settings/{id}",
                ours(get(users::get_setting).post(users::post_setting)),
            )
            .route("/userdata", ours(get(users::list)))
            .route("/v2/userdata", ours(get(users::list_v2)))
            .route(
                "/userdata/{file}",
                ours(get(users::read).post(users::write).delete(users::delete)),
            )
            .route("/userdata/{file}/move/{dest}", ours(post(users::rename)))
    };
    Router::new()
        .merge(api())
        .nest("/api", api())
        // Everything else (ComfyUI's web editor's page and scripts) is an
        // instance's: the editor opened on the gateway runs its Queue on
        // the fleet.
        .fallback(forward)
        .layer(axum::middleware::from_fn(same_origin))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// ComfyUI refuses a request whose `Origin` names another host than the
/// one it was sent to (403, empty): a web page elsewhere must not post
/// prompts to a server on this machine. The gateway does the same.
async fn same_origin(req: Request, next: axum::middleware::Next) -> Response {
    let origin_host = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(|o| {
            o.split_once("://")
                .map_or(o, |(_, rest)| rest)
                .trim_end_matches('/')
                .to_string()
        });
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    match origin_host {
        Some(o) if Some(&o) != host.as_ref() => {
            tracing::warn!(origin = %o, host = ?host, "gateway: a request from another origin refused");
            empty(StatusCode::FORBIDDEN)
        }
        _ => next.run(req).await,
    }
}

/// Read-only routes about nodes, models and the server: answered by an
/// instance of the fleet (they are alike).
async fn forward(State(st): St, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let mut req = req;
    // Instances serve these at the root; `/api/...` maps to the same.
    if let Some(rest) = path.strip_prefix("/api") {
        let q = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(uri) = format!("{rest}{q}").parse() {
            *req.uri_mut() = uri;
        }
    }
    match instance_client(&st.queue) {
        Some(client) => crate::client::editor_proxy::forward(&client, req).await,
        None => no_instance(),
    }
}

/// `/object_info` of the fleet: every instance's classes and files joined,
/// so a client offers every model some instance has (placement sends each
/// job where its files are).
async fn object_info(State(st): St) -> Response {
    match st.classes.get(&st.queue, OBJECT_INFO_FRESH_FOR).await {
        Some((_, info)) => json_ok(&info),
        None => no_instance(),
    }
}

async fn object_info_class(State(st): St, Path(class): Path<String>) -> Response {
    match st.classes.get(&st.queue, OBJECT_INFO_FRESH_FOR).await {
        Some((_, info)) => {
            let mut one = Map::new();
            if let Some(spec) = info.get(&class) {
                one.insert(class, spec.clone());
            }
            json_ok(&Value::Object(one))
        }
        None => no_instance(),
    }
}

async fn get_prompt(State(st): St, Extension(who): Who) -> Response {
    json_ok(&json!({"exec_info": {"queue_remaining": st.queue.gateway_remaining_of(who.scope())}}))
}

/// `POST /prompt`: the body is JSON whatever its Content-Type (clients in
/// the wild send `text/plain`, or none). Accepted means durable: the prompt
/// is a job of the queue when this answers.
async fn post_prompt(State(st): St, Extension(who): Who, body: Bytes) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return trouble();
    };
    let Value::Object(body) = value else {
        return prompt_error(
            "no_prompt",
            "No prompt provided",
            "No prompt provided",
            json!({}),
        );
    };
    // ComfyUI counts every POST without a number, refused or not.
    let number = match body.get("number") {
        Some(n) if n.is_number() => n.clone(),
        _ => {
            let n = st.counter.fetch_add(1, Ordering::Relaxed);
            if body.get("front") == Some(&Value::Bool(true)) {
                json!(-n)
            } else {
                json!(n)
            }
        }
    };
    let Some(prompt) = body.get("prompt") else {
        return prompt_error(
            "no_prompt",
            "No prompt provided",
            "No prompt provided",
            json!({}),
        );
    };
    let Value::Object(nodes) = prompt else {
        return trouble();
    };
    if let (Some(name), Some(cap)) = (who.name.as_deref(), st.max_waiting) {
        let waiting = st.queue.gateway_waiting_of(name);
        if waiting >= cap as usize {
            return prompt_error(
                "prompt_rejected",
                &format!("{name} has {waiting} prompts waiting, this gateway's most per person: wait for some to start, or take some off with POST /queue {{\"delete\": [...]}}"),
                "",
                json!({}),
            );
        }
    }
    let node_errors = match check_prompt(&st, nodes).await {
        Ok(node_errors) => node_errors,
        Err(refusal) => return refusal,
    };
    if let Err(e) = crate::dispatch::workflow::check_workflow(prompt) {
        return prompt_error("invalid_prompt", &e.to_string(), "", json!({}));
    }
    let prompt_id = body
        .get("prompt_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client_id = body
        .get("client_id")
        .and_then(Value::as_str)
        .map(String::from);
    let mut extra_data = match body.get("extra_data") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(c) = &client_id {
        extra_data.insert("client_id".into(), json!(c));
    }
    let input_files = st.uploads.read_by(nodes);
    let context = JobContext {
        input_files,
        gateway: Some(GatewayPrompt {
            prompt_id: prompt_id.clone(),
            number: number.clone(),
            client_id,
            extra_data: Value::Object(extra_data),
            owner: who.owner(),
        }),
        ..JobContext::default()
    };
    match st
        .queue
        .submit_in(prompt.clone(), JobTarget::Auto, &context)
        .await
    {
        Ok(job) => {
            tracing::debug!(job = %job.id, prompt = %prompt_id, "gateway prompt accepted");
            json_ok(&json!({"prompt_id": prompt_id, "number": number, "node_errors": node_errors}))
        }
        Err(DispatchError::BadWorkflow { .. }) | Err(DispatchError::Template { .. }) => {
            prompt_error(
                "invalid_prompt",
                "The prompt is not a workflow this app can run",
                "",
                json!({}),
            )
        }
        Err(e) => {
            tracing::warn!("gateway prompt not accepted: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("503: the prompt was not accepted ({e})"),
            )
                .into_response()
        }
    }
}

/// ComfyUI's validation, against the fleet's node classes: the refusal a
/// ComfyUI of the fleet would give, or the `node_errors` of the outputs
/// that will not run (a prompt with one good output is accepted).
/// Without an instance to ask, only what needs no classes is checked; the
/// instance that runs the job checks the rest.
async fn check_prompt(st: &GatewayState, nodes: &Map<String, Value>) -> Result<Value, Response> {
    let Some((read_at, info)) = st.classes.get(&st.queue, CLASSES_FRESH_FOR).await else {
        return match refusal_without_classes(nodes) {
            Some(refused) => Err(refused),
            None => Ok(json!({})),
        };
    };
    let outcome = match validate_against(st, nodes, &info) {
        Ok(Outcome::Invalid { .. }) if read_at.elapsed() > CLASSES_RECHECK_AFTER => {
            match st.classes.get(&st.queue, Duration::ZERO).await {
                Some((_, fresh)) => validate_against(st, nodes, &fresh),
                None => validate_against(st, nodes, &info),
            }
        }
        other => other,
    };
    match outcome {
        Err(comfyui_rules::ServerRaises) => Err(trouble()),
        Ok(Outcome::Invalid { error, node_errors }) => Err(shapes::refused(error, node_errors)),
        Ok(Outcome::Ok { node_errors, .. }) => Ok(node_errors),
    }
}

/// Validates against `info`. An image loader's file (ComfyUI checks that
/// it exists) may be one the gateway keeps (sent to the instance with the
/// prompt) or one the instance lists; a file in a subfolder the gateway
/// does not keep is left to the instance that runs the prompt to check.
fn validate_against(
    st: &GatewayState,
    nodes: &Map<String, Value>,
    info: &Value,
) -> Result<Outcome, comfyui_rules::ServerRaises> {
    let mut prompt = nodes.clone();
    let custom = |class: &str, input: &str, value: &Value, listed: Option<&[Value]>| {
        if !comfyui_rules::checks_image_file(class, input) {
            return None;
        }
        let name = value.as_str().unwrap_or_default();
        let (named, kind) = comfyui_rules::upload::annotated(name);
        let (subfolder, file) = named.rsplit_once('/').unwrap_or(("", named));
        let known = st
            .uploads
            .find(kind.unwrap_or("input"), subfolder, file)
            .is_some()
            || !subfolder.is_empty()
            || listed.is_some_and(|l| l.contains(value));
        Some(if known {
            Ok(())
        } else {
            Err(comfyui_rules::invalid_image_file(value))
        })
    };
    comfyui_rules::validate(&mut prompt, info, &custom)
}

/// ComfyUI's first refusals, which need no node classes.
fn refusal_without_classes(nodes: &Map<String, Value>) -> Option<Response> {
    for id in comfyui_rules::sorted_ids(nodes.keys()) {
        match &nodes[&id] {
            Value::Object(n) if n.contains_key("class_type") => {}
            Value::Object(_) | Value::String(_) | Value::Array(_) => {
                return Some(prompt_error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    &format!("Node ID '#{id}'"),
                    json!({}),
                ))
            }
            _ => return Some(trouble()),
        }
    }
    nodes
        .is_empty()
        .then(|| prompt_error("prompt_no_outputs", "Prompt has no outputs", "", json!({})))
}

/// `/view`: a gateway prompt's output, from the app's own copy (it outlives
/// the instance that made it). Refusals as ComfyUI gives them.
async fn view(
    State(st): St,
    Extension(who): Who,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(filename) = q.get("filename").filter(|f| !f.is_empty()) else {
        return empty(StatusCode::NOT_FOUND);
    };
    if filename.contains("..") || filename.starts_with('/') || filename.contains('\\') {
        return empty(StatusCode::BAD_REQUEST);
    }
    let subfolder = q.get("subfolder").map(String::as_str).unwrap_or("");
    if subfolder.split(['/', '\\']).any(|p| p == "..") || subfolder.starts_with('/') {
        return empty(StatusCode::FORBIDDEN);
    }
    // `name [input]` names its folder itself.
    let (filename, annotated) = comfyui_rules::upload::annotated(filename);
    let kind = annotated.unwrap_or_else(|| q.get("type").map(String::as_str).unwrap_or("output"));
    if !matches!(kind, "output" | "input" | "temp") {
        return empty(StatusCode::BAD_REQUEST);
    }
    // A prompt's output is its owner's.
    if let Some((job, _)) = shapes::split_subfolder(subfolder) {
        if st.queue.summary(job).is_some_and(|j| !visible(&who, &j)) {
            return empty(StatusCode::NOT_FOUND);
        }
    }
    let Some(path) = super::uploads::held_file(&st, kind, subfolder, filename) else {
        if shapes::split_subfolder(subfolder).is_some() {
            return empty(StatusCode::NOT_FOUND);
        }
        // Not the gateway's (an input image, a file a prompt sent straight
        // to an instance wrote): whichever instance has it.
        return view_on_fleet(&st, uri).await;
    };
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(bytes)) => (
            [
                (
                    header::CONTENT_TYPE,
                    shapes::content_type(filename).to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("filename=\"{}\"", filename.replace('"', "")),
                ),
            ],
            bytes,
        )
            .into_response(),
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// A file no gateway prompt made, from the first instance that has it.
async fn view_on_fleet(st: &GatewayState, uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    for i in st.queue.instances_by_load() {
        let Ok(client) = ComfyClient::for_instance(&i.config) else {
            continue;
        };
        let Ok(req) = Request::get(format!("/view{query}")).body(axum::body::Body::empty()) else {
            break;
        };
        let answer = crate::client::editor_proxy::forward(&client, req).await;
        if answer.status() != StatusCode::NOT_FOUND {
            return answer;
        }
    }
    empty(StatusCode::NOT_FOUND)
}

/// `/system_stats` for the fleet: the answering instance's `system`, and
/// the devices of every healthy instance (a GPU two instances of one
/// machine share is listed once).
async fn system_stats(State(st): St) -> Response {
    let mut stats: Option<Value> = None;
    let mut devices: Vec<Value> = Vec::new();
    let mut seen = HashSet::new();
    for i in st.queue.instances_by_load() {
        let Ok(client) = ComfyClient::for_instance(&i.config) else {
            continue;
        };
        let Ok(mine) = client
            .get_json::<Value>("/system_stats", "reading the system (GET /system_stats)")
            .await
        else {
            continue;
        };
        let host = reqwest::Url::parse(client.base_url())
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_default();
        for d in mine["devices"].as_array().into_iter().flatten() {
            if seen.insert((host.clone(), d["name"].to_string())) {
                devices.push(d.clone());
            }
        }
        stats.get_or_insert(mine);
    }
    match stats {
        Some(mut s) => {
            s["devices"] = Value::Array(devices);
            json_ok(&s)
        }
        None => no_instance(),
    }
}
