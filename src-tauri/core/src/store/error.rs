//! What can go wrong with the files, saying what was being done and to which file.

use std::path::PathBuf;
use storycore_types::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not create the config folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not move {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} was written by a newer version of StoryCore Engine (format {found}); it is kept read-only: update the app to change it")]
    NewerFormat { path: PathBuf, found: String },
    #[error("could not encode {path} as JSON: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot keep files for instance id '{id}': {reason}")]
    BadInstanceId { id: String, reason: String },
}

impl StoreError {
    /// The closed code the UI matches on.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NewerFormat { .. } => ErrorCode::Conflict,
            StoreError::BadInstanceId { .. } => ErrorCode::InvalidInput,
            StoreError::Encode { .. } => ErrorCode::Internal,
            _ => ErrorCode::Io,
        }
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}
