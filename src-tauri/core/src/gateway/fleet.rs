//! What the gateway's routes share about the fleet behind it: the instance
//! that answers read-only questions, the answer when none can, and the
//! largest body read.

use crate::client::ComfyClient;
use crate::dispatch::JobQueue;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body read (a prompt, an upload): ComfyUI's own limit,
/// its `max_upload_size`; larger is refused with 413.
pub(crate) const MAX_BODY: usize = 100 << 20;
/// An instance that can answer now: the queue's best (see
/// [`JobQueue::healthy_instance`]).
pub(crate) fn instance_client(queue: &JobQueue) -> Option<ComfyClient> {
    let i = queue.healthy_instance()?;
    ComfyClient::for_instance(&i.config).ok()
}

pub(crate) fn no_instance() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "503: no instance of the fleet is running and healthy; start one in StoryCore Engine",
    )
        .into_response()
}

/// The fleet's node classes, as its instances' `/object_info` describe
/// them, joined (every class any instance has; each list of files holds
/// every instance's: see `dispatch::models::merge_object_info`): read when
/// first needed, trusted for a while, read again when a prompt is refused
/// with an older copy (a node installed since, a file added to a folder).
#[derive(Default)]
pub(crate) struct ClassCache(tokio::sync::Mutex<Option<(Instant, Arc<Value>)>>);

impl ClassCache {
    /// The node classes and when they were read; `None` without a healthy
    /// instance to ask. Held while they are read again, so prompts that
    /// come meanwhile wait for that one read instead of each making one.
    pub(crate) async fn get(
        &self,
        queue: &JobQueue,
        max_age: Duration,
    ) -> Option<(Instant, Arc<Value>)> {
        let mut cached = self.0.lock().await;
        if let Some((at, c)) = &*cached {
            if at.elapsed() < max_age {
                return Some((*at, c.clone()));
            }
        }
        let clients: Vec<ComfyClient> = queue
            .instances_by_load()
            .iter()
            .filter_map(|i| ComfyClient::for_instance(&i.config).ok())
            .collect();
        let answers = futures_util::future::join_all(clients.iter().map(|c| c.object_info())).await;
        let infos: Vec<serde_json::Map<String, Value>> =
            answers.into_iter().filter_map(Result::ok).collect();
        if infos.is_empty() {
            return None;
        }
        let info = crate::dispatch::models::merge_object_info(&infos);
        let read = (Instant::now(), Arc::new(Value::Object(info)));
        *cached = Some(read.clone());
        Some(read)
    }
}
