//! The app's own settings (`settings.json` in the config folder).

use serde::{Deserialize, Serialize};

/// Which alerts become OS notifications. All on by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NotificationSettings {
    pub became_unhealthy: bool,
    pub recovered: bool,
    pub crashed: bool,
    pub gave_up: bool,
    pub high_error_rate: bool,
    pub resource_high: bool,
    pub no_answer: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            became_unhealthy: true,
            recovered: true,
            crashed: true,
            gave_up: true,
            high_error_rate: true,
            resource_high: true,
            no_answer: true,
        }
    }
}

impl NotificationSettings {
    pub fn allows(&self, kind: &crate::AlertKind) -> bool {
        use crate::AlertKind as K;
        match kind {
            K::BecameUnhealthy => self.became_unhealthy,
            K::Recovered => self.recovered,
            K::Crashed { .. } => self.crashed,
            K::GaveUp { .. } => self.gave_up,
            K::HighErrorRate { .. } => self.high_error_rate,
            K::ResourceHigh { .. } => self.resource_high,
            K::NoAnswer { .. } => self.no_answer,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppSettings {
    pub notifications: NotificationSettings,
    /// On exit, leave the local ComfyUI processes running; the next launch
    /// re-attaches to them. Off by default: the app stops what it launched.
    pub keep_instances_running: bool,
}

/// One entry of the tray menu as it is built (for the UI and the tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrayItem {
    pub id: String,
    pub text: String,
    /// Set for the instance entries: the active one is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<bool>,
}
