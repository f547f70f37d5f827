//! An instance's configuration and runtime view, shaped like the seed's TypeScript
//! interfaces (camelCase on the wire). Optional seed fields stay `Option` so a file
//! written by the user keeps exactly the keys it had; the accessors give the
//! seed's defaults.

use crate::health::{InstanceHealth, InstanceStats};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DEFAULT_HOST: &str = "localhost";
pub const DEFAULT_MAX_CONCURRENT_WORKFLOWS: u32 = 1;
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// How long a local ComfyUI may take to answer after its launch (many custom
/// nodes take minutes) before the app counts the start as failed.
pub const DEFAULT_LOCAL_START_TIMEOUT_MS: u64 = 300_000;
/// The same for an attached server: it is already running, or it is not.
pub const DEFAULT_REMOTE_START_TIMEOUT_MS: u64 = 60_000;

/// `http` or `https`, for remote instances behind a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The seed's `ComfyUIInstanceConfig`, plus what a real setup needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    pub id: String,
    pub name: String,
    /// 1-65535; kept wider than u16 so a bad file gets a field-level error, not a parse error.
    pub port: u32,
    /// Hostname or IP, no scheme or path. Default `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// GPU device: an index, `cuda:N`, `cpu` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_nodes_path: Option<String>,
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_workflows: Option<u32>,
    /// Default 300000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_queue_monitoring: Option<bool>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    // Beyond the seed.
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// The ComfyUI folder (holding `main.py`) for an instance the app launches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_path: Option<String>,
    /// The Python interpreter that runs `main.py`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    /// Extra ComfyUI arguments, passed one by one (never through a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<Vec<String>>,
    /// Name of the OS-keyring entry holding this instance's API key (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_ref: Option<String>,
    /// Time from start to the first answer before the start counts as failed.
    /// Default 300000 for a local instance, 60000 for an attached one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout_ms: Option<u64>,
    /// Allows the variables that change which code ComfyUI runs (PYTHONPATH,
    /// PYTHONHOME, PYTHONSTARTUP, LD_LIBRARY_PATH). Default false: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_risky_env_vars: Option<bool>,
    /// How the API key is sent, as the proxy in front of ComfyUI expects:
    /// `bearer` (default: `Authorization: Bearer <key>`), `basic`
    /// (`Authorization: Basic`, the key written `user:password`) or
    /// `header:<Name>` (the key as the value of that header, e.g.
    /// `header:X-API-Key`). Used on HTTP and on `/ws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_auth: Option<String>,
    /// A PEM file of the certificate authority (or the self-signed
    /// certificate itself) that an `https` instance's certificate is checked
    /// against, in addition to the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Environment variables whose values are secret: name -> the keyring
    /// entry holding the value (as `apiKeyRef`). The value is never in this
    /// file; the launch reads it from the keyring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env_vars: Option<BTreeMap<String, String>>,
    /// The pool that made this instance: the pool starts and stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
}

/// How an API key travels, parsed from [`InstanceConfig::api_key_auth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAuth {
    Bearer,
    Basic,
    Header(String),
}

impl KeyAuth {
    /// Parses `bearer`, `basic` or `header:<Name>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "bearer" => return Ok(Self::Bearer),
            "basic" => return Ok(Self::Basic),
            _ => {}
        }
        let Some(name) = t
            .strip_prefix("header:")
            .or_else(|| t.strip_prefix("Header:"))
        else {
            return Err(format!(
                "'{t}' is not a way to send the key: write bearer, basic or header:<Name> (e.g. header:X-API-Key)"
            ));
        };
        let name = name.trim();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!(
                "'{name}' is not a valid HTTP header name (letters, digits and - only, e.g. X-API-Key)"
            ));
        }
        Ok(Self::Header(name.to_string()))
    }
}

impl InstanceConfig {
    /// A config with only the required fields set.
    pub fn new(id: impl Into<String>, name: impl Into<String>, port: u32) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            port,
            host: None,
            gpu_device: None,
            env_vars: None,
            custom_nodes_path: None,
            max_concurrent_workflows: None,
            timeout_ms: None,
            enable_queue_monitoring: None,
            auto_start: None,
            description: None,
            scheme: None,
            comfyui_path: None,
            python_path: None,
            extra_args: None,
            api_key_ref: None,
            start_timeout_ms: None,
            allow_risky_env_vars: None,
            api_key_auth: None,
            ca_file: None,
            secret_env_vars: None,
            pool_id: None,
        }
    }
    /// How the key is sent; `bearer` when unset or unreadable (validation
    /// reports the latter).
    pub fn key_auth(&self) -> KeyAuth {
        self.api_key_auth
            .as_deref()
            .and_then(|t| KeyAuth::parse(t).ok())
            .unwrap_or(KeyAuth::Bearer)
    }
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or(DEFAULT_HOST)
    }
    pub fn scheme(&self) -> Scheme {
        self.scheme.unwrap_or_default()
    }
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent_workflows
            .unwrap_or(DEFAULT_MAX_CONCURRENT_WORKFLOWS)
    }
    pub fn timeout(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }
    pub fn queue_monitoring(&self) -> bool {
        self.enable_queue_monitoring.unwrap_or(true)
    }
    /// How long a start may take to its first answer.
    pub fn start_timeout(&self) -> u64 {
        self.start_timeout_ms.unwrap_or(if self.is_local_launch() {
            DEFAULT_LOCAL_START_TIMEOUT_MS
        } else {
            DEFAULT_REMOTE_START_TIMEOUT_MS
        })
    }
    pub fn autostart(&self) -> bool {
        self.auto_start.unwrap_or(false)
    }
    /// `http://host:port`, IPv6 hosts bracketed.
    pub fn base_url(&self) -> String {
        let h = self.host();
        if h.contains(':') && !h.starts_with('[') {
            format!("{}://[{h}]:{}", self.scheme().as_str(), self.port)
        } else {
            format!("{}://{h}:{}", self.scheme().as_str(), self.port)
        }
    }
    /// Every keyring entry this instance refers to: its API key and its
    /// secret environment values.
    pub fn secret_refs(&self) -> Vec<String> {
        self.api_key_ref
            .iter()
            .cloned()
            .chain(
                self.secret_env_vars
                    .iter()
                    .flatten()
                    .map(|(_, r)| r.clone()),
            )
            .collect()
    }

    /// Launched by the app (has a ComfyUI folder), as opposed to attached.
    pub fn is_local_launch(&self) -> bool {
        self.comfyui_path.is_some()
    }
}

