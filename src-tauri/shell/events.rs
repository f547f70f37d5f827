//! The one typed event channel to the UI.

use storycore_types::{AppEvent, APP_EVENT};
use tauri::Emitter;

/// Sends `event` to every window. A failure only means no window listens yet.
pub fn emit(app: &tauri::AppHandle, event: AppEvent) {
    if let Err(e) = app.emit(APP_EVENT, &event) {
        tracing::debug!("event not delivered: {e}");
    }
}
