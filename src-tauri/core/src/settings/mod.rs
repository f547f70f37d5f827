//! The app's own settings (`settings.json` in the config folder) and their
//! rules: the store, the checks a change must pass, and what each part takes
//! from them (health policy, retention, placement, the gateway's address and
//! access). The desktop window, `serve` and the tests all read them here.

mod env;
mod gateway;
mod rules;

pub use env::{
    EnvSettings, GATEWAY_AUTH_ENV, GATEWAY_ENV, GATEWAY_HOSTS_ENV, GATEWAY_TOKEN_ENV,
    HEALTH_INTERVAL_ENV,
};
pub use gateway::{gateway_access, gateway_addr, wanted_gateway, GatewayChoice, GATEWAY_TOKEN_REF};
pub use rules::check;

use crate::dispatch::{Policy, Retention};
use crate::health::HealthPolicy;
use crate::store::{atomic_write, read_regular};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use storycore_types::{ApiError, AppSettings, ErrorCode};

pub const SETTINGS_FILE: &str = "settings.json";

/// `settings.json`: written atomically; a missing file means the defaults; a
/// broken one is reported and the defaults used, never overwritten silently.
pub struct SettingsStore {
    path: PathBuf,
    current: Mutex<AppSettings>,
    /// Held by a change from its check to the end of its applying: changes
    /// are applied one after another, in the order they were saved. Two
    /// side by side used to interleave at their awaits, an older gateway
    /// change then applied after a newer one (left off while saved on).
    changing: tokio::sync::Mutex<()>,
}

impl SettingsStore {
    /// Reads the file (blocking: at start, before the runtime has work).
    pub fn load(config_dir: &std::path::Path) -> (Self, Option<String>) {
        let path = config_dir.join(SETTINGS_FILE);
        // A regular file, bounded: a FIFO or a device here must not hang the start.
        let (current, notice) = match read_regular(&path, 1 << 20) {
            Ok(None) => (AppSettings::default(), None),
            Err(e) => (
                AppSettings::default(),
                Some(format!(
                    "cannot read {} ({e}); using default settings until you save new ones",
                    path.display()
                )),
            ),
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(s) => (s, None),
                Err(e) => (
                    AppSettings::default(),
                    Some(format!(
                        "{} is not valid ({e}); using default settings until you save new ones",
                        path.display()
                    )),
                ),
            },
        };
        (
            Self {
                path,
                current: Mutex::new(current),
                changing: tokio::sync::Mutex::new(()),
            },
            notice,
        )
    }

    pub fn get(&self) -> AppSettings {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One change at a time: hold the guard from the check to the end of
    /// applying it.
    pub async fn begin_change(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// Writes `s` (an fsync'd atomic write, on the blocking pool) and makes
    /// it current.
    pub async fn set(self: &Arc<Self>, s: AppSettings) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec_pretty(&s).expect("settings serialize");
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ApiError::new(
                        ErrorCode::Io,
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            atomic_write(&path, &bytes).map_err(|e| ApiError::new(ErrorCode::Io, e.to_string()))
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))??;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = s;
        Ok(())
    }
}

/// The health policy of the settings; `STORYCORE_HEALTH_INTERVAL_MS`, when
/// set, overrides their interval (tests, a quick look at one instance).
pub fn health_policy_of(s: &AppSettings, env: &EnvSettings) -> HealthPolicy {
    let mut policy = HealthPolicy::from_settings(&s.health);
    if let Some(every) = env.health_interval {
        // Probes read RAM and VRAM each time; the queue keeps its own pace
        // (`resource_interval`): a probe every second costs one request.
        policy.interval = every;
    }
    policy
}

/// The retention settings as the job queue takes them.
pub fn retention_of(s: &AppSettings) -> Retention {
    Retention::from_settings(s.job_retention_days, s.max_finished_jobs)
}

/// The placement rule of the settings.
pub fn placement_of(s: &AppSettings) -> Policy {
    Policy::from_setting(s.placement)
}
