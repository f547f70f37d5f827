//! One writer for the queue's files (job records, `instance_{id}_workflows.json`):
//! a thread of its own, so no file I/O happens under the queue's lock, on the
//! runtime's workers or on the caller's thread.
//!
//! It commits in groups. Everything handed to it while it was busy is one
//! group: each file is written to `<name>.pending-<seq>` without a sync, then
//! one `syncfs` makes the whole group durable (data and the new names), then
//! each pending file is renamed over its target. The renames need no sync of
//! their own: [`recover`](super::recover::recover) (run when the queue opens) renames a pending file
//! that a crash left behind over its target, since it is always the newer
//! one; a pending file that does not parse was never acknowledged and is
//! deleted. So a group costs one sync, however many records it holds.
//!
//! A record is either awaited ([`Writer::put_durable`]: the caller learns when
//! it is durable, or that it failed) or lazy ([`Writer::put`]): lazy records
//! wait up to [`LAZY_WAIT`] to share the next group. A record that fails
//! (full disk, read-only folder) is written again every [`RETRY_AFTER`] until
//! it succeeds or a newer record of the same file replaces it.

use super::recover::pending_path;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::Job;
use tokio::sync::oneshot;

/// How long a lazy record waits for company before it is committed alone.
pub const LAZY_WAIT: Duration = Duration::from_millis(200);
/// How soon a failed record is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

pub use super::durable::{Durable, WriteFailure};
type Waiter = oneshot::Sender<Result<(), WriteFailure>>;

/// What goes into a file. Rendered on the writer's thread, once per group.
pub enum Body {
    Bytes(Vec<u8>),
    /// A job record: the job (without its workflow) and its workflow as JSON,
    /// written as one object without copying the workflow.
    Job {
        summary: Box<Job>,
        workflow: Arc<[u8]>,
    },
    Render(Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>),
}

enum Op {
    Put {
        path: PathBuf,
        body: Body,
        waiter: Option<Waiter>,
    },
    Remove {
        path: PathBuf,
        waiter: Option<Waiter>,
    },
    Flush(oneshot::Sender<()>),
}

/// Counters, for the benchmarks and the checks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// `syncfs`/`fsync` calls made.
    pub syncs: AtomicU64,
    /// Files written (after coalescing).
    pub records: AtomicU64,
    /// Records handed in (before coalescing).
    pub submitted: AtomicU64,
    pub groups: AtomicU64,
}

/// A snapshot of [`WriterStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounts {
    pub syncs: u64,
    pub records: u64,
    pub submitted: u64,
    pub groups: u64,
}

/// The handle: cheap to clone; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer for files under `root` (one filesystem).
    pub fn start(root: &Path) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let mut worker = Worker {
            root: root.to_path_buf(),
            rx,
            stats: stats.clone(),
            seq: seq_base(),
            pending: Vec::new(),
            index: HashMap::new(),
            flushes: Vec::new(),
            lazy_since: None,
            retry_at: None,
        };
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || worker.run())?;
        Ok(Self { tx, stats })
    }

    /// Writes `body` to `path` in the next group; nobody waits for it.
    pub fn put(&self, path: PathBuf, body: Body) {
        self.send(Op::Put {
            path,
            body,
            waiter: None,
        });
    }

    /// Writes `body` to `path` in the next group, committed at once; the
    /// answer comes when it is durable, or failed.
    pub fn put_durable(&self, path: PathBuf, body: Body) -> Durable {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Put {
            path,
            body,
            waiter: Some(tx),
        });
        rx
    }

    /// Deletes `path` (after any earlier write of it); lazy.
    pub fn remove(&self, path: PathBuf) {
        self.send(Op::Remove { path, waiter: None });
    }

    /// Deletes `path`, answering once the deletion is durable.
    pub fn remove_durable(&self, path: PathBuf) -> Durable {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Remove {
            path,
            waiter: Some(tx),
        });
        rx
    }

    /// Resolves once everything handed in before is committed (or failed).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        let _ = rx.await;
    }

    pub fn counts(&self) -> WriterCounts {
        let s = &self.stats;
        WriterCounts {
            syncs: s.syncs.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            submitted: s.submitted.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
        }
    }

    fn send(&self, op: Op) {
        if !matches!(op, Op::Flush(_)) {
            self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        }
        // The thread only ends when every sender is gone: a send cannot fail
        // while `self` exists, short of the thread panicking.
        if let Err(mpsc::SendError(op)) = self.tx.send(op) {
            tracing::error!("the journal writer is gone; a write was dropped");
            fail_op(op, "the journal writer stopped");
        }
    }
}

fn fail_op(op: Op, why: &str) {
    let e = std::io::Error::other(why.to_string());
    match op {
        Op::Put { path, waiter, .. } | Op::Remove { path, waiter } => {
            if let Some(w) = waiter {
                let _ = w.send(Err(WriteFailure::new(&path, &e)));
            }
        }
        Op::Flush(tx) => {
            let _ = tx.send(());
        }
    }
}

