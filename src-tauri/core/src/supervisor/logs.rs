//! ComfyUI's output: every line goes to the instance's log file (rotated, so a
//! server that runs for weeks does not fill the disk) and to a bounded tail in
//! memory that the UI reads and that crash reports quote.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The live file is rotated when it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept (`comfyui.log.1` is the newest).
    pub kept_files: usize,
    /// Lines kept in memory.
    pub tail_lines: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 10 << 20,
            kept_files: 3,
            tail_lines: 500,
        }
    }
}

struct LogState {
    file: Option<File>,
    written: u64,
    tail: VecDeque<String>,
    /// Lines pushed since the log was opened: the number of the next line.
    total: u64,
}

/// Shared by the stdout and stderr readers and the UI. The lock is held only
/// for a line's write, never across an await.
#[derive(Clone)]
pub struct InstanceLog {
    path: PathBuf,
    limits: LogLimits,
    state: Arc<Mutex<LogState>>,
    /// Tells this log from an earlier one of the same instance (a relaunch
    /// starts a new log and new line numbers).
    session: u64,
    /// Told the line count after each line; followers wait on it. Dropped with
    /// the last clone of the log, which ends their wait.
    lines: Arc<watch::Sender<u64>>,
}

impl InstanceLog {
    /// Opens (appends to) `path`; its folder must exist.
    pub fn open(path: &Path, limits: LogLimits) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            limits,
            state: Arc::new(Mutex::new(LogState {
                file: Some(file),
                written,
                tail: VecDeque::new(),
                total: 0,
            })),
            lines: Arc::new(watch::channel(0).0),
            session: NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one line (without its newline).
    pub fn push_line(&self, line: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = line.len() as u64 + 1;
        if state.written > 0 && state.written + bytes > self.limits.max_file_bytes {
            self.rotate(&mut state);
        }
        if let Some(file) = state.file.as_mut() {
            // A full disk must not stop the server: the tail still gets the line.
            if writeln!(file, "{line}").is_ok() {
                state.written += bytes;
            }
        }
        if state.tail.len() == self.limits.tail_lines {
            state.tail.pop_front();
        }
        if self.limits.tail_lines > 0 {
            state.tail.push_back(line.to_string());
        }
        state.total += 1;
        let total = state.total;
        drop(state);
        self.lines.send_replace(total);
    }

    /// A follower of the lines pushed from now on (for a live view).
    pub fn follow(&self) -> LogFollower {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        LogFollower {
            session: self.session,
            next: state.total,
            rx: self.lines.subscribe(),
            state: Arc::downgrade(&self.state),
        }
    }

    /// The last `n` lines in memory, numbered, so a live view can join them
    /// with the batches of a follower without gaps or repeats.
    pub fn window(&self, n: usize) -> LogBatch {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let skip = state.tail.len().saturating_sub(n);
        LogBatch {
            session: self.session,
            first: state.total - (state.tail.len() - skip) as u64,
            lines: state.tail.iter().skip(skip).cloned().collect(),
        }
    }

    fn rotate(&self, state: &mut LogState) {
        state.file = None;
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.limits.kept_files == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(self.limits.kept_files));
            for n in (1..self.limits.kept_files).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            let _ = std::fs::rename(&self.path, numbered(1));
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => state.file = Some(f),
            Err(e) => tracing::warn!("could not reopen {}: {e}", self.path.display()),
        }
        state.written = 0;
    }

    /// The last `n` lines in memory, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let skip = state.tail.len().saturating_sub(n);
        state.tail.iter().skip(skip).cloned().collect()
    }

    /// Every log file of the instance, oldest first (the live one last).
    pub fn files(&self) -> Vec<PathBuf> {
        log_files(&self.path, self.limits.kept_files)
    }

    /// The whole log (rotated files then the live one) as one text, for export.
    pub fn export(&self) -> std::io::Result<String> {
        let mut out = String::new();
        for f in self.files() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&f)?));
        }
        Ok(out)
    }
}

