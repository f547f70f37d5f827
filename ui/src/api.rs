//! The typed face of the backend: one function per Tauri command, one subscription
//! for the event stream. Components never name a command or an event themselves.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::json;
use storycore_types::import::{ClashPolicy, ExportOutcome, ImportEntry, ImportPreview};
use storycore_types::{
    ApiError, AppEvent, AppInfo, ConnectionTest, ErrorCode, HealthHistoryFile, Instance,
    InstanceConfig, InstanceConfigPatch, InstanceHealth, InstancePath, Job, JobTarget, LogLines,
    PoolConfig, PoolView, Project, ProjectDraft, ProjectList, TemplateDraft, WorkflowExecution,
    WorkflowFile, WorkflowTemplate, APP_EVENT,
};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "core"], js_name = invoke, catch)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "event"], js_name = listen, catch)]
    async fn tauri_listen(
        event: &str,
        handler: &Closure<dyn FnMut(JsValue)>,
    ) -> Result<JsValue, JsValue>;
}

fn api_error(e: JsValue) -> ApiError {
    serde_wasm_bindgen::from_value(e.clone()).unwrap_or_else(|_| {
        ApiError::new(
            ErrorCode::Internal,
            e.as_string()
                .unwrap_or_else(|| format!("the backend failed: {e:?}")),
        )
    })
}

async fn call<A: Serialize, R: DeserializeOwned>(cmd: &str, args: &A) -> Result<R, ApiError> {
    // Plain JS objects (not `Map`s) for maps such as envVars, as Tauri expects.
    let args = args
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot encode {cmd} arguments: {e}"),
            )
        })?;
    let v = tauri_invoke(cmd, args).await.map_err(api_error)?;
    serde_wasm_bindgen::from_value(v).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("unexpected answer to {cmd}: {e}"),
        )
    })
}

#[derive(Serialize)]
struct NoArgs {}

/// Version and the folders the app uses.
pub async fn app_info() -> Result<AppInfo, ApiError> {
    call("app_info", &NoArgs {}).await
}

pub async fn list_instances() -> Result<Vec<Instance>, ApiError> {
    call("list_instances", &NoArgs {}).await
}

pub async fn active_instance() -> Result<Option<Instance>, ApiError> {
    call("get_active_instance", &NoArgs {}).await
}

pub async fn create_instance(config: &InstanceConfig) -> Result<Instance, ApiError> {
    call("create_instance", &json!({ "config": config })).await
}

pub async fn update_instance(id: &str, patch: &InstanceConfigPatch) -> Result<Instance, ApiError> {
    call("update_instance", &json!({ "id": id, "patch": patch })).await
}

pub async fn delete_instance(id: &str) -> Result<(), ApiError> {
    call::<_, Option<()>>("delete_instance", &json!({ "id": id }))
        .await
        .map(|_| ())
}

/// A lifecycle action on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Pause,
    Resume,
    Restart,
}

impl Lifecycle {
    pub fn label(self) -> &'static str {
        match self {
            Lifecycle::Start => "Start",
            Lifecycle::Stop => "Stop",
            Lifecycle::Pause => "Pause",
            Lifecycle::Resume => "Resume",
            Lifecycle::Restart => "Restart",
        }
    }
    fn command(self) -> &'static str {
        match self {
            Lifecycle::Start => "start_instance",
            Lifecycle::Stop => "stop_instance",
            Lifecycle::Pause => "pause_instance",
            Lifecycle::Resume => "resume_instance",
            Lifecycle::Restart => "restart_instance",
        }
    }
}

pub async fn lifecycle(action: Lifecycle, id: &str) -> Result<Instance, ApiError> {
    call(action.command(), &json!({ "id": id })).await
}

pub async fn set_active_instance(id: Option<&str>) -> Result<(), ApiError> {
    call::<_, Option<()>>("set_active_instance", &json!({ "id": id }))
        .await
        .map(|_| ())
}

/// `api_key`: a key typed in the editor and not stored yet.
pub async fn test_connection(
    config: &InstanceConfig,
    api_key: Option<&str>,
) -> Result<ConnectionTest, ApiError> {
    call(
        "test_connection",
        &json!({ "config": config, "apiKey": api_key }),
    )
    .await
}

/// Stores a secret environment value in the OS keyring (`in_file`: the 0600
/// file instead), or removes it (`None`).
pub async fn set_secret_env(
    id: &str,
    name: &str,
    value: Option<&str>,
    in_file: bool,
) -> Result<Instance, ApiError> {
    call(
        "set_secret_env",
        &json!({ "id": id, "name": name, "value": value, "inFile": in_file }),
    )
    .await
}

/// Stores the key in the OS keyring (`in_file`: the 0600 file instead), or
/// removes it (`None`).
pub async fn set_api_key(id: &str, key: Option<&str>, in_file: bool) -> Result<Instance, ApiError> {
    call(
        "set_api_key",
        &json!({ "id": id, "key": key, "inFile": in_file }),
    )
    .await
}

pub async fn health_history(id: &str) -> Result<HealthHistoryFile, ApiError> {
    call("get_health_history", &json!({ "id": id })).await
}

