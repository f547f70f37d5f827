//! The write-ahead journal: one file per job, `<dir>/jobs/<job id>.json`,
//! written atomically at every state change. A job is on disk as `dispatched`
//! (with its instance and prompt id) before `POST /prompt` leaves the app, so
//! a restarted app knows what to ask each instance about.

use crate::store::{atomic_write, read_regular, StoreError};

/// A job's file holds its workflow (at most 16 MiB) and its state.
const MAX_JOB_FILE_BYTES: u64 = 64 << 20;
use std::path::{Path, PathBuf};
use storycore_types::Job;

pub const JOBS_FOLDER: &str = "jobs";

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// What reading the journal found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// In submission order.
    pub jobs: Vec<Job>,
    /// For the user: files that could not be read and were moved aside.
    pub notices: Vec<String>,
}

impl Journal {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join(JOBS_FOLDER);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn write(&self, job: &Job) -> Result<(), StoreError> {
        let path = self.path(&job.id);
        let bytes = serde_json::to_vec_pretty(job).map_err(|source| StoreError::Encode {
            path: path.clone(),
            source,
        })?;
        atomic_write(&path, &bytes)
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::Write { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Reads every job. A file that does not parse is renamed `.corrupt` (kept
    /// for the user, never read again); a crash's stray temp file is removed.
    pub fn replay(&self) -> Result<Replayed, StoreError> {
        let mut out = Replayed::default();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| StoreError::Read {
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".partial-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = read_regular(&path, MAX_JOB_FILE_BYTES)
                .map_err(|e| e.to_string())
                .and_then(|b| b.ok_or_else(|| "it vanished".to_string()))
                .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(job) if format!("{}.json", job.id) == name => out.jobs.push(job),
                Ok(job) => out.notices.push(format!(
                    "{} holds job \"{}\", not the job its name says; it was skipped",
                    path.display(),
                    job.id
                )),
                Err(why) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    out.notices.push(format!(
                        "the job file {} could not be read ({why}); it was moved to {}",
                        path.display(),
                        aside.display()
                    ));
                }
            }
        }
        out.jobs
            .sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}
