//! The one typed event channel to the UI.

use storycore_core::dispatch::JobQueue;
use storycore_core::manager::InstanceManager;
use storycore_types::{AppEvent, Snapshot, APP_EVENT};
use tauri::{Emitter, Manager};
use tokio::sync::broadcast::{self, error::RecvError};

/// Sends `event` to every window. A failure only means no window listens yet.
pub fn emit(app: &tauri::AppHandle, event: AppEvent) {
    if let Err(e) = app.emit(APP_EVENT, &event) {
        tracing::debug!("event not delivered: {e}");
    }
}

/// Forwards the backend's broadcast (manager, health monitors, job queue) to
/// the UI. When it falls behind and events were skipped, it drops what is
/// still buffered (older than now) and sends one snapshot of everything
/// instead, which the UI replaces its state with: never a stale window.
pub fn bridge(app: tauri::AppHandle, mut rx: broadcast::Receiver<AppEvent>) {
    tauri::async_runtime::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => emit(&app, e),
                Err(RecvError::Lagged(n)) => {
                    let mut dropped = n;
                    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv()
                    {
                        dropped += 1;
                    }
                    tracing::warn!(
                        "the UI bridge fell behind by {dropped} events: sending a snapshot"
                    );
                    emit(&app, AppEvent::Snapshot(Box::new(snapshot(&app))));
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// Everything the UI shows, now.
pub fn snapshot(app: &tauri::AppHandle) -> Snapshot {
    let m = app.state::<InstanceManager>();
    Snapshot {
        instances: m.list(),
        active: m.active_instance().map(|i| i.id),
        jobs: app
            .try_state::<JobQueue>()
            .map(|q| q.summaries())
            .unwrap_or_default(),
    }
}
