//! `/ws?clientId=...`: what ComfyUI sends a client about its prompts, made
//! from the queue's events and its instances' preview images (binary
//! frames, type 4 or 1 as the client asked). The first frame is `status` with the fleet's
//! `queue_remaining` and the `sid`; then, for each prompt posted with this
//! client id (also one posted before the socket opened): `execution_start`,
//! `execution_cached`, `executing`, `progress`, `executed`, and the end
//! (`execution_success`, `execution_error` or `execution_interrupted`),
//! `status`, then `executing` with `node: null`, sent after the history
//! entry exists. A prompt that fails over to another instance goes on,
//! under the same prompt id, without a second `execution_start`.

use super::shapes;
use super::state::GatewayState;
use super::tokens::Caller;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use storycore_types::{AppEvent, Job, JobState};
use tokio::sync::broadcast::error::RecvError;

pub(crate) async fn upgrade(
    State(st): State<Arc<GatewayState>>,
    Extension(who): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    // Without a clientId ComfyUI makes one: uuid4 hex, no dashes.
    let sid = q
        .get("clientId")
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // Subscribed before the handshake's answer: a client that posts its
    // prompt as soon as the socket opens misses none of its events, even
    // when the prompt ends before the socket's task first runs.
    let events = st.queue.bus().subscribe();
    let previews = st.queue.subscribe_previews();
    ws.on_upgrade(move |socket| serve(socket, st, sid, who, events, previews))
}

/// What this socket has told about one prompt.
#[derive(Default)]
struct Told {
    /// The client's prompt id.
    prompt: String,
    started: bool,
    node: Option<String>,
    ended: bool,
}

fn frame(kind: &str, data: Value) -> Message {
    Message::Text(json!({"type": kind, "data": data}).to_string().into())
}

fn status(remaining: usize, sid: Option<&str>) -> Message {
    let mut data = json!({"status": {"exec_info": {"queue_remaining": remaining}}});
    if let Some(s) = sid {
        data["sid"] = json!(s);
    }
    frame("status", data)
}