/// The existing files of a log, oldest first.
pub fn log_files(live: &Path, kept: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=kept)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", live.display())))
        .filter(|p| p.is_file())
        .collect();
    if live.is_file() {
        files.push(live.to_path_buf());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_keeps_n_files_and_a_bounded_tail() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("comfyui.log");
        let limits = LogLimits {
            max_file_bytes: 100,
            kept_files: 2,
            tail_lines: 3,
        };
        let log = InstanceLog::open(&live, limits).unwrap();
        for i in 0..60 {
            log.push_line(&format!("line {i:04}"));
        }
        assert_eq!(log.tail(10), vec!["line 0057", "line 0058", "line 0059"]);
        let files = log.files();
        assert_eq!(files.len(), 3, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 100);
        }
        assert!(!dir.path().join("comfyui.log.3").exists());
        let all = log.export().unwrap();
        assert!(all.ends_with("line 0059\n"));
        let lines: Vec<&str> = all.lines().collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "export is oldest first");
    }

    #[tokio::test]
    async fn a_follower_gets_new_lines_in_batches_and_ends_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_file_bytes: 1 << 20,
            kept_files: 1,
            tail_lines: 4,
        };
        let log = InstanceLog::open(&dir.path().join("comfyui.log"), limits).unwrap();
        log.push_line("before");
        let mut f = log.follow();
        log.push_line("a");
        log.push_line("b");
        let b = f.next_batch().await.unwrap();
        assert_eq!(b.lines, vec!["a", "b"], "only lines after follow()");
        assert_eq!(b.first, 1);
        let w = log.window(2);
        assert_eq!((w.session, w.first, w.lines), (b.session, 1, b.lines));

        // A line pushed while the follower waits wakes it.
        let writer = log.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            writer.push_line("c");
        });
        assert_eq!(f.next_batch().await.unwrap().lines, vec!["c"]);
        t.await.unwrap();

        // A burst bigger than the tail: what left it is counted, not lost silently.
        for i in 0..10 {
            log.push_line(&format!("burst {i}"));
        }
        let b = f.next_batch().await.unwrap();
        assert_eq!(b.lines, vec!["burst 6", "burst 7", "burst 8", "burst 9"]);
        assert_eq!(
            b.first, 10,
            "lines 4..10 left the tail unread: the gap shows"
        );
        let other = InstanceLog::open(&dir.path().join("other.log"), limits).unwrap();
        assert_ne!(other.window(1).session, b.session);

        drop(log);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), f.next_batch()).await;
        assert_eq!(ended.unwrap(), None, "the follower ends with the log");
    }
}

/// Waits for new lines of an [`InstanceLog`] and hands them over in batches.
/// Holds no strong reference: it ends when the log is dropped.
pub struct LogFollower {
    session: u64,
    next: u64,
    rx: watch::Receiver<u64>,
    state: Weak<Mutex<LogState>>,
}

/// Consecutive lines of one log: `first` is the number of the first (lines
/// count from 0 when the log opens). A batch whose `first` is past the end of
/// the previous one means lines left the in-memory tail before being read.
/// The default (session 0, no lines) stands for "no log": an attached instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBatch {
    pub session: u64,
    pub first: u64,
    pub lines: Vec<String>,
}

impl LogFollower {
    /// The lines pushed since the last batch, waiting for at least one;
    /// `None` once the log is gone (the process and its handle dropped).
    pub async fn next_batch(&mut self) -> Option<LogBatch> {
        loop {
            if *self.rx.borrow_and_update() > self.next {
                break;
            }
            self.rx.changed().await.ok()?;
        }
        let state = self.state.upgrade()?;
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let first_in_tail = state.total - state.tail.len() as u64;
        let first = self.next.max(first_in_tail);
        let lines = state
            .tail
            .iter()
            .skip((first - first_in_tail) as usize)
            .cloned()
            .collect();
        self.next = state.total;
        Some(LogBatch {
            session: self.session,
            first,
            lines,
        })
    }
}
