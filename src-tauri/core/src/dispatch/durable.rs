//! The answer of a record's write: durable, or why not (the disk failed,
//! or a compare-and-set lost). Shared by the writer and the store seam.

use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

/// Why a record could not be made durable. Cloned to every waiter of a group.
#[derive(Debug, Clone)]
pub struct WriteFailure {
    pub path: PathBuf,
    pub kind: std::io::ErrorKind,
    pub message: String,
    /// Not written because the stored record moved on since it was read
    /// (a compare-and-set that lost; see `store::Revision`), not because
    /// the disk failed.
    pub conflict: bool,
}

impl WriteFailure {
    pub(super) fn new(path: &Path, e: &std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
            conflict: false,
        }
    }

    /// A compare-and-set that lost: `message` says what was found.
    pub fn conflict(path: &Path, message: String) -> Self {
        Self {
            path: path.to_path_buf(),
            kind: std::io::ErrorKind::AlreadyExists,
            message,
            conflict: true,
        }
    }

    /// The answer of a write refused before it was handed in.
    pub fn answered(self) -> Durable {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(self));
        rx
    }
}

impl From<WriteFailure> for crate::store::StoreError {
    fn from(f: WriteFailure) -> Self {
        Self::Write {
            path: f.path,
            source: std::io::Error::new(f.kind, f.message),
        }
    }
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not write {}: {}",
            self.path.display(),
            self.message
        )
    }
}

pub type Durable = oneshot::Receiver<Result<(), WriteFailure>>;
