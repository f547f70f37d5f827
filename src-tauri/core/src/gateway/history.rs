//! ComfyUI's `/queue`, `/interrupt` and `/history` for the whole fleet, as
//! each caller may see it: their own prompts, or everyone's.

use super::shapes::{self, json_ok, trouble};
use super::state::GatewayState;
use super::tokens::{visible, Caller};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use storycore_types::JobState;

type St = State<Arc<GatewayState>>;
type Who = Extension<Caller>;

pub(crate) async fn get_queue(State(st): St, Extension(who): Who) -> Response {
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
pub(crate) async fn post_queue(State(st): St, Extension(who): Who, body: Bytes) -> Response {
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
pub(crate) async fn post_interrupt(State(st): St, Extension(who): Who, body: Bytes) -> Response {
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
pub(crate) async fn post_history(State(st): St, Extension(who): Who, body: Bytes) -> Response {
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
pub(crate) async fn get_history(
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

pub(crate) async fn get_history_one(
    State(st): St,
    Extension(who): Who,
    Path(id): Path<String>,
) -> Response {
    let all = finished(&st, &who);
    let one = all
        .iter()
        .rev()
        .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == id));
    history_of(&st, one.map(std::slice::from_ref).unwrap_or_default())
}
