//! Named tokens: one per person (or script), so the gateway knows who sent
//! each request. Created, listed and revoked in the app's Settings or with
//! `storycore-engine tokens`; kept in `<config>/gateway-tokens.json` (0600,
//! written atomically) as their SHA-256 only: the token itself is shown
//! once, when it is made, and a copy of the file reveals none. A hash of
//! 24 random bytes cannot be turned back, so the file needs no keyring, and
//! the headless `serve` and the desktop app share one store.
//!
//! The running gateway reads the file again when it changes (a request
//! looks at its modification time; a watcher does every half second), so a
//! revoked token is refused at once and its open sockets are closed.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub const TOKENS_FILE: &str = "gateway-tokens.json";
const FORMAT: &str = "1.0";
/// How often the watcher looks at the file.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// One person's token, as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedToken {
    pub name: String,
    /// Sees and touches every person's prompts.
    #[serde(default)]
    pub admin: bool,
    pub created_at: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    format: String,
    tokens: Vec<NamedToken>,
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; `None`: this machine without a token, or the
    /// shared token (both see everything).
    pub name: Option<Arc<str>>,
    pub admin: bool,
}

impl Caller {
    /// Everyone's prompts: loopback without a token, the shared token.
    pub fn everyone() -> Self {
        Self {
            name: None,
            admin: true,
        }
    }

    /// Whether this caller may see and touch a prompt of `owner`.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        self.admin || (self.name.is_some() && self.name.as_deref() == owner)
    }

    /// Whose prompts this caller counts: everyone's (`None`) or its own.
    pub fn scope(&self) -> Option<&str> {
        (!self.admin).then(|| self.name.as_deref().unwrap_or_default())
    }

    /// The owner recorded on the prompts this caller submits.
    pub fn owner(&self) -> Option<String> {
        self.name.as_deref().map(String::from)
    }
}

/// The named tokens, read from their file again when it changes.
pub struct TokenBook {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    /// Bumped when the set of tokens changes: sockets look again.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Loaded {
    modified: Option<SystemTime>,
    len: u64,
    tokens: Arc<Vec<NamedToken>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token is named {0:?}")]
    Unknown(String),
    #[error("a token is already named {0:?}: revoke it first, or choose another name")]
    Taken(String),
    #[error("{path} cannot be read: {reason} (fix or remove the file; every named token in it is refused until then)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path} cannot be written: {source}")]
    Write {
        path: PathBuf,
        source: crate::store::StoreError,
    },
}

fn sha256_hex(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A name is what the Workflows view shows and what owns prompts.
fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && name != DEFAULT_USER && !name.starts_with('.') {
        Ok(())
    } else {
        Err(TokenError::Invalid(format!(
            "{name:?} cannot name a token: use 1 to 64 letters, digits, '-', '_' or '.' (not starting with '.', and not \"default\")"
        )))
    }
}

