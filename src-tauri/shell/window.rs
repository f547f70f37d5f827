//! What the shell's parts share: the main window, the notices of the
//! start, and the loopback gateway of the fleet's editor window.

use std::sync::Mutex;
use tauri::Manager;

/// Label of the one main window (see tauri.conf.json).
pub const MAIN_WINDOW: &str = "main";

/// What starting found that the user should read once (a config recovered
/// from its backup, a migration, read-only mode, jobs recovered or pruned):
/// the UI takes them when it loads, and they are then gone.
#[derive(Default)]
pub struct StartupNotices(pub Mutex<Vec<String>>);

impl StartupNotices {
    pub fn add(&self, notice: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice);
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A loopback gateway over the same queue for the app's own "ComfyUI
/// (fleet)" window while the gateway is on the network (where it wants a
/// token and serves HTTPS that the webview does not trust); stopped when
/// the window closes.
#[derive(Default)]
pub struct WindowGateway(pub tokio::sync::Mutex<Option<storycore_core::gateway::Gateway>>);

/// Shows, un-minimises and focuses the main window.
pub(crate) fn show_main_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}