/// Sequence numbers start at the clock so a later run's pending files sort
/// after an earlier run's (which [`recover`] resolves first anyway).
fn seq_base() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Pending {
    path: PathBuf,
    /// None: delete the file.
    body: Option<Body>,
    waiters: Vec<Waiter>,
}

struct Worker {
    root: PathBuf,
    rx: mpsc::Receiver<Op>,
    stats: Arc<WriterStats>,
    seq: u64,
    /// In arrival order; at most one per path.
    pending: Vec<Pending>,
    index: HashMap<PathBuf, usize>,
    flushes: Vec<oneshot::Sender<()>>,
    /// Since when lazy records wait.
    lazy_since: Option<Instant>,
    /// Failed records are due again then.
    retry_at: Option<Instant>,
}

impl Worker {
    fn run(&mut self) {
        loop {
            let urgent =
                !self.flushes.is_empty() || self.pending.iter().any(|p| !p.waiters.is_empty());
            if !urgent {
                let deadline = [self.lazy_since.map(|t| t + LAZY_WAIT), self.retry_at]
                    .into_iter()
                    .flatten()
                    .min();
                let got = match deadline {
                    None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(d) => self
                        .rx
                        .recv_timeout(d.saturating_duration_since(Instant::now())),
                };
                match got {
                    Ok(op) => self.take(op),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.commit();
                        return;
                    }
                }
            }
            // Everything already waiting joins this group.
            while let Ok(op) = self.rx.try_recv() {
                self.take(op);
            }
            let now = Instant::now();
            let due = !self.flushes.is_empty()
                || self.pending.iter().any(|p| !p.waiters.is_empty())
                || self.lazy_since.is_some_and(|t| now >= t + LAZY_WAIT)
                || self.retry_at.is_some_and(|t| now >= t);
            if due {
                self.commit();
            }
        }
    }

    fn take(&mut self, op: Op) {
        let (path, body, waiter) = match op {
            Op::Flush(tx) => {
                self.flushes.push(tx);
                return;
            }
            Op::Put { path, body, waiter } => (path, Some(body), waiter),
            Op::Remove { path, waiter } => (path, None, waiter),
        };
        if waiter.is_none() && self.lazy_since.is_none() {
            self.lazy_since = Some(Instant::now());
        }
        match self.index.get(&path) {
            Some(&i) => {
                let p = &mut self.pending[i];
                p.body = body; // the newer record replaces the older
                p.waiters.extend(waiter);
            }
            None => {
                self.index.insert(path.clone(), self.pending.len());
                self.pending.push(Pending {
                    path,
                    body,
                    waiters: waiter.into_iter().collect(),
                });
            }
        }
    }

    /// Commits every pending record as one group.
    fn commit(&mut self) {
        let group = std::mem::take(&mut self.pending);
        self.index.clear();
        self.lazy_since = None;
        self.retry_at = None;
        if !group.is_empty() {
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
        }
        // 1. Each file to its pending name, unsynced.
        let mut written: Vec<(Pending, PathBuf)> = Vec::new();
        let mut removals: Vec<Pending> = Vec::new();
        let mut failed: Vec<(Pending, WriteFailure)> = Vec::new();
        for mut p in group {
            let Some(body) = p.body.take() else {
                removals.push(p);
                continue;
            };
            let body = match render(body) {
                Ok(b) => b,
                Err(why) => {
                    // Cannot be written at all: say so, do not retry.
                    let f = WriteFailure::new(&p.path, &std::io::Error::other(why));
                    tracing::error!("{f}");
                    for w in p.waiters {
                        let _ = w.send(Err(f.clone()));
                    }
                    continue;
                }
            };
            self.seq += 1;
            let temp = pending_path(&p.path, self.seq);
            let result = write_body(&temp, &body);
            p.body = Some(body);
            match result {
                Ok(()) => written.push((p, temp)),
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    let f = WriteFailure::new(&p.path, &e);
                    failed.push((p, f));
                }
            }
        }
        // 2. One sync for the whole group.
        if !written.is_empty() {
            let temps: Vec<&Path> = written.iter().map(|(_, t)| t.as_path()).collect();
            if let Err(e) = self.sync(&temps) {
                for (p, temp) in written.drain(..) {
                    let _ = std::fs::remove_file(&temp);
                    let f = WriteFailure::new(&p.path, &e);
                    failed.push((p, f));
                }
            }
        }
        // 3. Durable now: rename over the targets, answer the waiters.
        for (p, temp) in written {
            if let Err(e) = std::fs::rename(&temp, &p.path) {
                // The pending file is durable and newer: `recover` renames
                // it at the next start. Only this run's readers miss it.
                tracing::warn!("could not rename {}: {e}", temp.display());
            }
            self.stats.records.fetch_add(1, Ordering::Relaxed);
            for w in p.waiters {
                let _ = w.send(Ok(()));
            }
        }
        for p in removals {
            match std::fs::remove_file(&p.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    let f = WriteFailure::new(&p.path, &e);
                    failed.push((p, f));
                }
                _ => {
                    for w in p.waiters {
                        let _ = w.send(Ok(()));
                    }
                }
            }
        }
        // Tried again later, unless something newer for the file arrives first.
        for (mut p, f) in failed {
            tracing::error!("{f} (tried again every {}s)", RETRY_AFTER.as_secs());
            for w in p.waiters.drain(..) {
                let _ = w.send(Err(f.clone()));
            }
            if !self.index.contains_key(&p.path) {
                self.index.insert(p.path.clone(), self.pending.len());
                self.pending.push(p);
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
        for tx in self.flushes.drain(..) {
            let _ = tx.send(());
        }
    }

    #[cfg(target_os = "linux")]
    fn sync(&self, _temps: &[&Path]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(&self.root)?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: syncfs takes an open descriptor, which `dir` holds.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Elsewhere: each file, then each folder.
    #[cfg(not(target_os = "linux"))]
    fn sync(&self, temps: &[&Path]) -> std::io::Result<()> {
        let mut folders = std::collections::BTreeSet::new();
        for t in temps {
            std::fs::File::open(t)?.sync_all()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = t.parent() {
                folders.insert(p.to_path_buf());
            }
        }
        for f in folders {
            std::fs::File::open(&f)?.sync_all()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Turns a [`Body::Render`] into bytes (the others stay as they are).
fn render(body: Body) -> Result<Body, String> {
    match body {
        Body::Render(r) => r().map(Body::Bytes),
        b => Ok(b),
    }
}

/// Writes the file, making its folder if it is missing.
fn write_body(temp: &Path, body: &Body) -> std::io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(folder) = temp.parent() {
                std::fs::create_dir_all(folder)?;
            }
            open()?
        }
        other => other?,
    };
    match body {
        Body::Bytes(b) => f.write_all(b),
        Body::Job { summary, workflow } => super::record::write_job(&mut f, summary, workflow),
        Body::Render(_) => unreachable!("rendered before writing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::recover::recover;

    fn job(id: &str) -> Job {
        let now = chrono::Utc::now();
        Job {
            id: id.into(),
            workflow: serde_json::Value::Null,
            target: storycore_types::JobTarget::Auto,
            state: storycore_types::JobState::Queued,
            attempts: 0,
            instance_id: None,
            prompt_id: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            progress: Default::default(),
            outputs: Vec::new(),
            error: None,
            instances_killed: Vec::new(),
            template_id: None,
            copy: None,
            project_id: None,
            output_folder: None,
            pinned_instances: Vec::new(),
            waiting: None,
            placed_because: None,
            gateway: None,
            input_files: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_group_costs_one_sync_and_a_job_record_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start(dir.path()).unwrap();
        let wf: Arc<[u8]> = br#"{"1":{"class_type":"X","inputs":{}}}"#.to_vec().into();
        let mut waits = Vec::new();
        for k in 0..20 {
            let path = dir.path().join(format!("j{k}.json"));
            let body = Body::Job {
                summary: Box::new(job(&format!("j{k}"))),
                workflow: wf.clone(),
            };
            waits.push(w.put_durable(path, body));
        }
        for r in waits {
            r.await.unwrap().unwrap();
        }
        let c = w.counts();
        assert_eq!(c.records, 20);
        assert!(c.syncs <= 2, "20 records handed in together: {c:?}");
        let back: Job =
            serde_json::from_slice(&std::fs::read(dir.path().join("j7.json")).unwrap()).unwrap();
        assert_eq!(back.id, "j7");
        assert_eq!(back.workflow["1"]["class_type"], "X");
    }

    #[tokio::test]
    async fn the_newest_record_of_a_file_wins_and_lazy_ones_are_written_by_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start(dir.path()).unwrap();
        let p = dir.path().join("a.json");
        for k in 0..50 {
            w.put(p.clone(), Body::Bytes(format!("{k}").into_bytes()));
        }
        w.flush().await;
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "49");
        w.remove(p.clone());
        w.flush().await;
        assert!(!p.exists());
    }

    #[test]
    fn recovery_keeps_the_newest_sound_pending_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.json"), "1").unwrap();
        std::fs::write(d.join("a.json.pending-5"), "2").unwrap();
        std::fs::write(d.join("a.json.pending-9"), "{\"torn\":").unwrap();
        std::fs::write(d.join("b.json.pending-3"), "3").unwrap();
        assert_eq!(recover(d).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(d.join("a.json")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(d.join("b.json")).unwrap(), "3");
        let left: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "pending files resolved");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_written_once_possible() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start(dir.path()).unwrap();
        // A file where the folder should be: the write fails until it goes.
        let sub = dir.path().join("blocked");
        std::fs::write(&sub, "").unwrap();
        let p = sub.join("x.json");
        let r = w.put_durable(p.clone(), Body::Bytes(b"1".to_vec())).await;
        r.unwrap().unwrap_err();
        std::fs::remove_file(&sub).unwrap();
        let t = Instant::now();
        while !p.exists() && t.elapsed() < RETRY_AFTER * 5 {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1", "retried");
    }
}
