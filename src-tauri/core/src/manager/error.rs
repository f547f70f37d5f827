use crate::client::ClientError;
use crate::health::HealthError;
use crate::store::{ImportEntry, ImportError, StoreError};
use crate::supervisor::SupervisorError;
use storycore_types::{ApiError, ErrorCode, FieldError};

/// Everything the manager can refuse or fail at, with the instance it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no instance with id \"{id}\"")]
    NotFound { id: String },
    #[error("the instance config is not valid ({} problem(s))", fields.len())]
    Invalid { fields: Vec<FieldError> },
    #[error("{message}")]
    Transition { id: String, message: String },
    #[error("instance \"{name}\" is paused and takes no new work: resume it first")]
    Paused { id: String, name: String },
    #[error("instance \"{name}\" is {status}: start it first")]
    NotRunning {
        id: String,
        name: String,
        status: String,
    },
    #[error("{source}")]
    Launch {
        id: String,
        /// Boxed: launch errors are large and every manager `Result` carries one.
        #[source]
        source: Box<SupervisorError>,
    },
    #[error("instance \"{id}\": cannot read its log: {detail}")]
    Log { id: String, detail: String },
    #[error(
        "comfyui_instances.json was written by a newer StoryCore Engine: this version shows it \
         but will not change it; update the app"
    )]
    ReadOnly,
    #[error("instance \"{id}\": {source}")]
    Client {
        id: String,
        #[source]
        source: ClientError,
    },
    #[error("instance \"{id}\": {source}")]
    Health {
        id: String,
        #[source]
        source: HealthError,
    },
    #[error(
        "instance \"{name}\" is attached to a ComfyUI this app did not launch: its {what} is on \
         that machine, not here"
    )]
    Remote {
        id: String,
        name: String,
        what: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API key could not be stored, read or removed.
    #[error("instance \"{id}\": {source}")]
    Secret {
        id: String,
        #[source]
        source: crate::secrets::SecretError,
    },
    #[error("import refused: {source}")]
    Import {
        #[source]
        source: ImportError,
        entries: Vec<ImportEntry>,
    },
}

impl ManagerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Invalid { .. } => ErrorCode::InvalidInput,
            Self::Launch { source, .. } => match source.as_ref() {
                SupervisorError::NotLaunchable { .. } | SupervisorError::InvalidLaunch { .. } => {
                    ErrorCode::InvalidInput
                }
                SupervisorError::ComfyUiAlreadyRunning { .. } => ErrorCode::ComfyuiAlreadyRunning,
                SupervisorError::PortInUse { .. } | SupervisorError::StartLimit { .. } => {
                    ErrorCode::Conflict
                }
                _ => ErrorCode::Io,
            },
            Self::Log { .. } => ErrorCode::Io,
            Self::Transition { .. } | Self::Paused { .. } | Self::NotRunning { .. } => {
                ErrorCode::InvalidTransition
            }
            Self::ReadOnly | Self::Remote { .. } => ErrorCode::Conflict,
            Self::Client { source, .. } => source.code(),
            Self::Health { .. } => ErrorCode::Internal,
            Self::Store(e) => e.code(),
            Self::Import { .. } => ErrorCode::InvalidInput,
            Self::Secret { source, .. } => match source {
                crate::secrets::SecretError::Invalid(_) => ErrorCode::InvalidInput,
                // No keyring: the user can choose the file instead.
                crate::secrets::SecretError::NoKeyring { .. } => ErrorCode::Unreachable,
                _ => ErrorCode::Io,
            },
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let mut api = ApiError::new(e.code(), e.to_string());
        match e {
            ManagerError::Invalid { fields } => api.fields = fields,
            ManagerError::Secret { source, .. } => {
                api.fields = vec![FieldError::new("apiKey", source.to_string())];
            }
            ManagerError::Launch { source, .. } => {
                if let SupervisorError::InvalidLaunch { problems, .. } = *source {
                    api.fields = problems;
                }
            }
            ManagerError::Import { entries, .. } => {
                for entry in entries {
                    for f in entry.errors {
                        api.fields.push(FieldError::new(
                            format!("instances[{}].{}", entry.index, f.field),
                            f.message,
                        ));
                    }
                }
            }
            _ => {}
        }
        api
    }
}
/// The error for an id no instance has.
pub(super) fn not_found(id: &str) -> ManagerError {
    ManagerError::NotFound { id: id.to_string() }
}
