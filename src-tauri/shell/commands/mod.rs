//! Tauri commands, one file per area. Each command is a few lines: read the
//! state, call the part that owns the work, map the error to `ApiError`.
//!
//! A command that is not `async` runs on the main thread, which also runs the
//! window: every command that touches the disk or the network is `async`,
//! and runs its file work on the blocking pool ([`blocking`]).

pub mod app;
pub mod desktop;
pub mod instances;
pub mod jobs;
pub mod pools;
pub mod projects;
pub mod settings;

/// Runs file work on Tokio's blocking pool, away from the main thread and the
/// runtime's workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, storycore_types::ApiError> + Send + 'static,
) -> Result<T, storycore_types::ApiError> {
    tauri::async_runtime::spawn_blocking(f).await.map_err(|e| {
        storycore_types::ApiError::new(
            storycore_types::ErrorCode::Internal,
            format!("the task stopped: {e}"),
        )
    })?
}
