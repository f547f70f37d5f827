//! The instance manager's API (the seed's `ComfyUIInstanceManager`) for the UI.

use super::blocking;
use storycore_core::dispatch::JobQueue;
use storycore_core::manager::{self, InstanceManager};
use storycore_core::store::{ClashPolicy, HealthHistoryFile, ImportEntry};
use storycore_types::import::{ExportOutcome, ImportPreview};
use storycore_types::{
    ApiError, ConnectionTest, ErrorCode, Instance, InstanceConfig, InstanceConfigPatch,
    InstanceHealth, InstanceStats, LogLines,
};
use tauri::State;

type Manager<'a> = State<'a, InstanceManager>;
type Answer<T> = Result<T, ApiError>;

#[tauri::command]
pub fn list_instances(m: Manager<'_>) -> Vec<Instance> {
    m.list()
}

#[tauri::command]
pub fn get_instance(m: Manager<'_>, id: String) -> Option<Instance> {
    m.get(&id)
}

#[tauri::command]
pub async fn create_instance(m: Manager<'_>, config: InstanceConfig) -> Answer<Instance> {
    Ok(m.create(config).await?)
}

#[tauri::command]
pub async fn update_instance(
    m: Manager<'_>,
    id: String,
    patch: InstanceConfigPatch,
) -> Answer<Instance> {
    Ok(m.update(&id, patch).await?)
}

/// Stores the instance's API key in the OS keyring (or, with `inFile`, the
/// 0600 secrets file), or removes it (`key: null`). The key never comes back
/// to the window: instances show only that one is set (`apiKeyRef`).
#[tauri::command]
pub async fn set_api_key(
    m: Manager<'_>,
    id: String,
    key: Option<String>,
    in_file: bool,
) -> Answer<Instance> {
    Ok(m.set_api_key(&id, key, in_file).await?)
}

/// Stores the secret value of environment variable `name` in the keyring
/// (or, with `inFile`, the 0600 secrets file) and lists it in the
/// instance's `secretEnvVars`, or removes it (`value: null`).
#[tauri::command]
pub async fn set_secret_env(
    m: Manager<'_>,
    id: String,
    name: String,
    value: Option<String>,
    in_file: bool,
) -> Answer<Instance> {
    Ok(m.set_secret_env(&id, &name, value, in_file).await?)
}

#[tauri::command]
pub async fn delete_instance(m: Manager<'_>, id: String) -> Answer<()> {
    Ok(m.delete(&id).await?)
}

#[tauri::command]
pub async fn start_instance(m: Manager<'_>, id: String) -> Answer<Instance> {
    Ok(m.start(&id).await?)
}

#[tauri::command]
pub async fn stop_instance(m: Manager<'_>, id: String) -> Answer<Instance> {
    Ok(m.stop(&id).await?)
}

#[tauri::command]
pub async fn pause_instance(m: Manager<'_>, id: String) -> Answer<Instance> {
    Ok(m.pause(&id).await?)
}

#[tauri::command]
pub async fn resume_instance(m: Manager<'_>, id: String) -> Answer<Instance> {
    Ok(m.resume(&id).await?)
}

#[tauri::command]
pub async fn restart_instance(m: Manager<'_>, id: String) -> Answer<Instance> {
    Ok(m.restart(&id).await?)
}

#[tauri::command]
pub async fn set_active_instance(m: Manager<'_>, id: Option<String>) -> Answer<()> {
    Ok(m.set_active(id.as_deref()).await?)
}

#[tauri::command]
pub fn get_active_instance(m: Manager<'_>) -> Option<Instance> {
    m.active_instance()
}

#[tauri::command]
pub fn get_healthy_instance(q: State<'_, JobQueue>) -> Option<Instance> {
    q.healthy_instance()
}

#[tauri::command]
pub fn get_instances_by_load(q: State<'_, JobQueue>) -> Vec<Instance> {
    q.instances_by_load()
}

#[tauri::command]
pub async fn check_instance_health(m: Manager<'_>, id: String) -> Answer<InstanceHealth> {
    Ok(m.check_health(&id).await?)
}

#[tauri::command]
pub fn get_instance_stats(m: Manager<'_>, id: String) -> Answer<InstanceStats> {
    Ok(m.stats(&id)?)
}

#[tauri::command]
pub fn export_instances(m: Manager<'_>) -> String {
    m.export()
}

#[tauri::command]
pub async fn import_instances(
    m: Manager<'_>,
    data: String,
    policy: Option<ClashPolicy>,
) -> Answer<Vec<ImportEntry>> {
    Ok(m.import(&data, policy.unwrap_or_default()).await?.entries)
}

/// Largest instances file an import reads (the instances file's own limit).
const MAX_IMPORT_BYTES: u64 = storycore_core::store::MAX_INSTANCES_FILE_BYTES;

