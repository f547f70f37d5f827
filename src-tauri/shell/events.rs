//! The one typed event channel to the UI.

use storycore_types::{AppEvent, APP_EVENT};
use tauri::Emitter;
use tokio::sync::broadcast::{self, error::RecvError};

/// Sends `event` to every window. A failure only means no window listens yet.
pub fn emit(app: &tauri::AppHandle, event: AppEvent) {
    if let Err(e) = app.emit(APP_EVENT, &event) {
        tracing::debug!("event not delivered: {e}");
    }
}

/// Forwards the backend's broadcast (manager, health monitors) to the UI.
pub fn bridge(app: tauri::AppHandle, mut rx: broadcast::Receiver<AppEvent>) {
    tauri::async_runtime::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => emit(&app, e),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("the UI bridge fell behind and skipped {n} events")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}