impl TokenBook {
    /// The book kept in `config_dir`.
    pub fn open(config_dir: &Path) -> Arc<Self> {
        let book = Arc::new(Self {
            path: config_dir.join(TOKENS_FILE),
            loaded: Mutex::new(Loaded::default()),
            changed: tokio::sync::watch::channel(0).0,
        });
        let _ = book.refresh();
        book
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again if it changed; the tokens as they are now. A
    /// file that cannot be read holds no valid token (refused, and said).
    fn refresh(&self) -> Arc<Vec<NamedToken>> {
        let meta = std::fs::metadata(&self.path).ok();
        let stamp = (
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.as_ref().map_or(0, |m| m.len()),
        );
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if (loaded.modified, loaded.len) == stamp && (stamp.0.is_some() || loaded.tokens.is_empty())
        {
            return loaded.tokens.clone();
        }
        let tokens = match self.read() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("gateway: {e}");
                Vec::new()
            }
        };
        let changed = *loaded.tokens != tokens;
        *loaded = Loaded {
            modified: stamp.0,
            len: stamp.1,
            tokens: Arc::new(tokens),
        };
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        loaded.tokens.clone()
    }

    fn read(&self) -> Result<Vec<NamedToken>, TokenError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TokenError::Unreadable {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let file: TokensFile =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Unreadable {
                path: self.path.clone(),
                reason: format!("not a tokens file ({e})"),
            })?;
        if file.format.split('.').next() != Some("1") {
            return Err(TokenError::Unreadable {
                path: self.path.clone(),
                reason: format!("format {:?} is a newer app's", file.format),
            });
        }
        Ok(file.tokens)
    }

    /// The tokens (names, roles, dates; never a token).
    pub fn list(&self) -> Vec<NamedToken> {
        (*self.refresh()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.refresh().is_empty()
    }

    /// Whether a token named `name` is still valid.
    pub fn holds(&self, name: &str) -> bool {
        self.refresh().iter().any(|t| t.name == name)
    }

    /// The caller whose token is among `sent` (the forms a request carries);
    /// `None` when there is none, or no named token at all. The file is
    /// looked at once; every stored hash is compared, each in constant time.
    pub fn caller<S: AsRef<str>>(&self, sent: &[S]) -> Option<Caller> {
        if sent.is_empty() {
            return None;
        }
        let tokens = self.refresh();
        let mut found = None;
        for presented in sent {
            let hash = sha256_hex(presented.as_ref());
            for t in tokens.iter() {
                if same(hash.as_bytes(), t.sha256.as_bytes()) && found.is_none() {
                    found = Some(Caller {
                        name: Some(t.name.as_str().into()),
                        admin: t.admin,
                    });
                }
            }
        }
        found
    }

    /// Makes a token for `name`; answers the token, shown only now.
    pub fn create(&self, name: &str, admin: bool) -> Result<String, TokenError> {
        check_name(name)?;
        let mut tokens = self.read()?;
        if tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Taken(name.to_string()));
        }
        let mut bytes = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| TokenError::Invalid("the system gave no random bytes".into()))?;
        let token = format!(
            "sct_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        tokens.push(NamedToken {
            name: name.to_string(),
            admin,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sha256: sha256_hex(&token),
        });
        self.write(tokens)?;
        tracing::info!(name, admin, "gateway: a token made");
        Ok(token)
    }

    /// Revokes `name`'s token: refused from now on, its sockets closed.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut tokens = self.read()?;
        let before = tokens.len();
        tokens.retain(|t| t.name != name);
        if tokens.len() == before {
            return Err(TokenError::Unknown(name.to_string()));
        }
        self.write(tokens)?;
        tracing::info!(name, "gateway: a token revoked");
        Ok(())
    }

    fn write(&self, tokens: Vec<NamedToken>) -> Result<(), TokenError> {
        let file = TokensFile {
            format: FORMAT.into(),
            tokens,
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("tokens serialise");
        crate::store::atomic_write(&self.path, &bytes).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.refresh();
        Ok(())
    }

    /// A receiver that changes when the set of tokens does.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Looks at the file every half second until `stop`, so another
    /// process's revocation (`storycore-engine tokens revoke`) closes
    /// sockets without waiting for a request.
    pub(crate) fn spawn_watcher(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let book = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                }
                let b = book.clone();
                let _ = tokio::task::spawn_blocking(move || b.refresh()).await;
            }
        })
    }
}

/// Equal, in a time that does not depend on where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Whose files `/userdata` serves to a caller without a name.
pub(crate) const DEFAULT_USER: &str = "default";

/// Whether `c` may see and touch `job`: their own prompt, or everyone's.
pub(crate) fn visible(c: &Caller, job: &storycore_types::Job) -> bool {
    c.sees(job.gateway.as_ref().and_then(|g| g.owner.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_kept_as_hashes_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let book = TokenBook::open(dir.path());
        assert!(book.is_empty());
        let alice = book.create("alice", false).unwrap();
        let root = book.create("ops", true).unwrap();
        assert!(alice.starts_with("sct_") && alice.len() == 52, "{alice}");
        let kept = std::fs::read_to_string(book.path()).unwrap();
        assert!(!kept.contains(&alice) && !kept.contains(&root), "{kept}");
        let who = book.caller(&[&alice]).unwrap();
        assert_eq!((who.name.as_deref(), who.admin), (Some("alice"), false));
        assert!(book.caller(&[&root]).unwrap().admin);
        assert!(book.caller(&["sct_nope"]).is_none());
        assert!(matches!(
            book.create("alice", true),
            Err(TokenError::Taken(_))
        ));
        for bad in ["", "a b", "default", ".x", "ünï"] {
            assert!(
                matches!(book.create(bad, false), Err(TokenError::Invalid(_))),
                "{bad:?}"
            );
        }
        // Another process's change is seen by a book opened before it.
        let other = TokenBook::open(dir.path());
        other.revoke("alice").unwrap();
        assert!(book.caller(&[&alice]).is_none());
        assert!(!book.holds("alice") && book.holds("ops"));
        assert!(matches!(other.revoke("alice"), Err(TokenError::Unknown(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(book.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    #[test]
    fn a_broken_file_refuses_every_named_token() {
        let dir = tempfile::tempdir().unwrap();
        let book = TokenBook::open(dir.path());
        let t = book.create("bob", false).unwrap();
        std::fs::write(book.path(), "{not json").unwrap();
        assert!(book.caller(&[&t]).is_none());
        assert!(matches!(
            book.create("carol", false),
            Err(TokenError::Unreadable { .. })
        ));
    }

    #[test]
    fn who_sees_what() {
        let alice = Caller {
            name: Some("alice".into()),
            admin: false,
        };
        assert!(alice.sees(Some("alice")));
        assert!(!alice.sees(Some("bob")));
        assert!(!alice.sees(None));
        assert!(Caller::everyone().sees(Some("bob")) && Caller::everyone().sees(None));
    }
}