#[derive(serde::Deserialize)]
struct EventEnvelope {
    payload: AppEvent,
}

/// Calls `handler` with each event the backend sends, for the page's lifetime.
pub fn on_event(mut handler: impl FnMut(AppEvent) + 'static) {
    let cb =
        Closure::<dyn FnMut(JsValue)>::new(
            move |raw: JsValue| match serde_wasm_bindgen::from_value::<EventEnvelope>(raw) {
                Ok(env) => handler(env.payload),
                Err(e) => web_log(&format!("ignored an event the UI does not know: {e}")),
            },
        );
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = tauri_listen(APP_EVENT, &cb).await {
            web_log(&format!("cannot listen to backend events: {e:?}"));
        }
        // The listener lives as long as the page.
        cb.forget();
    });
}

fn web_log(msg: &str) {
    web_sys_console_error(msg);
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_console_error(s: &str);
}

pub async fn list_jobs() -> Result<Vec<Job>, ApiError> {
    call("list_jobs", &NoArgs {}).await
}

pub async fn list_templates() -> Result<Vec<WorkflowTemplate>, ApiError> {
    call("list_templates", &NoArgs {}).await
}

/// `target: None`: the current project's default.
pub async fn submit_template(
    template_id: &str,
    values: &serde_json::Map<String, serde_json::Value>,
    target: &Option<JobTarget>,
) -> Result<Job, ApiError> {
    call(
        "submit_template",
        &json!({ "templateId": template_id, "values": values, "target": target }),
    )
    .await
}

pub async fn submit_workflow(workflow: &str, target: &Option<JobTarget>) -> Result<Job, ApiError> {
    call(
        "submit_workflow",
        &json!({ "workflow": workflow, "target": target }),
    )
    .await
}

/// `cancel_job`, `retry_job` or `release_job`.
pub async fn job_action(command: &'static str, id: &str) -> Result<(), ApiError> {
    call::<_, Job>(command, &json!({ "id": id }))
        .await
        .map(|_| ())
}

pub async fn suggest_port(host: &str, start: u16) -> Result<Option<u16>, ApiError> {
    call("suggest_port", &json!({ "host": host, "start": start })).await
}

pub async fn list_gpus() -> Result<storycore_types::GpuList, ApiError> {
    call("list_gpus", &NoArgs {}).await
}

/// What starting found (each notice is handed over once).
pub async fn take_startup_notices() -> Result<Vec<String>, ApiError> {
    call("take_startup_notices", &NoArgs {}).await
}

pub async fn get_settings() -> Result<storycore_types::AppSettings, ApiError> {
    call("get_settings", &NoArgs {}).await
}

pub async fn set_settings(settings: &storycore_types::AppSettings) -> Result<(), ApiError> {
    call::<_, Option<()>>("set_settings", &json!({ "settings": settings }))
        .await
        .map(|_| ())
}

/// The last `lines` of a local instance's log, numbered like the live
/// `LogLines` events that continue it.
/// Opens the instance's own ComfyUI editor in a window of the app (with its
/// key applied); answers the window's label.
pub async fn open_comfyui(id: &str) -> Result<String, ApiError> {
    call("open_comfyui", &json!({ "id": id })).await
}

/// Probes the instance now; answers its health.
pub async fn check_instance_health(id: &str) -> Result<InstanceHealth, ApiError> {
    call("check_instance_health", &json!({ "id": id })).await
}

/// What the instance offers and has loaded; `None` before it was read.
pub async fn instance_models(
    id: &str,
) -> Result<Option<storycore_types::InstanceModels>, ApiError> {
    call("instance_models", &json!({ "id": id })).await
}

/// Reads what the instance offers again, and answers it.
pub async fn refresh_instance_models(
    id: &str,
) -> Result<Option<storycore_types::InstanceModels>, ApiError> {
    call("refresh_instance_models", &json!({ "id": id })).await
}

/// The instance's last runs, newest first.
pub async fn workflow_history(id: &str, limit: usize) -> Result<Vec<WorkflowExecution>, ApiError> {
    call(
        "instance_workflow_history",
        &json!({ "id": id, "limit": limit }),
    )
    .await
}

pub async fn instance_log(id: &str, lines: usize) -> Result<LogLines, ApiError> {
    call("get_instance_log", &json!({ "id": id, "lines": lines })).await
}

/// Opens a local instance's output folder or log file on the desktop;
/// answers the path opened.
pub async fn open_instance_path(id: &str, what: InstancePath) -> Result<String, ApiError> {
    call("open_instance_path", &json!({ "id": id, "what": what })).await
}

/// The native folder chooser; `None` when cancelled.
pub async fn pick_folder(title: &str, start: &str) -> Result<Option<String>, ApiError> {
    call("pick_folder", &json!({ "title": title, "start": start })).await
}

/// The native file chooser for a workflow file; `None` when cancelled.
/// The native chooser for an instances file: where to export (`save`), or
/// which file to import.
pub async fn pick_instances_file(save: bool) -> Result<Option<String>, ApiError> {
    call("pick_instances_file", &json!({ "save": save })).await
}

