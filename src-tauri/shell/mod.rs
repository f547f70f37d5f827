//! The Tauri layer: window, commands, events, tray. Thin by design: it parses,
//! calls the part that owns the work, and maps errors to `ApiError`.

mod commands;
mod events;
mod heartbeat;
mod tray;

use crate::paths::AppPaths;
use tauri::Manager;

pub use events::emit;

/// Label of the one main window (see tauri.conf.json).
pub const MAIN_WINDOW: &str = "main";

/// Builds and runs the Tauri app until the user quits.
pub fn run(paths: AppPaths) -> Result<(), tauri::Error> {
    tauri::Builder::default()
        // Must be the first plugin: a second launch hands its arguments to this
        // process and exits before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            tracing::info!(?argv, "second launch: focusing the running window");
            show_main_window(app);
            events::emit(app, storycore_types::AppEvent::SecondLaunch);
        }))
        .manage(paths)
        .invoke_handler(tauri::generate_handler![commands::app_info])
        .setup(|app| {
            tray::install(app.handle())?;
            heartbeat::spawn(app.handle().clone());
            Ok(())
        })
        .run(tauri::generate_context!())
}

/// Shows, un-minimises and focuses the main window.
pub(crate) fn show_main_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}
