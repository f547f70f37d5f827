//! The types that cross the Tauri boundary. The backend (native) and the UI (WASM)
//! both compile this crate, so each struct is written once.

pub mod app;
pub mod error;
pub mod event;

pub use app::AppInfo;
pub use error::{ApiError, ErrorCode};
pub use event::{AppEvent, Heartbeat, APP_EVENT};
