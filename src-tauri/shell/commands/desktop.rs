//! The desktop around the app: native folder and file pickers, and opening a
//! folder or file in the user's file manager or default application.

use std::path::Path;
use std::process::{Command, Stdio};
use storycore_core::manager::InstanceManager;
use storycore_types::{ApiError, ErrorCode, InstancePath};
use tauri::{AppHandle, State};
use tauri_plugin_dialog::{DialogExt, FilePath};

type Answer<T> = Result<T, ApiError>;

/// The program that opens a path the way a double click in the file manager
/// would (found on PATH).
const OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else if cfg!(windows) {
    "explorer"
} else {
    "xdg-open"
};

/// Hands `path` to the desktop's opener and reaps it in the background.
pub fn open_on_desktop(path: &Path) -> Answer<()> {
    let mut child = Command::new(OPENER)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Io,
                format!(
                    "could not open {}: {OPENER} did not start ({e}); install it (package \
                     xdg-utils on Linux) or open the path by hand",
                    path.display()
                ),
            )
        })?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    tracing::info!(path = %path.display(), "opened on the desktop");
    Ok(())
}

/// Opens a local instance's output folder or log file.
#[tauri::command]
pub async fn open_instance_path(
    m: State<'_, InstanceManager>,
    id: String,
    what: InstancePath,
) -> Answer<String> {
    let m = m.inner().clone();
    super::blocking(move || {
        let path = m.instance_path(&id, what)?;
        open_on_desktop(&path)?;
        Ok(path.display().to_string())
    })
    .await
}

fn picked(f: Option<FilePath>) -> Option<String> {
    f.and_then(|f| f.into_path().ok())
        .map(|p| p.display().to_string())
}

/// Where a picker starts: the folder given (or the one holding the file
/// given) when it exists, else the home folder. (GTK's own default is its
/// "Recent" list, where a folder chooser cannot choose anything.)
fn start_dir(start: Option<String>) -> Option<std::path::PathBuf> {
    let given = start
        .map(|s| std::path::PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|p| {
            if p.is_dir() {
                Some(p)
            } else {
                p.parent().filter(|d| d.is_dir()).map(Path::to_path_buf)
            }
        });
    given.or_else(|| {
        std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .filter(|h| h.is_dir())
    })
}

/// The native folder chooser; `None` when the user cancels.
#[tauri::command]
pub async fn pick_folder(
    app: AppHandle,
    title: String,
    start: Option<String>,
) -> Answer<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app.dialog().file().set_title(title);
    if let Some(dir) = start_dir(start) {
        dialog = dialog.set_directory(dir);
    }
    dialog.pick_folder(move |f| {
        let _ = tx.send(picked(f));
    });
    Ok(rx.await.unwrap_or(None))
}

/// The native file chooser for a workflow (`.json`); `None` when cancelled.
#[tauri::command]
pub async fn pick_workflow_file(app: AppHandle, start: Option<String>) -> Answer<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app
        .dialog()
        .file()
        .set_title("Import a workflow (API format)")
        .add_filter("ComfyUI workflow (API format)", &["json"]);
    if let Some(dir) = start_dir(start) {
        dialog = dialog.set_directory(dir);
    }
    dialog.pick_file(move |f| {
        let _ = tx.send(picked(f));
    });
    Ok(rx.await.unwrap_or(None))
}

/// The native chooser for an instances file: where to export (`save`), or
/// which file to import. `None` when the user cancels.
#[tauri::command]
pub async fn pick_instances_file(app: AppHandle, save: bool) -> Answer<Option<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dialog = app.dialog().file();
    if save {
        // No filter here: with one, the chooser appends ".json" to a name
        // the user already ended with ".json" (fleet.json.json).
        dialog
            .set_title("Export instances")
            .set_file_name("comfyui_instances_export.json")
            .save_file(move |f| {
                let _ = tx.send(picked(f));
            });
    } else {
        dialog
            .add_filter("Instances file (JSON)", &["json"])
            .set_title("Import instances")
            .pick_file(move |f| {
                let _ = tx.send(picked(f));
            });
    }
    Ok(rx.await.unwrap_or(None))
}
