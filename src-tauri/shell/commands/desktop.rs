//! The desktop around the app: native folder and file pickers, and opening a
//! folder or file in the user's file manager or default application.

use std::path::Path;
use std::process::{Command, Stdio};
use storycore_core::client::editor_proxy::EditorProxy;
use storycore_core::client::ComfyClient;
use storycore_core::engine::Engine;
use storycore_core::manager::InstanceManager;
use storycore_types::{ApiError, ErrorCode, InstancePath};
use tauri::{AppHandle, Manager, State, WebviewUrl, WebviewWindowBuilder};
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

/// The editor windows open now, with the proxy each one needs (an instance
/// with an API key or its own CA), stopped when its window closes.
#[derive(Default)]
pub struct EditorWindows(std::sync::Mutex<std::collections::HashMap<String, EditorProxy>>);

/// ComfyUI's own editor on the gateway, in an app window: its Queue runs on
/// the whole fleet. Needs the gateway on.
#[tauri::command]
pub async fn open_fleet_comfyui(
    app: AppHandle,
    engine: State<'_, Engine>,
    own: State<'_, crate::shell::window::WindowGateway>,
    queue: State<'_, storycore_core::dispatch::JobQueue>,
    manager: State<'_, InstanceManager>,
) -> Answer<String> {
    let label = "comfyui-fleet".to_string();
    if let Some(w) = app.get_webview_window(&label) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return Ok(label);
    }
    let addr = engine.gateway_addr().await.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            "the gateway is off: turn it on in Settings (Gateway) to open ComfyUI on the whole fleet",
        )
    })?;
    let addr = if addr.ip().is_loopback() {
        addr
    } else {
        // This machine's own window: a loopback gateway over the same queue.
        let mut slot = own.0.lock().await;
        if slot.is_none() {
            let local = storycore_core::gateway::Gateway::start(
                queue.inner().clone(),
                manager.inner().clone(),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await
            .map_err(|e| ApiError::new(ErrorCode::Io, e.to_string()))?;
            *slot = Some(local);
        }
        slot.as_ref().map(|g| g.addr()).expect("just set")
    };
    let url: tauri::Url = format!("http://{addr}/")
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the gateway's address: {e}")))?;
    let window = WebviewWindowBuilder::new(&app, &label, WebviewUrl::External(url))
        .title("ComfyUI \u{2014} whole fleet")
        .inner_size(1280.0, 860.0)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the window did not open: {e}")))?;
    let handle = app.clone();
    window.on_window_event(move |e| {
        if let tauri::WindowEvent::Destroyed = e {
            let handle = handle.clone();
            tauri::async_runtime::spawn(async move {
                let gone = handle
                    .state::<crate::shell::window::WindowGateway>()
                    .0
                    .lock()
                    .await
                    .take();
                if let Some(g) = gone {
                    g.stop().await;
                }
            });
        }
    });
    Ok(label)
}

/// Opens the instance's own ComfyUI web editor in a window of the app (or
/// brings it forward): straight at its address, or through a proxy on the
/// loopback address that adds its API key and trusts its CA. Answers the
/// window's label.
#[tauri::command]
pub async fn open_comfyui(
    app: AppHandle,
    m: State<'_, InstanceManager>,
    windows: State<'_, EditorWindows>,
    id: String,
) -> Answer<String> {
    let inst = m.get(&id).ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, format!("no instance with id \"{id}\""))
    })?;
    let label = format!("comfyui-{id}");
    if let Some(w) = app.get_webview_window(&label) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        tracing::info!(%id, "the editor window is open already: shown again");
        return Ok(label);
    }
    let client = ComfyClient::for_instance(&inst.config)
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let proxy = if client.has_api_key() || inst.config.ca_file.is_some() {
        Some(EditorProxy::start(client).await.map_err(|e| {
            ApiError::new(
                ErrorCode::Io,
                format!("the editor's local proxy could not start: {e}"),
            )
        })?)
    } else {
        None
    };
    let address = match &proxy {
        Some(p) => p.url.clone(),
        None => format!("{}/", inst.config.base_url()),
    };
    let url: tauri::Url = address.parse().map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("{address} is not an address a window can open: {e}"),
        )
    })?;
    let window = WebviewWindowBuilder::new(&app, &label, WebviewUrl::External(url))
        .title(format!("ComfyUI \u{2014} {}", inst.name))
        .inner_size(1280.0, 860.0)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the window did not open: {e}")))?;
    if let Some(p) = proxy {
        windows
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(label.clone(), p);
        let handle = app.clone();
        let closing = label.clone();
        window.on_window_event(move |e| {
            if let tauri::WindowEvent::Destroyed = e {
                let windows = handle.state::<EditorWindows>();
                let gone = windows
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&closing);
                drop(gone);
            }
        });
    }
    tracing::info!(%id, %label, proxied = windows.0.lock().map(|w| w.contains_key(&label)).unwrap_or(false), "ComfyUI editor opened");
    Ok(label)
}
