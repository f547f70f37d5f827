//! ComfyUI's output: every line goes to the instance's log file (rotated, so a
//! server that runs for weeks does not fill the disk) and to a bounded tail in
//! memory that the UI reads and that crash reports quote.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
}

/// Shared by the stdout and stderr readers and the UI. The lock is held only
/// for a line's write, never across an await.
#[derive(Clone)]
pub struct InstanceLog {
    path: PathBuf,
    limits: LogLimits,
    state: Arc<Mutex<LogState>>,
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
            })),
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
}