fn read_import(path: &str) -> Answer<String> {
    let p = std::path::Path::new(path);
    let bad = |what: String| ApiError::new(ErrorCode::InvalidInput, what);
    match storycore_core::store::read_regular(p, MAX_IMPORT_BYTES) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| {
            bad(format!(
                "{path} is not UTF-8 text: choose an instances file (JSON)"
            ))
        }),
        Ok(None) => Err(bad(format!("{path} does not exist: choose the file again"))),
        Err(e) => Err(bad(format!("{path} cannot be imported: {e}"))),
    }
}

/// Writes the export (no secrets) to `path`, readable by the user only.
#[tauri::command]
pub async fn export_instances_to(m: Manager<'_>, path: String) -> Answer<ExportOutcome> {
    let text = m.export();
    let instances = m.list().len();
    let notes = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("exportNotes").cloned())
        .and_then(|n| serde_json::from_value::<Vec<String>>(n).ok())
        .unwrap_or_default();
    let target = path.clone();
    blocking(move || {
        storycore_core::store::atomic_write(std::path::Path::new(&target), text.as_bytes())
            .map_err(|e| ApiError::new(ErrorCode::Io, format!("the export was not written: {e}")))
    })
    .await?;
    tracing::info!(%path, instances, "instances exported");
    Ok(ExportOutcome {
        path,
        instances,
        notes,
    })
}

/// What importing the file would do under `policy`; nothing changes.
#[tauri::command]
pub async fn preview_import(
    m: Manager<'_>,
    path: String,
    policy: Option<ClashPolicy>,
) -> Answer<ImportPreview> {
    let p = path.clone();
    let data = blocking(move || read_import(&p)).await?;
    Ok(m.preview_import(&path, &data, policy.unwrap_or_default()))
}

/// Imports the file under `policy` (all or nothing).
#[tauri::command]
pub async fn import_instances_file(
    m: Manager<'_>,
    path: String,
    policy: Option<ClashPolicy>,
) -> Answer<Vec<ImportEntry>> {
    let p = path.clone();
    let data = blocking(move || read_import(&p)).await?;
    let entries = m.import(&data, policy.unwrap_or_default()).await?.entries;
    tracing::info!(%path, entries = entries.len(), "instances imported");
    Ok(entries)
}

/// What starting found (repairs, migration, a read-only file, recovered
/// jobs), each notice handed over once: the UI shows them when it loads.
#[tauri::command]
pub fn take_startup_notices(
    notices: State<'_, crate::shell::window::StartupNotices>,
) -> Vec<String> {
    notices.take()
}

#[tauri::command]
pub async fn test_connection(config: InstanceConfig, api_key: Option<String>) -> ConnectionTest {
    manager::test_connection(&config, api_key.as_deref()).await
}

#[tauri::command]
pub async fn get_health_history(m: Manager<'_>, id: String) -> Answer<HealthHistoryFile> {
    let m = m.inner().clone();
    blocking(move || Ok(m.health_history(&id)?)).await
}

/// The last `lines` lines a local instance's ComfyUI wrote.
#[tauri::command]
pub async fn get_instance_log(
    m: Manager<'_>,
    id: String,
    lines: Option<usize>,
) -> Answer<LogLines> {
    let m = m.inner().clone();
    blocking(move || Ok(m.log_tail(&id, lines.unwrap_or(200).min(5000))?)).await
}

/// Writes the whole log of a local instance (rotated files included, oldest
/// first) to a file in the app's log folder and answers its path.
#[tauri::command]
pub async fn export_instance_log(
    m: Manager<'_>,
    paths: State<'_, storycore_core::paths::AppPaths>,
    id: String,
) -> Answer<String> {
    let text = m.export_log(&id).await?;
    let log_dir = paths.log_dir.clone();
    blocking(move || {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let path = log_dir.join(format!("instance_{id}_comfyui_{stamp}.log"));
        std::fs::create_dir_all(&log_dir)
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| {
                ApiError::new(
                    storycore_types::ErrorCode::Io,
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
        Ok(path.display().to_string())
    })
    .await
}

/// The next free port from `start` on `host` (the editor's suggestion).
#[tauri::command]
pub async fn suggest_port(host: Option<String>, start: Option<u16>) -> Answer<Option<u16>> {
    blocking(move || {
        Ok(storycore_core::supervisor::suggest_free_port(
            host.as_deref().unwrap_or("127.0.0.1"),
            start.unwrap_or(8188),
        ))
    })
    .await
}

/// The GPUs NVML lists, or why there are none.
#[tauri::command]
pub async fn list_gpus() -> Answer<storycore_types::GpuList> {
    blocking(|| Ok(gpu_list())).await
}

fn gpu_list() -> storycore_types::GpuList {
    storycore_types::GpuList {
        gpus: storycore_core::telemetry::list_gpus(),
        unavailable: storycore_core::telemetry::nvml_status().map(|why| {
            format!("No NVIDIA GPU found ({why}); instances use ComfyUI's default device.")
        }),
    }
}
