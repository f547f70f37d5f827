//! The gateway's HTTP routes, served at the root and under `/api` as real
//! ComfyUI serves them.

use super::shapes::{self, empty, json_ok, prompt_error, trouble};
use super::tokens::Caller;
use super::userdata as users;
use super::GatewayState;
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
use std::time::{Duration, Instant};
use storycore_types::{GatewayPrompt, JobState, JobTarget};

type St = State<Arc<GatewayState>>;
type Who = Extension<Caller>;

/// Whether `c` may see and touch `job`.
pub(crate) fn visible(c: &Caller, job: &storycore_types::Job) -> bool {
    c.sees(job.gateway.as_ref().and_then(|g| g.owner.as_deref()))
}

/// Largest request body read (a prompt, an upload): ComfyUI's own limit,
/// its `max_upload_size`; larger is refused with 413.
pub(crate) const MAX_BODY: usize = 100 << 20;
/// How long the node classes read from an instance are trusted.
const CLASSES_FRESH_FOR: Duration = Duration::from_secs(60);
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
            .route("/object_info", get(forward))
            .route("/object_info/{class}", get(forward))
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

/// An instance that can answer now: the least loaded healthy one.
pub(crate) fn instance_client(st: &GatewayState) -> Option<ComfyClient> {
    let i = st.manager.instances_by_load().into_iter().next()?;
    ComfyClient::for_instance(&i.config).ok()
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
    match instance_client(&st) {
        Some(client) => crate::client::editor_proxy::forward(&client, req).await,
        None => no_instance(),
    }
}

/// The fleet's node classes, as an instance's `/object_info` describes
/// them: read when first needed, trusted for a minute, read again when a
/// prompt is refused with an older copy (a node installed since, a file
/// added to an input folder).
#[derive(Default)]
pub(crate) struct ClassCache(tokio::sync::Mutex<Option<(Instant, Arc<Value>)>>);

