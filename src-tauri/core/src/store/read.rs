//! Reading the app's files (and files the user points at) without hanging and
//! without reading without end: only a regular file is opened (a FIFO blocks
//! the reader for ever, `/dev/zero` never ends, a folder is no file), the
//! open is non-blocking and checked again on the open file (no race with a
//! swap), and no more than a stated size is read.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadProblem {
    /// A folder, a FIFO, a device, a socket: named in words.
    NotAFile(&'static str),
    /// Bigger than the limit, in bytes.
    TooBig {
        limit: u64,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::NotAFile(what) => write!(f, "it is {what}, not a regular file"),
            ReadProblem::TooBig { limit } => {
                write!(f, "it is larger than {}", human_size(*limit))
            }
            ReadProblem::Io(e) => match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    write!(f, "permission denied: give your user the right to read it")
                }
                _ => write!(f, "{e}"),
            },
        }
    }
}

/// `16 MiB`, `512 KiB`, `100 bytes`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn kind_of(m: &Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// The bytes of the regular file at `path` (a link to one is followed), at
/// most `limit` of them; `Ok(None)` when nothing is there.
pub fn read_regular(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ReadProblem> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ReadProblem::NotAFile(
                "a symbolic link that loops back on itself",
            ))
        }
        Err(e) => return Err(ReadProblem::Io(e)),
    };
    if let Some(kind) = kind_of(&meta) {
        return Err(ReadProblem::NotAFile(kind));
    }
    if meta.len() > limit {
        return Err(ReadProblem::TooBig { limit });
    }
    let file = open_nonblocking(path).map_err(ReadProblem::Io)?;
    // What was opened, not what the name pointed at a moment before.
    let meta = file.metadata().map_err(ReadProblem::Io)?;
    if let Some(kind) = kind_of(&meta) {
        return Err(ReadProblem::NotAFile(kind));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadProblem::TooBig { limit });
    }
    Ok(Some(bytes))
}

fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.json");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap().unwrap(), b"12345");
        assert!(matches!(
            read_regular(&file, 4),
            Err(ReadProblem::TooBig { limit: 4 })
        ));
        assert!(read_regular(&dir.path().join("none"), 5).unwrap().is_none());
        assert!(matches!(
            read_regular(dir.path(), 5),
            Err(ReadProblem::NotAFile("a folder"))
        ));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_regular(&fifo, 5),
            Err(ReadProblem::NotAFile("a named pipe (FIFO)"))
        ));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_regular(&zero, 5),
            Err(ReadProblem::NotAFile("a device"))
        ));
        assert_eq!(human_size(16 << 20), "16 MiB");
    }
}
