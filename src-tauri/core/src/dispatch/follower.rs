//! One `/ws` connection per instance the queue sends work to, with the app's
//! client id: its messages become job progress, typed events, and a poke to
//! the job's runner when the prompt ends. The socket is a fast path only; the
//! runner's `/history` polls decide the outcome.

use super::state::{Sent, Shared};
use crate::client::{BinaryFrame, ComfyClient, WsEvent, WsMessage, WsOptions};
use std::sync::Arc;
use storycore_types::AppEvent;
use tokio::sync::watch;

/// Follows the instance's `/ws` stream until the queue stops, telling
/// `connected` how it goes (started by the driver, once per instance: see
/// `Shared::follow`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    instance_id: String,
    client: ComfyClient,
    connected: watch::Sender<Option<bool>>,
) {
    let opts = WsOptions::new(Shared::client_id(&instance_id));
    let mut rx = client.open_events(opts, shared.cancel.child_token());
    while let Some(ev) = rx.recv().await {
        match ev {
            WsEvent::Message(m) => on_message(&shared, &instance_id, m),
            WsEvent::Connected => {
                connected.send_replace(Some(true));
            }
            WsEvent::Disconnected { .. } => {
                connected.send_replace(Some(false));
            }
        }
    }
    shared.lock().forget_follower(&instance_id);
}

fn on_message(shared: &Arc<Shared>, instance_id: &str, m: WsMessage) {
    let Some(prompt_id) = m.prompt_id().map(str::to_string) else {
        return;
    };
    // The index finds the job; its attempt or copy says whether the
    // prompt still counts (no scan of every job per message).
    let Some((job_id, copy)) = shared.lock().heard(instance_id, &prompt_id) else {
        return;
    };
    let sent = Sent {
        job: &job_id,
        prompt: &prompt_id,
        instance: instance_id,
    };
    if let WsMessage::Binary(BinaryFrame::PreviewWithMetadata { metadata, image }) = m {
        if !copy {
            let _ = shared.previews.send(super::options::Preview {
                job_id,
                node_id: metadata.node_id,
                display_node_id: metadata.display_node_id,
                parent_node_id: metadata.parent_node_id,
                real_node_id: metadata.real_node_id,
                image_type: metadata.image_type,
                image: image.into(),
            });
        }
        return;
    }
    // Of a copy only the start and the end count (the job shows its
    // attempt's progress).
    if copy {
        let succeeded = match m {
            WsMessage::ExecutionStart(_) => {
                shared.mark_running(sent);
                return;
            }
            WsMessage::ExecutionSuccess(_) => true,
            WsMessage::ExecutionError(_) | WsMessage::ExecutionInterrupted(_) => false,
            _ => return,
        };
        shared.mark_executed(sent, succeeded);
        poke(shared, &job_id, &prompt_id);
        return;
    }
    match m {
        WsMessage::ExecutionStart(_) => shared.mark_running(sent),
        WsMessage::ExecutionCached(c) => {
            touch(shared, &job_id, |job| {
                job.progress.cached_nodes.extend(c.nodes);
                true
            });
        }
        WsMessage::Executing(x) => match x.node {
            Some(node) => {
                shared.mark_running(sent);
                shared.lock().node_started(sent, Some(&node));
                touch(shared, &job_id, |job| {
                    job.progress.node = Some(node.clone());
                    job.progress.value = 0.0;
                    job.progress.max = 0.0;
                    false
                });
                shared.emit(AppEvent::JobProgress {
                    job_id: job_id.clone(),
                    node: Some(node),
                    value: 0.0,
                    max: 0.0,
                });
            }
            None => {
                shared.lock().node_started(sent, None);
                poke(shared, &job_id, &prompt_id)
            }
        },
        WsMessage::Progress(p) => {
            touch(shared, &job_id, |job| {
                job.progress.value = p.value;
                job.progress.max = p.max;
                if p.node.is_some() {
                    job.progress.node = p.node.clone();
                }
                false
            });
            shared.emit(AppEvent::JobProgress {
                job_id,
                node: p.node,
                value: p.value,
                max: p.max,
            });
        }
        WsMessage::Executed(x) => {
            touch(shared, &job_id, |job| {
                if !job.progress.executed_nodes.contains(&x.node) {
                    job.progress.executed_nodes.push(x.node.clone());
                }
                true
            });
        }
        // The slot is free now; the runner collects the outcome.
        WsMessage::ExecutionSuccess(_) => {
            shared.mark_executed(sent, true);
            poke(shared, &job_id, &prompt_id);
        }
        WsMessage::ExecutionError(_) | WsMessage::ExecutionInterrupted(_) => {
            shared.mark_executed(sent, false);
            poke(shared, &job_id, &prompt_id);
        }
        _ => {}
    }
}

/// Updates the job's progress in memory (not on disk: progress is redone by a
/// restarted app) and, when `f` says so, tells the listeners.
fn touch(shared: &Shared, job_id: &str, f: impl FnOnce(&mut storycore_types::Job) -> bool) {
    let mut st = shared.lock();
    if let Some(job) = st.progress(job_id, f) {
        shared.emit(AppEvent::JobUpdated(Box::new(job.summary())));
    }
}

/// Wakes the runner of the attempt or copy sent as `prompt_id`.
fn poke(shared: &Shared, job_id: &str, prompt_id: &str) {
    let st = shared.lock();
    if let Some(a) = st.entry(job_id).and_then(|e| e.sending(prompt_id)) {
        a.done().notify_one();
    }
}