impl ClassCache {
    /// The node classes and when they were read; `None` without a healthy
    /// instance to ask. Held while they are read again, so prompts that
    /// come meanwhile wait for that one read instead of each making one.
    async fn get(&self, st: &GatewayState, max_age: Duration) -> Option<(Instant, Arc<Value>)> {
        let mut cached = self.0.lock().await;
        if let Some((at, c)) = &*cached {
            if at.elapsed() < max_age {
                return Some((*at, c.clone()));
            }
        }
        let info = instance_client(st)?.object_info().await.ok()?;
        let read = (Instant::now(), Arc::new(Value::Object(info)));
        *cached = Some(read.clone());
        Some(read)
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
    let Some((read_at, info)) = st.classes.get(st, CLASSES_FRESH_FOR).await else {
        return match refusal_without_classes(nodes) {
            Some(refused) => Err(refused),
            None => Ok(json!({})),
        };
    };
    let outcome = match validate_against(st, nodes, &info) {
        Ok(Outcome::Invalid { .. }) if read_at.elapsed() > CLASSES_RECHECK_AFTER => {
            match st.classes.get(st, Duration::ZERO).await {
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

async fn get_queue(State(st): St, Extension(who): Who) -> Response {
    let mut running = Vec::new();
    let mut pending = Vec::new();
    let shown = |j: &storycore_types::Job| !j.state.is_final() && visible(&who, j);
    for job in st.queue.gateway_jobs_where(shown, shown) {
        let Some(g) = &job.gateway else { continue };
        match job.state {
            JobState::Dispatched | JobState::Running => running.push(shapes::queue_item(&job, g)),
            JobState::Queued => pending.push(shapes::queue_item(&job, g)),
            _ => {}
        }
    }
    json_ok(&json!({"queue_running": running, "queue_pending": pending}))
}

/// A prompt in the history: finished, and not taken off the queue before
/// it started (ComfyUI keeps no trace of a deleted or cleared prompt).
fn in_history(j: &storycore_types::Job) -> bool {
    j.state.is_final() && !(j.state == JobState::Cancelled && j.started_at.is_none())
}

/// The body of a control POST: JSON whatever its type; `None` when it is
/// not JSON (ComfyUI then fails with a 500, or, for /interrupt, interrupts all).
fn control_body(body: &Bytes) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The gateway's jobs `who` may touch named by `ids` (the clients' prompt
/// ids), or all of them.
fn named(st: &GatewayState, who: &Caller, ids: Option<&Value>) -> Vec<storycore_types::Job> {
    let wanted: Option<HashSet<&str>> = ids
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    st.queue
        .gateway_jobs_where(|j| visible(who, j), |_| false)
        .into_iter()
        .filter(|j| {
            let p = j
                .gateway
                .as_ref()
                .map(|g| g.prompt_id.as_str())
                .unwrap_or_default();
            wanted.as_ref().is_none_or(|w| w.contains(p))
        })
        .collect()
}

fn ok_empty() -> Response {
    (StatusCode::OK, "").into_response()
}

/// `{"delete": [ids]}` takes pending prompts off the queue; `{"clear":
/// true}` all pending ones. A running prompt stays (use /interrupt).
async fn post_queue(State(st): St, Extension(who): Who, body: Bytes) -> Response {
    let Some(body) = control_body(&body) else {
        return trouble();
    };
    let mut pending = Vec::new();
    if body.get("clear") == Some(&Value::Bool(true)) {
        pending.extend(named(&st, &who, None));
    }
    if let Some(ids) = body.get("delete") {
        pending.extend(named(&st, &who, Some(ids)));
    }
    for j in pending.into_iter().filter(|j| j.state == JobState::Queued) {
        if let Err(e) = st.queue.cancel(&j.id).await {
            tracing::debug!(job = %j.id, "gateway: not taken off the queue: {e}");
        }
    }
    ok_empty()
}

/// `{"prompt_id": id}` interrupts that prompt if it runs; anything else
/// (no body, not JSON) every running prompt of the gateway's clients.
async fn post_interrupt(State(st): St, Extension(who): Who, body: Bytes) -> Response {
    let one = control_body(&body).and_then(|b| b.get("prompt_id").cloned());
    let jobs = match &one {
        Some(id) => named(&st, &who, Some(&json!([id]))),
        None => named(&st, &who, None),
    };
    for j in jobs.into_iter().filter(|j| j.state.is_in_flight()) {
        if let Err(e) = st.queue.cancel(&j.id).await {
            tracing::debug!(job = %j.id, "gateway: not interrupted: {e}");
        }
    }
    ok_empty()
}

/// `{"delete": [ids]}` or `{"clear": true}`: finished prompts forgotten
/// (their jobs and outputs removed).
async fn post_history(State(st): St, Extension(who): Who, body: Bytes) -> Response {
    let Some(body) = control_body(&body) else {
        return trouble();
    };
    let mut gone = Vec::new();
    if body.get("clear") == Some(&Value::Bool(true)) {
        gone.extend(named(&st, &who, None));
    }
    if let Some(ids) = body.get("delete") {
        gone.extend(named(&st, &who, Some(ids)));
    }
    for j in gone.into_iter().filter(|j| j.state.is_final()) {
        if let Err(e) = st.queue.remove(&j.id).await {
            tracing::debug!(job = %j.id, "gateway: not removed from the history: {e}");
        }
    }
    ok_empty()
}

/// Finished gateway prompts `who` may see, oldest first, as summaries (no
/// workflow).
fn finished(st: &GatewayState, who: &Caller) -> Vec<storycore_types::Job> {
    st.queue
        .gateway_jobs_where(|j| in_history(j) && visible(who, j), |_| false)
}

/// ComfyUI's history object for `jobs`, oldest first as ComfyUI keeps it
/// (written by hand: a JSON map here would sort the prompt ids). Only
/// these jobs are read whole (with their workflows).
fn history_of(st: &GatewayState, jobs: &[storycore_types::Job]) -> Response {
    let entries: Vec<String> = jobs
        .iter()
        .filter_map(|j| st.queue.get(&j.id))
        .filter_map(|j| {
            let g = j.gateway.as_ref()?;
            Some(format!(
                "{}:{}",
                json!(g.prompt_id),
                shapes::history_entry(&j, g)
            ))
        })
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        format!("{{{}}}", entries.join(",")),
    )
        .into_response()
}

/// `?max_items=N`: the newest N; with `offset=K`, N from the K-th oldest.
async fn get_history(
    State(st): St,
    Extension(who): Who,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parse = |k: &str| q.get(k).map(|v| v.parse::<usize>());
    let (max, offset) = match (parse("max_items"), parse("offset")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => return trouble(),
        (m, o) => (m.and_then(Result::ok), o.and_then(Result::ok)),
    };
    let all = finished(&st, &who);
    let picked: &[storycore_types::Job] = match (max, offset) {
        (Some(n), Some(k)) => &all[k.min(all.len())..(k.saturating_add(n)).min(all.len())],
        (Some(n), None) => &all[all.len().saturating_sub(n)..],
        (None, Some(k)) => &all[k.min(all.len())..],
        (None, None) => &all,
    };
    history_of(&st, picked)
}

async fn get_history_one(State(st): St, Extension(who): Who, Path(id): Path<String>) -> Response {
    let all = finished(&st, &who);
    let one = all
        .iter()
        .rev()
        .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == id));
    history_of(&st, one.map(std::slice::from_ref).unwrap_or_default())
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
    for i in st.manager.instances_by_load() {
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
    for i in st.manager.instances_by_load() {
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

pub(crate) fn no_instance() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "503: no instance of the fleet is running and healthy; start one in StoryCore Engine",
    )
        .into_response()
}
