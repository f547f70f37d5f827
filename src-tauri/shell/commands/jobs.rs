//! The job queue (the seed's WizardService, for a fleet) for the UI: submit a
//! workflow or a template, follow, cancel, retry, release.

use super::blocking;
use serde_json::{Map, Value};
use storycore_core::dispatch::templates;
use storycore_core::dispatch::JobQueue;
use storycore_types::{
    ApiError, ErrorCode, Job, JobTarget, TemplateDraft, WorkflowFile, WorkflowTemplate,
};
use tauri::State;

type Queue<'a> = State<'a, JobQueue>;
type Answer<T> = Result<T, ApiError>;

/// Every job, without its workflow.
#[tauri::command]
pub fn list_jobs(q: Queue<'_>) -> Vec<Job> {
    q.summaries()
}

/// `workflow` is the text of an API-format workflow (ComfyUI's "Save (API)").
#[tauri::command]
pub async fn submit_workflow(
    q: Queue<'_>,
    workflow: String,
    target: Option<JobTarget>,
) -> Answer<Job> {
    // Size, nesting and shape are checked where the text enters.
    let value = storycore_core::dispatch::workflow::parse_workflow(&workflow)?;
    Ok(q.submit(value, target.unwrap_or_default()).await?.summary())
}

#[tauri::command]
pub async fn submit_template(
    q: Queue<'_>,
    template_id: String,
    values: Map<String, Value>,
    target: Option<JobTarget>,
) -> Answer<Job> {
    let templates = q.templates();
    let id = template_id.clone();
    let t = blocking(move || {
        templates.get(&id).ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no template with id \"{id}\""))
        })
    })
    .await?;
    Ok(q.submit_template(&t, &values, target.unwrap_or_default())
        .await?
        .summary())
}

#[tauri::command]
pub async fn list_templates(q: Queue<'_>) -> Answer<Vec<WorkflowTemplate>> {
    let templates = q.templates();
    blocking(move || Ok(templates.list())).await
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

/// Saves an imported workflow with its marked parameters as a new template.
#[tauri::command]
pub async fn create_template(q: Queue<'_>, draft: TemplateDraft) -> Answer<WorkflowTemplate> {
    let templates = q.templates();
    let t = blocking(move || Ok(templates.create(&draft)?)).await?;
    tracing::info!(id = %t.id, parameters = t.parameters.len(), "template saved");
    Ok(t)
}

#[tauri::command]
pub async fn delete_template(q: Queue<'_>, id: String) -> Answer<()> {
    let templates = q.templates();
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
