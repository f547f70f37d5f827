//! The job queue (the seed's WizardService, for a fleet) for the UI: submit a
//! workflow or a template, follow, cancel, retry, release.

use super::blocking;
use serde_json::{Map, Value};
use storycore_core::dispatch::templates;
use storycore_core::dispatch::{JobQueue, TemplateStore};
use storycore_core::manager::InstanceManager;
use storycore_core::projects::Projects;
use storycore_types::{
    ApiError, ErrorCode, Job, JobTarget, TemplateDraft, WorkflowFile, WorkflowTemplate,
};
use tauri::State;

type Queue<'a> = State<'a, JobQueue>;
type Answer<T> = Result<T, ApiError>;

/// The templates the window sees: the global ones and the current project's.
fn visible_templates(q: &JobQueue, p: &Projects) -> TemplateStore {
    match p.current() {
        Some(project) => q.project_templates(&project.id),
        None => q.templates(),
    }
}

/// Every job, without its workflow.
#[tauri::command]
pub fn list_jobs(q: Queue<'_>) -> Vec<Job> {
    q.summaries()
}

/// `workflow` is the text of an API-format workflow (ComfyUI's "Save (API)").
/// It runs in the current project; no `target`: the project's default.
#[tauri::command]
pub async fn submit_workflow(
    q: Queue<'_>,
    p: State<'_, Projects>,
    m: State<'_, InstanceManager>,
    workflow: String,
    target: Option<JobTarget>,
) -> Answer<Job> {
    // Size, nesting and shape are checked where the text enters.
    let value = storycore_core::dispatch::workflow::parse_workflow(&workflow)?;
    let (target, context) = p.job_target(&m, target)?;
    Ok(q.submit_in(value, target, &context).await?.summary())
}

#[tauri::command]
pub async fn submit_template(
    q: Queue<'_>,
    p: State<'_, Projects>,
    m: State<'_, InstanceManager>,
    template_id: String,
    values: Map<String, Value>,
    target: Option<JobTarget>,
) -> Answer<Job> {
    let templates = visible_templates(&q, &p);
    let id = template_id.clone();
    let t = blocking(move || {
        templates.get(&id).ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no template with id \"{id}\""))
        })
    })
    .await?;
    let (target, context) = p.job_target(&m, target)?;
    Ok(q.submit_template_in(&t, &values, target, &context)
        .await?
        .summary())
}

/// The built-in, global and current project's templates.
#[tauri::command]
pub async fn list_templates(q: Queue<'_>, p: State<'_, Projects>) -> Answer<Vec<WorkflowTemplate>> {
    let templates = visible_templates(&q, &p);
    blocking(move || Ok(templates.list())).await
}

/// Pins a template to instances (an empty list: any instance).
#[tauri::command]
pub async fn set_template_pins(
    q: Queue<'_>,
    p: State<'_, Projects>,
    m: State<'_, InstanceManager>,
    id: String,
    instances: Vec<String>,
) -> Answer<WorkflowTemplate> {
    if let Some(unknown) = instances.iter().find(|i| m.get(i).is_none()) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("there is no instance \"{unknown}\" to pin the template to"),
        ));
    }
    let templates = visible_templates(&q, &p);
    blocking(move || Ok(templates.set_pins(&id, instances)?)).await
}

/// Reads a workflow file to import: the workflow and the inputs that can
/// become parameters; wrong files are refused with the reason.
#[tauri::command]
pub async fn read_workflow_file(path: String) -> Answer<WorkflowFile> {
    let path = path.trim().to_string();
    if path.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            "choose a workflow file first (ComfyUI's \"Save (API)\" writes one)",
        ));
    }
    blocking(move || Ok(templates::read_workflow_file(std::path::Path::new(&path))?)).await
}

/// Saves an imported workflow with its marked parameters as a new template:
/// the current project's own, or a global one when `global` (or no project).
#[tauri::command]
pub async fn create_template(
    q: Queue<'_>,
    p: State<'_, Projects>,
    draft: TemplateDraft,
    global: Option<bool>,
) -> Answer<WorkflowTemplate> {
    let templates = if global.unwrap_or(false) {
        q.templates()
    } else {
        visible_templates(&q, &p)
    };
    let t = blocking(move || Ok(templates.create(&draft)?)).await?;
    tracing::info!(id = %t.id, parameters = t.parameters.len(), "template saved");
    Ok(t)
}

#[tauri::command]
pub async fn delete_template(q: Queue<'_>, p: State<'_, Projects>, id: String) -> Answer<()> {
    let templates = visible_templates(&q, &p);
    blocking(move || Ok(templates.delete(&id)?)).await
}

#[tauri::command]
pub async fn cancel_job(q: Queue<'_>, id: String) -> Answer<Job> {
    Ok(q.cancel(&id).await?.summary())
}

#[tauri::command]
pub async fn retry_job(q: Queue<'_>, id: String) -> Answer<Job> {
    Ok(q.retry(&id).await?)
}

#[tauri::command]
pub async fn release_job(q: Queue<'_>, id: String) -> Answer<Job> {
    Ok(q.release(&id).await?)
}

#[tauri::command]
pub async fn remove_job(q: Queue<'_>, id: String) -> Answer<()> {
    Ok(q.remove(&id).await?)
}

/// One output image of a job as a `data:` URL, for thumbnails and the full
/// view (the webview cannot read the output folder itself).
#[tauri::command]
pub async fn job_output_image(q: Queue<'_>, id: String, index: usize) -> Answer<String> {
    use base64::Engine;
    let job = q
        .get(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no job with id \"{id}\"")))?;
    let output = job.outputs.get(index).cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("job {id} has no output {index}"),
        )
    })?;
    let path = output.path.clone();
    let bytes = blocking(move || {
        std::fs::read(&path)
            .map_err(|e| ApiError::new(ErrorCode::Io, format!("cannot read {path}: {e}")))
    })
    .await?;
    let mime = match output
        .filename
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "image/png",
    };
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// What the instance offers (its model files) and has loaded, as the
/// queue knows it; `None` before its `/object_info` was read in this run.
#[tauri::command]
pub fn instance_models(q: Queue<'_>, id: String) -> Option<storycore_types::InstanceModels> {
    q.instance_models(&id)
}

/// Reads what the instance offers again (model files added or removed),
/// and answers it.
#[tauri::command]
pub async fn refresh_instance_models(
    q: Queue<'_>,
    id: String,
) -> Answer<Option<storycore_types::InstanceModels>> {
    Ok(q.inner().clone().refresh_models(&id).await)
}

/// The instance's last runs (time, result, duration), newest first, from its
/// `instance_{id}_workflows.json`.
#[tauri::command]
pub async fn instance_workflow_history(
    q: Queue<'_>,
    id: String,
    limit: Option<usize>,
) -> Answer<Vec<storycore_types::WorkflowExecution>> {
    let q = q.inner().clone();
    blocking(move || Ok(q.execution_history(&id, limit.unwrap_or(50).min(500)))).await
}