pub async fn export_instances_to(path: &str) -> Result<ExportOutcome, ApiError> {
    call("export_instances_to", &json!({ "path": path })).await
}

pub async fn preview_import(path: &str, policy: ClashPolicy) -> Result<ImportPreview, ApiError> {
    call("preview_import", &json!({ "path": path, "policy": policy })).await
}

pub async fn import_instances_file(
    path: &str,
    policy: ClashPolicy,
) -> Result<Vec<ImportEntry>, ApiError> {
    call(
        "import_instances_file",
        &json!({ "path": path, "policy": policy }),
    )
    .await
}

pub async fn pick_workflow_file() -> Result<Option<String>, ApiError> {
    call("pick_workflow_file", &json!({ "start": null })).await
}

pub async fn read_workflow_file(path: &str) -> Result<WorkflowFile, ApiError> {
    call("read_workflow_file", &json!({ "path": path })).await
}

/// `global`: for every project, not only the current one.
pub async fn create_template(
    draft: &TemplateDraft,
    global: bool,
) -> Result<WorkflowTemplate, ApiError> {
    call(
        "create_template",
        &json!({ "draft": draft, "global": global }),
    )
    .await
}

pub async fn set_template_pins(
    id: &str,
    instances: &[String],
) -> Result<WorkflowTemplate, ApiError> {
    call(
        "set_template_pins",
        &json!({ "id": id, "instances": instances }),
    )
    .await
}

/// ComfyUI's editor on the gateway (the whole fleet), in a window.
pub async fn open_fleet_comfyui() -> Result<String, ApiError> {
    call("open_fleet_comfyui", &NoArgs {}).await
}

/// Sets (`Some`) or removes (`None`) the token a gateway on the network needs.
pub async fn set_gateway_token(token: Option<String>) -> Result<(), ApiError> {
    call("set_gateway_token", &json!({ "token": token })).await
}

/// Where the gateway listens now, if it does.
pub async fn gateway_status() -> Result<Option<storycore_types::GatewayStatus>, ApiError> {
    call("gateway_status", &NoArgs {}).await
}

pub async fn list_gateway_tokens() -> Result<Vec<storycore_types::GatewayTokenInfo>, ApiError> {
    call("list_gateway_tokens", &NoArgs {}).await
}

pub async fn create_gateway_token(name: &str, admin: bool) -> Result<String, ApiError> {
    call(
        "create_gateway_token",
        &json!({ "name": name, "admin": admin }),
    )
    .await
}

pub async fn revoke_gateway_token(name: &str) -> Result<(), ApiError> {
    call("revoke_gateway_token", &json!({ "name": name })).await
}

pub async fn list_pools() -> Result<Vec<PoolView>, ApiError> {
    call("list_pools", &NoArgs {}).await
}

pub async fn create_pool(config: &PoolConfig) -> Result<PoolView, ApiError> {
    call("create_pool", &json!({ "config": config })).await
}

pub async fn update_pool(config: &PoolConfig) -> Result<PoolView, ApiError> {
    call("update_pool", &json!({ "config": config })).await
}

pub async fn delete_pool(id: &str) -> Result<(), ApiError> {
    call("delete_pool", &json!({ "id": id })).await
}

pub async fn list_projects() -> Result<ProjectList, ApiError> {
    call("list_projects", &NoArgs {}).await
}

pub async fn create_project(draft: &ProjectDraft) -> Result<Project, ApiError> {
    call("create_project", &json!({ "draft": draft })).await
}

pub async fn update_project(id: &str, draft: &ProjectDraft) -> Result<Project, ApiError> {
    call("update_project", &json!({ "id": id, "draft": draft })).await
}

pub async fn delete_project(id: &str) -> Result<(), ApiError> {
    call::<_, Option<()>>("delete_project", &json!({ "id": id }))
        .await
        .map(|_| ())
}

pub async fn set_current_project(id: Option<&str>) -> Result<(), ApiError> {
    call::<_, Option<()>>("set_current_project", &json!({ "id": id }))
        .await
        .map(|_| ())
}

pub async fn delete_template(id: &str) -> Result<(), ApiError> {
    call::<_, Option<()>>("delete_template", &json!({ "id": id }))
        .await
        .map(|_| ())
}

/// Writes the instance's whole log to the log folder; answers the file's path.
pub async fn export_instance_log(id: &str) -> Result<String, ApiError> {
    call("export_instance_log", &json!({ "id": id })).await
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["navigator", "clipboard"], js_name = writeText, catch)]
    async fn clipboard_write(text: &str) -> Result<JsValue, JsValue>;
}

/// Puts `text` on the clipboard.
pub async fn copy_to_clipboard(text: &str) -> Result<(), ApiError> {
    clipboard_write(text)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot copy: {e:?}")))
}

/// One output image of a job, as a `data:` URL.
pub async fn job_output_image(id: &str, index: usize) -> Result<String, ApiError> {
    call("job_output_image", &json!({ "id": id, "index": index })).await
}
