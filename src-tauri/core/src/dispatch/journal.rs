//! The write-ahead journal: one file per job, `<dir>/jobs/<job id>.json`,
//! written at every state change through the queue's one [`Writer`]. A job is
//! durable as `dispatched` (with its instance and prompt id) before
//! `POST /prompt` leaves the app, so a restarted app knows what to ask each
//! instance about.

use super::record::Record;
pub use super::store::Replayed;
use super::store::{BoxFuture, Cas, Revision};
use super::writer::{Body, Durable, WriteFailure, Writer};
use crate::store::{read_regular, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

/// A job's file holds its workflow (at most 16 MiB) and its state.
const MAX_JOB_FILE_BYTES: u64 = 64 << 20;
use std::path::{Path, PathBuf};
use storycore_types::Job;

pub const JOBS_FOLDER: &str = "jobs";

/// Each job's output files, `<dir>/outputs/<job id>/`.
pub const OUTPUTS_FOLDER: &str = "outputs";

#[derive(Clone)]
pub struct Journal {
    dir: PathBuf,
    pub writer: Writer,
    /// Each job's revision as last handed to the writer: this process holds
    /// its records alone, so what it handed in is what is stored (in order).
    revisions: Arc<Mutex<HashMap<String, Revision>>>,
}

impl Journal {
    /// Opens `<root>/jobs`, finishes what a crash left half-written there and
    /// in `root` (see [`recover`](super::recover::recover)), and starts the writer.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join(JOBS_FOLDER);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let outputs = root.join(OUTPUTS_FOLDER);
        let job_outputs = std::fs::read_dir(&outputs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir());
        for folder in [dir.clone(), root.to_path_buf()]
            .into_iter()
            .chain(job_outputs)
        {
            super::recover::recover(&folder).map_err(|source| StoreError::Write {
                path: folder.clone(),
                source,
            })?;
        }
        let writer = Writer::start(root).map_err(|source| StoreError::Write {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir,
            writer,
            revisions: Arc::default(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn body(job: &Job, workflow: &Arc<[u8]>) -> Body {
        Body::Job {
            summary: Box::new(job.summary()),
            workflow: workflow.clone(),
        }
    }

    /// The compare-and-set: takes the next revision of the job's record
    /// when its revision is still `read`, else says what it found.
    fn advance(&self, id: &str, cas: Cas) -> Result<(), WriteFailure> {
        let mut revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        let stored = revisions.get(id).copied().unwrap_or_default();
        if stored != cas.read {
            return Err(WriteFailure::conflict(
                &self.path(id),
                format!(
                    "job {id}'s record is at revision {:x}, not {:x} as read: another write moved it on",
                    stored.0, cas.read.0
                ),
            ));
        }
        revisions.insert(id.to_string(), cas.next);
        Ok(())
    }

    /// The revision of the job's record ([`Revision::NONE`]: not stored).
    pub fn revision(&self, id: &str) -> Revision {
        let revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        revisions.get(id).copied().unwrap_or_default()
    }

    /// Writes the job's record in the next group, if its revision is still
    /// `cas.read`; nobody waits (a conflict is logged).
    pub fn put(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas) {
        match self.advance(&job.id, cas) {
            Ok(()) => self
                .writer
                .put(self.path(&job.id), Self::body(job, workflow)),
            Err(f) => tracing::error!("not written: {}", f.message),
        }
    }

    /// Writes the job's record now, if its revision is still `cas.read`;
    /// the answer says when it is durable, or that it moved on.
    pub fn put_durable(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas) -> Durable {
        match self.advance(&job.id, cas) {
            Ok(()) => self
                .writer
                .put_durable(self.path(&job.id), Self::body(job, workflow)),
            Err(f) => f.answered(),
        }
    }

    pub fn remove(&self, id: &str) {
        self.forget(id);
        self.writer.remove(self.path(id));
    }

    pub fn remove_durable(&self, id: &str) -> Durable {
        self.forget(id);
        self.writer.remove_durable(self.path(id))
    }

    fn forget(&self, id: &str) {
        let mut revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        revisions.remove(id);
    }

    /// The job's record as it is on disk once everything handed in before
    /// is written, with its revision.
    pub async fn get(&self, id: &str) -> Result<Option<(Job, Revision)>, StoreError> {
        self.writer.flush().await;
        let path = self.path(id);
        let read = tokio::task::spawn_blocking(move || {
            let bytes = read_regular(&path, MAX_JOB_FILE_BYTES).map_err(|e| StoreError::Read {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            match super::record::read_job(&bytes) {
                Ok(Record::Job(job)) => Ok(Some(*job)),
                Ok(Record::Newer(v)) => Err(StoreError::Read {
                    path,
                    source: std::io::Error::other(format!(
                        "written by a newer version of StoryCore Engine (record version {v})"
                    )),
                }),
                Err(why) => Err(StoreError::Read {
                    path,
                    source: std::io::Error::other(why),
                }),
            }
        })
        .await
        .map_err(|e| StoreError::Read {
            path: self.path(id),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(read.map(|job| {
            let revision = self.revision(&job.id);
            (job, revision)
        }))
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
                .and_then(|b| super::record::read_job(&b));
            match parsed {
                Ok(Record::Newer(v)) => out.notices.push(format!(
                    "the job file {} was written by a newer version of StoryCore Engine (record version {v}); it is left as it is, unread: update the app to see and run it",
                    path.display()
                )),
                Ok(Record::Job(job)) if format!("{}.json", job.id) == name => out.jobs.push(*job),
                Ok(Record::Job(job)) => out.notices.push(format!(
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
        // What is on disk is the first revision this process knows.
        let mut revisions = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        revisions.clear();
        for job in &out.jobs {
            let r = Revision::fresh();
            revisions.insert(job.id.clone(), r);
            out.revisions.insert(job.id.clone(), r);
        }
        drop(revisions);
        Ok(out)
    }
}

impl super::store::JobStore for Journal {
    fn replay(&self) -> Result<Replayed, StoreError> {
        Journal::replay(self)
    }
    fn put(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas) {
        Journal::put(self, job, workflow, cas)
    }
    fn put_durable(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas) -> Durable {
        Journal::put_durable(self, job, workflow, cas)
    }
    fn get(&self, id: &str) -> BoxFuture<'_, Result<Option<(Job, Revision)>, StoreError>> {
        let id = id.to_string();
        Box::pin(async move { Journal::get(self, &id).await })
    }
    fn remove(&self, id: &str) {
        Journal::remove(self, id)
    }
    fn remove_durable(&self, id: &str) -> Durable {
        Journal::remove_durable(self, id)
    }
    fn put_file(&self, path: PathBuf, render: super::store::Render) {
        self.writer.put(path, Body::Render(render))
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.writer.flush())
    }
    fn counts(&self) -> super::writer::WriterCounts {
        self.writer.counts()
    }
}
