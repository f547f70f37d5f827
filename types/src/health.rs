//! Health and statistics of an instance: the seed's `InstanceHealth` and
//! `InstanceStats`, and the alerts the health monitor raises.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Healthy, degraded or unhealthy as in the seed; `unknown` until the first probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
}

/// Resource figures, from ComfyUI's `/system_stats` and `/queue` and, for local
/// instances, from the OS and NVML. Percentages are 0-100.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemStats {
    pub cpu_usage: f64,
    pub memory_usage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_usage: Option<f64>,
    pub active_workflows: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
}

/// The seed's `InstanceHealth`. `responseTime` is in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealth {
    pub status: HealthStatus,
    #[serde(default)]
    pub last_checked: Option<DateTime<Utc>>,
    pub response_time: f64,
    pub error_count: u64,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_stats: Option<SystemStats>,
}

/// The seed's `InstanceStats`. Times in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStats {
    pub total_workflows: u64,
    pub successful_workflows: u64,
    pub failed_workflows: u64,
    pub average_response_time: f64,
    pub uptime: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The seed's alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AlertKind {
    /// Health went to unhealthy.
    BecameUnhealthy,
    /// Health came back to healthy after being degraded or unhealthy.
    Recovered,
    /// More than 5 errors (failed probes and failed workflows) in the last minute.
    HighErrorRate { errors_per_minute: u32 },
    /// A resource above 90%.
    ResourceHigh { resource: String, percent: f64 },
    /// No answer for over 30 s.
    NoAnswer { seconds: u64 },
    /// A local ComfyUI process exited without being asked (it may be restarted).
    Crashed { summary: String },
    /// A local ComfyUI crashed too often: the app stopped restarting it.
    GaveUp { starts: u32 },
    /// The instance did not answer within its start timeout.
    StartTimedOut { seconds: u64 },
}

/// How an alert is shown: information goes away by itself, errors stay until
/// the user dismisses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl AlertKind {
    pub fn severity(&self) -> Severity {
        match self {
            AlertKind::Recovered => Severity::Info,
            AlertKind::HighErrorRate { .. } | AlertKind::ResourceHigh { .. } => Severity::Warning,
            AlertKind::BecameUnhealthy
            | AlertKind::NoAnswer { .. }
            | AlertKind::Crashed { .. }
            | AlertKind::GaveUp { .. }
            | AlertKind::StartTimedOut { .. } => Severity::Error,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub instance_id: String,
    pub kind: AlertKind,
    /// A sentence for the user.
    pub message: String,
    pub at: DateTime<Utc>,
}

// The content of `instance_{id}_health.json` (written by the store, drawn by the UI).

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSample {
    pub at: DateTime<Utc>,
    pub status: HealthStatus,
    /// Milliseconds.
    pub response_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_stats: Option<SystemStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedError {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// Performance over one clock hour (UTC), kept longer than the raw samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyFigures {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    pub samples: u32,
    /// Milliseconds, over every sample of the hour.
    pub average_response_time: f64,
    pub max_response_time: f64,
    pub degraded_samples: u32,
    pub unhealthy_samples: u32,
    /// Errors recorded during the hour (failed probes, crashes).
    pub failures: u32,
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthHistoryFile {
    pub version: String,
    pub instance_id: String,
    #[serde(default)]
    pub samples: VecDeque<HealthSample>,
    #[serde(default)]
    pub errors: VecDeque<LoggedError>,
    #[serde(default)]
    pub hourly: VecDeque<HourlyFigures>,
}
