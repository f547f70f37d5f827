//! API keys: kept in the OS keyring (the Secret Service on Linux: GNOME
//! Keyring, KeePassXC) under the instance's `apiKeyRef`, never in a config
//! file, a log, an event or an export. On a machine without a keyring (a
//! headless box) the user may choose, explicitly, a file readable only by
//! them: such a reference starts with `file:`.
//!
//! Reading the keyring is a D-Bus round trip (about 0.2 s with GNOME Keyring)
//! and blocks: [`Vault`]'s methods must run on a blocking thread. What they
//! read or write is remembered in memory ([`known`]), so the clients built
//! for every probe and job find the key without asking the keyring again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

/// The keyring's service name for every entry of this app.
pub const SERVICE: &str = "storycore-engine";
/// Marks a reference kept in the secrets file instead of the keyring.
pub const FILE_PREFIX: &str = "file:";
/// The fallback file, in the config folder, mode 0600.
pub const FILE_NAME: &str = "secrets.json";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("No OS keyring answered ({detail}). Start and unlock a keyring that serves the Secret Service API (GNOME Keyring, KeePassXC), or choose to keep the key in a file readable only by you.")]
    NoKeyring { detail: String },
    #[error("The keyring could not {action} the key '{reference}': {detail}")]
    Keyring {
        action: &'static str,
        reference: String,
        detail: String,
    },
    #[error("The secrets file {path} could not be {action}: {detail}. Fix its permissions or remove it and enter the keys again.")]
    File {
        path: PathBuf,
        action: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn memory() -> &'static RwLock<HashMap<String, Arc<str>>> {
    static KNOWN: OnceLock<RwLock<HashMap<String, Arc<str>>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// The secret behind `reference`, if this process has read or written it.
pub fn known(reference: &str) -> Option<Arc<str>> {
    memory()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(reference)
        .cloned()
}

/// Makes `secret` known under `reference` without storing it anywhere (for
/// a key read elsewhere, and for tests of what uses keys).
pub fn remember(reference: &str, secret: &str) {
    memory()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(reference.to_string(), Arc::from(secret));
}

fn forget(reference: &str) {
    memory()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(reference);
}

/// The reference an instance's API key is kept under.
pub fn api_key_reference(instance_id: &str, in_file: bool) -> String {
    instance_reference(instance_id, "api-key", in_file)
}

/// The reference the secret value of an instance's variable `name` is kept under.
pub fn env_reference(instance_id: &str, name: &str, in_file: bool) -> String {
    instance_reference(instance_id, &format!("env/{name}"), in_file)
}

fn instance_reference(instance_id: &str, what: &str, in_file: bool) -> String {
    let prefix = if in_file { FILE_PREFIX } else { "" };
    format!("{prefix}instance/{instance_id}/{what}")
}

/// True for a reference the app made for this instance (keyring or file),
/// as opposed to one the user named by hand or a copied config names.
pub fn belongs_to(reference: &str, instance_id: &str) -> bool {
    reference
        .strip_prefix(FILE_PREFIX)
        .unwrap_or(reference)
        .starts_with(&format!("instance/{instance_id}/"))
}

/// True for a reference kept in the secrets file.
pub fn is_file_reference(reference: &str) -> bool {
    reference.starts_with(FILE_PREFIX)
}

/// Where secrets are kept: the keyring, and the fallback file.
#[derive(Debug, Clone)]
pub struct Vault {
    file: PathBuf,
}

impl Vault {
    pub fn new(config_dir: &Path) -> Self {
        Self {
            file: config_dir.join(FILE_NAME),
        }
    }

    pub fn file_path(&self) -> &Path {
        &self.file
    }

    /// Stores `secret` under `reference`. Blocks.
    pub fn store(&self, reference: &str, secret: &str) -> Result<(), SecretError> {
        if secret.is_empty() || secret.len() > 4096 || secret.contains(['\r', '\n', '\0']) {
            return Err(SecretError::Invalid(
                "An API key must be 1 to 4096 characters on one line.".into(),
            ));
        }
        if let Some(name) = reference.strip_prefix(FILE_PREFIX) {
            let mut all = self.read_file()?;
            all.insert(name.to_string(), secret.to_string());
            self.write_file(&all)?;
        } else {
            entry(reference)?
                .set_password(secret)
                .map_err(|e| keyring_error("store", reference, e))?;
        }
        remember(reference, secret);
        Ok(())
    }

    /// Reads the secret under `reference` (`None`: there is none). Blocks.
    pub fn load(&self, reference: &str) -> Result<Option<Arc<str>>, SecretError> {
        let found = if let Some(name) = reference.strip_prefix(FILE_PREFIX) {
            self.read_file()?.remove(name)
        } else {
            match entry(reference)?.get_password() {
                Ok(s) => Some(s),
                Err(keyring::Error::NoEntry) => None,
                Err(e) => return Err(keyring_error("read", reference, e)),
            }
        };
        match found {
            Some(s) => {
                remember(reference, &s);
                Ok(known(reference))
            }
            None => {
                forget(reference);
                Ok(None)
            }
        }
    }

    /// Removes the secret under `reference`; absent is fine. Blocks.
    pub fn delete(&self, reference: &str) -> Result<(), SecretError> {
        forget(reference);
        if let Some(name) = reference.strip_prefix(FILE_PREFIX) {
            let mut all = self.read_file()?;
            if all.remove(name).is_some() {
                self.write_file(&all)?;
            }
            return Ok(());
        }
        match entry(reference)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error("delete", reference, e)),
        }
    }

    fn read_file(&self) -> Result<BTreeMap<String, String>, SecretError> {
        let bad = |action, detail: String| SecretError::File {
            path: self.file.clone(),
            action,
            detail,
        };
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(bad("read", e.to_string())),
        };
        serde_json::from_str(&text)
            .map_err(|e| bad("read", format!("it is not a JSON object of strings ({e})")))
    }

    fn write_file(&self, all: &BTreeMap<String, String>) -> Result<(), SecretError> {
        let text = serde_json::to_string_pretty(all).expect("a map of strings encodes");
        if let Some(dir) = self.file.parent() {
            crate::privacy::create_private_dir(dir).map_err(|e| SecretError::File {
                path: self.file.clone(),
                action: "written",
                detail: e.to_string(),
            })?;
        }
        crate::store::atomic_write(&self.file, text.as_bytes()).map_err(|e| SecretError::File {
            path: self.file.clone(),
            action: "written",
            detail: e.to_string(),
        })
    }
}

fn entry(reference: &str) -> Result<keyring::Entry, SecretError> {
    keyring::Entry::new(SERVICE, reference).map_err(|e| keyring_error("open", reference, e))
}

fn keyring_error(action: &'static str, reference: &str, e: keyring::Error) -> SecretError {
    match e {
        keyring::Error::NoStorageAccess(inner) => SecretError::NoKeyring {
            detail: format!("it is locked or refused access: {inner}"),
        },
        keyring::Error::PlatformFailure(inner) => SecretError::NoKeyring {
            detail: format!("no Secret Service on the session bus: {inner}"),
        },
        other => SecretError::Keyring {
            action,
            reference: reference.to_string(),
            detail: other.to_string(),
        },
    }
}
