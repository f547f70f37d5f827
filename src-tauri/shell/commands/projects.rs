//! Projects for the window: list, create, change, delete, choose the current
//! one.

use super::blocking;
use storycore_core::manager::InstanceManager;
use storycore_core::projects::Projects;
use storycore_types::{ApiError, Project, ProjectDraft, ProjectList};
use tauri::State;

type Answer<T> = Result<T, ApiError>;

fn instance_ids(m: &InstanceManager) -> Vec<String> {
    m.list().into_iter().map(|i| i.id).collect()
}

#[tauri::command]
pub fn list_projects(p: State<'_, Projects>) -> ProjectList {
    p.list()
}

/// Creates the project (and its folder) and makes it current.
#[tauri::command]
pub async fn create_project(
    p: State<'_, Projects>,
    m: State<'_, InstanceManager>,
    draft: ProjectDraft,
) -> Answer<Project> {
    let (p, ids) = (p.inner().clone(), instance_ids(&m));
    blocking(move || Ok(p.create(&draft, &ids)?)).await
}

#[tauri::command]
pub async fn update_project(
    p: State<'_, Projects>,
    m: State<'_, InstanceManager>,
    id: String,
    draft: ProjectDraft,
) -> Answer<Project> {
    let (p, ids) = (p.inner().clone(), instance_ids(&m));
    blocking(move || Ok(p.update(&id, &draft, &ids)?)).await
}

#[tauri::command]
pub async fn delete_project(
    p: State<'_, Projects>,
    paths: State<'_, storycore_core::paths::AppPaths>,
    id: String,
) -> Answer<()> {
    let (p, dir) = (p.inner().clone(), paths.config_dir.clone());
    blocking(move || Ok(p.delete(&id, &dir)?)).await
}

/// `id: null` leaves every project (jobs then run untagged).
#[tauri::command]
pub async fn set_current_project(p: State<'_, Projects>, id: Option<String>) -> Answer<()> {
    let p = p.inner().clone();
    blocking(move || Ok(p.set_current(id.as_deref())?)).await
}
