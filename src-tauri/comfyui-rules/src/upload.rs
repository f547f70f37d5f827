//! `/upload/image` (server.py `image_upload`): the file goes to the folder of
//! its `type` (input unless `temp` or `output`), in `subfolder`; a file of
//! that name with other bytes is kept and the new one named `name (1).ext`
//! (then `(2)`, ...), unless `overwrite` is `true` or `1`; the same bytes
//! again write nothing and answer the existing name. A name or subfolder
//! that leads out of the folder is refused (400).

use std::path::{Component, Path, PathBuf};

/// Where a file went: the answer's `{"name", "subfolder", "type"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub name: String,
    pub subfolder: String,
    pub kind: &'static str,
}

#[derive(Debug)]
pub enum UploadError {
    /// The name or subfolder leads out of the folder (ComfyUI: 400, empty).
    OutsideFolder,
    /// The folder or file could not be written (ComfyUI: 500).
    Io(std::io::Error),
}

/// The folder type an upload's `type` field names.
pub fn upload_kind(field: Option<&str>) -> &'static str {
    match field {
        Some("temp") => "temp",
        Some("output") => "output",
        _ => "input",
    }
}

/// A file name with ComfyUI's folder annotation (`name [output]`, `[input]`
/// or `[temp]`; folder_paths.annotated_filepath): the name, and the folder
/// type it names.
pub fn annotated(name: &str) -> (&str, Option<&'static str>) {
    for (suffix, kind) in [
        (" [output]", "output"),
        (" [input]", "input"),
        (" [temp]", "temp"),
    ] {
        if let Some(n) = name.strip_suffix(suffix) {
            return (n, Some(kind));
        }
    }
    (name, None)
}

/// `overwrite` as ComfyUI reads it.
pub fn overwrites(field: Option<&str>) -> bool {
    matches!(field, Some("true") | Some("1"))
}

/// `p` with `.` dropped and `..` applied (a leading `..` kept).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                let above = matches!(
                    out.components().next_back(),
                    None | Some(Component::ParentDir)
                );
                if above || !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether `p` stays inside `base` once `..` is applied.
pub fn inside(base: &Path, p: &Path) -> bool {
    normalize(p).starts_with(normalize(base))
}

/// Saves `data` as an upload into `folder` (the folder of `kind`).
pub fn save_upload(
    folder: &Path,
    kind: &'static str,
    subfolder: &str,
    filename: &str,
    data: &[u8],
    overwrite: bool,
) -> Result<Saved, UploadError> {
    save_upload_with(folder, kind, subfolder, filename, data, overwrite, |path| {
        std::fs::write(path, data)
    })
}

/// [`save_upload`], with `write` making the file (`/upload/mask` writes the
/// masked original, not the bytes it was sent; the name is chosen by the
/// bytes sent all the same).
pub fn save_upload_with(
    folder: &Path,
    kind: &'static str,
    subfolder: &str,
    filename: &str,
    data: &[u8],
    overwrite: bool,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<Saved, UploadError> {
    let dir = folder.join(normalize(Path::new(subfolder)));
    let mut path = dir.join(filename);
    if filename.is_empty() || !inside(folder, &path) || !inside(folder, &dir) {
        return Err(UploadError::OutsideFolder);
    }
    std::fs::create_dir_all(&dir).map_err(UploadError::Io)?;
    let mut name = filename.to_string();
    let mut duplicate = false;
    if !overwrite {
        let (stem, ext) = match filename.rfind('.').filter(|&i| i > 0) {
            Some(i) => filename.split_at(i),
            None => (filename, ""),
        };
        let mut i = 1;
        while path.exists() {
            if std::fs::read(&path).is_ok_and(|d| d == data) {
                duplicate = true;
                break;
            }
            name = format!("{stem} ({i}){ext}");
            path = dir.join(&name);
            i += 1;
        }
    }
    if !duplicate {
        write(&path).map_err(UploadError::Io)?;
    }
    Ok(Saved {
        name,
        subfolder: subfolder.to_string(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_comfyui_gives_them() {
        let d = std::env::temp_dir().join(format!("comfyui-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let save = |name: &str, data: &[u8], overwrite| {
            save_upload(&d, "input", "", name, data, overwrite).map(|s| s.name)
        };
        assert_eq!(save("a.png", b"one", false).unwrap(), "a.png");
        assert_eq!(save("a.png", b"one", false).unwrap(), "a.png");
        assert_eq!(save("a.png", b"two", false).unwrap(), "a (1).png");
        assert_eq!(save("a.png", b"three", false).unwrap(), "a (2).png");
        assert_eq!(save("a.png", b"four", true).unwrap(), "a.png");
        assert_eq!(std::fs::read(d.join("a.png")).unwrap(), b"four");
        assert!(matches!(
            save("../evil.png", b"x", false),
            Err(UploadError::OutsideFolder)
        ));
        assert!(matches!(
            save_upload(&d, "input", "../..", "x.png", b"x", false),
            Err(UploadError::OutsideFolder)
        ));
        assert!(inside(Path::new("/a/b"), Path::new("/a/b/c/../d")));
        assert!(!inside(Path::new("/a/b"), Path::new("/a/b/..")));
        assert_eq!(normalize(Path::new("../..")), Path::new("../.."));
        assert_eq!(normalize(Path::new("a/../../b")), Path::new("../b"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