async fn serve(
    mut socket: WebSocket,
    st: Arc<GatewayState>,
    sid: String,
    who: Caller,
    mut events: tokio::sync::broadcast::Receiver<AppEvent>,
    mut previews: tokio::sync::broadcast::Receiver<crate::dispatch::Preview>,
) {
    // A named token's socket is closed when the token is revoked.
    let mut tokens = st
        .tokens
        .as_ref()
        .filter(|_| who.name.is_some())
        .map(|b| b.watch());
    let owner = who.scope();
    // Only this client's prompts, and only the caller's own: a client id
    // is no secret.
    let mine = |job: &Job| mine(job, &sid) && super::tokens::visible(&who, job);
    // The client's first message announced `supports_preview_metadata`:
    // its previews come as type 4 (with their prompt and node), else type 1.
    let mut preview_metadata = false;
    let mut remaining = st.queue.gateway_remaining_of(owner);
    if socket.send(status(remaining, Some(&sid))).await.is_err() {
        return;
    }
    let mut told: HashMap<String, Told> = HashMap::new();
    let mut heard = false;
    // A prompt of this client already running when it connected.
    let running = |j: &Job| j.state == JobState::Running && mine(j);
    for job in st.queue.gateway_jobs_where(running, |_| false) {
        for m in on_job(&job, &mut told).0 {
            if socket.send(m).await.is_err() {
                return;
            }
        }
    }
    loop {
        let event = tokio::select! {
            _ = st.cancel.cancelled() => return,
            Some(Ok(())) = async {
                match tokens.as_mut() {
                    Some(t) => Some(t.changed().await),
                    None => std::future::pending().await,
                }
            } => {
                let name = who.name.as_deref().unwrap_or_default();
                if st.tokens.as_ref().is_some_and(|b| b.holds(name)) {
                    continue;
                }
                tracing::info!(name, "gateway: a revoked token's socket closed");
                let close = axum::extract::ws::CloseFrame {
                    code: 1008,
                    reason: "the token was revoked".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    // ComfyUI answers the client's first message when it
                    // announces its feature flags, with the server's; any
                    // later or other message is ignored.
                    let first = !heard;
                    heard = true;
                    if first && is_feature_flags(&t) {
                        preview_metadata = announces_preview_metadata(&t);
                        let flags = json!({"supports_preview_metadata": true, "max_upload_size": super::fleet::MAX_BODY});
                        if socket.send(frame("feature_flags", flags)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Some(Ok(_)) => {
                    heard = true;
                    continue;
                }
                _ => return,
            },
            p = previews.recv() => {
                // Previews are not kept: one missed is not sent late.
                let Ok(p) = p else { continue };
                let Some(t) = told.get(&p.job_id).filter(|t| !t.ended) else {
                    continue;
                };
                let frame = preview_frame(&p, &t.prompt, preview_metadata);
                if socket.send(Message::Binary(frame.into())).await.is_err() {
                    return;
                }
                continue;
            }
            e = events.recv() => e,
        };
        let list = match event {
            Ok(AppEvent::Batch(list)) => list,
            Ok(e) => vec![e],
            // Events were missed: what this client's prompts are now is
            // read from the queue, so no end goes untold.
            Err(RecvError::Lagged(_)) => st
                .queue
                .gateway_jobs_where(|j| mine(j), |_| false)
                .into_iter()
                .map(|j| AppEvent::JobUpdated(Box::new(j)))
                .collect(),
            Err(RecvError::Closed) => return,
        };
        let mut out = Vec::new();
        // The fleet's count, read once per batch (a walk over the jobs).
        let mut counted = None;
        for e in list {
            match e {
                AppEvent::JobUpdated(job) if job.gateway.is_some() => {
                    let now = *counted.get_or_insert_with(|| st.queue.gateway_remaining_of(owner));
                    // `ends`: its end was told just now (a prompt taken off
                    // the queue before it started ends silently, as in ComfyUI).
                    let (frames, ends) = if mine(&job) {
                        on_job(&job, &mut told)
                    } else {
                        (Vec::new(), false)
                    };
                    // The end's `status` comes after `execution_success`.
                    if now != remaining && !ends {
                        remaining = now;
                        out.push(status(remaining, None));
                    }
                    out.extend(frames);
                    if ends {
                        remaining = now;
                        out.push(status(remaining, None));
                        let prompt = &job.gateway.as_ref().expect("checked").prompt_id;
                        out.push(frame(
                            "executing",
                            json!({"node": null, "prompt_id": prompt}),
                        ));
                    }
                }
                AppEvent::JobProgress {
                    job_id,
                    node,
                    value,
                    max,
                } => {
                    let Some(t) = told.get_mut(&job_id).filter(|t| t.started && !t.ended) else {
                        continue;
                    };
                    let prompt = t.prompt.clone();
                    // ComfyUI says which node executes before its steps.
                    if node.is_some() && node != t.node {
                        t.node = node.clone();
                        out.push(frame(
                            "executing",
                            json!({"node": node, "display_node": node, "prompt_id": prompt}),
                        ));
                    }
                    out.push(frame(
                        "progress",
                        json!({"value": value, "max": max, "prompt_id": prompt, "node": node}),
                    ));
                }
                _ => {}
            }
        }
        for m in out {
            if socket.send(m).await.is_err() {
                return;
            }
        }
    }
}

fn announces_preview_metadata(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .is_ok_and(|v| v["data"]["supports_preview_metadata"] == Value::Bool(true))
}

/// A preview as ComfyUI sends it (big-endian u32s): type 4, the metadata's
/// length, the metadata (with the client's prompt id), the image; or, to a
/// client that did not ask for metadata, type 1, the image's type (1 JPEG,
/// 2 PNG), the image.
fn preview_frame(p: &crate::dispatch::Preview, prompt: &str, with_metadata: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.image.len() + 256);
    if with_metadata {
        let meta = json!({
            "node_id": p.node_id, "prompt_id": prompt, "display_node_id": p.display_node_id,
            "parent_node_id": p.parent_node_id, "real_node_id": p.real_node_id,
            "image_type": p.image_type,
        })
        .to_string();
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(meta.as_bytes());
    } else {
        let kind: u32 = if p.image_type == "image/png" { 2 } else { 1 };
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
    }
    out.extend_from_slice(&p.image);
    out
}

fn is_feature_flags(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "feature_flags")
}

fn mine(job: &Job, sid: &str) -> bool {
    job.gateway
        .as_ref()
        .is_some_and(|g| g.client_id.as_deref() == Some(sid))
}

/// The frames a job's new state means for its client, and whether they
/// tell its end (a prompt taken off the queue before it started has none).
fn on_job(job: &Job, told: &mut HashMap<String, Told>) -> (Vec<Message>, bool) {
    let Some(g) = job.gateway.as_ref() else {
        return (Vec::new(), false);
    };
    let t = told.entry(job.id.clone()).or_insert_with(|| Told {
        prompt: g.prompt_id.clone(),
        ..Told::default()
    });
    if t.ended {
        return (Vec::new(), false);
    }
    let mut out = Vec::new();
    let ran = matches!(job.state, JobState::Running) || job.started_at.is_some();
    if ran && !t.started {
        t.started = true;
        let at = shapes::millis(job.started_at.unwrap_or(job.updated_at));
        out.push(frame(
            "execution_start",
            json!({"prompt_id": g.prompt_id, "timestamp": at}),
        ));
        out.push(frame(
            "execution_cached",
            json!({"nodes": job.progress.cached_nodes, "prompt_id": g.prompt_id, "timestamp": at}),
        ));
    }
    if job.state == JobState::Running && job.progress.node.is_some() && job.progress.node != t.node
    {
        t.node = job.progress.node.clone();
        let n = t.node.clone();
        out.push(frame(
            "executing",
            json!({"node": n, "display_node": n, "prompt_id": g.prompt_id}),
        ));
    }
    if job.state.is_final() {
        t.ended = true;
        if !t.started && job.state == JobState::Cancelled {
            return (out, false);
        }
        if job.state == JobState::Succeeded {
            for (node, output) in shapes::outputs_by_node(job) {
                out.push(frame(
                    "executed",
                    json!({"node": node, "display_node": node, "output": output, "prompt_id": g.prompt_id}),
                ));
            }
        }
        let (kind, data) = shapes::end_message(job, g);
        out.push(frame(kind, data));
        return (out, true);
    }
    (out, false)
}
