//! First start after the single-instance app: its `comfyui.json` becomes the
//! fleet's first instance, once and only once.
//!
//! "Once" is carried by the files themselves: migration runs only when
//! `comfyui_instances.json` (and its backup) do not exist, and the old file is
//! renamed once the new one is saved. A crash between the two leaves both
//! files; the next start sees the new one and does not migrate again.

use super::loaded::{empty_file, Loaded, INSTANCES_FILE_NAME};
use super::StoreError;
use crate::model::validate_config;
use serde_json::Value;
use std::path::Path;
use storycore_types::{
    InstanceConfig, InstancesFile, MigrationResult, Scheme, INSTANCES_FILE_VERSION,
};

/// The single-instance app's settings.
pub const LEGACY_FILE_NAME: &str = "comfyui.json";
/// What the old file is renamed to once migrated.
pub const MIGRATED_FILE_NAME: &str = "comfyui.json.migrated";

const DEFAULT_ENDPOINT: &str = "http://localhost:8188";
const MIGRATED_ID: &str = "instance_001";
const MIGRATED_NAME: &str = "Default ComfyUI";
const FROM_VERSION: &str = "single-instance";

/// Called by load when neither the instances file nor its backup exists.
/// `save` writes the migrated file (the loader's own save).
pub(crate) fn first_start(
    dir: &std::path::Path,
    save: impl FnOnce(&mut InstancesFile) -> Result<(), StoreError>,
) -> Result<Loaded, StoreError> {
    let legacy = dir.join(LEGACY_FILE_NAME);
    let bytes = match super::read_regular(&legacy, 1 << 20) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(fresh(empty_file(), vec![], None)),
        Err(e) => {
            return Ok(failed(format!(
                "{LEGACY_FILE_NAME} could not be read ({e})"
            )))
        }
    };
    let config = match legacy_to_config(&bytes) {
        Ok(c) => c,
        Err(why) => return Ok(failed(why)),
    };
    let mut file = InstancesFile {
        version: INSTANCES_FILE_VERSION.to_string(),
        instances: vec![config],
        active_instance_id: Some(MIGRATED_ID.to_string()),
        last_saved: None,
    };
    save(&mut file)?;
    let mut result = MigrationResult {
        migrated: true,
        from_version: Some(FROM_VERSION.to_string()),
        to_version: INSTANCES_FILE_VERSION.to_string(),
        instances_created: 1,
        errors: vec![],
    };
    let mut notice = format!(
        "The server set in {LEGACY_FILE_NAME} was imported as the instance '{MIGRATED_NAME}' ({MIGRATED_ID})"
    );
    match std::fs::rename(&legacy, dir.join(MIGRATED_FILE_NAME)) {
        Ok(()) => notice.push_str(&format!("; the old file was renamed {MIGRATED_FILE_NAME}.")),
        Err(e) => {
            let why = format!("{LEGACY_FILE_NAME} could not be renamed to {MIGRATED_FILE_NAME} ({e}); it will not be imported again, you may delete it");
            notice.push_str(&format!(". {why}."));
            result.errors.push(why);
        }
    }
    Ok(fresh(file, vec![notice], Some(result)))
}

/// A notice when the old file is back (or was never renamed) although the
/// fleet already exists: it is not migrated twice, and the user should know why.
pub(crate) fn leftover_notice(dir: &Path) -> Option<String> {
    dir.join(LEGACY_FILE_NAME).exists().then(|| {
        format!(
            "{LEGACY_FILE_NAME} (the settings of the single-instance version) is in the config folder, but the instances already live in {INSTANCES_FILE_NAME}, so it was not imported again. Delete it if you no longer need it."
        )
    })
}

fn fresh(file: InstancesFile, notices: Vec<String>, migration: Option<MigrationResult>) -> Loaded {
    Loaded {
        file,
        notices,
        read_only: false,
        migration,
    }
}

/// The old file stays untouched and the fleet starts empty; the error says why.
fn failed(why: String) -> Loaded {
    let message = format!(
        "{why}. It was left untouched and the app starts with no instances: fix or delete {LEGACY_FILE_NAME} and restart, or add the server by hand."
    );
    let result = MigrationResult {
        migrated: false,
        from_version: Some(FROM_VERSION.to_string()),
        to_version: INSTANCES_FILE_VERSION.to_string(),
        instances_created: 0,
        errors: vec![message.clone()],
    };
    fresh(empty_file(), vec![message], Some(result))
}

/// `{"endpoint", "timeoutMs", "enableQueueMonitoring"}`, every key optional.
fn legacy_to_config(bytes: &[u8]) -> Result<InstanceConfig, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("{LEGACY_FILE_NAME} is not valid JSON ({e})"))?;
    let Value::Object(obj) = value else {
        return Err(format!("{LEGACY_FILE_NAME} does not hold a JSON object"));
    };
    let endpoint = match obj.get("endpoint") {
        None | Some(Value::Null) => DEFAULT_ENDPOINT,
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(format!("the endpoint in {LEGACY_FILE_NAME} is not text")),
    };
    let timeout_ms = match obj.get("timeoutMs") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            format!("timeoutMs in {LEGACY_FILE_NAME} is not a whole number of milliseconds")
        })?),
    };
    let queue_monitoring = match obj.get("enableQueueMonitoring") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| {
            format!("enableQueueMonitoring in {LEGACY_FILE_NAME} is not true or false")
        })?),
    };
    let mut config = config_from_endpoint(endpoint, MIGRATED_ID, MIGRATED_NAME)?;
    config.timeout_ms = timeout_ms;
    config.enable_queue_monitoring = queue_monitoring;
    validate_config(&config, &[]).map_err(|errors| {
        let details: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        format!(
            "the server in {LEGACY_FILE_NAME} cannot be used as it is ({})",
            details.join(" ")
        )
    })?;
    Ok(config)
}

/// An instance's configuration for the single-instance app's `endpoint` URL,
/// or why that URL cannot be one.
pub(crate) fn config_from_endpoint(
    endpoint: &str,
    id: &str,
    name: &str,
) -> Result<InstanceConfig, String> {
    let bad = |why: &str| format!("the endpoint '{endpoint}' in {LEGACY_FILE_NAME} {why}");
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(bad(&format!("uses '{other}', not http or https"))),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "holds a user name or password, which instances do not keep in files",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "has a path after the port, which instances do not support",
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("has no port"))?;
    let mut config = InstanceConfig::new(id, name, u32::from(port));
    // Settings files keep only what differs from the defaults.
    config.host = (host != storycore_types::instance::DEFAULT_HOST).then_some(host);
    config.scheme = (scheme == Scheme::Https).then_some(scheme);
    Ok(config)
}
