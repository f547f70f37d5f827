use serde::{Deserialize, Serialize};

/// What the `app_info` command answers: enough for the status line and for a user
/// who wants to know where the app keeps its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub name: String,
    pub version: String,
    /// Folder of `comfyui_instances.json` and the per-instance files.
    pub config_dir: String,
    /// Folder of the daily log files.
    pub log_dir: String,
    /// Folder of per-instance runtime data (temp, user, output folders).
    pub data_dir: String,
}
