//! Tauri commands, one file per area. Each command is a few lines: read the
//! state, call the part that owns the work, map the error to `ApiError`.

pub mod app;
pub mod desktop;
pub mod instances;
pub mod jobs;
