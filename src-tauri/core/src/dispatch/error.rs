//! What the job queue can refuse or fail at, saying which job, workflow or file.

use crate::store::StoreError;
use std::path::PathBuf;
use storycore_types::{ApiError, ErrorCode, JobState};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The workflow is not something ComfyUI could run (checked before accepting it).
    #[error("the workflow was refused: {reason}")]
    BadWorkflow { reason: String },
    #[error("no job with id \"{id}\"")]
    NotFound { id: String },
    #[error("job \"{id}\" is {}: {action} is only possible when it is {allowed}", state.as_str())]
    WrongState {
        id: String,
        state: JobState,
        action: &'static str,
        allowed: &'static str,
    },
    #[error("no instance with id \"{id}\" to run the job on")]
    UnknownInstance { id: String },
    #[error("the job queue is shut down")]
    ShutDown,
    #[error("template \"{id}\": {reason}")]
    Template { id: String, reason: String },
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A compare-and-set of the job's record lost: it moved on in the store
    /// since this process read it. The job is read again from the store.
    #[error("job \"{id}\" changed in the queue's store meanwhile ({reason}); it was read again: look at it and try again")]
    Moved { id: String, reason: String },
}

impl DispatchError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadWorkflow { .. } | Self::Template { .. } => ErrorCode::InvalidInput,
            Self::NotFound { .. } | Self::UnknownInstance { .. } => ErrorCode::NotFound,
            Self::WrongState { .. } | Self::ShutDown | Self::Moved { .. } => ErrorCode::Conflict,
            Self::Read { .. } => ErrorCode::Io,
            Self::Store(e) => e.code(),
        }
    }

    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        Self::BadWorkflow {
            reason: reason.into(),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}
