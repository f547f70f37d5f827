//! ComfyUI's output. The process writes straight into the instance's log file
//! (its stdout and stderr are that file, opened for appending), so its output
//! never depends on the app: a ComfyUI left running when the app exits or dies
//! keeps logging instead of failing on a broken pipe. The app reads the file
//! as it grows ([`LogReader`]) into a bounded tail in memory that the UI reads
//! and that crash reports quote, and rotates it by copy-then-truncate (the
//! process keeps its descriptor; appends land at the new end).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A line longer than this is cut (a progress bar redrawn with `\r` for an
/// hour is one "line"); the rest of it is dropped from the tail, not the file.
const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The live file is rotated once it grows past this.
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
    tail: VecDeque<String>,
    /// Lines pushed since the log was opened: the number of the next line.
    total: u64,
}

/// One instance's log: the file and the tail in memory. The lock is held only
/// to add or copy lines, never across an await.
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
    /// Opens `path` (created if missing); its folder must exist.
    pub fn open(path: &Path, limits: LogLimits) -> std::io::Result<Self> {
        OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            limits,
            state: Arc::new(Mutex::new(LogState {
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

    /// The file opened for appending, to hand to the process as its stdout
    /// and stderr (one open file: the two streams keep their order).
    pub fn writer(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// A reader of what is appended to the file from now on.
    pub fn reader(&self) -> std::io::Result<LogReader> {
        let end = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(LogReader {
            log: self.clone(),
            pos: end,
            partial: Vec::new(),
        })
    }

    /// Fills the tail with the last lines already in the file (a process
    /// re-attached after an app restart: its recent output is context).
    pub fn load_recent(&self) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(64 * 1024);
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        if from > 0 && !lines.is_empty() {
            lines.remove(0); // most likely cut in the middle
        }
        let keep = lines.len().saturating_sub(self.limits.tail_lines);
        for line in &lines[keep..] {
            self.push_line(line);
        }
    }

    /// Records one line (without its newline) in the tail.
    pub fn push_line(&self, line: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Moves the live file to `.1` (older ones shift, the oldest goes) by
    /// copying it and emptying the live one: the process writing it keeps its
    /// descriptor, and with `O_APPEND` its next line lands at the new end.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.limits.kept_files > 0 {
            let _ = std::fs::remove_file(numbered(self.limits.kept_files));
            for n in (1..self.limits.kept_files).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::copy(&self.path, numbered(1))?;
        }
        OpenOptions::new().write(true).open(&self.path)?.set_len(0)
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

/// Reads what a process appends to its log file, line by line, into the
/// log's tail, and rotates the file when it grows too big.
pub struct LogReader {
    log: InstanceLog,
    /// How far the file has been read.
    pos: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
}

impl LogReader {
    /// Reads everything appended since the last call; returns whether
    /// anything was. Never blocks for long: a regular file is read to its end.
    pub fn read_new(&mut self) -> bool {
        let Ok(mut f) = File::open(&self.log.path) else {
            return false;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.pos {
            // Emptied (rotated, or by hand): start over at its beginning.
            self.pos = 0;
            self.partial.clear();
        }
        if len == self.pos {
            return false;
        }
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(self.pos)).is_err()
            || (&mut f)
                .take(len - self.pos)
                .read_to_end(&mut bytes)
                .is_err()
        {
            return false;
        }
        self.pos += bytes.len() as u64;
        let mut rest = bytes.as_slice();
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..nl]);
            self.push_partial();
            rest = &rest[nl + 1..];
        }
        if self.partial.len() < MAX_LINE_BYTES {
            let room = MAX_LINE_BYTES - self.partial.len();
            self.partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
        if self.pos > self.log.limits.max_file_bytes {
            match self.log.rotate() {
                Ok(()) => self.pos = 0,
                Err(e) => tracing::warn!("could not rotate {}: {e}", self.log.path.display()),
            }
        }
        true
    }

    /// Hands over a last line that has no newline (the process has ended).
    pub fn finish(&mut self) {
        self.read_new();
        if !self.partial.is_empty() {
            self.push_partial();
        }
    }

    fn push_partial(&mut self) {
        self.partial.truncate(MAX_LINE_BYTES);
        let text = String::from_utf8_lossy(&self.partial);
        self.log.push_line(text.trim_end_matches('\r'));
        self.partial.clear();
    }

    /// Reads the file as it grows until `done` fires, then reads what is
    /// left. Polls quickly while lines come, more slowly when quiet.
    pub async fn run(mut self, done: tokio_util::sync::CancellationToken) {
        let mut idle = Duration::from_millis(50);
        loop {
            if self.read_new() {
                idle = Duration::from_millis(50);
            } else {
                idle = (idle * 2).min(Duration::from_millis(250));
            }
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(idle) => {}
            }
        }
        self.finish();
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
    fn the_process_output_is_read_rotated_and_bounded() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("comfyui.log");
        let limits = LogLimits {
            max_file_bytes: 100,
            kept_files: 2,
            tail_lines: 3,
        };
        let log = InstanceLog::open(&live, limits).unwrap();
        // What the process writes: its stdout is this descriptor.
        let mut out = log.writer().unwrap();
        let mut reader = log.reader().unwrap();
        for i in 0..60 {
            writeln!(out, "line {i:04}").unwrap();
            reader.read_new();
        }
        write!(out, "no newline yet").unwrap();
        reader.read_new();
        assert_eq!(log.tail(10), vec!["line 0057", "line 0058", "line 0059"]);
        reader.finish();
        assert_eq!(log.tail(1), vec!["no newline yet"], "the last words count");
        let files = log.files();
        assert_eq!(files.len(), 3, "{files:?}");
        for f in &files {
            // Rotated once a read finds it past the limit: at most a line over.
            assert!(std::fs::metadata(f).unwrap().len() <= 110);
        }
        assert!(!dir.path().join("comfyui.log.3").exists());
        let all = log.export().unwrap();
        assert!(all.ends_with("line 0059\nno newline yet"), "{all}");
        let lines: Vec<&str> = all.lines().filter(|l| l.starts_with("line")).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "export is oldest first");
        assert_eq!(lines.last(), Some(&"line 0059"));
    }

    #[test]
    fn a_re_attached_log_shows_its_recent_lines_and_cuts_endless_ones() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("comfyui.log");
        let limits = LogLimits {
            max_file_bytes: 1 << 20,
            kept_files: 1,
            tail_lines: 2,
        };
        std::fs::write(&live, "old 1\nold 2\nold 3\n").unwrap();
        let log = InstanceLog::open(&live, limits).unwrap();
        log.load_recent();
        assert_eq!(log.tail(5), vec!["old 2", "old 3"]);
        let mut reader = log.reader().unwrap();
        let mut out = log.writer().unwrap();
        let bar = "\r 50%|#####".repeat(10_000);
        writeln!(out, "{bar}").unwrap();
        reader.read_new();
        assert_eq!(log.tail(1)[0].len(), MAX_LINE_BYTES);
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
