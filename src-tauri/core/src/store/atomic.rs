//! Writes that a crash cannot tear: the reader sees the old file or the new one.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks the temp files of [`atomic_write`]; load removes strays with it.
pub(crate) const PARTIAL_MARKER: &str = ".partial-";

static WRITE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temp file in the same folder (a
/// rename is atomic only within one file system), fsync it, rename it over
/// `path`, then fsync the folder so the rename itself survives a power cut.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let write_err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temp = temp_path(path);
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::privacy::FILE_MODE);
        let mut f = options.open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write_err(e));
    }
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(write_err(e));
    }
    sync_folder(path).map_err(write_err)
}

/// Replaces `path` through a temp file like [`atomic_write`] (a reader never
/// sees half a file), making its folder if missing, but syncs nothing: for
/// files whose durability comes from a later sync (a job's outputs ride on
/// the journal writer's `syncfs` of the job's end).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        crate::privacy::create_private_dir(folder)?;
    }
    let temp = temp_path(path);
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::privacy::FILE_MODE);
        options.open(&temp)?.write_all(bytes)?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `{name}.partial-{pid}-{n}`: unique per process and per write, so two
/// writers of one file never share a temp file.
fn temp_path(path: &Path) -> PathBuf {
    let n = WRITE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{PARTIAL_MARKER}{}-{n}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(unix)]
pub(crate) fn sync_folder(path: &Path) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

/// Windows cannot open a folder as a file; its rename is already durable
/// enough once `MoveFileEx` returns.
#[cfg(not(unix))]
pub(crate) fn sync_folder(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