/// A partial update: every field that is `Some` replaces the current value. For the
/// optional seed fields, `Some(None)` clears the field back to its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceConfigPatch {
    pub name: Option<String>,
    pub port: Option<u32>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub host: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub gpu_device: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub env_vars: Option<Option<BTreeMap<String, String>>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_nodes_path: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrent_workflows: Option<Option<u32>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout_ms: Option<Option<u64>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_queue_monitoring: Option<Option<bool>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_start: Option<Option<bool>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheme: Option<Option<Scheme>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub comfyui_path: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub python_path: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub extra_args: Option<Option<Vec<String>>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_ref: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_timeout_ms: Option<Option<u64>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_risky_env_vars: Option<Option<bool>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_auth: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<Option<String>>,
    #[serde(
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_env_vars: Option<Option<BTreeMap<String, String>>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl InstanceConfigPatch {
    /// Applies the patch; the id never changes.
    pub fn apply(self, c: &mut InstanceConfig) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(name, port, host, gpu_device, env_vars, custom_nodes_path);
        set!(
            max_concurrent_workflows,
            timeout_ms,
            enable_queue_monitoring
        );
        set!(auto_start, description, scheme, comfyui_path, python_path);
        set!(
            extra_args,
            api_key_ref,
            start_timeout_ms,
            allow_risky_env_vars
        );
        set!(api_key_auth, ca_file, secret_env_vars);
    }
}

/// The seed's `InstanceStatus`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    #[default]
    Stopped,
    Starting,
    Running,
    Paused,
    Stopping,
    Error,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Error => "error",
        }
    }
}

/// The seed's `ComfyUIInstance`, as the UI sees it (the client stays in the backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub config: InstanceConfig,
    pub status: InstanceStatus,
    pub health: InstanceHealth,
    pub stats: InstanceStats,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Why the instance is in `error`, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When the instance entered its current status (a card shows "starting
    /// for 12 s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_since: Option<DateTime<Utc>>,
    /// While starting: the last line its ComfyUI wrote ("Loading custom
    /// nodes..."), so the user sees the start progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_progress: Option<String>,
}

impl Instance {
    /// Takes new work: running (not paused) and answering (healthy or degraded).
    pub fn takes_work(&self) -> bool {
        self.status == InstanceStatus::Running
            && matches!(
                self.health.status,
                crate::health::HealthStatus::Healthy | crate::health::HealthStatus::Degraded
            )
    }
}

/// `comfyui_instances.json`, exactly as the seed shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancesFile {
    pub version: String,
    pub instances: Vec<InstanceConfig>,
    #[serde(default)]
    pub active_instance_id: Option<String>,
    #[serde(default)]
    pub last_saved: Option<DateTime<Utc>>,
}

pub const INSTANCES_FILE_VERSION: &str = "1.0";

/// The seed's `MigrationResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationResult {
    pub migrated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    pub to_version: String,
    pub instances_created: u32,
    pub errors: Vec<String>,
}

/// What of a local instance the user can open in the desktop's file manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InstancePath {
    /// ComfyUI's output folder of that instance.
    Output,
    /// Its current log file.
    Log,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let c = InstanceConfig::new("a", "A", 8188);
        assert_eq!(c.host(), "localhost");
        assert_eq!(c.max_concurrent(), 1);
        assert_eq!(c.timeout(), 300_000);
        assert!(c.queue_monitoring());
        assert!(!c.autostart());
        assert_eq!(c.base_url(), "http://localhost:8188");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "a", "name": "A", "port": 8188})
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let mut c = InstanceConfig::new("a", "A", 8188);
        c.host = Some("::1".into());
        c.scheme = Some(Scheme::Https);
        assert_eq!(c.base_url(), "https://[::1]:8188");
    }

    #[test]
    fn patch_replaces_and_clears() {
        let mut c = InstanceConfig::new("a", "A", 8188);
        c.description = Some("old".into());
        let p: InstanceConfigPatch =
            serde_json::from_value(serde_json::json!({"port": 8190, "description": null})).unwrap();
        p.apply(&mut c);
        assert_eq!(c.port, 8190);
        assert_eq!(c.description, None);
        assert_eq!(c.name, "A");
    }
}

/// The editor's "Test Connection" answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTest {
    pub outcome: ConnectionOutcome,
    /// A sentence for the user.
    pub message: String,
    /// Milliseconds, when the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfyui_version: Option<String>,
    #[serde(default)]
    pub devices: Vec<DeviceSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionOutcome {
    Reached,
    Refused,
    TimedOut,
    /// Something answered, but not like ComfyUI, or the address is unusable.
    Failed,
}

/// One device a ComfyUI server reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSummary {
    pub name: String,
    pub kind: String,
    pub vram_total: u64,
    pub vram_free: u64,
}
