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
    pub start_timed_out: bool,
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
            start_timed_out: true,
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
            K::StartTimedOut { .. } => self.start_timed_out,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppSettings {
    pub notifications: NotificationSettings,
    /// On exit, leave the local ComfyUI processes running; the next launch
    /// re-attaches to them. Off by default: the app stops what it launched.
    pub keep_instances_running: bool,
    /// Finished jobs (and their output copies) older than this are deleted,
    /// at start and daily; so are older entries of each instance's history.
    pub job_retention_days: u32,
    /// At most this many finished jobs are kept (the oldest go first).
    pub max_finished_jobs: u32,
    /// The health monitors' interval and thresholds, for every instance.
    pub health: HealthSettings,
    /// How the automatic target picks an instance.
    pub placement: PlacementPolicy,
    /// Run a copy of a long job on an idle, faster instance near the end
    /// (earliest-finish placement only).
    pub copies_near_the_end: bool,
    /// The ComfyUI-compatible gateway in front of the fleet.
    pub gateway: GatewaySettings,
}

/// Where the gateway listens, if at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySettings {
    pub enabled: bool,
    /// `127.0.0.1:8288` by default. An address on the network needs a token.
    pub address: String,
    /// How clients send the token: `bearer` (default), `basic` (a
    /// `user:password` token; browsers ask for it) or `header:<Name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_auth: Option<String>,
    /// Where the token is kept (the OS keyring); set by the app when a token
    /// is set, never the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<String>,
    /// Host names clients use for this machine besides its own names and
    /// addresses (a DNS alias); a request addressed to any other name is
    /// refused (DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// On a network address the gateway serves HTTPS: with this certificate
    /// (PEM, a chain) and key when both are set, else with one the app
    /// makes and keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    /// Plain HTTP on a network address: tokens and prompts in clear. Off
    /// unless the user turns it on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
    /// With named tokens: the most prompts one person may have waiting
    /// (none: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting_per_person: Option<u32>,
}

pub const DEFAULT_GATEWAY_ADDRESS: &str = "127.0.0.1:8288";

/// A person's gateway token, as Settings lists it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTokenInfo {
    pub name: String,
    pub admin: bool,
    pub created_at: String,
}

/// Where the gateway listens now, and how clients trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub address: String,
    /// `http://...` or `https://...`.
    pub url: String,
    /// The HTTPS certificate's SHA-256 (`AB:CD:...`), for clients to pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The file clients trust to reach it over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_file: Option<String>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            address: DEFAULT_GATEWAY_ADDRESS.to_string(),
            token_auth: None,
            token_ref: None,
            allowed_hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            plain_http: false,
            max_waiting_per_person: None,
        }
    }
}

/// The health monitors' settings (the seed's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthSettings {
    /// Between probes of a server that answers.
    pub interval_ms: u32,
    /// A probe without an answer within this counts as failed.
    pub probe_timeout_ms: u32,
    /// An answer slower than this makes the server degraded.
    pub degraded_response_ms: u32,
    /// Failed probes in a row that make it unhealthy.
    pub failure_threshold: u32,
    /// Answers in a row that make an unhealthy server healthy again.
    pub success_threshold: u32,
    /// RAM or VRAM use above this percentage raises an alert.
    pub resource_high_percent: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            interval_ms: 30_000,
            probe_timeout_ms: 5_000,
            degraded_response_ms: 2_000,
            failure_threshold: 3,
            success_threshold: 2,
            resource_high_percent: 90,
        }
    }
}

/// How the automatic target picks an instance for a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementPolicy {
    /// Where the job is expected to finish first, from each instance's
    /// measured speed and what it holds (this app's own).
    #[default]
    EarliestFinish,
    RoundRobin,
    /// Fewest jobs of this app in flight (how SwarmUI picks).
    FewestInFlight,
    /// Shortest queue as the instance reports it (ComfyUI-Distributed).
    ShortestQueue,
    /// Only an instance with nothing of this app on it (comfyui-sdk's pool).
    IdleFirst,
}

pub const DEFAULT_JOB_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_MAX_FINISHED_JOBS: u32 = 10_000;

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            notifications: NotificationSettings::default(),
            keep_instances_running: false,
            job_retention_days: DEFAULT_JOB_RETENTION_DAYS,
            max_finished_jobs: DEFAULT_MAX_FINISHED_JOBS,
            health: HealthSettings::default(),
            placement: PlacementPolicy::default(),
            copies_near_the_end: true,
            gateway: GatewaySettings::default(),
        }
    }
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
