//! What can go wrong while launching, stopping or re-attaching a local ComfyUI.
//! Each variant names the instance and what was being done to what.

use std::path::PathBuf;
use storycore_types::FieldError;

/// The process holding a port, as the OS tells it (Linux: /proc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: u32,
    pub name: String,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

fn held_by(holder: &Option<PortHolder>) -> String {
    match holder {
        Some(h) => format!(" by {h}"),
        None => String::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("instance {id}: it cannot be launched by the app: {reason}")]
    NotLaunchable { id: String, reason: String },

    #[error("instance {id}: the launch settings are refused: {}", problems_text(.problems))]
    InvalidLaunch {
        id: String,
        problems: Vec<FieldError>,
    },

    #[error("instance {id}: port {port} on {host} is already in use{}; pick another port (for example {suggestion})", held_by(.holder))]
    PortInUse {
        id: String,
        host: String,
        port: u16,
        holder: Option<PortHolder>,
        suggestion: u16,
    },

    /// Not an accident: a ComfyUI the app did not start answers there. The
    /// caller can offer to attach to it instead of launching another.
    #[error("instance {id}: a ComfyUI {version} already answers on {host}:{port}{}; attach to it instead of starting another", held_by(.holder))]
    ComfyUiAlreadyRunning {
        id: String,
        host: String,
        port: u16,
        version: String,
        holder: Option<PortHolder>,
    },

    #[error("instance {id}: could not {action} {}: {source}", .path.display())]
    Io {
        id: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("instance {id}: could not start {}: {source}", .program.display())]
    Spawn {
        id: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("instance {id}: the supervisor has ended (stopped or gave up)")]
    Gone { id: String },

    #[error("instance {id}: not restarted: it already started {starts} times within the start limit's window")]
    StartLimit { id: String, starts: usize },

    #[error("instance {id}: the recorded process cannot be re-attached: {reason}")]
    NotAdoptable { id: String, reason: String },
}

fn problems_text(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl SupervisorError {
    pub(crate) fn io(
        id: &str,
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            id: id.to_string(),
            action,
            path: path.into(),
            source,
        }
    }
}
