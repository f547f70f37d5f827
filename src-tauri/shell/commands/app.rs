use storycore_core::paths::AppPaths;
use storycore_types::{ApiError, AppInfo};

#[tauri::command]
pub fn app_info(paths: tauri::State<'_, AppPaths>) -> Result<AppInfo, ApiError> {
    tracing::debug!("app_info answered");
    Ok(AppInfo {
        name: "StoryCore Engine".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        config_dir: paths.config_dir.display().to_string(),
        log_dir: paths.log_dir.display().to_string(),
        data_dir: paths.data_dir.display().to_string(),
    })
}
