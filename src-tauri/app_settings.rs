//! `settings.json` in the config folder: the app's own settings (which alerts
//! notify). Written atomically; a missing file means the defaults; a broken
//! one is reported and the defaults used, never overwritten silently.

use std::path::PathBuf;
use std::sync::Mutex;
use storycore_core::dispatch::JobQueue;
use storycore_core::manager::InstanceManager;
use storycore_core::store::{atomic_write, read_regular};
use storycore_types::{ApiError, AppSettings, ErrorCode, FieldError};

pub const SETTINGS_FILE: &str = "settings.json";

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
        self.current.lock().unwrap().clone()
    }

    pub fn set(&self, s: AppSettings) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec_pretty(&s).expect("settings serialize");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ApiError::new(
                    ErrorCode::Io,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
        }
        atomic_write(&self.path, &bytes)
            .map_err(|e| ApiError::new(ErrorCode::Io, e.to_string()))?;
        *self.current.lock().unwrap() = s;
        Ok(())
    }
}

#[tauri::command]
pub fn get_settings(store: tauri::State<'_, SettingsStore>) -> AppSettings {
    store.get()
}

/// Checks, saves and applies new settings: "keep instances running" goes to
/// the process guardian at once, new retention limits prune at once.
#[tauri::command]
pub async fn set_settings(
    store: tauri::State<'_, SettingsStore>,
    manager: tauri::State<'_, InstanceManager>,
    queue: tauri::State<'_, JobQueue>,
    gateway: tauri::State<'_, crate::shell::GatewaySlot>,
    paths: tauri::State<'_, crate::paths::AppPaths>,
    mut settings: AppSettings,
) -> Result<(), ApiError> {
    let _one_at_a_time = store.changing.lock().await;
    let before = store.get();
    // Where the token is kept is the app's to say (set_gateway_token).
    settings.gateway.token_ref = before.gateway.token_ref.clone();
    let dir = paths.config_dir.clone();
    let named = tokio::task::spawn_blocking(move || {
        !storycore_core::gateway::TokenBook::open(&dir).is_empty()
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    check(&settings, named)?;
    store.set(settings.clone())?;
    manager.set_keep_running(settings.keep_instances_running);
    queue
        .set_retention(crate::shell::retention_of(&settings))
        .await;
    // Only what changed: a notification toggle does not touch every monitor.
    if settings.health != before.health {
        // The environment was read at start and is still what it was.
        if let Ok(env) = crate::settings::EnvSettings::from_env() {
            manager
                .set_health_policy(crate::shell::health_policy_of(&settings, &env))
                .await;
        }
    }
    if (settings.placement, settings.copies_near_the_end)
        != (before.placement, before.copies_near_the_end)
    {
        queue.set_placement(
            storycore_core::dispatch::Policy::from_setting(settings.placement),
            settings.copies_near_the_end,
        );
    }
    if settings.gateway != before.gateway {
        restart_gateway(&settings, &gateway, &queue, &manager, &paths).await?;
    }
    Ok(())
}

/// Starts the gateway again as `settings` say. STORYCORE_GATEWAY (and its
/// token) chose it at start; a change made in Settings is the user's, and
/// wins from now on.
async fn restart_gateway(
    settings: &AppSettings,
    gateway: &crate::shell::GatewaySlot,
    queue: &JobQueue,
    manager: &InstanceManager,
    paths: &crate::paths::AppPaths,
) -> Result<(), ApiError> {
    let env = crate::settings::EnvSettings::default();
    let addr = crate::shell::gateway_addr(settings, &env)
        .map_err(|e| ApiError::new(ErrorCode::InvalidInput, e))?;
    let (s, dir) = (settings.clone(), paths.config_dir.clone());
    let access = tokio::task::spawn_blocking(move || crate::shell::gateway_access(&s, &env, &dir))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let started = match access {
        Ok(access) => {
            crate::shell::apply_gateway(gateway, queue.clone(), manager.clone(), addr, access).await
        }
        Err(e) => Err(e),
    };
    started.map(|_| ()).map_err(|e| {
        let mut api = ApiError::new(
            ErrorCode::Conflict,
            format!("Saved, but the gateway is off: {e}"),
        );
        api.fields = vec![FieldError::new("gateway.address", e)];
        api
    })
}

/// Sets (`Some`) or removes (`None`) the token a gateway on the network
/// requires; kept in the OS keyring, never in a file. The gateway starts
/// again with it.
#[tauri::command]
pub async fn set_gateway_token(
    store: tauri::State<'_, SettingsStore>,
    manager: tauri::State<'_, InstanceManager>,
    queue: tauri::State<'_, JobQueue>,
    gateway: tauri::State<'_, crate::shell::GatewaySlot>,
    paths: tauri::State<'_, crate::paths::AppPaths>,
    token: Option<String>,
) -> Result<(), ApiError> {
    let _one_at_a_time = store.changing.lock().await;
    let mut settings = store.get();
    let field = |e: String| {
        let mut api = ApiError::new(ErrorCode::InvalidInput, e.clone());
        api.fields = vec![FieldError::new("gateway.token", e)];
        api
    };
    let auth =
        storycore_types::KeyAuth::parse(settings.gateway.token_auth.as_deref().unwrap_or("bearer"))
            .map_err(field)?;
    let token = token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(t) = &token {
        storycore_core::gateway::Access::token(t, auth).map_err(field)?;
    }
    let vault = storycore_core::secrets::Vault::new(&paths.config_dir);
    let reference = crate::shell::GATEWAY_TOKEN_REF;
    let kept = tokio::task::spawn_blocking(move || match &token {
        Some(t) => vault.store(reference, t).map(|()| true),
        None => vault.delete(reference).map(|()| false),
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| {
        field(format!(
            "{e} (a headless server can take the token from STORYCORE_GATEWAY_TOKEN instead)"
        ))
    })?;
    settings.gateway.token_ref = kept.then(|| reference.to_string());
    store.set(settings.clone())?;
    restart_gateway(&settings, &gateway, &queue, &manager, &paths).await
}

/// The people's gateway tokens (names and roles; never a token).
#[tauri::command]
pub async fn list_gateway_tokens(
    paths: tauri::State<'_, crate::paths::AppPaths>,
) -> Result<Vec<storycore_types::GatewayTokenInfo>, ApiError> {
    let dir = paths.config_dir.clone();
    let all =
        tokio::task::spawn_blocking(move || storycore_core::gateway::TokenBook::open(&dir).list())
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(all
        .into_iter()
        .map(|t| storycore_types::GatewayTokenInfo {
            name: t.name,
            admin: t.admin,
            created_at: t.created_at,
        })
        .collect())
}

/// Makes a token for a person; answers it, the only time it is shown.
#[tauri::command]
pub async fn create_gateway_token(
    paths: tauri::State<'_, crate::paths::AppPaths>,
    name: String,
    admin: bool,
) -> Result<String, ApiError> {
    let dir = paths.config_dir.clone();
    let made = tokio::task::spawn_blocking(move || {
        storycore_core::gateway::TokenBook::open(&dir).create(name.trim(), admin)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    made.map_err(token_error)
}

/// Revokes a person's token: refused from now on, its sockets closed.
#[tauri::command]
pub async fn revoke_gateway_token(
    paths: tauri::State<'_, crate::paths::AppPaths>,
    name: String,
) -> Result<(), ApiError> {
    let dir = paths.config_dir.clone();
    let done = tokio::task::spawn_blocking(move || {
        storycore_core::gateway::TokenBook::open(&dir).revoke(&name)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    done.map_err(token_error)
}

fn token_error(e: storycore_core::gateway::TokenError) -> ApiError {
    use storycore_core::gateway::TokenError as T;
    let code = match &e {
        T::Invalid(_) => ErrorCode::InvalidInput,
        T::Unknown(_) => ErrorCode::NotFound,
        T::Taken(_) => ErrorCode::Conflict,
        _ => ErrorCode::Internal,
    };
    let mut api = ApiError::new(code, e.to_string());
    if code == ErrorCode::InvalidInput || code == ErrorCode::Conflict {
        api.fields = vec![FieldError::new("gateway.tokenName", e.to_string())];
    }
    api
}

/// Where the gateway listens now (`None`: off, or it could not listen).
#[tauri::command]
pub async fn gateway_status(
    gateway: tauri::State<'_, crate::shell::GatewaySlot>,
) -> Result<Option<storycore_types::GatewayStatus>, ApiError> {
    Ok(gateway
        .0
        .lock()
        .await
        .as_ref()
        .map(|g| storycore_types::GatewayStatus {
            address: g.addr().to_string(),
            url: g.url(),
            fingerprint: g.tls().map(|t| t.fingerprint().to_string()),
            trust_file: g.tls().map(|t| t.trust_file().display().to_string()),
        }))
}

/// The limits of the retention settings, said in the refusal.
fn check(s: &AppSettings, has_named_tokens: bool) -> Result<(), ApiError> {
    let mut fields = Vec::new();
    if !(1..=3650).contains(&s.job_retention_days) {
        fields.push(FieldError::new(
            "jobRetentionDays",
            format!(
                "{} days is out of range: keep finished jobs from 1 to 3650 days",
                s.job_retention_days
            ),
        ));
    }
    if !(1..=1_000_000).contains(&s.max_finished_jobs) {
        fields.push(FieldError::new(
            "maxFinishedJobs",
            format!(
                "{} jobs is out of range: keep from 1 to 1000000 finished jobs",
                s.max_finished_jobs
            ),
        ));
    }
    if let Some(how) = &s.gateway.token_auth {
        if let Err(e) = storycore_types::KeyAuth::parse(how) {
            fields.push(FieldError::new("gateway.tokenAuth", e));
        }
    }
    let (cert, key) = (&s.gateway.tls_cert, &s.gateway.tls_key);
    for (field, path) in [("gateway.tlsCert", cert), ("gateway.tlsKey", key)] {
        if path
            .as_deref()
            .is_some_and(|p| !std::path::Path::new(p).is_absolute())
        {
            fields.push(FieldError::new(
                field,
                "give the file's absolute path".to_string(),
            ));
        }
    }
    if cert.is_some() != key.is_some() {
        fields.push(FieldError::new(
            if cert.is_some() {
                "gateway.tlsKey"
            } else {
                "gateway.tlsCert"
            },
            "a certificate and its key go together: give both, or neither (the app then makes one)"
                .to_string(),
        ));
    }
    if let Err(e) = storycore_core::gateway::Access::open().with_hosts(&s.gateway.allowed_hosts) {
        fields.push(FieldError::new("gateway.allowedHosts", e));
    }
    if s.gateway.enabled {
        match s.gateway.address.trim().parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() || s.gateway.token_ref.is_some() || has_named_tokens => {}
            Ok(a) => fields.push(FieldError::new(
                "gateway.address",
                format!("{a} is on the network: set a token for the gateway first (clients then send it), or use a loopback address such as 127.0.0.1:8288"),
            )),
            Err(_) => fields.push(FieldError::new(
                "gateway.address",
                format!(
                    "'{}' is not an address and port, such as 127.0.0.1:8288",
                    s.gateway.address
                ),
            )),
        }
    }
    let h = &s.health;
    let ranges: [(&str, u32, std::ops::RangeInclusive<u32>, &str); 6] = [
        (
            "health.intervalMs",
            h.interval_ms,
            1_000..=3_600_000,
            "probe every 1000 ms (1 s) to 3600000 ms (1 hour)",
        ),
        (
            "health.probeTimeoutMs",
            h.probe_timeout_ms,
            500..=60_000,
            "give a probe 500 to 60000 ms",
        ),
        (
            "health.degradedResponseMs",
            h.degraded_response_ms,
            50..=60_000,
            "count answers slower than 50 to 60000 ms as degraded",
        ),
        (
            "health.failureThreshold",
            h.failure_threshold,
            1..=20,
            "use 1 to 20 failed probes in a row",
        ),
        (
            "health.successThreshold",
            h.success_threshold,
            1..=20,
            "use 1 to 20 answers in a row",
        ),
        (
            "health.resourceHighPercent",
            h.resource_high_percent,
            50..=100,
            "alert from 50% to 100%",
        ),
    ];
    for (field, value, range, what) in ranges {
        if !range.contains(&value) {
            fields.push(FieldError::new(
                field,
                format!("{value} is out of range: {what}"),
            ));
        }
    }
    if fields.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::new(
        ErrorCode::InvalidInput,
        fields
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
    );
    e.fields = fields;
    Err(e)
}
